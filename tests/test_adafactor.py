"""Adafactor's Table 2 as a stability map: the rows against the paper's algorithms, the presets, the language-model
records, the classification and its statistics on synthetic runs, and the smoke form end to end."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from workflow_copy import copy_workflow, snakemake

from optbench.analysis.spikes import onsets, spike_steps, spike_table
from optbench.analysis.stability import boundary, map_runs, outcome, row_table, verdict
from optbench.experiment.layout import outputs
from optbench.experiment.preset import load_experiment
from optbench.experiment.stability_maps import load_stability_maps
from optbench.optim import make_optimizer
from optbench.records.aggregate import aggregate
from optbench.records.record import read_record, validate_record
from optbench.report.outputs import write_outputs
from optbench.spec.run import RunSpec
from optbench.train.loop import train, train_many

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]


def config(preset):
    c = yaml.safe_load((ROOT / "config.yaml").read_text())
    c["preset"] = preset
    return c


# --- the rows against the paper's own definitions ------------------------------------------------------------

# Table 2's columns per row: factored second moment (None, "both", "rows" or "columns"), beta1, beta2 (a constant,
# bias-corrected as in Adam) or c in beta2_hat_t = 1 - t^-c, the clipping threshold d, and the step: absolute
# (alpha_t) or relative (rho_t, Adafactor's Algorithm 4).
TABLE_2 = {
    "A": (None, 0.0, 0.999, None, None, "absolute"),
    "B": (None, 0.9, 0.999, None, None, "absolute"),
    "C": ("both", 0.0, 0.999, None, None, "absolute"),
    "D": ("rows", 0.0, 0.999, None, None, "absolute"),
    "E": ("columns", 0.0, 0.999, None, None, "absolute"),
    "F": (None, 0.0, 0.99, None, None, "absolute"),
    "G": (None, 0.0, 0.9, None, None, "absolute"),
    "H": (None, 0.0, 0.999, None, 1.0, "absolute"),
    "I": (None, 0.0, 0.999, None, 2.0, "absolute"),
    "J": ("both", 0.0, 0.999, None, 1.0, "absolute"),
    "K": (None, 0.0, None, 0.5, None, "absolute"),
    "L": (None, 0.0, None, 0.8, None, "absolute"),
    "M": (None, 0.0, None, 1.0, None, "absolute"),
    "N": (None, 0.0, None, 0.8, 1.0, "absolute"),
    "O": ("both", 0.0, None, 0.8, 1.0, "relative"),
    "P": ("both", 0.9, None, 0.8, 1.0, "relative"),
}
EPS, EPS1, EPS2 = 1e-8, 1e-30, 1e-3  # Adam's epsilon (rows A-N); Adafactor's epsilon_1, epsilon_2 (Algorithm 6)


def paper_step(row: str, x: torch.Tensor, g: torch.Tensor, state: dict, t: int, lr: float) -> torch.Tensor:
    """One step of Table 2's row on a matrix or a vector, written from the paper: Algorithm 1 (Adam) and 2 (factored,
    rows A-N, with epsilon added to sqrt(V_hat)), Section 6 (clipping), Section 7.2 (beta2_hat_t = 1 - t^-c, no bias
    correction) and Algorithms 4 and 5 (Adafactor: epsilon_1 inside, relative step rho_t = min(lr, 1/sqrt(t)) times
    max(epsilon_2, RMS(X))). Row P's first moment averages the clipped, scaled update (tensor2tensor's Adafactor,
    the authors' code)."""
    factored, beta1, beta2, c, d, step = TABLE_2[row]
    adafactor = step == "relative"
    decay = 1 - t**-c if c is not None else beta2
    square = g**2 + (EPS1 if adafactor else 0.0)
    if factored is not None and x.ndim == 2:
        state["r"] = decay * state.get("r", 0) + (1 - decay) * square.mean(dim=1)
        state["c"] = decay * state.get("c", 0) + (1 - decay) * square.mean(dim=0)
        v = {
            "both": torch.outer(state["r"], state["c"]) / state["r"].mean(),
            "rows": state["r"].unsqueeze(1).expand_as(x),
            "columns": state["c"].unsqueeze(0).expand_as(x),
        }[factored]
    else:
        state["v"] = decay * state.get("v", 0) + (1 - decay) * square
        v = state["v"]
    if c is None:
        v = v / (1 - beta2**t)
    if adafactor:
        u = g / v.sqrt()
    elif beta1 > 0:
        state["m"] = beta1 * state.get("m", 0) + (1 - beta1) * g
        u = state["m"] / (1 - beta1**t) / (v.sqrt() + EPS)
    else:
        u = g / (v.sqrt() + EPS)
    if d is not None:
        u = u / max(1.0, (u.pow(2).mean().sqrt() / d).item())
    if adafactor:
        update = max(EPS2, x.pow(2).mean().sqrt().item()) * min(lr, 1 / math.sqrt(t)) * u
        if beta1 > 0:
            state["m"] = beta1 * state.get("m", 0) + (1 - beta1) * update
            update = state["m"]
        return x - update
    return x - lr * u


