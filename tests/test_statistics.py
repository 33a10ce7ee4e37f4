import math

import numpy as np
import pandas as pd
import pytest
from fake_records import LRS, WDS, corner_error, diagonal_error, grid_records, separable_error

from optbench.analysis.cells import cell_statistics
from optbench.analysis.heatmap import VARIANT_COLUMNS, best_lambda_slope, noise_floor, row_bests, variant_statistics
from optbench.analysis.improvement import Improvement, improvement, improvement_table
from optbench.records.table import runs_table

CHANCE = 0.9
LOG2_LRS = list(range(-8, -2))  # 6 lr rows, 2^-8 .. 2^-3
LOG2_WDS = list(range(-14, -2))  # 12 weight decays, 2^-14 .. 2^-3
SEEDS = (0, 1, 2, 3, 4)


def diagonal(log2_lr, log2_wd):
    """Adam-L2-like: the best log2 wd is -13 - log2 lr (slope -1), interior for every row."""
    return 0.05 + 0.01 * (log2_wd + log2_lr + 13) ** 2 + 0.001 * (log2_lr + 5.5) ** 2


def separable(log2_lr, log2_wd):
    """AdamW-like: the best log2 wd is -8 in every row (slope 0)."""
    return 0.05 + 0.01 * (log2_wd + 8) ** 2 + 0.001 * (log2_lr + 5.5) ** 2


def surface_runs(
    variant,
    surface,
    seeds=SEEDS,
    log2_lrs=LOG2_LRS,
    log2_wds=LOG2_WDS,
    noise=0.0,
    noise_seed=0,
    diverged_log2_lrs=(),
    scale=1.0,
):
    """A runs table: error = scale * (surface + N(0, noise) drawn per (seed, cell)), capped at chance;
    every run of an lr in ``diverged_log2_lrs`` diverged to chance."""
    rng = np.random.default_rng(noise_seed)
    rows = []
    for seed in seeds:
        for a in log2_lrs:
            for b in log2_wds:
                eps = rng.normal(0.0, noise) if noise else 0.0
                diverged = a in diverged_log2_lrs
                error = CHANCE if diverged else min(scale * (surface(a, b) + eps), CHANCE)
                rows.append(
                    {
                        "variant": variant,
                        "lr": 2.0**a,
                        "weight_decay": 2.0**b,
                        "seed": seed,
                        "status": "diverged" if diverged else "ok",
                        "final_test_error": error,
                    }
                )
    return pd.DataFrame(rows)


def table_runs(variant, errors, statuses=None):
    """A runs table from {(log2 lr, log2 wd): [error of seed 0, seed 1, ...]}."""
    rows = []
    for (a, b), per_seed in errors.items():
        for seed, error in enumerate(per_seed):
            status = (statuses or {}).get((a, b), "ok")
            rows.append(
                {
                    "variant": variant,
                    "lr": 2.0**a,
                    "weight_decay": 2.0**b,
                    "seed": seed,
                    "status": status,
                    "final_test_error": error,
                }
            )
    return pd.DataFrame(rows)


def ci_width(estimate):
    return estimate.ci_high - estimate.ci_low


# --- per-row best and slope ---------------------------------------------------


def test_row_bests_follow_the_diagonal():
    bests = row_bests(surface_runs("l2", diagonal))
    assert list(bests["log2_lr"]) == LOG2_LRS
    assert list(bests["log2_best_weight_decay"]) == [-13 - a for a in LOG2_LRS]
    expected = [0.05 + 0.001 * (a + 5.5) ** 2 for a in LOG2_LRS]
    np.testing.assert_allclose(bests["best_test_error"], expected)
    assert bests["near_best"].all()
    assert not bests["at_edge"].any()


def test_row_best_ties_go_to_the_smallest_weight_decay():
    runs = table_runs("v", {(-5, -9): [0.2, 0.2], (-5, -8): [0.1, 0.1], (-5, -7): [0.1, 0.1]})
    bests = row_bests(runs)
    assert bests["log2_best_weight_decay"].tolist() == [-8]
    assert bests["at_edge"].tolist() == [False]


