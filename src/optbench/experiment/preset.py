"""From the workflow's config (variant table x grid x seeds, one preset) to run specs and shards.

:func:`load_experiment` checks the config's names and axes; what a training job would reject is checked
by :func:`optbench.experiment.checks.checked_experiment`, which the Snakefile and the command line call.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from optbench.experiment.stability_maps import StabilityMap, load_stability_maps
from optbench.experiment.sweeps import Sweep, apply, expand, load_anytime, load_sweeps
from optbench.spec.run import RunSpec
from optbench.spec.run_ids import check_distinct
from optbench.spec.switches import check_renamed


@dataclass(frozen=True)
class Experiment:
    """The runs of one preset, cut into shards of at most ``runs_per_job`` runs of one variant each.

    ``variants`` holds the variants that run: a swept variant's rows replace it (:mod:`optbench.experiment.sweeps`).
    ``anytime``: (warm-restarts variant, cosine variant swept over epochs) pairs.
    """

    preset: str
    settings: dict[str, Any]
    variants: dict[str, dict[str, Any]]
    figures: dict[str, dict[str, Any]]
    comparisons: tuple[tuple[str, str], ...] = ()  # (baseline, candidate) pairs, both run by the preset
    sweeps: tuple[Sweep, ...] = ()
    anytime: tuple[tuple[str, str], ...] = ()
    stability_maps: tuple[
        StabilityMap, ...
    ] = ()  # the maps of the variants it runs (optbench.experiment.stability_maps)
    # comparisons with a claimed best-cell shift: {baseline, candidate, lr, weight_decay, source}
    # (optbench.analysis.shift)
    shifts: tuple[dict[str, Any], ...] = ()

    @property
    def runs_per_job(self) -> int:
        return self.settings["runs_per_job"]

    def grid(self, variant: str) -> tuple[list[float], list[float]]:
        """Learning rates and weight decays of a variant's heatmap."""
        grid = self.settings["grids"][self.variants[variant]["grid"]]
        return axis_values(grid["lr"]), axis_values(grid["weight_decay"])

    def runs(self, variant: str) -> list[RunSpec]:
        """Run specs of one variant, in grid order (lr, then weight decay, then seed)."""
        lrs, decays = self.grid(variant)
        return [self.run(variant, lr, wd, seed) for lr in lrs for wd in decays for seed in self.settings["seeds"]]

    def run(self, variant: str, lr: float, weight_decay: float, seed: int) -> RunSpec:
        """The run spec of one cell and seed of a variant; a ValueError names the run spec field a training
        job would reject (:meth:`RunSpec.check`; :func:`optbench.experiment.checks.check_experiment` says
        which config key set it)."""
        return RunSpec.from_dict(self.run_fields(variant, lr, weight_decay, seed))

    def run_fields(self, variant: str, lr: float, weight_decay: float, seed: int) -> dict[str, Any]:
        """The fields of :meth:`run`'s spec as the config gives them, not yet checked."""
        s, v = self.settings, self.variants[variant]
        spec = {
            "variant": variant,
            "optimizer": v["optimizer"],
            "normalized_weight_decay": v.get("normalized_weight_decay", False),
            "schedule": s["schedules"][v["schedule"]],
            "lr": lr,
            "weight_decay": weight_decay,
            "seed": seed,
            "preset": self.preset,
            **{k: s[k] for k in ("dataset", "model", "epochs", "batch_size", "device", "bf16", "data_dir")},
            "dataset_options": {**s["dataset_options"], **v.get("dataset_options", {})},
        }
        if "trace_every" in s:
            spec["trace_every"] = s["trace_every"]
        return apply(spec, v)

    def shards(self, variant: str) -> list[list[RunSpec]]:
        """The variant's runs in jobs of at most ``runs_per_job`` (computed once per variant)."""
        return self._shards[variant]

    @cached_property
    def _shards(self) -> dict[str, list[list[RunSpec]]]:
        n = self.runs_per_job
        shards = {}
        for variant in self.variants:
            runs = self.runs(variant)
            shards[variant] = [runs[i : i + n] for i in range(0, len(runs), n)]
        return shards


def axis_values(axis: dict[str, Any]) -> list[float]:
    """An axis given as ``{"values": [...]}``, or ``{"log2": [lo, hi]}``: every power of two from 2^lo to 2^hi,
    each multiplied by ``times`` when given (``{"log2": [-3, 7], "times": 0.01}`` holds 0.01 * 2^-3 ... 0.01 * 2^7)."""
    if "values" in axis:
        return [float(v) for v in axis["values"]]
    lo, hi = axis["log2"]
    if lo > hi:
        raise ValueError(f"log2: [{lo}, {hi}] is an empty range; write [low, high]")
    return [axis.get("times", 1.0) * 2.0**e for e in range(lo, hi + 1)]


def preset_variants(config: dict[str, Any], name: str) -> list[str]:
    """The variants preset ``name`` lists: ``all`` is every variant of the table but those marked ``in_all:
    false``."""
    chosen = config["presets"][name]["variants"]
    return [v for v, row in config["variants"].items() if row.get("in_all", True)] if chosen == "all" else chosen