@pytest.mark.parametrize("row", TABLE_2)
def test_each_rows_optimizer_is_the_papers(row):
    """The optimizer block of the config's variant lm_<row> steps a 6 x 4 matrix and a vector as the paper's
    algorithm for that row does, for 30 steps, to float64 rounding."""
    c = config("adafactor")
    block = dict(c["variants"][f"lm_{row}"]["optimizer"])
    assert c["variants"][f"lm_{row}_warmup"]["optimizer"] == block
    base = block.pop("base")
    lr = 0.05 if TABLE_2[row][5] == "relative" else 0.01
    generator = torch.Generator().manual_seed(ord(row))
    ours = [
        torch.randn(6, 4, dtype=torch.float64, generator=generator),
        torch.randn(5, dtype=torch.float64, generator=generator),
    ]
    paper = [p.clone() for p in ours]
    params = [p.clone().requires_grad_() for p in ours]
    opt = make_optimizer(base, [{"params": params, "lr": lr}], lr=lr, weight_decay=0.0, switches=block)
    states = [{}, {}]
    for t in range(1, 31):
        grads = [torch.randn_like(p, generator=generator) * (1 + 2 * (t % 7 == 0)) for p in params]  # a few large
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
        paper = [paper_step(row, x, g, s, t, lr) for x, g, s in zip(paper, grads, states)]
    for mine, theirs in zip(params, paper):
        torch.testing.assert_close(mine.detach(), theirs, rtol=1e-12, atol=1e-12)


def test_the_map_has_every_row_of_table_2_with_the_papers_numbers():
    (smap,) = load_experiment(config("adafactor")).stability_maps
    assert [row.label for row in smap.rows] == list(TABLE_2) and smap.columns == ("warm-up", "no warm-up")
    paper = {row.label: row.paper for row in smap.rows}
    assert paper["A"] == (25.6, 0.1) and paper["E"] == (0.3, 0.5) and paper["G"] == (18.4, 15.6)
    assert paper["L"] == (25.6, 0.1) and paper["N"] == (25.9, 22.4) and paper["P"] == (24.9, 25.3)
    assert [row.label for row in smap.rows if row.relative] == ["O", "P"]
    assert smap.reference == "lm_B_warmup" and smap.worse == (("G", "B"),) and len(smap.longer) == 8


# --- the presets ---------------------------------------------------------------------------------------------


def test_the_adafactor_preset_is_the_map_and_its_longer_runs():
    exp = load_experiment(config("adafactor"))
    assert len(exp.variants) == 40
    specs = [spec for v in exp.variants for spec in exp.runs(v)]
    assert len(specs) == 40 * 9 * 2 and {s.seed for s in specs} == {0, 1}
    assert {(s.model, s.dataset, s.epochs, s.batch_size, s.trace_every) for s in specs} == {
        ("lm_d8", "text_stdlib", 10, 32, 5)
    }
    steps = {s.variant: s.dataset_options["steps_per_epoch"] for s in specs}
    assert all(steps[v] == (200 if v.endswith("_long") else 100) for v in steps)
    warmup = {s.variant: s.schedule.warmup_epochs for s in specs}
    assert all((warmup[v] == 5) == ("_warmup" in v) for v in warmup)
    lrs = sorted({s.lr for s in specs if s.variant == "lm_A"})
    assert lrs == [2.0**k for k in range(-8, 1)]
    assert sorted({s.lr for s in specs if s.variant == "lm_O"}) == pytest.approx([10 * lr for lr in lrs])
    assert {len(shard) for v in exp.variants for shard in exp.shards(v)} == {18}