def test_diagonal_surface_has_slope_minus_one_with_a_ci_excluding_zero():
    est = best_lambda_slope(surface_runs("l2", diagonal, noise=0.001), "l2")
    assert est.slope == pytest.approx(-1.0, abs=0.05)
    assert est.ci_low <= -1.0 <= est.ci_high
    assert est.ci_high < -0.5
    assert est.n_rows == len(LOG2_LRS)
    assert est.n_seeds == len(SEEDS)
    assert est.n_boot == 2000
    assert est.n_boot_valid == 2000
    assert est.reason == ""


def test_separable_surface_has_slope_zero():
    est = best_lambda_slope(surface_runs("adamw", separable, noise=0.001), "adamw")
    assert est.slope == pytest.approx(0.0, abs=0.05)
    assert est.ci_low <= 0.0 <= est.ci_high
    assert ci_width(est) < 0.2


def test_ci_widens_with_seed_noise():
    widths = [
        ci_width(best_lambda_slope(surface_runs("l2", diagonal, noise=noise, noise_seed=1), "l2", n_boot=500))
        for noise in (0.001, 0.01, 0.03)
    ]
    assert widths[0] < widths[1] < widths[2]
    assert widths[0] == pytest.approx(0.0, abs=1e-9)


def test_one_seed_gives_a_point_estimate_and_no_interval():
    est = best_lambda_slope(surface_runs("l2", diagonal, seeds=(7,)), "l2")
    assert est.slope == pytest.approx(-1.0)
    assert math.isnan(est.ci_low) and math.isnan(est.ci_high)
    assert est.n_seeds == 1
    assert est.n_boot == 0
    assert "one seed" in est.reason


def test_rows_diverged_to_chance_are_not_near_best():
    runs = surface_runs("l2", diagonal, log2_lrs=[*LOG2_LRS, -2, -1], diverged_log2_lrs=(-2, -1))
    bests = row_bests(runs).set_index("log2_lr")
    assert not bests.loc[[-2, -1], "near_best"].any()
    assert bests.loc[LOG2_LRS, "near_best"].all()
    est = best_lambda_slope(runs, "l2", n_boot=200)
    assert est.slope == pytest.approx(-1.0)
    assert est.n_rows == len(LOG2_LRS)
    # the same fit with every row admitted is pulled away by the chance rows (best wd 2^-14, the tie rule)
    everything = best_lambda_slope(runs, "l2", abs_margin=1.0, n_boot=200)
    assert everything.n_rows == len(LOG2_LRS) + 2
    assert abs(everything.slope + 1) > 0.1


def test_near_best_tolerance_is_max_of_absolute_and_relative_margins():
    # row bests 0.10, 0.115, 0.13, 0.20; heatmap best E = 0.10
    runs = table_runs("v", {(a, -8): [e] for a, e in zip([-6, -5, -4, -3], [0.10, 0.115, 0.13, 0.20])})
    near = lambda **kw: row_bests(runs, **kw)["near_best"].tolist()  # noqa: E731
    assert near(abs_margin=0.02, rel_margin=0.0) == [True, True, False, False]  # <= 0.12
    assert near(abs_margin=0.0, rel_margin=0.35) == [True, True, True, False]  # <= 0.135
    assert near(abs_margin=0.02, rel_margin=0.35) == [True, True, True, False]  # max of the two


def test_too_few_near_best_rows_give_nan_with_a_reason():
    runs = surface_runs("l2", diagonal, log2_lrs=[-6, -5, -1, 0], diverged_log2_lrs=(-1, 0))
    est = best_lambda_slope(runs, "l2")
    assert math.isnan(est.slope) and math.isnan(est.ci_low) and math.isnan(est.ci_high)
    assert est.n_rows == 2
    assert "only 2 near-best lr rows" in est.reason


