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
copies): :func:`can_stack`. Anything else trains one run at a time. The grouped layers themselves are in
:mod:`optbench.train.grouped_layers`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from optbench.models.lm import DecoderLM
from optbench.optim.transforms import Scalar
from optbench.train import stacked_lm
from optbench.train.grouped_layers import batch_norm, conv1d, matmul


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
                h = conv1d(layer, h, next(params), next(params) if layer.bias is not None else None, margins)
                margins = 0
            elif isinstance(layer, nn.Linear):
                h = matmul(next(params), h, next(params) if layer.bias is not None else None)
            elif isinstance(layer, nn.BatchNorm1d):
                margins = padding if self.training else 0
                h = batch_norm(layer, h, next(params), next(params), next(stats), self.training, relu, margins)
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