@pytest.mark.parametrize("preset", ["quick", "reproduce", "smoke", "paper"])
def test_other_presets_run_no_language_model_variant(preset):
    exp = load_experiment(config(preset))
    assert not any(name.startswith("lm_") for name in exp.variants)
    assert exp.stability_maps == () and outputs(exp, "r")["stability_maps"] == {}


def test_the_smoke_form_cuts_the_map_to_its_rows():
    exp = load_experiment(config("adafactor_smoke"))
    (smap,) = exp.stability_maps
    assert [row.label for row in smap.rows] == ["A", "B", "G", "H", "O", "Lion"] and smap.longer == ()
    assert smap.row("Lion").variants == (None, "lm_zoo_lion")  # the zoo's rows: no warm-up only
    assert smap.update_rms == ("lm_A_warmup", "lm_G_warmup")
    tables = [p for p in outputs(exp, "r")["stability_maps"]["adafactor"] if p.endswith(".md")]
    assert tables == [f"r/tables/adafactor{s}.md" for s in ("", "_cells", "_claims", "_length", "_spikes")]


def test_the_zoo_preset_adds_the_zoo_rows_without_warm_up_beside_rows_a_b_and_o():
    exp = load_experiment(config("adafactor_zoo"))
    (smap,) = exp.stability_maps
    zoo = ["AdamW (torch)", "NAdam", "RAdam", "Adafactor (torch)", "Lion", "Schedule-Free", "CAME"]
    assert [row.label for row in smap.rows] == ["A", "B", "O", *zoo] and smap.reference == "lm_B_warmup"
    assert all(smap.row(label).variants[0] is None and smap.row(label).paper == (None, None) for label in zoo)
    assert [row.label for row in smap.rows if row.relative] == ["O", "Adafactor (torch)"]
    specs = {s.variant: s for v in exp.variants for s in exp.runs(v)}
    assert specs["lm_zoo_schedulefree"].schedule.kind == "fixed" and specs["lm_zoo_lion"].schedule.warmup_epochs == 0
    adafactor = load_experiment(config("adafactor"))  # the same runs as the adafactor preset's rows A, B and O
    assert exp.runs("lm_B")[0].to_dict() == {**adafactor.runs("lm_B")[0].to_dict(), "preset": "adafactor_zoo"}


@pytest.mark.parametrize(
    "change,message",
    [
        (
            lambda m: m["rows"][0].update(variants=["lm_A", "lm_X"]),
            r"stability_maps.adafactor.rows\[0\].variants: unknown",
        ),
        (lambda m: m["rows"][1].update(variants=["lm_B"]), r"rows\[1\].variants: needs one per column \(2\), got 1"),
        (lambda m: m["rows"][2].update(paper=[25.4]), r"rows\[2\].paper: needs one per column \(2\), got 1"),
        (lambda m: m["rows"][3].update(label="A"), r"stability_maps.adafactor.rows: labels must be distinct"),
        (lambda m: m.update(worse=[["G", "Z"]]), r"stability_maps.adafactor.worse\[0\]: unknown row 'Z'"),
        (lambda m: m["longer"].append(["lm_A", "nope"]), r"stability_maps.adafactor.longer\[8\]: unknown variant"),
        (lambda m: m.update(reference="lm_Q"), r"reference or update_rms: unknown variant 'lm_Q'"),
    ],
)
def test_bad_map_entries_are_named(change, message):
    c = config("adafactor")
    change(c["stability_maps"]["adafactor"])
    with pytest.raises(ValueError, match=message):
        load_experiment(c)


def test_a_map_of_variants_a_preset_does_not_run_is_dropped():
    c = config("adafactor")
    assert load_stability_maps(c["stability_maps"], c["variants"], ["adamw_cosine"]) == ()


# --- classification and statistics, on synthetic runs with known answers -------------------------------------


