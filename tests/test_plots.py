import os
import subprocess
import sys

import pytest
from fake_records import CHANCE_ERROR, LRS, WDS, corner_error, diagonal_error, grid_records, separable_error
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.patches import Circle, Rectangle

from optbench.atomic import atomic_write_csv
from optbench.records.table import runs_table
from optbench.report.figures import RELATIVE_STEP_AXIS, log2_label
from optbench.report.heatmaps import CURVE_COLOURS, heatmap_figure, learning_curves_figure, line_style

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PANELS = [["adam_l2", "adamw"], ["normalized", None]]


@pytest.fixture(scope="module")
def runs():
    return runs_table(
        grid_records("adamw", separable_error)
        + grid_records("adam_l2", diagonal_error, diverge_above_lr=2.0**-9)
        + grid_records("normalized", corner_error, seeds=(0,), normalized_weight_decay=True)
    )


@pytest.fixture(scope="module")
def heatmap(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("heatmap")
    paths = [out / "grid.png", out / "grid.pdf"]
    fig = heatmap_figure(runs, PANELS, paths, title="synthetic", labels={"adamw": "AdamW"})
    return fig, paths


def panel_axes(fig):
    return [ax for ax in fig.axes if ax.images]


def test_heatmap_writes_png_and_pdf(heatmap):
    _, (png, pdf) = heatmap
    assert png.read_bytes().startswith(PNG_MAGIC)
    assert pdf.read_bytes().startswith(b"%PDF")
    assert sorted(p.name for p in png.parent.iterdir()) == ["grid.pdf", "grid.png"]


def test_heatmap_panels_share_one_colour_scale(heatmap, runs):
    fig, _ = heatmap
    norms = {(ax.images[0].norm.vmin, ax.images[0].norm.vmax) for ax in panel_axes(fig)}
    assert len(panel_axes(fig)) == 3
    assert len(norms) == 1
    converged = runs.loc[runs["status"].eq("ok")].groupby(["variant", "lr", "weight_decay"])["final_test_error"]
    assert norms.pop() == pytest.approx((100 * converged.mean().min(), 100 * converged.mean().max()))
    colorbars = [ax for ax in fig.axes if ax.get_ylabel() == "test error (%)"]
    assert len(colorbars) == 1


def by_label(fig):
    """Panels by the first line of their title, the variant's label."""
    return {ax.get_title().splitlines()[0]: ax for ax in panel_axes(fig)}


def test_heatmap_panel_titles_axes_and_cell_values(heatmap):
    fig, _ = heatmap
    panels = by_label(fig)
    assert set(panels) == {"AdamW", "adam_l2", "normalized"}
    assert panels["AdamW"].get_xlabel() == "weight decay"
    assert panels["normalized"].get_xlabel() == "normalized weight decay"
    assert panels["AdamW"].get_ylabel() == "learning rate"
    for ax in panels.values():
        assert len(ax.texts) == len(LRS) * len(WDS)
    # the seed mean in percent, one decimal: the separable optimum plus the mean seed offset 0.001
    values = {t.get_position(): t.get_text() for t in panels["AdamW"].texts}
    optimum = (WDS.index(2.0**-3), LRS.index(2.0**-10))
    assert values[optimum] == f"{100 * (separable_error(2.0**-10, 2.0**-3) + 0.001):.1f}" == "10.1"


def test_heatmap_titles_the_slope_with_its_interval(heatmap):
    fig, _ = heatmap
    slopes = {label: ax.get_title().splitlines()[1] for label, ax in by_label(fig).items()}
    # the seeds differ by a constant, so every resample finds the same row bests: a point interval
    assert slopes["adam_l2"] == "slope -1.00 [-1.00, -1.00]"
    assert slopes["AdamW"] == "slope 0.00 [0.00, 0.00]"
    # corner_error: row bests 0.11, 0.12, 0.15, ...: two rows within 0.11 + 0.0275, too few for a slope
    assert slopes["normalized"] == "slope n/a (only 2 near-best lr rows, at least 3 needed)"


def test_heatmap_draws_the_best_weight_decay_of_each_row(heatmap):
    fig, _ = heatmap
    panels = by_label(fig)
    # adam_l2: lr * wd = 2^-13 in rows 2^-12 .. 2^-9; row 2^-8 diverged entirely and is left out
    line = panels["adam_l2"].lines[0]
    expected_wds = [2.0 ** (-13 - k) for k in range(-12, -8)]
    assert list(line.get_xdata()) == [WDS.index(wd) for wd in expected_wds]
    assert list(line.get_ydata()) == [0, 1, 2, 3]
    circles = [p for p in panels["adam_l2"].patches if isinstance(p, Circle)]
    assert [c.center for c in circles] == list(zip(line.get_xdata(), line.get_ydata()))
    # AdamW: wd 2^-3 in every row; rows 2^-11 .. 2^-9 are within 0.025 of the best and enter the fit (solid)
    circles = [p for p in panels["AdamW"].patches if isinstance(p, Circle)]
    assert [c.center[0] for c in circles] == [WDS.index(2.0**-3)] * len(LRS)
    assert [c.get_linestyle() for c in circles] == ["--", "-", "-", "-", "--"]
    squares = {label: [p.get_xy() for p in ax.patches if isinstance(p, Rectangle)] for label, ax in panels.items()}
    assert squares["normalized"] == [(len(WDS) - 1 - 0.5, -0.5)]  # corner_error: best at lr 2^-12, wd 2^-1
    assert squares["AdamW"] == [(WDS.index(2.0**-3) - 0.5, LRS.index(2.0**-10) - 0.5)]


def test_heatmap_legend_names_the_circles_the_line_and_the_square(heatmap):
    fig, _ = heatmap
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts == [
        "an lr row's best weight decay, within max(1 pp, 25%) of the heatmap's best: the slope's fit",
        "an lr row's best weight decay, further from it: not fitted",
        "the rows' best weight decays, joined",
        "the heatmap's best cell (lowest seed-mean error)",
    ]
    # drawn as on the panels: solid and dashed circles, the line, the square
    circles, line, square = legend.legend_handles[:2], legend.legend_handles[2], legend.legend_handles[3]
    assert [isinstance(c, Circle) for c in circles] == [True, True]
    assert [c.get_linestyle() for c in circles] == ["-", "--"]
    assert line.get_color() == "red" and isinstance(square, Rectangle) and square.get_width() == square.get_height()
    # below the panels
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    assert legend.get_window_extent(renderer).y1 <= min(ax.get_window_extent(renderer).y0 for ax in panel_axes(fig))


def test_a_relative_step_axis_is_labelled_as_the_cap_it_is(tmp_path):
    records = grid_records("adafactor", separable_error, seeds=(0,))
    for record in records:
        record["optimizer"].update(relative_step=True)
    runs = runs_table(records + grid_records("adamw", separable_error, seeds=(0,)))
    fig = heatmap_figure(runs, [["adafactor", "adamw"]], [tmp_path / "x.png"])
    labels = {ax.get_title().splitlines()[0]: ax.get_ylabel() for ax in panel_axes(fig)}
    assert labels == {"adafactor": RELATIVE_STEP_AXIS, "adamw": "learning rate"}
    assert RELATIVE_STEP_AXIS == "cap on the relative step rho_t"
    # and the learning curves' legend names its best cell's cap as such
    fig = learning_curves_figure(runs, ["adafactor", "adamw"], [tmp_path / "curves.png"])
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts[0].startswith("adafactor (relative-step cap $2^{") and texts[1].startswith("adamw (lr $2^{")


def test_the_numbers_of_a_wide_grid_fit_their_cells(tmp_path):
    """A 12-column grid in a 4-column figure (quick's Adafactor row): every number fits inside its cell, at 7 pt."""
    wds = [2.0**k for k in range(-16, -4)]
    runs = runs_table([r for v in ("a", "b", "c", "d") for r in grid_records(v, separable_error, seeds=(0,), wds=wds)])
    fig = heatmap_figure(runs, [["a", "b", "c", "d"]], [tmp_path / "x.png"])
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    for ax in panel_axes(fig):
        cell = ax.get_window_extent(renderer).width / len(wds)
        assert len(ax.texts) == len(LRS) * len(wds)
        assert all(t.get_fontsize() >= 7 for t in ax.texts)
        assert max(t.get_window_extent(renderer).width for t in ax.texts) < 0.9 * cell


def test_heatmap_shows_diverged_cells_in_worst_colour(heatmap):
    fig, _ = heatmap
    ax = by_label(fig)["adam_l2"]
    image = ax.images[0]
    diverged_row = image.get_array()[-1]  # the largest learning rate (origin="lower")
    assert (diverged_row == image.norm.vmax).all()
    assert image.norm.vmax < 100 * CHANCE_ERROR
    assert sum(t.get_text() == "div" for t in ax.texts) == len(WDS)


def test_heatmap_rejects_unknown_variant(runs, tmp_path):
    with pytest.raises(ValueError, match="sgdw"):
        heatmap_figure(runs, [["adamw", "sgdw"]], [tmp_path / "x.png"])
    assert not any(tmp_path.iterdir())


def test_heatmap_rejects_ragged_panels(runs, tmp_path):
    with pytest.raises(ValueError, match="equal-length rows"):
        heatmap_figure(runs, [["adamw", "adam_l2"], ["adamw"]], [tmp_path / "x.png"])


def test_learning_curves_show_seed_means_with_a_band_and_the_legend_outside(runs, tmp_path):
    paths = [tmp_path / "curves.png", tmp_path / "curves.pdf"]
    fig = learning_curves_figure(runs, ["adamw", "adam_l2"], paths, labels={"adamw": "AdamW"})
    assert paths[0].read_bytes().startswith(PNG_MAGIC) and paths[1].read_bytes().startswith(b"%PDF")
    error_ax, loss_ax = fig.axes
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts[0].startswith("AdamW (lr $2^{-10}$") and len(texts) == 2
    assert "mean over 2 seeds, band: min to max" in legend.get_title().get_text()
    assert len(error_ax.lines) == len(loss_ax.lines) == 2
    assert error_ax.lines[0].get_color() != error_ax.lines[1].get_color()
    # mean over the best cell's two seeds of a curve ending at the cell's mean error ...
    best = separable_error(2.0**-10, 2.0**-3)
    assert error_ax.lines[0].get_ydata()[-1] == pytest.approx(100 * (best + 0.001))
    # ... and a band from seed 0 to seed 1 (0.002 apart)
    band = error_ax.collections[0].get_paths()[0].vertices
    last_epoch = band[band[:, 0] == 3, 1]
    assert (last_epoch.min(), last_epoch.max()) == pytest.approx((100 * best, 100 * (best + 0.002)))
    # the legend lies right of both axes
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    right = max(ax.get_window_extent(renderer).x1 for ax in fig.axes)
    assert legend.get_window_extent(renderer).x0 >= right


def test_learning_curves_of_one_seed_say_there_is_no_band(runs, tmp_path):
    fig = learning_curves_figure(runs, ["normalized"], [tmp_path / "curves.png"])
    assert "one seed (no band)" in fig.legends[0].get_title().get_text()


def test_every_curve_has_a_colour_of_its_own():
    """quick's 17 curves, the adafactor preset's 40: no colour twice; and a line style per ten."""
    assert len({line_style(i)["color"] for i in range(len(CURVE_COLOURS))}) == len(CURVE_COLOURS) == 60
    assert [line_style(i)["linestyle"] for i in (0, 9, 10, 19, 20)] == ["-", "-", "--", "--", ":"]


def test_learning_curves_reject_unknown_variant(runs, tmp_path):
    with pytest.raises(ValueError, match="sgdw"):
        learning_curves_figure(runs, ["sgdw"], [tmp_path / "x.png"])


@pytest.mark.parametrize(("value", "label"), [(2.0**-10, "$2^{-10}$"), (1.0, "$2^{0}$"), (0.0, "0"), (0.001, "0.001")])
def test_log2_label(value, label):
    assert log2_label(value) == label


DRAW = """
import sys
from optbench.records.table import read_runs
from optbench.report.heatmaps import heatmap_figure, learning_curves_figure
runs, out = read_runs(sys.argv[1]), sys.argv[2]
heatmap_figure(runs, [["adam_l2", "adamw"], ["normalized", None]], [f"{out}/grid.png", f"{out}/grid.pdf"], title="t")
learning_curves_figure(runs, ["adamw", "normalized"], [f"{out}/curves.png", f"{out}/curves.pdf"])
"""


def test_the_same_figure_gives_the_same_bytes(runs, tmp_path):
    """Committed figures redraw byte for byte, in another process too: a PDF carries no creation date."""
    atomic_write_csv(tmp_path / "runs.csv", runs)
    for draw in ("0", "1"):
        (tmp_path / draw).mkdir()
        env = {**os.environ, "PYTHONHASHSEED": draw}
        subprocess.run([sys.executable, "-c", DRAW, tmp_path / "runs.csv", tmp_path / draw], env=env, check=True)
    for name in ("grid.png", "grid.pdf", "curves.png", "curves.pdf"):
        assert (tmp_path / "0" / name).read_bytes() == (tmp_path / "1" / name).read_bytes()
    assert b"/CreationDate" not in (tmp_path / "0" / "grid.pdf").read_bytes()
