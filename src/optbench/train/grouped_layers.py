r"""The grouped layers of :class:`~optbench.train.stacking.StackedModels`: K models' ``Conv1d``, ``Linear`` and
``BatchNorm1d`` (with the ReLU after it) as one batched operation each, on activations ``(K, C, L, B)`` or
``(K, F, B)``.

A convolution is each model's weight matrix times the columns of its input's windows (:func:`conv1d`, the windows
one strided copy), a linear layer one ``torch.baddbmm`` (:func:`matmul`).

**Grouped BatchNorm.** For model k and channel c, with ``h[k, c]`` that channel's
activations over the batch (and length) and n their number, training mode computes

    mu = mean(h[k, c]),   var = mean((h[k, c] - mu)^2),
    y[k, c] = (h[k, c] - mu) / sqrt(var + eps) * weight[k, c] + bias[k, c],
    running_mean[k, c] <- (1 - m) running_mean[k, c] + m mu,
    running_var[k, c]  <- (1 - m) running_var[k, c]  + m var n / (n - 1),

and eval mode uses ``running_mean`` and ``running_var`` in place of mu and var: exactly
``nn.BatchNorm1d`` for each model (momentum m = 0.1 by default). Since every (model,
channel) pair is normalized on its own, viewing ``(K, C, L, B)`` as one batch of K C
channels, ``(K C, L B)``, makes all K BatchNorms one BatchNorm: in eval mode one call of
torch's fused ``F.batch_norm``, in training mode :class:`_TrainingBatchNorm`. Its weight, bias
and running statistics are views of ``(K, C)`` tensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _Windows(torch.autograd.Function):
    """``(K, C, L, B) -> (K, C, k, L_out, B)``: tap j of output position l is input row ``s l + j - p``
    (zero outside the input). The forward is one strided copy of the input, zero-padded by ``p`` rows first
    where it has no margins yet (the training-mode BatchNorm writes its output with the next convolution's
    margins already there: :class:`_TrainingBatchNorm`). The backward gathers the taps' gradients back into
    the rows they were copied from: the first tap to reach a row copies, later ones add, in tap order (the
    sum a zeroed tensor and k additions would give, without the zeroing or the first additions)."""

    @staticmethod
    def forward(ctx, h: Tensor, k: int, s: int, p: int) -> Tensor:
        """The ``k`` taps of stride ``s`` over ``h`` zero-padded by ``p`` rows on each side."""
        models, channels, _, batch = h.shape
        if p:
            padded = _with_margins(h, p)  # zero rows around h: faster than F.pad
            _inside(padded, p).copy_(h)
        else:
            padded = h.contiguous()
        length = (padded.shape[2] - k) // s + 1
        ctx.geometry = padded.shape, k, s, p, length
        stride = padded.stride()
        return padded.as_strided(
            (models, channels, k, length, batch), (stride[0], stride[1], batch, s * batch, 1)
        ).contiguous()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        """The windows' gradient summed back into the input rows they were copied from.

        Tap j writes rows ``j, j + s, ..., j + s (L_out - 1)``; of these, tap ``j - s`` has written all but
        the last one before it (a tap ``j < s`` is the first in every row it writes)."""
        shape, k, s, p, length = ctx.geometry
        padded = grad.new_zeros(shape) if k < s else grad.new_empty(shape)  # k < s: rows no tap reaches
        padded[:, :, k + s * (length - 1) :] = 0  # rows past the last window
        for j in range(k):
            rows = padded[:, :, j : j + s * (length - 1) + 1 : s]
            if j < s:
                rows.copy_(grad[:, :, j])
            else:
                rows[:, :, :-1] += grad[:, :, j, :-1]
                rows[:, :, -1] = grad[:, :, j, -1]
        return (padded[:, :, p : shape[2] - p] if p else padded), None, None, None


def conv1d(layer: nn.Conv1d, h: Tensor, weight: Tensor, bias: Tensor | None, margins: int) -> Tensor:
    """``(K, C, L, B) -> (K, O, L_out, B)``: each model's weight matrix times its windows' columns. ``margins``:
    the zero rows ``h`` already has on each side of L, 0 or the layer's padding."""
    (k,), (s,), (p,) = layer.kernel_size, layer.stride, layer.padding
    models, channels, _, batch = h.shape
    if h.stride(0) == 0:  # the input batch, the same for every model: one product of all K O rows with its windows
        windows = _Windows.apply(h[:1], k, s, p - margins)
        rows, columns = weight.reshape(-1, channels * k), windows.reshape(channels * k, -1)
        out = rows @ columns if bias is None else torch.addmm(bias.reshape(-1, 1), rows, columns)
    else:
        windows = _Windows.apply(h, k, s, p - margins)
        out = matmul(weight.reshape(models, -1, channels * k), windows.reshape(models, channels * k, -1), bias)
    return out.view(models, -1, windows.shape[3], batch)