def test_spikes_are_steps_above_factor_times_the_lowest_loss_before():
    # 6.1 > 1.5 x 4; 4.6 > 1.5 x 3; a non-finite loss counts; 4.4 < 4.5 does not
    assert spike_steps([5.0, 4.0, 6.1, 3.0, 4.6, None, 4.4, 2.0], 1.5) == [3, 5, 6]
    assert onsets([3, 5, 6, 9]) == [3, 5, 9]
    assert spike_steps([], 1.5) == []


STABLE, SPIKE, NAN = [5.0, 4.0, 3.0, 2.5], [5.0, 4.0, 7.0, 3.0], [5.0, None, None, None]


def synthetic(cells):
    """Runs of variants x lrs x seeds: each cell (variant, lr) -> per seed (losses, final bits, status)."""
    rows = []
    for (variant, lr), seeds in cells.items():
        for seed, (losses, bits, status) in enumerate(seeds):
            rows.append(
                {
                    "variant": variant,
                    "lr": lr,
                    "seed": seed,
                    "status": status,
                    "final_val_bits_per_token": bits,
                    "trace.train_loss": json.dumps(losses),
                    "trace.update_rms.step": json.dumps([1, 2, 3, 4]),
                    "trace.update_rms.max": json.dumps([1.0, 9.0 if losses is SPIKE else 1.0, 1.0, 1.0]),
                }
            )
    return pd.DataFrame(rows)


def tiny_map(**changes):
    c = config("adafactor")
    entry = {**c["stability_maps"]["adafactor"], "worse": [], "longer": [["lm_A", "lm_A_long"]]}
    entry["rows"] = [r for r in entry["rows"] if r["label"] in ("A", "B")]
    entry.update(changes)
    (smap,) = load_stability_maps(
        {"adafactor": entry}, c["variants"], ["lm_A", "lm_A_warmup", "lm_B", "lm_B_warmup", "lm_A_long"]
    )
    return smap


def test_classes_max_stable_lr_and_verdicts_on_known_runs():
    ok = (STABLE, 3.0, "ok")
    cells = {
        # B with warm-up: best at lr 2 (3.0), stable everywhere but at 8 (one seed spikes)
        **{("lm_B_warmup", lr): [ok, ok] for lr in (1, 2, 4)},
        ("lm_B_warmup", 8): [ok, (SPIKE, 2.9, "ok")],
        # A without warm-up: stable at 1, spiking at 2, diverged at 4 (4.5 > the bound, 3.27; a NaN loss) and 8
        ("lm_A", 1): [ok, ok],
        ("lm_A", 2): [(SPIKE, 3.0, "ok"), (SPIKE, 3.0, "ok")],
        ("lm_A", 4): [(STABLE, 4.5, "ok"), (NAN, 8.0, "ok")],
        ("lm_A", 8): [(STABLE, 8.0, "diverged"), (STABLE, 8.0, "diverged")],
        # A with warm-up: seed 0 stable up to 4, seed 1 up to 8; every seed stable at 1, 2 and 4
        **{("lm_A_warmup", lr): [ok, ok] for lr in (1, 2, 4)},
        ("lm_A_warmup", 8): [(SPIKE, 3.0, "ok"), ok],
        # B without warm-up: stable nowhere; the best cell's mean, 2.0, sets the bound
        **{("lm_B", lr): [(SPIKE, 2.0, "ok"), (SPIKE, 2.0, "ok")] for lr in (1, 2, 4, 8)},
        # A for twice the steps: every seed stable only at 1
        ("lm_A_long", 1): [ok, ok],
        ("lm_A_long", 2): [ok, (SPIKE, 3.0, "ok")],
    }
    smap = tiny_map()
    runs = map_runs(synthetic(cells), smap)
    assert runs.attrs["bound"] == pytest.approx(2.0 + 0.5 * (4.543 - 2.0))  # best 2.0, half-way to unigram
    classes = runs.set_index(["variant", "lr", "seed"])["class"]
    assert classes["lm_A", 1, 0] == "stable" and classes["lm_A", 2, 1] == "spiking"
    assert classes["lm_A", 4, 0] == "diverged" and classes["lm_A", 4, 1] == "diverged"  # 4.5 > 3, and a NaN loss
    assert classes["lm_A", 8, 0] == "diverged" and classes["lm_B_warmup", 8, 1] == "spiking"
    assert boundary(runs[runs["variant"].eq("lm_A")]) == {
        "max_stable_lr": 1.0,
        "seed_min": 1.0,
        "seed_max": 1.0,
        "axis_low": 1.0,
        "axis_high": 8.0,
    }
    warm = boundary(runs[runs["variant"].eq("lm_A_warmup")])
    assert (warm["max_stable_lr"], warm["seed_min"], warm["seed_max"]) == (4.0, 4.0, 8.0)
    assert np.isnan(boundary(runs[runs["variant"].eq("lm_B")])["max_stable_lr"])
    table = row_table(runs, smap, reference=2.0).set_index(["row", "column"])
    assert (
        table.loc[("A", "no warm-up"), "outcome"] == "fails"
        and table.loc[("A", "no warm-up"), "verdict"] == "reproduced"
    )
    assert table.loc[("A", "warm-up"), "verdict"] == "reproduced"  # trains; paper 25.6
    assert table.loc[("B", "no warm-up"), "verdict"] == "not reproduced"  # fails; paper 23.1
    assert (
        table.loc[("B", "warm-up"), "n_stable"] == 2 and table.loc[("B", "warm-up"), "final_val_bits_per_token"] == 3.0
    )


