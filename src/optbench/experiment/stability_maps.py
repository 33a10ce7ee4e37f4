"""Stability maps of the config (``stability_maps:``): rows of optimizer configurations, a column per setting of
one factor (warm-up or none), each cell a variant trained on a learning-rate axis.

An entry::

    adafactor:
      columns: [warm-up, no warm-up]
      spike_factor: 1.5       # a spike: a step whose training loss exceeds 1.5 x the lowest before it
      unigram_bits: 4.543     # the validation loss of the training split's byte frequencies alone
      diverged_fraction: 0.5  # diverged: final loss above best + 0.5 (unigram - best), best: the best cell's
      paper_trains: 10        # the paper's number at least this: the configuration trains; below: it fails
      reference: lm_B_warmup  # the reference learning rate: this variant's best on the map
      relative_scale: 10      # a relative-step row's reference: 10 x the reference lr (rho_t = s_t, alpha_t = 0.1 s_t)
      rows:
        - {label: A, configuration: "beta1 0, beta2 0.999", variants: [lm_A_warmup, lm_A], paper: [25.6, 0.1]}
        - {label: O, configuration: "Adafactor", variants: [lm_O_warmup, lm_O], paper: [25.0, 25.5], relative: true}
        - {label: Lion, configuration: "lion_pytorch.Lion", variants: [null, lm_zoo_lion], paper: [null, null]}
      worse: [[G, B]]         # claims: row G converges worse than row B at the reference lr, in every column
      longer: [[lm_A, lm_A_long]]          # the same variant at twice the steps: does its boundary move?
      update_rms: [lm_A_warmup, lm_G_warmup]  # the update-RMS figure's curves (Figure 1: beta2 0.999 and 0.9)

The outputs are the tables ``<name>``, ``<name>_cells``, ``<name>_claims``, ``<name>_length`` and ``<name>_spikes``
and the figures ``<name>_map`` and ``<name>_update_rms`` (:mod:`optbench.report.stability`).

A preset keeps the maps of which it runs some variant, with the columns and rows it runs; cells it does not
run are left out. A row's variant is null in a column it has no cell in (a row of the zoo's optimizers, without
warm-up only), and its paper number null where the paper has none.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

#: The tables and figures of a map, each a suffix of its name (:meth:`StabilityMap.outputs`).
TABLES = ("", "_cells", "_claims", "_length", "_spikes")
FIGURES = ("_map", "_update_rms")


@dataclass(frozen=True)
class MapRow:
    label: str  # the paper's row letter
    configuration: str
    variants: tuple[str | None, ...]  # one per column; None where the row has no cell or the preset does not run it
    paper: tuple[float | None, ...]  # the paper's number per column; None where it has none
    relative: bool  # a relative-step row: its axis is the cap on rho_t


@dataclass(frozen=True)
class StabilityMap:
    """One stability map, cut to the variants a preset runs."""

    name: str
    columns: tuple[str, ...]
    rows: tuple[MapRow, ...]
    spike_factor: float
    unigram_bits: float
    diverged_fraction: float
    paper_trains: float
    reference: str | None  # None where the preset does not run it
    relative_scale: float
    worse: tuple[tuple[str, str], ...]
    longer: tuple[tuple[str, str], ...]  # (variant, the same at twice the steps), both run
    update_rms: tuple[str, ...]

    @property
    def variants(self) -> list[str]:
        """Every variant of the map's rows, row by row."""
        return [v for row in self.rows for v in row.variants if v is not None]

    def row(self, label: str) -> MapRow | None:
        return next((row for row in self.rows if row.label == label), None)

    def outputs(self, table, figure) -> list[str]:
        """The map's files: ``table(name)`` and ``figure(name)`` give a table's and a figure's paths."""
        return [
            *(p for suffix in TABLES for p in table(self.name + suffix)),
            *(p for suffix in FIGURES for p in figure(self.name + suffix)),
        ]


def load_stability_maps(
    entries: dict[str, dict[str, Any]], known: Collection[str], running: Collection[str]
) -> tuple[StabilityMap, ...]:
    """The maps of which the preset runs a variant, cut to its columns and rows; a ValueError names an unknown
    variant or row, or a row whose variants or paper numbers do not match the columns."""
    loaded = (_load(name, entry, known, running) for name, entry in entries.items())
    return tuple(m for m in loaded if m is not None)


def _load(name: str, entry: dict[str, Any], known: Collection[str], running: Collection[str]) -> StabilityMap | None:
    where, width = f"stability_maps.{name}", len(entry["columns"])
    labels = [row["label"] for row in entry["rows"]]
    for i, row in enumerate(entry["rows"]):
        _check_variants(row["variants"], known, f"{where}.rows[{i}].variants")
        for key in ("variants", "paper"):
            if len(row[key]) != width:
                raise ValueError(f"{where}.rows[{i}].{key}: needs one per column ({width}), got {len(row[key])}")
    if len(set(labels)) != len(labels):
        raise ValueError(f"{where}.rows: labels must be distinct, got {labels}")
    for i, pair in enumerate(entry.get("worse", [])):
        for label in pair:
            if label not in labels:
                raise ValueError(f"{where}.worse[{i}]: unknown row {label!r}; allowed: {', '.join(labels)}")
    for i, pair in enumerate(entry.get("longer", [])):
        _check_variants(pair, known, f"{where}.longer[{i}]")
    _check_variants([entry["reference"], *entry.get("update_rms", [])], known, f"{where}.reference or update_rms")
    ran = [j for j in range(width) if any(row["variants"][j] in running for row in entry["rows"])]
    if not ran:
        return None
    rows = tuple(
        MapRow(
            row["label"],
            row["configuration"],
            tuple(row["variants"][j] if row["variants"][j] in running else None for j in ran),
            tuple(row["paper"][j] for j in ran),
            row.get("relative", False),
        )
        for row in entry["rows"]
        if any(row["variants"][j] in running for j in ran)
    )
    return StabilityMap(
        name,
        tuple(entry["columns"][j] for j in ran),
        rows,
        entry["spike_factor"],
        entry["unigram_bits"],
        entry["diverged_fraction"],
        entry["paper_trains"],
        entry["reference"] if entry["reference"] in running else None,
        entry["relative_scale"],
        tuple(tuple(pair) for pair in entry.get("worse", [])),
        tuple(tuple(pair) for pair in entry.get("longer", []) if set(pair) <= set(running)),
        tuple(v for v in entry.get("update_rms", []) if v in running),
    )


def _check_variants(cells: list[str | None], known: Collection[str], where: str) -> None:
    for variant in cells:
        if variant is not None and variant not in known:
            raise ValueError(f"{where}: unknown variant {variant!r}")