def batch_norm(
    layer: nn.BatchNorm1d,
    h: Tensor,
    weight: Tensor,
    bias: Tensor,
    stats: tuple[Tensor, ...],
    training: bool,
    relu: bool,
    margins: int,
) -> Tensor:
    """``(K, C, L, B)`` or ``(K, C, B)``: K BatchNorms as one of K C channels (see the module's docstring),
    then a ReLU if ``relu``. In training mode the output has ``margins`` zero rows on each side of L (the next
    convolution's padding, written in place of a padded copy)."""
    running_mean, running_var, batches = stats
    if not training:
        channels = h.reshape(h.shape[0] * h.shape[1], -1).unsqueeze(0)
        statistics = running_mean.view(-1), running_var.view(-1)
        out = F.batch_norm(channels, *statistics, weight.view(-1), bias.view(-1), False, 0.0, layer.eps).view(h.shape)
        return torch.relu(out) if relu else out
    batches += 1
    return _TrainingBatchNorm.apply(
        h, weight, bias, running_mean, running_var, layer.momentum, layer.eps, relu, margins
    )


class _TrainingBatchNorm(torch.autograd.Function):
    """Training-mode BatchNorm of K models' ``(K, C, ...)`` activations, each (model, channel) pair one channel
    of ``n`` values: the formulas of the module's docstring, with the statistics taken in two passes (mean,
    then the mean square of the centred values), which on CPU is faster than the fused kernel's for this
    layout, and the fused kernel's backward. Fused with the ReLU that follows it (``relu``): the normalized
    values are rectified in place, and the backward masks the gradient by the output before BatchNorm's. The
    output can carry zero margins of ``margins`` rows on each side of L (for a ``(K, C, L, B)`` input)."""

    @staticmethod
    def forward(
        ctx, h: Tensor, weight: Tensor, bias: Tensor, running_mean: Tensor, running_var: Tensor, m, eps, relu, margins
    ):
        """The normalized, scaled and shifted activations (rectified if ``relu``); the running statistics
        updated with momentum ``m``."""
        channels = h.reshape(h.shape[0] * h.shape[1], -1)
        n = channels.shape[1]
        if n < 2:
            raise ValueError(f"BatchNorm in training mode needs more than 1 value per channel; got {n}")
        weight, bias = weight.view(-1), bias.view(-1)
        mean = channels.mean(dim=1)
        var = torch.linalg.vector_norm(channels - mean.unsqueeze(1), dim=1).square_().div_(n)
        invstd = torch.rsqrt(var + eps)
        running_mean.view(-1).lerp_(mean, m)
        running_var.view(-1).mul_(1 - m).add_(var, alpha=m * n / (n - 1))
        scale = weight * invstd
        per_channel = (*h.shape[:2], *(1,) * (h.ndim - 2))
        out = _with_margins(h, margins)
        inside = _inside(out, margins)
        torch.addcmul((bias - mean * scale).view(per_channel), h, scale.view(per_channel), out=inside)
        if relu:
            inside.relu_()
        ctx.save_for_backward(channels, weight, mean, invstd, out)
        ctx.eps, ctx.relu, ctx.margins = eps, relu, margins
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        """The gradients of the activations, the weight and the bias: the ReLU's mask, then torch's fused
        BatchNorm backward."""
        channels, weight, mean, invstd, out = ctx.saved_tensors
        grad = _inside(grad, ctx.margins)
        if ctx.relu:
            grad = torch.ops.aten.threshold_backward(grad, _inside(out, ctx.margins), 0)
        grads = torch.ops.aten.native_batch_norm_backward(
            grad.reshape(channels.shape).unsqueeze(0),
            channels.unsqueeze(0),
            weight,
            None,
            None,
            mean,
            invstd,
            True,
            ctx.eps,
            [True, True, True],
        )
        return grads[0].view(grad.shape), grads[1].view(out.shape[:2]), grads[2].view(out.shape[:2]), *(None,) * 6


def _with_margins(h: Tensor, margins: int) -> Tensor:
    """An uninitialized tensor of ``h``'s shape, or with ``margins`` more rows of zeros on each side of L."""
    if not margins:
        return torch.empty_like(h, memory_format=torch.contiguous_format)
    models, channels, rows, batch = h.shape
    out = h.new_empty(models, channels, rows + 2 * margins, batch)
    out[:, :, :margins] = 0
    out[:, :, rows + margins :] = 0
    return out


def _inside(h: Tensor, margins: int) -> Tensor:
    """``h`` without its ``margins`` rows on each side of L."""
    return h[:, :, margins : h.shape[2] - margins] if margins else h


def matmul(weight: Tensor, h: Tensor, bias: Tensor | None) -> Tensor:
    """``(K, O, F) x (K, F, N) -> (K, O, N)`` plus a bias per output row."""
    return torch.bmm(weight, h) if bias is None else torch.baddbmm(bias.unsqueeze(-1), weight, h)
