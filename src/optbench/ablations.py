"""Ablation tables of the config (``ablations:``): rows of configurations, a column per setting of
one factor (warm-up or none), each cell a variant; and the update-RMS figure drawn beside them.

An entry::

    adafactor:
      columns: [no warm-up, warm-up]
      spike_factor: 1.5      # a spike: a step whose training loss exceeds 1.5 x the best so far
      far_margin: 0.5        # a run ends far above the best configuration: > best seed mean + 0.5 bits
      rows:
        - {label: "Adam", variants: [lm_adam, lm_adam_warmup], paper: [null, null]}
      update_rms: [[lm_factored, lm_factored_warmup], [lm_decay, lm_decay_warmup]]

``paper`` holds the paper's own number per column, null where it was not found. ``update_rms``
lists the curves of the figure, each its variant per column. The outputs are
``tables/<name>.csv`` and ``.md`` and ``figures/<name>_update_rms.png`` and ``.pdf``
(:mod:`optbench.ablation_outputs`).

A preset keeps the entries of which it runs some variant, with the columns, rows and curves
it runs; cells it does not run are left out. Imports nothing but the standard library: the
Snakefile loads it through :mod:`optbench.experiment`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AblationRow:
    label: str
    variants: tuple[str | None, ...]  # one per column; None where the preset does not run it
    paper: tuple[float | None, ...]  # the paper's number per column; None where not found


@dataclass(frozen=True)
class Ablation:
    """One ablation table and its update-RMS figure, cut to the variants a preset runs."""

    name: str
    columns: tuple[str, ...]
    rows: tuple[AblationRow, ...]
    curves: tuple[tuple[str | None, ...], ...]  # the figure's curves: a variant per column
    spike_factor: float
    far_margin: float

    @property
    def variants(self) -> list[str]:
        """Every variant of the table, row by row."""
        return [v for row in self.rows for v in row.variants if v is not None]


def load_ablations(
    entries: dict[str, dict[str, Any]], known: Collection[str], running: Collection[str]
) -> tuple[Ablation, ...]:
    """The entries of which the preset runs a variant, cut to its columns, rows and curves; a ValueError
    names an unknown variant, or a row whose variants or paper numbers do not match the columns."""
    loaded = (_load(name, entry, known, running) for name, entry in entries.items())
    return tuple(ablation for ablation in loaded if ablation is not None)


def _load(name: str, entry: dict[str, Any], known: Collection[str], running: Collection[str]) -> Ablation | None:
    where, width = f"ablations.{name}", len(entry["columns"])
    papers = [row.get("paper", [None] * width) for row in entry["rows"]]
    for i, (row, paper) in enumerate(zip(entry["rows"], papers)):
        _check_cells(row["variants"], width, known, f"{where}.rows[{i}].variants")
        if len(paper) != width:
            raise ValueError(f"{where}.rows[{i}].paper: needs one number or null per column ({width})")
    curves = entry.get("update_rms", [])
    for i, curve in enumerate(curves):
        _check_cells(curve, width, known, f"{where}.update_rms[{i}]")
    ran = [j for j in range(width) if any(row["variants"][j] in running for row in entry["rows"])]
    if not ran:
        return None
    rows = tuple(
        AblationRow(row["label"], _cut(row["variants"], ran, running), tuple(paper[j] for j in ran))
        for row, paper in zip(entry["rows"], papers)
        if any(row["variants"][j] in running for j in ran)
    )
    return Ablation(
        name,
        tuple(entry["columns"][j] for j in ran),
        rows,
        tuple(_cut(curve, ran, running) for curve in curves if any(v in running for v in curve)),
        entry["spike_factor"],
        entry["far_margin"],
    )


def _cut(cells: list[str], columns: list[int], running: Collection[str]) -> tuple[str | None, ...]:
    """The cells of ``columns``, None where the preset does not run the variant."""
    return tuple(cells[j] if cells[j] in running else None for j in columns)


def _check_cells(cells: list[str], width: int, known: Collection[str], where: str) -> None:
    if len(cells) != width:
        raise ValueError(f"{where}: needs one variant per column ({width}), got {len(cells)}")
    for variant in cells:
        if variant not in known:
            raise ValueError(f"{where}: unknown variant {variant!r}")