def test_rows_at_the_grid_edge_are_counted():
    # wds 2^-9 .. 2^-3: the optimum of row 2^-4 is on the grid's edge; that of row 2^-3 (2^-10) is below
    # the grid, so its best cell is 0.01 worse than its optimum and the row is no longer near-best
    runs = surface_runs("l2", diagonal, log2_wds=list(range(-9, -2)))
    est = best_lambda_slope(runs, "l2", n_boot=100)
    assert (est.n_rows, est.n_rows_at_edge) == (5, 1)
    bests = row_bests(runs).set_index("log2_lr")
    assert bests.loc[[-4, -3], "at_edge"].all() and not bests.loc[[-8, -7, -6, -5], "at_edge"].any()


def test_bootstrap_is_reproducible_with_the_same_seed():
    runs = surface_runs("l2", diagonal, noise=0.02, noise_seed=3)
    a = best_lambda_slope(runs, "l2", n_boot=300, seed=11)
    b = best_lambda_slope(runs, "l2", n_boot=300, seed=11)
    c = best_lambda_slope(runs, "l2", n_boot=300, seed=12)
    assert a == b
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)


def test_a_weight_decay_of_zero_gives_no_slope_and_says_why():
    runs = surface_runs("l2", diagonal, seeds=(0, 1))
    runs.loc[runs["weight_decay"].eq(2.0**-14), "weight_decay"] = 0.0
    est = best_lambda_slope(runs, "l2")
    assert math.isnan(est.slope) and math.isnan(est.ci_low)
    assert "0 has no log2" in est.reason
    assert row_bests(runs)["best_weight_decay"].gt(0).all()  # the rows' bests are still found


def test_duplicate_runs_are_rejected():
    runs = table_runs("v", {(-5, -8): [0.1, 0.2]})
    with pytest.raises(ValueError, match="more than one run"):
        best_lambda_slope(pd.concat([runs, runs.iloc[:1]]), "v")


def test_works_on_a_runs_table_from_run_records():
    runs = runs_table(grid_records("adam_l2", diagonal_error) + grid_records("adamw", separable_error))
    assert best_lambda_slope(runs, "adam_l2", n_boot=100).slope == pytest.approx(-1.0)
    assert best_lambda_slope(runs, "adamw", n_boot=100).slope == pytest.approx(0.0)


# --- noise floor ----------------------------------------------------------------


def test_noise_floor_is_the_median_per_cell_seed_std():
    # cells with seed values (m - d, m, m + d) have ddof=1 std exactly d
    spreads = {(-5, -8): 0.01, (-5, -7): 0.02, (-4, -8): 0.03, (-4, -7): 0.05}
    errors = {cell: [0.2 - d, 0.2, 0.2 + d] for cell, d in spreads.items()}
    errors[(-3, -8)] = errors[(-3, -7)] = [CHANCE] * 3  # every seed diverged: std 0
    statuses = {(-3, -8): "diverged", (-3, -7): "diverged"}
    runs = table_runs("v", errors, statuses)
    stds = cell_statistics(runs).set_index(["lr", "weight_decay"])["std_test_error"]
    assert stds[(2.0**-4, 2.0**-7)] == pytest.approx(0.05)
    assert noise_floor(runs)["v"] == pytest.approx(0.025)  # median of 0.01, 0.02, 0.03, 0.05
    assert noise_floor(runs, include_all_diverged=True)["v"] == pytest.approx(0.015)  # with two zeros


def test_noise_floor_of_a_single_seed_is_nan():
    assert math.isnan(noise_floor(surface_runs("v", separable, seeds=(0,)))["v"])


# --- improvement ------------------------------------------------------------------


def paired_runs(noise=0.002, shift=0):
    """Adam-L2 (separable surface) and AdamW at 0.85 times a surface whose optimum is moved by ``shift``
    in log2 wd, each with its own seed noise."""
    shifted = lambda a, b: separable(a, b - shift)  # noqa: E731
    return pd.concat(
        [
            surface_runs("adam_l2", separable, noise=noise, noise_seed=1),
            surface_runs("adamw", shifted, noise=noise, noise_seed=2, scale=0.85),
        ],
        ignore_index=True,
    )


