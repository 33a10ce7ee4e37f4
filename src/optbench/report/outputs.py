"""Every table and figure of a preset, from ``runs.csv`` alone."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from optbench.analysis.estimate_text import NA, estimate
from optbench.analysis.heatmap import variant_statistics
from optbench.analysis.improvement import improvement_table
from optbench.analysis.shift import shift_table
from optbench.analysis.sweeps import anytime, best_decay_fit
from optbench.atomic import atomic_file_set
from optbench.experiment.layout import outputs
from optbench.experiment.preset import Experiment, present_panels
from optbench.experiment.sweeps import SETTINGS
from optbench.records.table import read_runs
from optbench.records.table_checks import check_planned, check_table
from optbench.report import text as fmt
from optbench.report.files import write_table_and_markdown
from optbench.report.heatmaps import heatmap_figure, learning_curves_figure
from optbench.report.memory import memory_models, memory_table, write_memory_tables
from optbench.report.stability import write_stability_outputs
from optbench.report.sweeps import anytime_figure, best_decay_figure
from optbench.report.text import CI, markdown_table

IMPROVEMENT_HEADERS = [
    "baseline",
    "candidate",
    "baseline best",
    "candidate best",
    f"relative improvement {CI}",
    f"difference (pp) {CI}",
    "seeds",
]


def _best(error: float, lr: float, weight_decay: float) -> str:
    return f"{fmt.percent(error)} at lr {fmt.power_of_two(lr)}, wd {fmt.power_of_two(weight_decay)}"


def _markdown(rows: list[dict[str, str]], left: tuple[str, ...], columns: list[str] | None = None) -> str:
    """Rows of ready-made text as a Markdown table: the ``left`` columns left-aligned, the rest right-aligned."""
    table = pd.DataFrame(rows, columns=columns)
    return markdown_table(table, {column: None if column in left else str for column in table.columns})


def summary_markdown(
    summary: pd.DataFrame, labels: dict[str, str] | None = None, torch_decay: Collection[str] = ()
) -> str:
    """:func:`optbench.analysis.heatmap.variant_statistics` for humans: errors in percent with one decimal,
    the slope with its CI, the noise floor in percentage points. The best weight decay of the variants
    ``torch_decay`` (weight_decay_mode torch, :mod:`optbench.spec.decay_modes`) reads ``(lr x lambda)``: their
    decay per step is the product of the two axes."""
    labels = labels or {}
    rows = []
    for r in summary.itertuples(index=False):
        slope = estimate(r.slope, r.slope_ci_low, r.slope_ci_high, r.n_seeds)
        if r.slope_reason and slope == NA:
            slope += f" ({r.slope_reason})"
        noise = f"{100 * r.noise_floor:.1f} pp" if pd.notna(r.noise_floor) else NA
        rows.append(
            {
                "variant": labels.get(r.variant, r.variant),
                "best test error": fmt.percent(r.best_test_error) + (" (border)" if r.best_on_border else ""),
                "at lr": fmt.power_of_two(r.best_lr),
                "at weight decay": fmt.power_of_two(r.best_weight_decay)
                + (" (lr x lambda)" if r.variant in torch_decay else ""),
                f"slope of log2 best lambda on log2 lr {CI}": slope,
                "lr rows in fit": f"{r.slope_rows} ({r.slope_rows_at_edge} at edge)"
                if r.slope_rows_at_edge
                else f"{r.slope_rows}",
                "noise floor": noise + (" (1 seed)" if r.n_seeds < 2 else ""),
                "seeds": str(r.n_seeds),
                "runs": str(r.n_runs),
                "diverged": str(r.n_diverged),
            }
        )
    return _markdown(rows, left=("variant",))


def improvements_markdown(improvements: pd.DataFrame, labels: dict[str, str] | None = None) -> str:
    """:func:`optbench.analysis.improvement.improvement_table` for humans: each variant's best cell, the relative
    improvement in percent and the difference in percentage points, each with its CI."""
    labels = labels or {}
    rows = [
        {  # in the order of IMPROVEMENT_HEADERS
            "baseline": labels.get(r.baseline, r.baseline),
            "candidate": labels.get(r.candidate, r.candidate),
            "baseline best": _best(r.baseline_error, r.baseline_lr, r.baseline_weight_decay),
            "candidate best": _best(r.candidate_error, r.candidate_lr, r.candidate_weight_decay),
            f"relative improvement {CI}": estimate(
                r.relative, r.relative_ci_low, r.relative_ci_high, r.n_seeds, fmt.percent
            ),
            f"difference (pp) {CI}": estimate(
                r.difference_pp, r.difference_pp_ci_low, r.difference_pp_ci_high, r.n_seeds, lambda x: f"{x:+.1f}"
            ),
            "seeds": str(r.n_seeds),
        }
        for r in improvements.itertuples(index=False)
    ]
    return _markdown(rows, left=("baseline", "candidate"), columns=IMPROVEMENT_HEADERS)


def shifts_markdown(shifts: pd.DataFrame, labels: dict[str, str] | None = None) -> str:
    """:func:`optbench.analysis.shift.shift_table` for humans: per claim and axis, the claimed ratio of the
    candidate's best value to the baseline's, the measured one as a power of 2 with its CI, the verdict."""
    labels = labels or {}
    rows = [
        {
            "candidate vs baseline": f"{labels.get(r.candidate, r.candidate)} vs {labels.get(r.baseline, r.baseline)}",
            "axis": "learning rate" if r.axis == "lr" else "weight decay",
            "claimed ratio": f"{r.claim_low:g} to {r.claim_high:g}",
            f"best-cell ratio {CI}": estimate(
                r.log2_ratio, r.log2_ratio_ci_low, r.log2_ratio_ci_high, r.n_seeds, lambda x: f"2^{x:g}"
            ),
            "verdict": r.verdict,
            "source": r.source,
        }
        for r in shifts.itertuples(index=False)
    ]
    return _markdown(rows, left=("candidate vs baseline", "axis", "verdict", "source"))


def checked_runs(runs_csv: str | Path, experiment: Experiment) -> pd.DataFrame:
    """The table of ``runs.csv`` checked whole before anything is drawn from it, as ``snakemake figures --config
    results=DIR`` draws from one no aggregation of this config wrote: each row as aggregation checks a record
    (:func:`~optbench.records.table_checks.check_table`), and every run ``experiment``'s preset plans, no other
    (:func:`~optbench.records.table_checks.check_planned`). ValueError, one line naming the file."""
    try:
        runs = read_runs(runs_csv)
    except ValueError as err:
        raise ValueError(f"{runs_csv}: {err}") from None
    check_table(runs, str(runs_csv))
    specs = [spec for variant in experiment.variants for spec in experiment.runs(variant)]
    check_planned(runs, specs, experiment.preset, str(runs_csv))
    return runs


def write_outputs(runs_csv: str | Path, experiment: Experiment, results: str | Path) -> list[Path]:
    """Every table and figure of ``results`` (:func:`draw_outputs`) from ``runs.csv``, written as a set
    (:func:`optbench.atomic.atomic_file_set`): a failure leaves the old set as it was. The files written."""
    runs = read_runs(runs_csv)
    with atomic_file_set(results) as stage:
        draw_outputs(runs, experiment, stage)
        written = sorted(Path(results) / p.relative_to(stage) for p in stage.rglob("*") if p.is_file())
    return written


def draw_outputs(runs: pd.DataFrame, experiment: Experiment, results: str | Path) -> None:
    """Summary, improvement and memory tables (the preset's model and the papers'), one heatmap figure
    per configured figure, the learning curves, and each stability map's tables and figures
    (:mod:`optbench.report.stability`), of the variants ``runs`` holds, under ``results``."""
    out = outputs(experiment, results)
    labels = {name: row["label"] for name, row in experiment.variants.items()}
    ran = set(runs["variant"])
    summary = variant_statistics(runs)
    torch_decay = set(runs.loc[runs["optimizer.weight_decay_mode"].eq("torch"), "variant"])
    write_table_and_markdown(summary, summary_markdown(summary, labels, torch_decay), *out["summary"])
    pairs = [pair for pair in experiment.comparisons if set(pair) <= ran]
    improvements = improvement_table(runs, pairs)
    write_table_and_markdown(improvements, improvements_markdown(improvements, labels), *out["improvements"])
    if experiment.shifts:
        shifts = shift_table(runs, list(experiment.shifts))
        write_table_and_markdown(shifts, shifts_markdown(shifts, labels), *out["best_cell_shifts"])
    optimizers = {name: {**row["optimizer"], "label": row["label"]} for name, row in experiment.variants.items()}
    models = memory_models([experiment.settings["model"]])
    write_memory_tables(memory_table(optimizers, runs, models), *out["memory"])
    for name, paths in out["heatmaps"].items():
        spec = experiment.figures[name]
        panels = present_panels(spec["panels"], ran)
        if panels:
            heatmap_figure(runs, panels, paths, title=spec.get("title"), labels=labels)
    present = [v for v in experiment.variants if v in ran]
    learning_curves_figure(runs, present, out["learning_curves"], labels=labels)
    if experiment.sweeps:
        write_sweep_outputs(runs, experiment, out["sweeps"], labels)
    for smap in experiment.stability_maps:
        write_stability_outputs(runs, smap, out["stability_maps"][smap.name], labels)


def decay_slopes_markdown(fits: pd.DataFrame) -> str:
    """The table ``decay_slopes`` for humans: per swept setting and variant, the slope of log2 best weight
    decay on log2 of the setting with its CI, and the slope the formula predicts."""
    rows = [
        {
            "setting": SETTINGS[r.setting].axis,
            "variant": r.label,
            f"slope of log2 best lambda on log2 setting {CI}": estimate(r.slope, r.ci_low, r.ci_high, r.n_seeds)
            + (f" ({r.reason})" if r.reason else ""),
            "predicted": f"{r.predicted:g}",
            "heatmaps": str(r.n_values),
            "seeds": str(r.n_seeds),
        }
        for r in fits.itertuples(index=False)
    ]
    return _markdown(rows, left=("setting", "variant"))


def best_decay_markdown(bests: pd.DataFrame) -> str:
    """The table ``best_decay`` for humans: per swept setting, variant and value, the best cell, with the CI
    of its weight decay."""
    rows = [
        {
            "setting": SETTINGS[r.setting].axis,
            "variant": r.label,
            "value": f"{r.value:g}",
            f"best weight decay {CI}": estimate(
                r.log2_best_weight_decay, r.ci_low, r.ci_high, r.n_seeds, _log2_as_power
            )
            + (" (border)" if r.on_border else ""),
            "at lr": fmt.power_of_two(r.best_lr),
            "best test error": fmt.percent(r.best_test_error),
        }
        for r in bests.itertuples(index=False)
    ]
    return _markdown(rows, left=("setting", "variant"))


def _log2_as_power(log2_value: float) -> str:
    """``2^-7`` for a whole log2, ``2^-6.5`` for an interval's interpolated bound."""
    return f"2^{log2_value:.3g}"


