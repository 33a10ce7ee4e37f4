"""Learning curves from a runs table: each run's ``history`` column holds its per-epoch record as a JSON list."""

from __future__ import annotations

import json

import pandas as pd

from optbench.analysis.cells import best_cell


def best_cell_curve(runs: pd.DataFrame, variant: str) -> tuple[float, float, pd.DataFrame]:
    """The variant's best cell (:func:`optbench.analysis.cells.best_cell`), ``(lr, weight_decay, curve)``: per epoch
    (the index), the ``mean``, ``min`` and ``max`` over the cell's seeds of ``test_error`` and ``train_loss``."""
    lr, wd, _ = best_cell(runs, variant)
    in_cell = runs[runs["variant"].eq(variant) & runs["lr"].eq(lr) & runs["weight_decay"].eq(wd)]
    epochs = pd.concat([pd.DataFrame(json.loads(history)) for history in in_cell["history"]])
    return lr, wd, epochs.groupby("epoch")[["test_error", "train_loss"]].agg(["mean", "min", "max"])