def test_improvement_of_errors_scaled_by_085_is_015():
    imp = improvement(paired_runs(noise=0.001, shift=3), "adam_l2", "adamw")
    assert imp.relative == pytest.approx(0.15, abs=0.02)
    assert imp.relative_ci_low <= 0.15 <= imp.relative_ci_high
    assert imp.relative_ci_low > 0
    assert imp.difference_pp == pytest.approx(100 * (imp.baseline_error - imp.candidate_error))
    assert imp.difference_pp == pytest.approx(0.75, abs=0.15)  # 15% of a best error near 0.05
    assert imp.difference_pp_ci_low <= imp.difference_pp <= imp.difference_pp_ci_high
    assert math.log2(imp.baseline_weight_decay) == -8
    assert math.log2(imp.candidate_weight_decay) == -5
    assert math.log2(imp.baseline_lr) in (-6, -5) and math.log2(imp.candidate_lr) in (-6, -5)  # equal on the surface
    assert imp.n_seeds == len(SEEDS) and imp.n_boot_valid == imp.n_boot == 2000
    assert imp.reason == ""


def test_improvement_resamples_both_variants_with_the_same_seed_draw():
    # every AdamW run is exactly 0.85 times the Adam-L2 run of the same cell and seed, with large seed noise:
    # a shared draw gives 0.15 in every resample, independent draws would not
    base = surface_runs("adam_l2", separable, noise=0.02, noise_seed=5)
    runs = pd.concat([base, base.assign(variant="adamw", final_test_error=0.85 * base["final_test_error"])])
    imp = improvement(runs, "adam_l2", "adamw", n_boot=500)
    assert imp.relative == pytest.approx(0.15)
    assert imp.relative_ci_low == pytest.approx(0.15) and imp.relative_ci_high == pytest.approx(0.15)


def test_improvement_reselects_the_best_cell_in_each_resample():
    # two cells with the same true error and seed noise: the best of the two is biased low, and the
    # interval of a re-selected best must reach above the point estimate's cell's own error
    rng = np.random.default_rng(0)
    a = rng.normal(0.1, 0.02, size=5)
    b = rng.normal(0.1, 0.02, size=5)
    baseline = table_runs("A", {(-5, -8): list(a), (-5, -7): list(b)})
    candidate = table_runs("B", {(-5, -8): [0.1] * 5})
    imp = improvement(pd.concat([baseline, candidate]), "A", "B", n_boot=1000)
    assert imp.baseline_error == pytest.approx(min(a.mean(), b.mean()))
    # relative = 1 - 0.1 / e_A; with re-selection each resample takes the smaller of two resampled means
    boot_min = []
    weights = np.random.default_rng(0).integers(0, 5, size=(1000, 5))
    for draw in weights:
        boot_min.append(min(a[draw].mean(), b[draw].mean()))
    expected = np.quantile(1 - 0.1 / np.array(boot_min), [0.025, 0.975])
    assert (imp.relative_ci_low, imp.relative_ci_high) == pytest.approx(tuple(expected))


def test_improvement_with_one_seed_has_no_interval():
    runs = pd.concat([surface_runs("a", separable, seeds=(0,)), surface_runs("b", separable, seeds=(0,), scale=0.85)])
    imp = improvement(runs, "a", "b")
    assert imp.relative == pytest.approx(0.15)
    assert math.isnan(imp.relative_ci_low) and math.isnan(imp.difference_pp_ci_high)
    assert "one seed" in imp.reason


def test_improvement_table_has_one_row_per_pair():
    runs = paired_runs()
    table = improvement_table(runs, [("adam_l2", "adamw"), ("adamw", "adam_l2")], n_boot=100)
    assert list(table.columns) == list(Improvement.__dataclass_fields__)
    assert table["candidate"].tolist() == ["adamw", "adam_l2"]
    assert table.loc[0, "relative"] == pytest.approx(0.15, abs=0.02)
    assert table.loc[1, "difference_pp"] == pytest.approx(-table.loc[0, "difference_pp"])


# --- one row per variant ------------------------------------------------------------


