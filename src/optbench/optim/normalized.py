"""Normalized weight decay (Loshchilov & Hutter, Appendix B.1)."""

from __future__ import annotations

import math


def normalized_weight_decay(lambda_norm: float, *, batch_size: int, n_train: int, epochs: float) -> float:
    r"""The raw decay :math:`\lambda = \lambda_{norm} \sqrt{b / (B T)}`.

    ``b`` the batch size, ``B`` the number of training points, ``T`` the number of
    epochs of the run or, under warm restarts, of the current restart cycle
    :math:`T_i` (so :math:`\lambda` changes at every restart; the trainer calls this
    every step).
    """
    for name, value in (("batch_size", batch_size), ("n_train", n_train), ("epochs", epochs)):
        if not value > 0:
            raise ValueError(f"{name}: must be > 0, got {value!r}")
    if not lambda_norm >= 0:
        raise ValueError(f"lambda_norm: must be >= 0, got {lambda_norm!r}")
    return lambda_norm * math.sqrt(batch_size / (n_train * epochs))
