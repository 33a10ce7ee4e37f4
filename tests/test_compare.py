"""optbench.analysis.compare and optbench.report.compare: a fresh run against the reference, its verdict rule, its
outputs and its command."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from fake_records import LRS, WDS, diagonal_error, grid_records, separable_error
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.patches import Rectangle

from optbench.__main__ import main
from optbench.analysis.cell_noise import cell_to_cell_noise
from optbench.analysis.cells import cell_statistics
from optbench.analysis.compare import Z, compare_runs
from optbench.analysis.improvement import improvement
from optbench.atomic import atomic_write_csv
from optbench.records.table import runs_table
from optbench.report.compare import comparison_markdown, difference_figure, verdict_line

ROOT = Path(__file__).resolve().parents[1]
SEED_SD = 0.002 / math.sqrt(2)  # grid_records: seed s adds 0.002 s, so two seeds differ by 0.002 in every cell


def runs(seeds=(0, 1), shift=0.0, adamw_error=separable_error, lrs=LRS):
    """Two variants on the fake grid; ``shift`` is added to every error of adamw_cosine."""
    return runs_table(
        grid_records("adam_l2_cosine", diagonal_error, seeds=seeds, lrs=lrs)
        + grid_records("adamw_cosine", lambda lr, wd: adamw_error(lr, wd) + shift, seeds=seeds, lrs=lrs)
    )


@pytest.fixture(scope="module")
def reference():
    return runs()


def test_a_run_agrees_with_itself(reference):
    comparison = compare_runs(reference, reference)
    assert comparison.verdict == "identical" and comparison.problems() == []
    assert verdict_line(comparison, "out").startswith(
        "compare: the fresh run is identical to the reference (2 variants"
    )
    table = comparison.table.set_index("variant")
    assert table["noise"].to_numpy() == pytest.approx(SEED_SD)
    assert table["tolerance_pp"].to_numpy() == pytest.approx(100 * Z * SEED_SD)  # sqrt(1/2 + 1/2) = 1
    assert (table["best_difference_pp"] == 0).all() and (table["cells"] == len(reference) / 4).all()
    assert (table["slope_check"] == "agrees").all()
    assert table["noise_source"].str.startswith("the reference's noise floor (2 seeds)").all()


def test_a_shifted_variant_is_listed_with_its_difference(reference):
    comparison = compare_runs(runs(shift=0.05), reference)
    assert comparison.verdict == "disagrees"
    (problem,) = comparison.problems()
    assert problem.startswith(
        "adamw_cosine: best test error 5.0 pp higher than the reference's, beyond the tolerance of 0.3 pp"
    )
    assert "median cell difference 5.0 pp" in problem
    row = comparison.table.set_index("variant").loc["adamw_cosine"]
    assert row["cells_beyond_tolerance"] == row["cells"] == len(LRS) * 6


def test_differences_are_signed_as_improvements_md_signs_them(reference, tmp_path):
    """Reference as the baseline, the fresh run as the candidate: positive where the fresh run is better."""
    better = runs(shift=-0.05)
    comparison = compare_runs(better, reference)
    both = pd.concat([reference.assign(variant="ref"), better.assign(variant="fresh", run_id=better["run_id"] + "f")])
    claim = improvement(both[both["run_id"].str.contains("adamw")], "ref", "fresh")
    row = comparison.table.set_index("variant").loc["adamw_cosine"]
    assert row["best_difference_pp"] == pytest.approx(claim.difference_pp) == pytest.approx(5.0)
    assert (comparison.cells.query("variant == 'adamw_cosine'")["difference_pp"] > 0).all()
    assert "best test error 5.0 pp lower than the reference's" in comparison.problems()[0]
    assert "| difference (pp), reference - fresh: + = fresh better |" in comparison_markdown(comparison, "f", "r", {})
    fig = difference_figure(comparison, [tmp_path / "d.png"], labels={})
    (colourbar,) = [ax for ax in fig.axes if not ax.images and ax.get_ylabel()]
    assert colourbar.get_ylabel() == "reference - fresh error (pp)\n+ = the fresh run is better"


def test_a_shift_within_the_noise_agrees(reference):
    comparison = compare_runs(runs(shift=0.5 * Z * SEED_SD), reference)
    assert comparison.verdict == "agrees" and not comparison.identical
    assert verdict_line(comparison, "out").startswith("compare: the fresh run agrees with the reference (2 variants)")


def compare_command(tmp_path, fresh: pd.DataFrame, reference: pd.DataFrame, variants=None) -> int:
    """``optbench compare`` of the two tables, written to tmp_path as fresh.csv and reference.csv, into
    tmp_path/compare, with the smoke preset running ``variants`` (default: its own): its exit status."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text()) | {"preset": "smoke"}
    if variants is not None:  # as --config variants=a,b leaves it (optbench.experiment.subset)
        config["presets"]["smoke"]["variants"] = variants
    atomic_write_csv(tmp_path / "reference.csv", reference)
    atomic_write_csv(tmp_path / "fresh.csv", fresh)
    argv = ["compare", "--fresh", str(tmp_path / "fresh.csv"), "--reference", str(tmp_path / "reference.csv")]
    return main([*argv, "--config-json", json.dumps(config), "--out-dir", str(tmp_path / "compare")])