def test_variant_statistics_has_one_row_per_variant():
    runs = pd.concat(
        [
            surface_runs("adam_l2", diagonal, noise=0.001, noise_seed=1),
            surface_runs("adamw", separable, noise=0.001, noise_seed=2),
            surface_runs("single", separable, seeds=(0,)),
        ],
        ignore_index=True,
    )
    table = variant_statistics(runs, n_boot=200).set_index("variant")
    assert list(table.reset_index().columns) == VARIANT_COLUMNS
    assert table.index.tolist() == ["adam_l2", "adamw", "single"]
    assert table.loc["adam_l2", "slope"] == pytest.approx(-1.0, abs=0.05)
    assert table.loc["adamw", "slope"] == pytest.approx(0.0, abs=0.05)
    assert table.loc["adam_l2", "slope_ci_high"] < 0
    assert table.loc["adamw", "best_weight_decay"] == 2.0**-8
    assert table.loc["adamw", "best_lr"] in (2.0**-6, 2.0**-5)  # equal on the surface, noise decides
    assert table.loc["adamw", "best_test_error"] == pytest.approx(0.05025, abs=0.001)
    assert table.loc["adam_l2", "slope_rows"] == len(LOG2_LRS)
    assert table.loc["adam_l2", "n_seeds"] == len(SEEDS)
    assert table.loc["adamw", "noise_floor"] == pytest.approx(0.001, rel=0.25)
    assert math.isnan(table.loc["single", "noise_floor"])
    assert math.isnan(table.loc["single", "slope_ci_low"])
    assert "one seed" in table.loc["single", "slope_reason"]


def test_summary_of_run_records_has_known_answers():
    diverge_above = 2.0**-10  # the corner variant's two largest learning rates diverge
    runs = runs_table(
        grid_records("adamw", separable_error)
        + grid_records("adam_l2", diagonal_error)
        + grid_records("corner", corner_error, seeds=(0,), diverge_above_lr=diverge_above)
    )
    summary = variant_statistics(runs, n_boot=200).set_index("variant")
    adamw, adam_l2, corner = (summary.loc[v] for v in ("adamw", "adam_l2", "corner"))
    assert (adamw["n_runs"], corner["n_runs"]) == (2 * len(LRS) * len(WDS), len(LRS) * len(WDS))
    assert (adamw["n_diverged"], corner["n_diverged"]) == (0, sum(lr > diverge_above for lr in LRS) * len(WDS))
    assert (adamw["n_seeds"], corner["n_seeds"]) == (2, 1)
    # best cells: the separable optimum (lr 2^-10, wd 2^-3, + 0.001 mean seed offset), inside the grid
    assert (adamw["best_lr"], adamw["best_weight_decay"]) == (2.0**-10, 2.0**-3)
    assert adamw["best_test_error"] == pytest.approx(separable_error(2.0**-10, 2.0**-3) + 0.001)
    assert not adamw["best_on_border"]
    assert corner["best_on_border"] and (corner["best_lr"], corner["best_weight_decay"]) == (min(LRS), max(WDS))
    # slopes: the row bests of the diagonal satisfy lr * wd = 2^-13; seed 1 is seed 0 + 0.002 everywhere,
    # so every resample has the same row bests and the interval is a point
    assert adam_l2["slope"] == pytest.approx(-1.0)
    assert (adam_l2["slope_ci_low"], adam_l2["slope_ci_high"]) == pytest.approx((-1.0, -1.0))
    assert (adam_l2["slope_rows"], adam_l2["slope_rows_at_edge"]) == (len(LRS), 1)  # lr 2^-12: best wd 2^-1
    assert adamw["slope"] == pytest.approx(0.0) and adamw["slope_ci_high"] == pytest.approx(0.0)
    assert adamw["slope_reason"] == ""
    # corner: row bests 0.11, 0.12, 0.15 below the diverged rows; only two within 0.11 + 0.0275
    assert math.isnan(corner["slope"]) and corner["slope_reason"].startswith("only 2 near-best lr rows")
    # noise floor: every cell's two seeds differ by 0.002, a standard deviation of 0.002 / sqrt(2)
    assert adamw["noise_floor"] == pytest.approx(0.002 / math.sqrt(2))
    assert math.isnan(corner["noise_floor"])