def test_outcomes_and_verdicts():
    assert outcome(pd.Series(["stable", "stable"])) == "trains"
    assert outcome(pd.Series(["spiking", "diverged"])) == "fails"
    assert outcome(pd.Series(["stable", "spiking"])) == "mixed" and outcome(pd.Series([], dtype=str)) == "absent"
    assert verdict(0.1, "fails", 10) == verdict(23.1, "trains", 10) == "reproduced"
    assert verdict(0.1, "trains", 10) == "not reproduced" and verdict(15.6, "mixed", 10) == "inconclusive"
    assert verdict(None, "trains", 10) == "no paper number"


def test_spike_onsets_are_compared_with_stable_windows_at_the_same_lr():
    ok = (STABLE, 3.0, "ok")
    cells = {("lm_A", 2): [(SPIKE, 3.0, "ok"), (SPIKE, 3.0, "ok")], ("lm_B", 2): [ok, ok], ("lm_B_warmup", 2): [ok, ok]}
    runs = map_runs(synthetic(cells), tiny_map())
    table, windows = spike_table(runs, tiny_map().variants, window=2)
    lr2 = table[table["lr"].eq(2.0)].iloc[0]
    assert (lr2["spiking_runs"], lr2["onsets"], lr2["onset_median"]) == (2, 2, 9.0)  # the onset at step 3
    assert lr2["stable_p95"] == 1.0 and lr2["fraction_above"] == 1.0
    assert set(windows["kind"]) == {"onset", "stable"} and table["lr"].iloc[-1] == "all"


# --- language-model records ----------------------------------------------------------------------------------


def lm_spec(data_dir, **overrides):
    d = {
        "variant": "lm_C",
        "optimizer": {"base": "AdamW", "beta1": 0.0, "factored": True},
        "lr": 2e-2,
        "weight_decay": 0.0,
        "dataset": "text_stdlib",
        "dataset_options": {"steps_per_epoch": 3, "eval_windows": 8},
        "model": "lm_d16",
        "schedule": {"kind": "inverse_sqrt", "decay_start": 0.5, "warmup_epochs": 0.5},
        "epochs": 2,
        "batch_size": 4,
        "device": "cpu",
        "data_dir": data_dir,
        "trace_every": 2,
        "preset": "test",
    }
    return RunSpec.from_dict({**d, **overrides})


def test_a_language_model_record_carries_validation_bits_and_its_trace(data_dir):
    record = train(lm_spec(data_dir), quiet=True)
    validate_record(record)
    bits = [h["val_bits_per_token"] for h in record["history"]]
    assert len(bits) == 2 and record["final_val_bits_per_token"] == bits[-1] < 8.0  # below a uniform guess
    trace = record["trace"]
    assert trace["every"] == 2 and len(trace["train_loss"]) == 6
    assert trace["update_rms"]["step"] == [1, 3, 5]
    assert all(0 < m <= x for m, x in zip(trace["update_rms"]["mean"], trace["update_rms"]["max"]))
    assert all(0 <= f <= 1 for f in trace["update_rms"]["clipped_fraction"])
    assert all(float(f"{v:.4g}") == v for v in trace["train_loss"])  # 4 significant digits
    assert record["memory"]["optimizer_state_bytes"] == record["memory"]["optimizer_state_bytes_predicted"]


