r"""One optimizer for the AdamW / Adafactor / SGD family, composed from :mod:`.transforms`."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from optbench.optim.moments import FullSecondMoment, NoSecondMoment, second_moment
from optbench.optim.transforms import (
    Scalar,
    add_l2_gradient,
    beta2_schedule,
    block_rms,
    clip_by_block_rms,
    decay_weights,
    gradient_momentum,
    heavy_ball_momentum,
    per_tensor,
    raw_direction,
    relative_step_size,
    rms_direction,
    update_momentum,
)
from optbench.spec.switches import SWITCHES
from optbench.spec.switches import defaults as switch_defaults
from optbench.spec.values import is_finite_number

PER_MODEL_SETTINGS = ("lr", "weight_decay")  # may be (K,) tensors in a stacked group

#: Param-group keys a schedule sets for the optimizer: eta_t itself, and lr_0, the name torch's schedulers use.
SCHEDULE_MULTIPLIER, INITIAL_LR = "schedule_multiplier", "initial_lr"

#: The state key of the first moment, by ``momentum`` kind.
MOMENTUM_STATE = {"gradient": "exp_avg", "update": "update_avg", "heavy_ball": "momentum_buffer"}

#: The parameter bytes :func:`cache_sized` steps together on a CPU: with gradients, state and temporaries,
#: a few MiB, about what a core's L2 cache holds.
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class UpdateRMS:
    r"""One step's :math:`\mathrm{RMS}(U)` per tensor, before clipping (:meth:`AdaptiveOptimizer.step` with
    ``report_update_rms=True``): ``rms`` is ``(n,)`` for n tensors, or ``(n, K)`` for n stacked tensors of K
    models, and ``threshold`` the d each tensor is compared with: its group's ``clip_threshold``, or 1 where
    the group does not clip."""

    rms: Tensor
    threshold: Tensor

    def summary(self) -> dict[str, list[float]]:
        r"""Per model, over the tensors: ``mean`` and ``max`` of :math:`\mathrm{RMS}(U)`, and ``clipped_fraction``,
        the fraction of tensors with :math:`\mathrm{RMS}(U) > d` (those clipping scales down; where the group
        does not clip, those clipping at d = 1 would)."""
        rms = self.rms if self.rms.ndim == 2 else self.rms.unsqueeze(1)
        above = rms > self.threshold.reshape(-1, 1)
        return {
            "mean": rms.mean(dim=0).tolist(),
            "max": rms.amax(dim=0).tolist(),
            "clipped_fraction": above.double().mean(dim=0).tolist(),
        }


def _without_dynamo(method):
    """``method`` of :class:`torch.optim.Optimizer` without its ``torch._disable_dynamo`` wrapper.

    That wrapper only keeps ``torch.compile`` from tracing into the method, and imports
    ``torch._dynamo`` (one to several seconds) on its first call to do so; ``functools.wraps`` keeps the method
    itself as ``__wrapped__``. A method torch does not wrap is returned as it is.
    """
    return getattr(method, "__wrapped__", method)


class AdaptiveOptimizer(torch.optim.Optimizer):
    r"""Adam, AdamW, Adafactor, SGD with momentum and their combinations behind one set of switches.

    For a parameter :math:`X` with gradient :math:`G`, its own step count :math:`t`
    (from 1), and the group's current learning rate :math:`\mathrm{lr}_t`, weight decay
    :math:`\lambda` and schedule multiplier :math:`\eta_t` (all three set every step by
    :class:`optbench.train.schedules.Schedule`; under a plain torch LR scheduler
    :math:`\eta_t = \mathrm{lr}_t / \mathrm{lr}_0`, ``lr_0`` the group's ``initial_lr``
    that torch's schedulers set, and :math:`\eta_t = 1` without a scheduler):

    .. math::
        \begin{aligned}
        &G \leftarrow G + \lambda X_{t-1}                  && \text{if weight\_decay\_mode = "l2"} \\
        &\hat\beta_{2,t} = \beta_2 \text{ or } 1 - t^{-c}    && c = \text{beta2\_decay} \\
        &V_t = \hat\beta_{2,t} V_{t-1} + (1-\hat\beta_{2,t})(G^2 + \epsilon_1)
                                                           && \text{full, or factored: } R_t C_t / \mathrm{mean}(R_t),\
                                                              R_t \text{ or } C_t \text{ alone} \\
        &\hat V_t = V_t / (1 - \beta_2^t)                   && \text{constant } \beta_2 \text{ only} \\
        &U = \hat m_t / (\sqrt{\hat V_t} + \epsilon),\ \hat m_t = \frac{m_t}{1-\beta_1^t},\
            m_t = \beta_1 m_{t-1} + (1-\beta_1) G           && \text{momentum = "gradient"} \\
        &U = G / (\sqrt{\hat V_t} + \epsilon)               && \text{momentum = "update"} \\
        &U = b_t / (\sqrt{\hat V_t} + \epsilon),\ b_t = \beta_1 b_{t-1} + G,\ b_0 = 0
                                                           && \text{momentum = "heavy\_ball"} \\
        &\text{no } V_t;\ U = \hat m_t,\ G \text{ or } b_t \text{ (no division, no } \epsilon)
                                                           && \text{second\_moment = False} \\
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
        weight_decay: :math:`\lambda`, its meaning set by ``weight_decay_mode``: ``"decoupled"``
            (AdamW, the paper's Algorithm 2: :math:`X \mathrel{-}= \eta_t\lambda X`, :math:`\lambda`
            not multiplied by the learning rate), ``"torch"`` (:math:`X \mathrel{*}= 1 - \mathrm{lr}_t\lambda`,
            as ``torch.optim.AdamW``) or ``"l2"`` (Adam with L2 regularization, :math:`G \mathrel{+}= \lambda X`).
        **switches: any switch of :data:`optbench.spec.switches.SWITCHES` by name (``weight_decay_mode``,
            ``beta1``, ``second_moment``, ``beta2``, ``beta2_decay``, ``eps``, ``eps1``, ``eps2``, ``factored``,
            ``factored_axes``, ``momentum``, ``clip_threshold``, ``relative_step``); each one missing takes its
            AdamW default from that table. ``factored`` keeps row and column averages for tensors
            with ``ndim >= 2`` (last two dims; leading dims are a batch), or with ``factored_axes``
            ``"rows"`` or ``"columns"`` one of them alone; smaller tensors keep a full :math:`V`.

    Stacked models: a parameter group with ``"stacked": True`` holds K models trained
    side by side, the leading dimension of every tensor indexing the model (as
    ``torch.func.stack_module_state`` makes them). Every per-tensor quantity above is then
    per model: :math:`\mathrm{RMS}(U)`, :math:`\mathrm{RMS}(X)`, the factored averages
    (factored when a model's tensor has ``ndim >= 2``), and the group's ``lr`` and
    ``weight_decay`` may be tensors of shape ``(K,)``, one value per model. The math is
    the same code in both cases, so model k of a stacked group steps exactly as it would
    alone.

    Update RMS: ``step(report_update_rms=True)`` leaves :math:`\mathrm{RMS}(U)` per tensor, before
    clipping, in :attr:`update_rms` (an :class:`UpdateRMS`); it is None after any other step. The report
    changes nothing in the step, and a step without it computes nothing for it.

    State per parameter: ``step`` (an int), ``exp_avg_sq``, or ``exp_avg_sq_row`` and/or
    ``exp_avg_sq_col`` (by ``factored_axes``; none without ``second_moment``), and ``exp_avg`` ("gradient"),
    ``update_avg`` ("update") or ``momentum_buffer`` ("heavy_ball", torch's name) when
    :math:`\beta_1 > 0`.
    """

    def __init__(self, params, lr: float = 1e-3, *, weight_decay: float = 0.0, **switches):
        unknown = sorted(set(switches) - set(SWITCHES))
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown optimizer switch; allowed: {', '.join(SWITCHES)}")
        defaults = {"lr": lr, "weight_decay": weight_decay, **switch_defaults("AdamW"), **switches, "stacked": False}
        _check_settings(defaults)
        super().__init__(params, defaults)
        self.update_rms: UpdateRMS | None = None

    # torch.optim.Optimizer wraps these in torch._disable_dynamo, whose first call imports torch._dynamo:
    # seconds in a fresh process, on every training job. This optimizer is never compiled, so it calls
    # the undecorated methods (see _without_dynamo).
    zero_grad = _without_dynamo(torch.optim.Optimizer.zero_grad)
    state_dict = _without_dynamo(torch.optim.Optimizer.state_dict)
    load_state_dict = _without_dynamo(torch.optim.Optimizer.load_state_dict)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        _without_dynamo(torch.optim.Optimizer.add_param_group)(self, param_group)
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
                state[MOMENTUM_STATE[group["momentum"]]] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        return state

    @torch.no_grad()
    def step(self, closure=None, *, report_update_rms: bool = False):
        """One step of every parameter with a gradient; ``report_update_rms``: fill :attr:`update_rms`."""
        report: list[tuple[Tensor, float]] | None = [] if report_update_rms else None
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
                for chunk in cache_sized(members):
                    params = [p for p, _ in chunk]
                    _step_bucket(group, t, moment, params, [p.grad for p in params], [s for _, s in chunk], report)
        self.update_rms = None if report is None else _update_rms(report)
        return loss


def cache_sized(members: list[tuple[Tensor, dict]]) -> list[list[tuple[Tensor, dict]]]:
    """A CPU bucket cut into chunks of consecutive tensors with at most :data:`CHUNK_BYTES` of parameters
    together (a larger tensor alone), each stepped by itself; a GPU bucket whole.

    Every piece works tensor by tensor, so a chunk steps exactly as it would inside the whole bucket;
    but the handful of passes the pieces make over a chunk's parameters, gradients and state then find
    them in the CPU's cache instead of main memory (AdamW on ResNet-18: a third less time per step).
    On a GPU, a foreach op is one kernel launch for the whole bucket, and more chunks would only mean
    more launches.
    """
    if members[0][0].device.type != "cpu":
        return [members]
    chunks, size = [[]], 0
    for p, state in members:
        nbytes = p.numel() * p.element_size()
        if chunks[-1] and size + nbytes > CHUNK_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append((p, state))
        size += nbytes
    return chunks


def _update_rms(report: list[tuple[Tensor, float | None]]) -> UpdateRMS:
    """The buckets' ``(rms, clip_threshold)`` pairs as one :class:`UpdateRMS`."""
    rms = torch.cat([r for r, _ in report])
    thresholds = [torch.full((len(r),), 1.0 if d is None else d, dtype=torch.float64) for r, d in report]
    return UpdateRMS(rms.detach().cpu(), torch.cat(thresholds))


def _step_bucket(
    group: dict,
    t: int,
    moment: type,
    params: list[Tensor],
    grads: list[Tensor],
    states: list[dict],
    report: list[tuple[Tensor, float | None]] | None,
) -> None:
    """One step of a bucket; ``report``: append its RMS(U) per tensor, before clipping, and its threshold."""
    lr, lam, mode, beta1 = group["lr"], group["weight_decay"], group["weight_decay_mode"], group["beta1"]
    stacked = group["stacked"]
    if mode == "l2" and (isinstance(lam, Tensor) or lam):
        grads = add_l2_gradient(grads, params, lam)

    num, coef = grads, 1.0
    if group["momentum"] == "gradient" and beta1 > 0:
        num, coef = gradient_momentum(states, grads, beta1, t)
    elif group["momentum"] == "heavy_ball" and beta1 > 0:
        num = heavy_ball_momentum(states, grads, beta1)

    if moment is NoSecondMoment:
        direction = raw_direction(num, coef)
    else:
        beta2_t, correction = beta2_schedule(t, group["beta2"], group["beta2_decay"])
        v = moment.update(states, grads, beta2_t, group["eps1"])
        direction = rms_direction(num, v, correction, group["eps"], v_is_state=moment is FullSecondMoment, coef=coef)

    d = group["clip_threshold"]
    if d is not None or report is not None:
        rms = block_rms(direction.values(keep=d is not None), stacked)
        if report is not None:
            report.append((rms, d))
        if d is not None:
            clip_by_block_rms(direction, rms, d)
    if group["relative_step"]:
        direction.scale(relative_step_size(params, lr, t, group["eps2"], stacked))
    else:
        direction.scale(per_tensor(lr, len(params)))  # the absolute step size: alpha_t = lr_t
    if group["momentum"] == "update" and beta1 > 0:
        direction = update_momentum(states, direction, beta1)

    decay_weights(params, decay_rate(group))
    direction.subtract_from(params)


def decay_rate(group: dict) -> Scalar:
    r"""The rate :math:`r` of :math:`X \leftarrow (1 - r) X` this step."""
    lam = group["weight_decay"]
    if group["weight_decay_mode"] == "decoupled":
        return schedule_multiplier(group) * lam
    if group["weight_decay_mode"] == "torch":
        return group["lr"] * lam
    return 0.0


def schedule_multiplier(group: dict) -> Scalar:
    r""":math:`\eta_t`: the group's ``schedule_multiplier``, which :class:`optbench.train.schedules.Schedule` sets.

    Without it (a plain torch LR scheduler, or none) it is recovered from the learning rate
    as :func:`lr_ratio` :math:`\mathrm{lr}_t / \mathrm{lr}_0`, with ``lr_0`` the ``initial_lr``
    torch's schedulers set: 1 without a scheduler or where :math:`\mathrm{lr}_0 = 0`.
    """
    eta = group.get(SCHEDULE_MULTIPLIER)
    return lr_ratio(group["lr"], group.get(INITIAL_LR), 1.0) if eta is None else eta


def lr_ratio(lr: Scalar, lr0: Scalar | None, otherwise: float) -> Scalar:
    r""":math:`\mathrm{lr}_t / \mathrm{lr}_0` (per model for (K,) vectors), ``otherwise`` where
    :math:`\mathrm{lr}_0` is 0 or None."""
    if isinstance(lr0, Tensor):
        return torch.where(lr0 > 0, lr / lr0, otherwise)
    return lr / lr0 if lr0 else otherwise


def _check_settings(s: dict) -> None:
    """ValueError naming the first setting out of range: lr, weight_decay, a switch (:data:`SWITCHES`) or stacked."""
    for name in PER_MODEL_SETTINGS:
        value = s[name]
        if isinstance(value, Tensor):
            if not (
                s["stacked"]
                and value.ndim == 1
                and value.is_floating_point()
                and value.isfinite().all()
                and (value >= 0).all()
            ):
                raise ValueError(
                    f"{name}: a tensor is allowed only in a stacked group, as a finite float "
                    f"vector (K,) >= 0, got {value!r}"
                )
        elif not (is_finite_number(value) and value >= 0):
            raise ValueError(f"{name}: must be a finite number >= 0, got {value!r}")
    for switch in SWITCHES.values():
        switch.check(s[switch.name])
    if not isinstance(s["stacked"], bool):
        raise ValueError(f"stacked: must be True or False, got {s['stacked']!r}")


def _check_stacked(group: dict) -> None:
    """ValueError unless every tensor of a stacked group has the same leading (model) size as its per-model settings."""
    sizes = {p.shape[0] if p.ndim else None for p in group["params"]}
    sizes |= {group[k].shape[0] for k in ("lr", "weight_decay") if isinstance(group[k], Tensor)}
    if None in sizes or len(sizes) > 1:
        raise ValueError(
            f"params: a stacked group needs one leading model dimension K shared by every tensor and "
            f"by lr / weight_decay vectors, got sizes {sorted(sizes, key=str)}"
        )
