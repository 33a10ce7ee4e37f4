r"""One optimizer for the AdamW / Adafactor family, composed from :mod:`.transforms`."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from torch import Tensor

from . import transforms as T

DECAY_MODES = ("decoupled", "torch", "l2")
MOMENTUM_MODES = ("gradient", "update")
PER_MODEL_SETTINGS = ("lr", "weight_decay")  # may be (K,) tensors in a stacked group


class AdaptiveOptimizer(torch.optim.Optimizer):
    r"""Adam, AdamW, Adafactor and their combinations behind one set of switches.

    For a parameter :math:`X` with gradient :math:`G`, its own step count :math:`t`
    (from 1), the group's current learning rate :math:`\mathrm{lr}_t` and schedule
    multiplier :math:`\eta_t = \mathrm{lr}_t / \mathrm{lr}_0` (``lr_0`` is the group's
    ``initial_lr``, which torch's LR schedulers set; :math:`\eta_t = 1` without one):

    .. math::
        \begin{aligned}
        &G \leftarrow G + \lambda X_{t-1}                  && \text{if decay = "l2"} \\
        &\hat\beta_{2,t} = \beta_2 \text{ or } 1 - t^{-c}    && c = \text{beta2\_decay} \\
        &V_t = \hat\beta_{2,t} V_{t-1} + (1-\hat\beta_{2,t})(G^2 + \epsilon_1)
                                                           && \text{full, or factored into } R_t, C_t \\
        &\hat V_t = V_t / (1 - \beta_2^t)                   && \text{constant } \beta_2 \text{ only} \\
        &U = \hat m_t / (\sqrt{\hat V_t} + \epsilon),\ \hat m_t = \frac{m_t}{1-\beta_1^t},\
            m_t = \beta_1 m_{t-1} + (1-\beta_1) G           && \text{momentum = "gradient"} \\
        &U = G / (\sqrt{\hat V_t} + \epsilon)               && \text{momentum = "update"} \\
        &\hat U = U / \max(1, \mathrm{RMS}(U) / d)          && \text{clip\_threshold} = d \\
        &\alpha_t = \mathrm{lr}_t \text{ or } \max(\epsilon_2, \mathrm{RMS}(X_{t-1}))
            \min(\mathrm{lr}_t, 1/\sqrt t)                  && \text{relative\_step} \\
        &S = \alpha_t \hat U, \text{ or } S = M_t = \beta_1 M_{t-1} + (1-\beta_1) \alpha_t \hat U
                                                           && \text{"update", } \beta_1 > 0 \\
        &X_t = X_{t-1} - S - r X_{t-1}, \quad r = \eta_t \lambda \text{ ("decoupled")},\
            r = \mathrm{lr}_t \lambda \text{ ("torch")},\ r = 0 \text{ ("l2")}
        \end{aligned}

    Args:
        params: parameters or parameter groups; every argument below may be set per group.
        lr: :math:`\mathrm{lr}`, the absolute step size, or the cap on :math:`\rho_t` with ``relative_step``.
        weight_decay: :math:`\lambda`, its meaning set by ``decay``.
        decay: ``"decoupled"`` (AdamW, the paper's Algorithm 2: :math:`X \mathrel{-}= \eta_t\lambda X`,
            :math:`\lambda` not multiplied by the learning rate), ``"torch"``
            (:math:`X \mathrel{*}= 1 - \mathrm{lr}_t\lambda`, as ``torch.optim.AdamW``) or ``"l2"``
            (Adam with L2 regularization, :math:`G \mathrel{+}= \lambda X`).
        beta1: :math:`\beta_1`; 0 keeps no first moment at all.
        beta2: constant :math:`\beta_2`, with bias correction of :math:`V`; ignored when
            ``beta2_decay`` is set.
        beta2_decay: :math:`c` in :math:`\hat\beta_{2,t} = 1 - t^{-c}` (Adafactor: 0.8), no bias correction.
        eps: :math:`\epsilon`, added to :math:`\sqrt{\hat V}`.
        eps1: :math:`\epsilon_1`, added to :math:`G^2` inside the average.
        eps2: :math:`\epsilon_2`, the floor on :math:`\mathrm{RMS}(X)` in the relative step.
        factored: keep row and column averages for tensors with ``ndim >= 2`` (last two
            dims; leading dims are a batch); smaller tensors keep a full :math:`V`.
        momentum: ``"gradient"`` (Adam: average :math:`G`) or ``"update"`` (Adafactor:
            average the scaled update).
        clip_threshold: :math:`d`, or ``None`` for no update clipping.
        relative_step: use the relative step size :math:`\alpha_t` above.

    Stacked models: a parameter group with ``"stacked": True`` holds K models trained
    side by side, the leading dimension of every tensor indexing the model (as
    ``torch.func.stack_module_state`` makes them). Every per-tensor quantity above is then
    per model: :math:`\mathrm{RMS}(U)`, :math:`\mathrm{RMS}(X)`, the factored averages
    (factored when a model's tensor has ``ndim >= 2``), and the group's ``lr`` and
    ``weight_decay`` may be tensors of shape ``(K,)``, one value per model. The math is
    the same code in both cases, so model k of a stacked group steps exactly as it would
    alone.

    State per parameter: ``step`` (an int), ``exp_avg_sq`` or ``exp_avg_sq_row`` and
    ``exp_avg_sq_col``, and ``exp_avg`` ("gradient") or ``update_avg`` ("update") when
    :math:`\beta_1 > 0`.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        *,
        weight_decay: float = 0.0,
        decay: str = "decoupled",
        beta1: float = 0.9,
        beta2: float = 0.999,
        beta2_decay: float | None = None,
        eps: float = 1e-8,
        eps1: float = 0.0,
        eps2: float = 1e-3,
        factored: bool = False,
        momentum: str = "gradient",
        clip_threshold: float | None = None,
        relative_step: bool = False,
    ):
        defaults = dict(
            lr=lr, weight_decay=weight_decay, decay=decay, beta1=beta1, beta2=beta2,
            beta2_decay=beta2_decay, eps=eps, eps1=eps1, eps2=eps2, factored=factored,
            momentum=momentum, clip_threshold=clip_threshold, relative_step=relative_step, stacked=False,
        )
        _check_settings(defaults)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        _check_settings(group)
        for p in group["params"]:
            if p.is_complex() or p.is_sparse:
                raise ValueError(f"params: complex or sparse parameters are not supported (got {p.dtype}, {p.layout})")
        if group["stacked"]:
            _check_stacked(group)

    def _init_state(self, group: dict, p: Tensor) -> dict:
        state = self.state[p]
        if not state:
            state["step"] = 0
            state.update(second_moment(group, p).init(p))
            if group["beta1"] > 0:
                key = "exp_avg" if group["momentum"] == "gradient" else "update_avg"
                state[key] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        return state

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            buckets: dict[tuple, list[tuple[Tensor, dict]]] = defaultdict(list)
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise ValueError("params: sparse gradients are not supported")
                state = self._init_state(group, p)
                key = (p.device, p.dtype, state["step"], second_moment(group, p))
                buckets[key].append((p, state))
            for (_, _, t, moment), members in buckets.items():
                params = [p for p, _ in members]
                _step_bucket(group, t, moment, params, [p.grad for p in params], [s for _, s in members])
        return loss


def second_moment(group: dict, p: Tensor) -> type:
    """The second-moment piece a parameter gets: factored only for (each model's) tensors with ndim >= 2."""
    return T.FactoredSecondMoment if group["factored"] and p.ndim - group["stacked"] >= 2 else T.FullSecondMoment


def _step_bucket(group: dict, t: int, moment: type, params: list[Tensor], grads: list[Tensor],
                 states: list[dict]) -> None:
    lr, lam, decay, beta1 = group["lr"], group["weight_decay"], group["decay"], group["beta1"]
    stacked = group["stacked"]
    if decay == "l2" and (isinstance(lam, Tensor) or lam):
        grads = T.add_l2_gradient(grads, params, lam)

    beta2_t, correction = T.beta2_schedule(t, group["beta2"], group["beta2_decay"])
    v = moment.update(states, grads, beta2_t, group["eps1"])

    num, coef = grads, 1.0
    if group["momentum"] == "gradient" and beta1 > 0:
        num, coef = T.gradient_momentum(states, grads, beta1, t)
    direction = T.rms_direction(num, v, correction, group["eps"], v_is_state=moment is T.FullSecondMoment,
                                coef=coef)

    if group["clip_threshold"] is not None:
        T.clip_by_block_rms(direction, group["clip_threshold"], stacked)
    if group["relative_step"]:
        direction.scale(T.relative_step_size(params, lr, t, group["eps2"], stacked))
    else:
        direction.scale(T.absolute_step_size(lr, len(params)))
    if group["momentum"] == "update" and beta1 > 0:
        direction = T.update_momentum(states, direction, beta1)

    T.decay_weights(params, decay_rate(group))
    direction.subtract_from(params)


def decay_rate(group: dict) -> T.Scalar:
    r"""The rate :math:`r` of :math:`X \leftarrow (1 - r) X` this step."""
    lam = group["weight_decay"]
    if group["decay"] == "decoupled":
        return schedule_multiplier(group) * lam
    if group["decay"] == "torch":
        return group["lr"] * lam
    return 0.0


def schedule_multiplier(group: dict) -> T.Scalar:
    r""":math:`\eta_t = \mathrm{lr}_t / \mathrm{lr}_0`; 1 without a scheduler or when :math:`\mathrm{lr}_0 = 0`."""
    lr, lr0 = group["lr"], group.get("initial_lr")
    if isinstance(lr0, Tensor):
        return torch.where(lr0 > 0, lr / lr0, 1.0)
    return lr / lr0 if lr0 else 1.0


def _check_settings(s: dict) -> None:
    """ValueError naming the first setting out of range."""
    def fail(name: str, why: str) -> None:
        raise ValueError(f"{name}: {why}, got {s[name]!r}")

    for name in ("lr", "weight_decay", "eps", "eps1", "eps2"):
        value = s[name]
        if isinstance(value, Tensor) and name in PER_MODEL_SETTINGS:
            if not (s["stacked"] and value.ndim == 1 and value.is_floating_point() and (value >= 0).all()):
                fail(name, "a tensor is allowed only in a stacked group, as a float vector (K,) >= 0")
        elif not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
            fail(name, "must be a number >= 0")
    for name in ("beta1", "beta2"):
        if not isinstance(s[name], (int, float)) or not 0.0 <= s[name] < 1.0:
            fail(name, "must be in [0, 1)")
    if s["beta2_decay"] is not None and not (isinstance(s["beta2_decay"], (int, float)) and s["beta2_decay"] > 0):
        fail("beta2_decay", "must be None or a number > 0 (Adafactor uses 0.8)")
    if s["decay"] not in DECAY_MODES:
        fail("decay", f"must be one of {DECAY_MODES}")
    if s["momentum"] not in MOMENTUM_MODES:
        fail("momentum", f"must be one of {MOMENTUM_MODES}")
    if s["clip_threshold"] is not None and not (isinstance(s["clip_threshold"], (int, float)) and s["clip_threshold"] > 0):
        fail("clip_threshold", "must be None (no clipping) or a number > 0")
    for name in ("factored", "relative_step", "stacked"):
        if not isinstance(s[name], bool):
            fail(name, "must be True or False")


def _check_stacked(group: dict) -> None:
    """ValueError unless every tensor of a stacked group has the same leading (model) size as its per-model settings."""
    sizes = {p.shape[0] if p.ndim else None for p in group["params"]}
    sizes |= {group[k].shape[0] for k in ("lr", "weight_decay") if isinstance(group[k], Tensor)}
    if None in sizes or len(sizes) > 1:
        raise ValueError(f"params: a stacked group needs one leading model dimension K shared by every tensor and "
                         f"by lr / weight_decay vectors, got sizes {sorted(sizes, key=str)}")