def test_the_trace_changes_no_result_and_costs_nothing_when_off(data_dir):
    traced, plain = train(lm_spec(data_dir), quiet=True), train(lm_spec(data_dir, trace_every=0), quiet=True)
    assert "trace" not in plain
    assert traced["history"] == plain["history"]  # bit for bit
    per_epoch = torch.tensor(traced["trace"]["train_loss"]).view(2, 3).mean(dim=1)
    assert per_epoch.tolist() == pytest.approx([h["train_loss"] for h in traced["history"]], rel=1e-3)


def test_a_diverged_language_model_ends_at_a_uniform_guess(data_dir):
    record = train(lm_spec(data_dir, lr=1e8, optimizer={"base": "SGD"}), quiet=True)
    validate_record(record)
    assert record["status"] == "diverged" and record["final_val_bits_per_token"] == 8.0
    assert len(record["trace"]["train_loss"]) == 3 * len(record["history"])


# --- the smoke form end to end -------------------------------------------------------------------------------


def test_smoke_form_in_one_process_makes_the_tables_and_figures(tmp_path, data_dir):
    c = config("adafactor_smoke")
    c["presets"]["adafactor_smoke"]["data_dir"] = data_dir
    exp = load_experiment(c)
    specs = [spec for v in exp.variants for spec in exp.runs(v)]
    train_many(specs, [tmp_path / "runs" / f"{s.run_id}.json" for s in specs], stack=True, quiet=True)
    aggregate(sorted((tmp_path / "runs").glob("*.json")), tmp_path / "runs.csv")
    write_outputs(tmp_path / "runs.csv", exp, tmp_path / "results")
    tables = tmp_path / "results" / "tables"
    rows = pd.read_csv(tables / "adafactor.csv")
    assert len(rows) == 11 and set(rows["column"]) == {"warm-up", "no warm-up"}  # Lion: no warm-up only
    assert set(rows["verdict"]) <= {"reproduced", "not reproduced", "inconclusive", "no paper number"}
    assert rows.loc[rows["row"].eq("Lion"), ["column", "verdict"]].values.tolist() == [
        ["no warm-up", "no paper number"]
    ]
    cells = pd.read_csv(tables / "adafactor_cells.csv")
    assert len(cells) == 11 * 2 and (cells[["n_stable", "n_spiking", "n_diverged"]].sum(axis=1) == 2).all()
    claims = (tables / "adafactor_claims.md").read_text()
    assert "A (beta1 0, beta2 0.999), no warm-up: fails (BLEU 0.1)" in claims and "(Figure 1)" in claims
    assert "G converges worse than B, warm-up" in claims
    for name in ("adafactor_map", "adafactor_update_rms", "learning_curves"):
        assert (tmp_path / "results" / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    memory = pd.read_csv(tables / "memory.csv")
    assert memory["byte-level decoder LM (2 x 8) measured == predicted"].dropna().all()


@pytest.mark.slow
def test_smoke_form_through_snakemake_and_figures_only(tmp_path):
    copy_workflow(tmp_path)
    run = snakemake(tmp_path, "--cores", "2", "--config", "preset=adafactor_smoke")
    assert run.returncode == 0, run.stderr[-5000:]
    results = tmp_path / "results" / "adafactor_smoke"
    records = sorted((results / "runs").glob("*/shard*/*.json"))
    assert len(records) == 11 * 2 * 2 and all("trace" in read_record(path) for path in records)  # variants x lr x seeds
    figure = results / "figures" / "adafactor_map.png"
    before = figure.stat().st_mtime
    config = ["--config", "preset=adafactor_smoke", "results=results/adafactor_smoke"]  # the run, not a reference
    again = snakemake(tmp_path, "figures", "--cores", "1", *config)
    assert again.returncode == 0, again.stderr[-5000:]
    assert "rule train" not in again.stdout + again.stderr and figure.stat().st_mtime > before


def test_adafactor_preset_dag_has_one_training_job_per_variant():
    result = snakemake(ROOT, "--dry-run", "--quiet", "rules", "--config", "preset=adafactor", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "train 40" in " ".join(result.stdout.split())