def unused_variants(config: dict[str, Any]) -> list[str]:
    """The variants of the table that no preset runs (a row added to the table but to no preset's list)."""
    used = {v for name in config["presets"] for v in preset_variants(config, name)}
    return [v for v in config["variants"] if v not in used]


def load_experiment(config: dict[str, Any]) -> Experiment:
    """The experiment of ``config["preset"]``; a ValueError names an unknown preset, variant, grid or schedule,
    a renamed optimizer key, a bad sweep or ``anytime`` pair (:mod:`optbench.experiment.sweeps`), a reversed grid axis
    or
    one whose values would share run ids (:mod:`optbench.spec.run_ids`). Swept variants are
    replaced by their rows per value. Figure panels, comparisons and ``anytime`` pairs of variants the preset
    does not run are dropped, and so are the cells of stability maps (:mod:`optbench.experiment.stability_maps`).
    ``variants:
    all`` runs every variant but those marked ``in_all: false``."""
    name = config["preset"]
    presets = config["presets"]
    if name not in presets:
        raise ValueError(f"preset: unknown preset {name!r}; allowed: {', '.join(presets)}")
    settings = presets[name]
    chosen = preset_variants(config, name)
    variants = {}
    for v in chosen:
        if v not in config["variants"]:
            raise ValueError(
                f"presets.{name}.variants: unknown variant {v!r}; allowed: {', '.join(config['variants'])}"
            )
        row = config["variants"][v]
        check_renamed(row["optimizer"], f"variants.{v}.optimizer")
        for key, table in (("grid", "grids"), ("schedule", "schedules")):
            if row[key] not in settings[table]:
                raise ValueError(
                    f"variants.{v}.{key}: {row[key]!r} is not among presets.{name}.{table}: "
                    f"{', '.join(settings[table])}"
                )
        variants[v] = row
    sweeps = load_sweeps(settings.get("sweeps", {}), chosen, f"presets.{name}.sweeps")
    variants = expand(variants, sweeps)
    anytime = load_anytime(config.get("anytime", []), config["variants"], variants, sweeps, settings["schedules"])
    figures = {}
    for fig, spec in config["figures"].items():
        panels = present_panels(spec["panels"], variants)
        if panels:
            figures[fig] = {**spec, "panels": panels, "title": figure_title(spec, variants)}
    comparisons, shifts = [], []
    for i, pair in enumerate(config.get("comparisons", [])):
        for role in ("baseline", "candidate"):
            if pair[role] not in config["variants"]:
                raise ValueError(
                    f"comparisons[{i}].{role}: unknown variant {pair[role]!r}; allowed: {', '.join(config['variants'])}"
                )
        if pair["baseline"] in variants and pair["candidate"] in variants:
            comparisons.append((pair["baseline"], pair["candidate"]))
            if "claim" in pair:
                _check_claim(pair["claim"], f"comparisons[{i}].claim")
                shifts.append({"baseline": pair["baseline"], "candidate": pair["candidate"], **pair["claim"]})
    for grid_name, grid in settings["grids"].items():
        for axis in ("lr", "weight_decay"):
            try:
                check_distinct(axis_values(grid[axis]))
            except ValueError as err:
                raise ValueError(f"presets.{name}.grids.{grid_name}.{axis}.{err}") from None
    maps = load_stability_maps(config.get("stability_maps", {}), config["variants"], variants)
    return Experiment(name, settings, variants, figures, tuple(comparisons), sweeps, anytime, maps, tuple(shifts))


def _check_claim(claim: dict[str, Any], where: str) -> None:
    """ValueError unless each claimed ratio range is [low, high] with low below high (the schema checks the rest)."""
    for axis in ("lr", "weight_decay"):
        low, high = claim[axis]
        if not low < high:
            raise ValueError(f"{where}.{axis}: [low, high] with low below high, got {claim[axis]}")


def figure_title(spec: dict[str, Any], variants: Collection[str]) -> str | None:
    """A heatmap figure's title where it draws ``variants``: its ``title`` where each row of its panels is drawn,
    else its ``row_titles`` of the rows drawn, top to bottom (its ``title`` would name what it does not show)."""
    drawn = [any(p in variants for p in row) for row in spec["panels"]]
    if all(drawn) or "row_titles" not in spec:
        return spec.get("title")
    return "; ".join(title for title, shown in zip(spec["row_titles"], drawn) if shown)


def present_panels(panels: list[list[str | None]], variants: Collection[str]) -> list[list[str | None]]:
    """The panel grid with absent variants blanked and empty rows and columns dropped."""
    grid = [[p if p in variants else None for p in row] for row in panels]
    columns = [j for j in range(max(map(len, grid))) if any(j < len(row) and row[j] for row in grid)]
    return [[row[j] if j < len(row) else None for j in columns] for row in grid if any(row)]
