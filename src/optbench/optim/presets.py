r"""The two papers' optimizers as presets of :class:`AdaptiveOptimizer`; they differ only in defaults."""

from __future__ import annotations

import inspect

from .optimizer import AdaptiveOptimizer


class AdamW(AdaptiveOptimizer):
    r"""AdamW (Loshchilov & Hutter, Algorithm 2): Adam with decoupled weight decay.

    :math:`X_t = X_{t-1} - \mathrm{lr}_t\, \hat m_t / (\sqrt{\hat v_t} + \epsilon) - \eta_t \lambda X_{t-1}`
    with the bias-corrected moments of Adam. ``decay="l2"`` gives the paper's "Adam"
    baseline (L2 regularization in the gradient), ``decay="torch"`` the decay of
    ``torch.optim.AdamW`` (:math:`X \mathrel{*}= 1 - \mathrm{lr}_t \lambda`). ``betas=(beta1, beta2)``
    as in torch; every other switch of :class:`AdaptiveOptimizer` (``factored``,
    ``clip_threshold``, ``relative_step``, ...) is accepted, which is how AdamW gets
    Adafactor's parts.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, *, decay: str = "decoupled", factored: bool = False,
                 momentum: str = "gradient", beta2_decay: float | None = None, eps1: float = 0.0,
                 eps2: float = 1e-3, clip_threshold: float | None = None, relative_step: bool = False):
        beta1, beta2 = betas
        super().__init__(params, lr, weight_decay=weight_decay, decay=decay, beta1=beta1, beta2=beta2,
                         beta2_decay=beta2_decay, eps=eps, eps1=eps1, eps2=eps2, factored=factored,
                         momentum=momentum, clip_threshold=clip_threshold, relative_step=relative_step)


class Adafactor(AdaptiveOptimizer):
    r"""Adafactor (Shazeer & Stern, Algorithms 4 and 5 with update clipping and relative step).

    Factored second moment :math:`\hat V_t = R_t C_t / \mathrm{mean}(R_t)` with
    :math:`\hat\beta_{2,t} = 1 - t^{-0.8}` and :math:`G^2 + \epsilon_1` inside the averages,
    :math:`U = G / \sqrt{\hat V_t}`, clipping :math:`\hat U = U / \max(1, \mathrm{RMS}(U)/d)`,
    :math:`d = 1`, and the relative step
    :math:`\alpha_t = \max(\epsilon_2, \mathrm{RMS}(X_{t-1})) \min(\mathrm{lr}, 1/\sqrt t)`.
    ``beta1`` (as in HuggingFace's Adafactor) > 0 adds momentum on the scaled update.
    Every other switch of :class:`AdaptiveOptimizer` is accepted.
    """

    def __init__(self, params, lr: float = 1e-2, beta1: float = 0.0, *, beta2: float = 0.999,
                 beta2_decay: float | None = 0.8, eps: float = 0.0, eps1: float = 1e-30, eps2: float = 1e-3,
                 clip_threshold: float | None = 1.0, relative_step: bool = True, weight_decay: float = 0.0,
                 decay: str = "decoupled", factored: bool = True, momentum: str = "update"):
        super().__init__(params, lr, weight_decay=weight_decay, decay=decay, beta1=beta1, beta2=beta2,
                         beta2_decay=beta2_decay, eps=eps, eps1=eps1, eps2=eps2, factored=factored,
                         momentum=momentum, clip_threshold=clip_threshold, relative_step=relative_step)


PRESETS = {"AdamW": AdamW, "Adafactor": Adafactor}


def make_optimizer(preset: str, params, *, lr: float, weight_decay: float, switches: dict) -> AdaptiveOptimizer:
    """A preset with switches by their :class:`AdaptiveOptimizer` names (``beta1``/``beta2`` for both presets)."""
    if preset not in PRESETS:
        raise ValueError(f"optimizer.preset: unknown preset {preset!r}; allowed: {', '.join(PRESETS)}")
    allowed = set(inspect.signature(AdaptiveOptimizer).parameters) - {"params", "lr", "weight_decay"}
    unknown = sorted(set(switches) - allowed)
    if unknown:
        raise ValueError(f"optimizer.{unknown[0]}: unknown optimizer switch; allowed: {', '.join(sorted(allowed))}")
    kwargs = dict(switches)
    if preset == "AdamW" and ("beta1" in kwargs or "beta2" in kwargs):
        defaults = inspect.signature(AdamW).parameters["betas"].default
        kwargs["betas"] = (kwargs.pop("beta1", defaults[0]), kwargs.pop("beta2", defaults[1]))
    try:
        return PRESETS[preset](params, lr=lr, weight_decay=weight_decay, **kwargs)
    except ValueError as err:
        raise ValueError(f"optimizer.{err}") from None