def test_a_reference_of_another_preset_is_named(reference, tmp_path, capsys):
    assert compare_command(tmp_path, reference, reference.assign(preset="reproduce")) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"optbench compare: error: {tmp_path / 'reference.csv'}: runs of preset reproduce, but "
        f"{tmp_path / 'fresh.csv'} holds runs of preset quick: compare two runs of one preset"
    ]
    assert not (tmp_path / "compare").exists()


def test_a_run_of_some_variants_is_compared_on_those_alone(reference, tmp_path, capsys):
    """A run of some variants only (``--config variants=adamw_cosine``): the reference's others are named, not
    counted against it."""
    fresh = reference[reference["variant"].eq("adamw_cosine")]
    assert compare_command(tmp_path, fresh, reference, variants=["adamw_cosine"]) == 0
    assert capsys.readouterr().out.startswith("compare: the fresh run is identical to the reference")
    assert pd.read_csv(tmp_path / "compare" / "compare.csv")["variant"].tolist() == ["adamw_cosine"]
    text = (tmp_path / "compare" / "compare.md").read_text()
    assert "Not run by this run's preset (--config variants=...), not compared: adam_l2_cosine." in text


BAD_ROWS = {  # a cell of the table's first row -> what the one line says of it
    ("final_test_error", 1.7): "final_test_error: 1.7 is greater than the maximum of 1",
    ("final_test_error", -0.1): "final_test_error: -0.1 is less than the minimum of 0",
    ("final_test_error", math.nan): "final_test_error is empty",
    ("lr", math.nan): "lr is empty",
    ("final_test_error", 0.01): "final_test_error is 0.01 but its history gives 0.604",
    ("history", "[]"): "the history is empty",
    ("history", "[{"): "history is not a JSON list: '[{'",
}


@pytest.mark.parametrize("role", ["reference", "fresh run"])
@pytest.mark.parametrize(("cell", "problem"), BAD_ROWS.items(), ids=[f"{c}={v}" for c, v in BAD_ROWS])
def test_a_bad_row_in_either_table_stops_it_naming_the_table_its_line_and_cell(
    reference, tmp_path, capsys, role, cell, problem
):
    """A reference row is checked as strictly as a fresh one, and the line says which table is bad."""
    column, value = cell
    bad = reference.copy()
    bad[column] = bad[column].astype(object)
    bad.loc[0, column] = value
    fresh, ref = (reference, bad) if role == "reference" else (bad, reference)
    assert compare_command(tmp_path, fresh, ref) == 2
    path = tmp_path / ("reference.csv" if role == "reference" else "fresh.csv")
    assert capsys.readouterr().err.splitlines() == [
        f"optbench compare: error: the {role} {path}: line 2 (run {reference.loc[0, 'run_id']}): {problem}"
    ]
    assert not (tmp_path / "compare").exists()


