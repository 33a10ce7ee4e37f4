import pytest
from fake_records import CHANCE_ERROR, LRS, WDS, corner_error, diagonal_error, grid_records, separable_error
from matplotlib.patches import Circle

from optbench.aggregate import runs_table
from optbench.plots import heatmap_figure, learning_curves_figure, log2_label

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


def test_heatmap_panel_titles_axes_and_marks(heatmap):
    fig, _ = heatmap
    by_title = {ax.get_title(): ax for ax in panel_axes(fig)}
    assert set(by_title) == {"AdamW", "adam_l2", "normalized"}
    assert by_title["AdamW"].get_xlabel() == "weight decay"
    assert by_title["normalized"].get_xlabel() == "normalized weight decay"
    assert by_title["AdamW"].get_ylabel() == "learning rate"
    for ax in by_title.values():
        assert sum(isinstance(p, Circle) for p in ax.patches) == 10
        assert len(ax.texts) == len(LRS) * len(WDS)


def test_heatmap_shows_diverged_cells_in_worst_colour(heatmap):
    fig, _ = heatmap
    ax = next(ax for ax in panel_axes(fig) if ax.get_title() == "adam_l2")
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


def test_learning_curves_written_with_one_line_per_variant(runs, tmp_path):
    path = tmp_path / "curves.png"
    fig = learning_curves_figure(runs, ["adamw", "adam_l2"], [path], labels={"adamw": "AdamW"})
    assert path.read_bytes().startswith(PNG_MAGIC)
    error_ax, loss_ax = fig.axes
    legend = [t.get_text() for t in error_ax.get_legend().get_texts()]
    assert legend[0].startswith("AdamW (lr $2^{-10}$")
    assert len(error_ax.lines) == len(loss_ax.lines) == 2
    # mean over the best cell's two seeds of a curve ending at the cell's mean error
    assert error_ax.lines[0].get_ydata()[-1] == pytest.approx(100 * (separable_error(2.0**-10, 2.0**-3) + 0.001))


def test_learning_curves_reject_unknown_variant(runs, tmp_path):
    with pytest.raises(ValueError, match="sgdw"):
        learning_curves_figure(runs, ["sgdw"], [tmp_path / "x.png"])


@pytest.mark.parametrize(("value", "label"), [(2.0**-10, "$2^{-10}$"), (1.0, "$2^{0}$"), (0.0, "0"), (0.001, "0.001")])
def test_log2_label(value, label):
    assert log2_label(value) == label
