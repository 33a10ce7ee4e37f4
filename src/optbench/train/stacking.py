r"""The models one training loop drives: one model, or K copies of it stacked into one.

Both give logits of shape ``(K, batch, classes)`` and one parameter group for
:class:`~optbench.optim.AdaptiveOptimizer`, so the trainer has one loop for both.

:class:`StackedModels` holds K models as one set of tensors whose leading dimension
indexes the model (``torch.func.stack_module_state``'s layout) and runs them as
*grouped layers*: each ``Conv1d`` and ``Linear`` of the K models is one batched matrix
product (``torch.baddbmm``) over K, with activations kept as ``(K, channels, length,
batch)`` so that no layer needs a transpose. The K small forward and backward passes
of a heatmap's cells become one pass over K-times-larger tensors. (This is faster per
model than ``torch.vmap`` over ``functional_call``, which runs the convolutions as one
grouped convolution; the timings are in ``benchmarks/README.md``.)

A model can stack when it is a ``Sequential`` (nested ones allowed) of ``Conv1d``
(``groups=1``, ``dilation=1``, zero padding), ``Linear``, ``BatchNorm1d`` (affine, with
running statistics and a momentum), ``ReLU`` and ``Flatten`` layers, as the MNIST-1D
CNNs and MLP are, or the decoder language model (:mod:`optbench.train.stacked_lm` runs its K
copies): :func:`can_stack`. Anything else trains one run at a time.

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

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from optbench.models.lm import DecoderLM
from optbench.optim.transforms import Scalar
from optbench.train import stacked_lm


def _stack(t: Tensor, count: int) -> Tensor:
    """K copies of ``t`` along a new leading dimension."""
    return t.detach().expand(count, *t.shape).clone()


def _layers(model: nn.Module) -> Iterator[nn.Module]:
    """The leaf layers of a (nested) ``Sequential``, in order."""
    for child in model.children():
        if type(child) is nn.Sequential:
            yield from _layers(child)
        else:
            yield child


def _stackable(layer: nn.Module) -> bool:
    """Whether :class:`StackedModels` runs ``layer``: a plain Conv1d, an affine BatchNorm1d tracking running
    statistics with a momentum, a full Flatten, a Linear layer or a ReLU."""
    if type(layer) is nn.Conv1d:
        return (
            layer.groups == 1
            and layer.dilation == (1,)
            and layer.padding_mode == "zeros"
            and not isinstance(layer.padding, str)
        )
    if type(layer) is nn.BatchNorm1d:
        return layer.affine and layer.track_running_stats and layer.momentum is not None
    if type(layer) is nn.Flatten:
        return layer.start_dim == 1 and layer.end_dim == -1
    return type(layer) in (nn.Linear, nn.ReLU)


def can_stack(model: nn.Module) -> bool:
    """Whether ``model`` can train stacked: a ``Sequential`` of the layers :class:`StackedModels` runs,
    ending in a ``Linear`` one, or a :class:`DecoderLM`."""
    if type(model) is DecoderLM:
        return True
    layers = list(_layers(model)) if type(model) is nn.Sequential else []
    return bool(layers) and all(map(_stackable, layers)) and type(layers[-1]) is nn.Linear


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
        models, channels, rows, batch = h.shape
        if p:
            padded = h.new_empty(models, channels, rows + 2 * p, batch)  # zero rows around h: faster than F.pad
            padded[:, :, :p] = 0
            padded[:, :, rows + p :] = 0
            padded[:, :, p : rows + p] = h
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


def _conv1d(layer: nn.Conv1d, h: Tensor, weight: Tensor, bias: Tensor | None, margins: int) -> Tensor:
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
        out = _matmul(weight.reshape(models, -1, channels * k), windows.reshape(models, channels * k, -1), bias)
    return out.view(models, -1, windows.shape[3], batch)


def _batch_norm(
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


def _plan(layers: Sequence[nn.Module]) -> list[tuple[nn.Module, bool, int]]:
    """The layers as the forward pass runs them: each with whether a ReLU that follows it is folded into it
    (a BatchNorm1d's) and the padding of the Conv1d after that ReLU (the margins the BatchNorm writes)."""
    plan, i = [], 0
    while i < len(layers):
        layer = layers[i]
        relu = type(layer) is nn.BatchNorm1d and i + 1 < len(layers) and type(layers[i + 1]) is nn.ReLU
        after = layers[i + 2] if relu and i + 2 < len(layers) else None
        plan.append((layer, relu, after.padding[0] if type(after) is nn.Conv1d else 0))
        i += 2 if relu else 1
    return plan


def _matmul(weight: Tensor, h: Tensor, bias: Tensor | None) -> Tensor:
    """``(K, O, F) x (K, F, N) -> (K, O, N)`` plus a bias per output row."""
    return torch.bmm(weight, h) if bias is None else torch.baddbmm(bias.unsqueeze(-1), weight, h)


class SingleModel:
    """One model, seen as a stack of K = 1."""

    count = 1

    def __init__(self, model: nn.Module):
        """Wraps ``model``, whose parameters train as they are."""
        self.model = model
        self.params = list(model.parameters())

    def __call__(self, x: Tensor) -> Tensor:
        """The model's logits for input batch ``x``, with a leading model dimension of 1."""
        return self.model(x).unsqueeze(0)

    def per_model(self, values: Sequence[float]) -> float:
        """The one model's value of ``values`` (a sequence of one), for the optimizer group."""
        (value,) = values
        return value

    def param_group(self, lr: float) -> dict:
        """The optimizer's parameter group of the model, with learning rate ``lr``."""
        return {"params": self.params, "lr": lr}

    def model_params(self) -> list[list[Tensor]]:
        """The one model's parameters, as a list of one list (:meth:`StackedModels.model_params`)."""
        return [self.params]

    def train(self, mode: bool = True) -> None:
        """Training mode (dropout, BatchNorm's batch statistics) or eval mode, as ``nn.Module.train``."""
        self.model.train(mode)

    def state_dict(self) -> dict[str, Tensor]:
        """The model's parameters and buffers (BatchNorm's running statistics), for a checkpoint."""
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Takes up a :meth:`state_dict` of a checkpoint."""
        self.model.load_state_dict(state)

    @torch.no_grad()
    def zero_models(self, models: list[int]) -> None:
        """Sets the parameters of ``models`` (here: [] or [0]) to zero."""
        for p in self.params if models else ():
            p.zero_()


class StackedModels:
    """K copies of ``model``, all starting from its weights, trained side by side as grouped layers."""

    def __init__(self, model: nn.Module, count: int):
        """``count`` copies of ``model``'s parameters and BatchNorm statistics; ValueError unless it can stack."""
        if not can_stack(model):
            got = [type(m).__name__ for m in _layers(model)]
            raise ValueError(
                f"model: {type(model).__name__} cannot be stacked; only a Sequential of Conv1d, Linear, "
                f"BatchNorm1d, ReLU and Flatten layers ending in a Linear one, or a DecoderLM, can (got {got})"
            )
        self.model, self.count, self.training = model, count, model.training
        self.layers = [] if type(model) is DecoderLM else list(_layers(model))
        self.plan = _plan(self.layers)
        self.names = [name for name, _ in model.named_parameters()]
        self.params = [_stack(p, count).requires_grad_() for p in model.parameters()]
        #: Per BatchNorm layer: running mean and variance (K, C) and batches seen (K,), buffers of no gradient.
        self.stats = [
            tuple(_stack(b, count) for b in (m.running_mean, m.running_var, m.num_batches_tracked))
            for m in self.layers
            if isinstance(m, nn.BatchNorm1d)
        ]

    def __call__(self, x: Tensor) -> Tensor:
        """Logits ``(K, B, classes)`` of every model for one input batch ``x`` of shape (B, C, L) or (B, F);
        for a :class:`DecoderLM`, ``(K, B, T, vocabulary)`` for token ids ``(B, T)`` (:mod:`optbench.train.stacked_lm`).

        Activations are ``(K, C, L, B)`` (batch innermost) or ``(K, F, B)``: a ``Flatten`` is then a
        view in ``nn.Flatten``'s feature order, and a ``Linear`` layer one ``baddbmm``.
        """
        if not self.layers:
            return stacked_lm.forward(self.model, dict(zip(self.names, self.params)), x)
        h = x.movedim(0, -1)  # (C, L, B) or (F, B)
        h = h.expand(self.count, *h.shape)
        params, stats = iter(self.params), iter(self.stats)
        margins = 0  # zero rows h has on each side of L: what the training-mode BatchNorm gave the next Conv1d
        for layer, relu, padding in self.plan:
            if isinstance(layer, nn.Conv1d):
                h = _conv1d(layer, h, next(params), next(params) if layer.bias is not None else None, margins)
                margins = 0
            elif isinstance(layer, nn.Linear):
                h = _matmul(next(params), h, next(params) if layer.bias is not None else None)
            elif isinstance(layer, nn.BatchNorm1d):
                margins = padding if self.training else 0
                h = _batch_norm(layer, h, next(params), next(params), next(stats), self.training, relu, margins)
            elif isinstance(layer, nn.ReLU):
                h = torch.relu(h)
            else:  # Flatten
                h = h.flatten(1, -2)
        return h.transpose(1, 2)

    def per_model(self, values: Sequence[float]) -> Tensor:
        """One value per model as a ``(K,)`` vector for the optimizer group."""
        p = self.params[0]
        return torch.tensor(list(values), dtype=p.dtype, device=p.device)

    def param_group(self, lr: Tensor) -> dict:
        """The optimizer's parameter group of the stacked parameters, with one learning rate per model ``(K,)``."""
        return {"params": self.params, "lr": lr, "stacked": True}

    def model_params(self) -> list[list[Tensor]]:
        """Each model's parameters as leaf tensors of its own, views of the stacked ones (model k's are
        ``p[k]`` of each stacked ``p``): what an optimizer updates in place there, the stacked models train
        with. Their gradients are the views ``p.grad[k]`` (:class:`optbench.train.external.External`)."""
        return [[p.detach()[k].requires_grad_() for p in self.params] for k in range(self.count)]

    def train(self, mode: bool = True) -> None:
        """Training mode (BatchNorm normalizes by batch statistics and updates its running ones) or eval mode."""
        self.training = mode

    def state_dict(self) -> dict[str, list]:
        """The stacked parameters and BatchNorm statistics, for a checkpoint."""
        return {"params": [p.detach() for p in self.params], "stats": [list(stats) for stats in self.stats]}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, list]) -> None:
        """Copies a :meth:`state_dict` of K models of the same shapes into these."""
        saved = [*state["params"], *(t for stats in state["stats"] for t in stats)]
        mine = [*self.params, *(t for stats in self.stats for t in stats)]
        if [t.shape for t in saved] != [t.shape for t in mine]:
            raise ValueError("state: the tensors' shapes differ from these stacked models'")
        for target, source in zip(mine, saved):
            target.copy_(source)

    @torch.no_grad()
    def zero_models(self, models: list[int]) -> None:
        """Sets the parameters of ``models`` to zero and their BatchNorm statistics to a fresh layer's (a frozen,
        finite state that touches no other model)."""
        if models:
            index = torch.tensor(models, device=self.params[0].device)
            for p in self.params:
                p.index_fill_(0, index, 0.0)
            for running_mean, running_var, batches in self.stats:
                running_mean.index_fill_(0, index, 0.0)
                running_var.index_fill_(0, index, 1.0)
                batches.index_fill_(0, index, 0)


def per_model_floats(value: Scalar, count: int, models: Sequence[int] | None = None) -> list[float]:
    """A number or a (K,) vector (a hyperparameter of K stacked models, or of one) as one float per model in
    ``models`` (default: all ``count``)."""
    models = range(count) if models is None else models
    values = value.tolist() if isinstance(value, torch.Tensor) else [float(value)] * count
    return [values[k] for k in models]