def test_every_bad_row_is_counted(reference, tmp_path, capsys):
    bad = reference.assign(final_test_error=reference["final_test_error"].where(reference["seed"].eq(1), 1.5))
    assert compare_command(tmp_path, reference, bad) == 2
    assert capsys.readouterr().err.endswith(f"(and {len(reference) // 2 - 1} more bad rows)\n")


def test_a_moved_diagonal_is_a_slope_that_differs(reference):
    fresh = runs(adamw_error=diagonal_error)  # AdamW's separable region turned into Adam-L2's diagonal
    problems = dict(line.split(": ", 1) for line in compare_runs(fresh, reference).problems())
    assert "slope -1.00 [-1.00, -1.00], the reference's 0.00 [0.00, 0.00]" in problems["adamw_cosine"]


CELL_NOISE = 0.005  # noisy_error's independent noise per cell


def noisy_error(lr: float, weight_decay: float) -> float:
    """A gentle bowl in lr plus independent noise of CELL_NOISE in each cell, the same for every call."""
    rng = np.random.default_rng([round(-math.log2(lr)), round(-math.log2(weight_decay))])
    return 0.3 + 0.001 * (math.log2(lr) + 10) ** 2 + rng.normal(0, CELL_NOISE)


def one_seed(shift=0.0, lrs=LRS, wds=WDS, diverge_above_lr=math.inf):
    """One variant's runs of one seed on the noisy grid, every error raised by ``shift``."""
    records = grid_records("adamw_cosine", lambda lr, wd: noisy_error(lr, wd) + shift, (0,), lrs, wds, diverge_above_lr)
    return runs_table(records)


def test_the_cell_to_cell_noise_recovers_the_grids_noise_without_its_diverged_cells():
    large = [2.0**k for k in range(-16, -4)]  # a 12 x 12 grid
    runs = runs_table(grid_records("a", noisy_error, (0,), large, large, diverge_above_lr=2.0**-8))
    noise = cell_to_cell_noise(cell_statistics(runs))
    assert noise.sigma == pytest.approx(CELL_NOISE, rel=0.25)
    assert noise.n_differences == 12 * 7 + 9 * 10  # the triples within the 9 lr rows that did not diverge


def test_one_seed_in_the_reference_judges_with_its_cell_to_cell_noise():
    reference = one_seed()
    within, worse = compare_runs(one_seed(shift=0.005), reference), compare_runs(one_seed(shift=0.05), reference)
    (row,) = within.table.to_dict("records")
    assert row["noise"] == pytest.approx(CELL_NOISE, rel=0.5) and row["noise_source"].startswith(
        "the reference's cell-to-cell noise (one seed; 38 second differences)"
    )
    assert row["tolerance_pp"] == pytest.approx(100 * Z * row["noise"] * math.sqrt(2))
    assert row["slope_check"].startswith("not checked: one seed")
    assert within.verdict == "agrees"
    assert worse.verdict == "disagrees"  # 5 pp, within the 6.8 pp the former fixed noise of 2.4 pp allowed
    assert worse.problems()[0].startswith(
        "adamw_cosine: best test error 5.0 pp higher than the reference's, beyond the tolerance of 1."
    )


def test_a_grid_too_small_for_its_noise_is_inconclusive_and_says_why(tmp_path, capsys):
    reference = one_seed(lrs=LRS[:2], wds=WDS[:2])
    comparison = compare_runs(one_seed(shift=0.05, lrs=LRS[:2], wds=WDS[:2]), reference)
    why = (
        "the reference has one seed, and its 2 x 2 grid has 0 runs of three neighbouring cells without a diverged "
        "run, 6 needed to estimate the cell-to-cell noise"
    )
    assert comparison.verdict == "inconclusive" and comparison.problems() == [f"adamw_cosine: inconclusive: {why}"]
    assert verdict_line(comparison, "out") == f"compare: inconclusive: adamw_cosine: {why}; see out/compare.md"
    assert math.isnan(comparison.table["tolerance_pp"].iloc[0])
    missing = compare_runs(one_seed(lrs=LRS[:1], wds=WDS[:2]), reference)  # a missing cell is a fact: disagrees
    assert missing.verdict == "disagrees"
    difference_figure(comparison, [tmp_path / "d.png"], labels={})  # no tolerance to outline or scale by


