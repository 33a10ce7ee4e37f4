"""Preset-level sweeps: one heatmap per value of a run setting, for each variant the sweep names.

A preset's ``sweeps`` entry ``epochs: {values: [3, 9, 21, 45], variants: [adamw_cosine]}``
replaces the variant ``adamw_cosine`` by four variants, ``adamw_cosine-epochs3`` ...
``adamw_cosine-epochs45``, each the same heatmap (variant row, grid, seeds) with the swept
setting set to one value. The value lands in the run spec and so in the run record and in
``runs.csv`` (column :attr:`Sweep.column`), where the statistics find it
(:mod:`optbench.analysis.sweeps`). Variants no sweep names run as they are.

Sweepable settings are those of the normalized weight decay
:math:`\\lambda = \\lambda_{norm} \\sqrt{b / (B T)}` (Loshchilov & Hutter, Appendix B.1) that a
preset holds fixed otherwise: the budget ``epochs`` (T) and ``train_size`` (B, the
number of training examples, a dataset option; the test set stays the same).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from optbench.spec.values import is_integer


class Setting(NamedTuple):
    """A sweepable setting: where its value goes in a run spec, and how labels name it."""

    path: tuple[str, ...]  # keys from the run spec down to the value
    label: str  # the value in a variant's label, a format string
    axis: str  # the setting on a figure's axis


SETTINGS: dict[str, Setting] = {
    "epochs": Setting(("epochs",), "{} epochs", "budget T (epochs)"),
    "train_size": Setting(("dataset_options", "train_size"), "B = {}", "training signals B"),
}


@dataclass(frozen=True)
class Sweep:
    """One swept setting ``key`` over ``values`` (ascending), for each of ``variants``."""

    key: str
    values: tuple[int, ...]
    variants: tuple[str, ...]

    @property
    def column(self) -> str:
        """The ``runs.csv`` column holding the swept value (records flattened with dotted names)."""
        return ".".join(SETTINGS[self.key].path)

    def name(self, variant: str, value: int) -> str:
        """The swept variant's name, a valid file name and Snakemake wildcard: ``adamw_cosine-epochs9``."""
        return f"{variant}-{self.key}{value}"

    def names(self, variant: str) -> dict[int, str]:
        """Value -> swept variant name, values ascending."""
        return {value: self.name(variant, value) for value in self.values}


def load_sweeps(entries: dict[str, dict[str, Any]], chosen: list[str], where: str) -> tuple[Sweep, ...]:
    """The sweeps of a preset's ``sweeps`` mapping (at config path ``where``), setting -> ``{values, variants}``;
    a ValueError names a bad entry: an unknown setting, values that are not distinct integers >= 1, or a
    variant the preset does not run."""
    sweeps = []
    for key, entry in entries.items():
        if key not in SETTINGS:
            raise ValueError(f"{where}.{key}: unknown setting; allowed: {', '.join(SETTINGS)}")
        values = entry["values"]
        if len(set(values)) != len(values) or any(not is_integer(v) or v < 1 for v in values):
            raise ValueError(f"{where}.{key}.values: must be distinct integers >= 1, got {values!r}")
        for variant in entry["variants"]:
            if variant not in chosen:
                raise ValueError(f"{where}.{key}.variants: {variant!r} is not among the preset's variants")
        sweeps.append(Sweep(key, tuple(sorted(values)), tuple(entry["variants"])))
    return tuple(sweeps)


def expand(variants: dict[str, dict[str, Any]], sweeps: tuple[Sweep, ...]) -> dict[str, dict[str, Any]]:
    """The variant table with every swept variant replaced, where it stands, by one row per swept value.

    A swept row is its variant's row with the value in its label and a ``sweep`` entry
    ``{"variant", "label", "key", "value"}`` (the variant's name and label, the setting and the value)
    that :func:`apply` writes into its run specs.
    """
    expanded = {}
    for name, row in variants.items():
        swept = [s for s in sweeps if name in s.variants]
        if not swept:
            expanded[name] = row
        for sweep in swept:
            label = SETTINGS[sweep.key].label
            for value, swept_name in sweep.names(name).items():
                expanded[swept_name] = {
                    **row,
                    "label": f"{row['label']}, {label.format(value)}",
                    "sweep": {"variant": name, "label": row["label"], "key": sweep.key, "value": value},
                }
    return expanded


def apply(spec: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """The run spec dict ``spec`` of a variant ``row``, with the row's swept value at its path, if any."""
    if "sweep" not in row:
        return spec
    *parents, leaf = SETTINGS[row["sweep"]["key"]].path
    spec = dict(spec)
    target = spec
    for key in parents:
        target[key] = dict(target[key])
        target = target[key]
    target[leaf] = row["sweep"]["value"]
    return spec


def load_anytime(
    pairs: list[dict[str, str]],
    known: dict[str, Any],
    running: dict[str, dict[str, Any]],
    sweeps: tuple[Sweep, ...],
    schedules: dict[str, dict[str, Any]],
) -> tuple[tuple[str, str], ...]:
    """The ``(restarts, cosine)`` pairs of the config's ``anytime`` list that the preset runs: ``restarts``
    among the ``running`` variants, unswept, and ``cosine`` swept over ``epochs``. A ValueError names a
    variant not among ``known`` (the config's variant table), or a kept ``restarts`` whose schedule (in
    the preset's ``schedules``) is not ``warm_restarts``."""
    budgets = next((s for s in sweeps if s.key == "epochs"), None)
    kept = []
    for i, pair in enumerate(pairs):
        for role in ("restarts", "cosine"):
            if pair[role] not in known:
                raise ValueError(f"anytime[{i}].{role}: unknown variant {pair[role]!r}; allowed: {', '.join(known)}")
        restarts, cosine = pair["restarts"], pair["cosine"]
        if restarts in running and budgets is not None and cosine in budgets.variants:
            kind = schedules[running[restarts]["schedule"]]["kind"]
            if kind != "warm_restarts":
                raise ValueError(f"anytime[{i}].restarts: {restarts!r} has schedule kind {kind!r}, not warm_restarts")
            kept.append((restarts, cosine))
    return tuple(kept)