def anytime_markdown(table: pd.DataFrame, labels: dict[str, str]) -> str:
    """The table ``anytime`` for humans: per pair and cycle end, both best cells and the difference in
    percentage points (restarts minus cosine) with its CI."""
    rows = [
        {
            "warm restarts": labels[r.restarts],
            "cycle ends at epoch": str(r.epoch),
            "warm restarts there": _best(r.restarts_error, r.restarts_lr, r.restarts_weight_decay),
            "cosine for that many epochs": _best(r.cosine_error, r.cosine_lr, r.cosine_weight_decay),
            f"difference (pp) {CI}": estimate(
                r.difference_pp, r.difference_pp_ci_low, r.difference_pp_ci_high, r.n_seeds, lambda x: f"{x:+.1f}"
            ),
            "seeds": str(r.n_seeds),
        }
        for r in table.itertuples(index=False)
    ]
    return _markdown(rows, left=("warm restarts",))


def write_sweep_outputs(runs: pd.DataFrame, experiment: Experiment, out: dict, labels: dict[str, str]) -> None:
    """The outputs of a preset's sweeps (``sweeps`` of :func:`~optbench.experiment.layout.outputs`): per sweep,
    the heatmaps
    (a row per swept variant, a column per value); per swept variant, :func:`optbench.analysis.sweeps.best_decay_fit`
    (tables ``best_decay`` and ``decay_slopes``, figure ``best_decay``); per ``anytime`` pair,
    :func:`optbench.analysis.sweeps.anytime` at the restarts' cycle ends (table and figure ``anytime``)."""
    bests, fits = [], []
    for sweep in experiment.sweeps:
        for variant in sweep.variants:
            names = sweep.names(variant)
            table, fit = best_decay_fit(runs[runs["variant"].isin(names.values())], sweep.column)
            head = {"setting": sweep.key, "variant": variant, "label": _swept_label(experiment, names)}
            bests.append(table.assign(**head)[[*head, *table.columns]])
            fits.append({**head, **asdict(fit)})
        panels = [list(sweep.names(variant).values()) for variant in sweep.variants]
        title = f"One heatmap per {SETTINGS[sweep.key].axis}"
        heatmap_figure(runs, panels, out[f"heatmaps_{sweep.key}"], title=title, labels=labels)
    bests, fits = pd.concat(bests, ignore_index=True), pd.DataFrame(fits)
    write_table_and_markdown(bests, best_decay_markdown(bests), *out["best_decay"])
    write_table_and_markdown(fits, decay_slopes_markdown(fits), *out["decay_slopes"])
    best_decay_figure(bests, fits, out["best_decay_figure"])
    if experiment.anytime:
        _write_anytime(runs, experiment, out, labels)


def _swept_label(experiment: Experiment, names: dict[int, str]) -> str:
    """The label of the variant a sweep's ``names`` (value -> swept variant) come from."""
    return experiment.variants[next(iter(names.values()))]["sweep"]["label"]


def _write_anytime(runs: pd.DataFrame, experiment: Experiment, out: dict, labels: dict[str, str]) -> None:
    """Table and figure ``anytime``: each pair's restarts variant at the end of its cycles against its
    cosine variant swept over epochs."""
    budgets = next(sweep for sweep in experiment.sweeps if sweep.key == "epochs")
    tables, panels = [], []
    for restarts, cosine in experiment.anytime:
        spec = experiment.runs(restarts)[0]
        ends = spec.schedule.cycle_ends(spec.epochs)
        names = budgets.names(cosine)
        table = anytime(runs, restarts, names, ends)
        tables.append(table.assign(restarts=restarts, cosine=cosine)[["restarts", "cosine", *table.columns]])
        panels.append((restarts, _swept_label(experiment, names), names, ends))
    table = pd.concat(tables, ignore_index=True)
    write_table_and_markdown(table, anytime_markdown(table, labels), *out["anytime"])
    anytime_figure(runs, panels, out["anytime_figure"], labels)