def test_missing_cells_and_variants_are_listed(reference):
    fresh = runs(lrs=LRS[:-1])  # the largest lr row of both variants is missing
    assert compare_runs(fresh, reference).problems() == [
        f"{variant}: 6 of the reference's 30 cells missing in the fresh run"
        for variant in ("adam_l2_cosine", "adamw_cosine")
    ]
    only_adam = reference[reference["variant"].eq("adam_l2_cosine")]
    comparison = compare_runs(only_adam, reference)
    assert comparison.problems() == ["adamw_cosine: not in the fresh run"]
    assert compare_runs(reference, only_adam).only_fresh == ["adamw_cosine"]


def test_the_difference_figure_outlines_cells_beyond_the_tolerance(reference, tmp_path):
    comparison = compare_runs(runs(shift=0.05), reference)
    fig = difference_figure(comparison, [tmp_path / "d.png"], labels={})
    panels = {ax.get_title().split("\n")[0]: ax for ax in fig.axes if ax.images}
    outlined = {name: sum(isinstance(p, Rectangle) for p in ax.patches) for name, ax in panels.items()}
    assert outlined == {"adam_l2_cosine": 0, "adamw_cosine": len(LRS) * 6}
    assert (tmp_path / "d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_label_of_the_difference_figure_overlaps_another_or_leaves_the_figure(tmp_path):
    """Quick's Adafactor grid, 11 relative steps (wide tick labels) by 12 weight decays, four panels in a row,
    numbers as wide as -10.x: no two of a panel's cell numbers overlap, nor two titles, and the colour bar's
    label lies inside the figure."""
    steps, decays = [0.00125 * 2**k for k in range(11)], [2.0**k for k in range(-16, -4)]
    names = ["adafactor", "adam_l2_cosine", "adamw_cosine", "adamw_norm_restarts"]
    grids = [sum((grid_records(n, f, (0,), steps, decays) for n in names), []) for f in (noisy_error, separable_error)]
    comparison = compare_runs(*(runs_table(records) for records in grids))
    fig = difference_figure(comparison, [tmp_path / "d.png"], labels={n: f"{n}, a long label" for n in names})
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    panels = [ax for ax in fig.axes if ax.images]
    assert max(len(t.get_text()) for t in panels[0].texts) == len("-10.0")
    for labels in [*([t for t in ax.texts] for ax in panels), [ax.title for ax in panels]]:
        boxes = [label.get_window_extent(renderer) for label in labels]
        assert not [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :] if a.overlaps(b)]
    (colourbar,) = [ax for ax in fig.axes if not ax.images and ax.get_ylabel()]
    label = colourbar.yaxis.label.get_window_extent(renderer)
    assert fig.bbox.contains(label.x0, label.y0) and fig.bbox.contains(label.x1, label.y1)


def test_the_command_writes_every_output_and_prints_the_verdict(reference, tmp_path, capsys):
    out = tmp_path / "compare"
    assert compare_command(tmp_path, runs(shift=0.05), reference) == 0  # a verdict, not an error
    assert capsys.readouterr().out.startswith(
        "compare: the fresh run does not agree with the reference in 1 of 2 variants; see "
    )
    table = pd.read_csv(out / "compare.csv")
    assert table["verdict"].tolist() == ["agrees", "disagrees"]
    text = (out / "compare.md").read_text()
    assert "**Verdict: the fresh run does not agree with the reference**, in:" in text
    assert "- adamw_cosine: best test error 5.0 pp higher than the reference's" in text
    assert "| AdamW, cosine | **disagrees** |" in text  # the config's labels
    assert (out / "difference.pdf").read_bytes()[:5] == b"%PDF-"
