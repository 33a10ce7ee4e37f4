"""The smallest model and run length at which Table 2's rows A and B differ without warm-up.

The ``adafactor`` preset's rows A (beta1 0, beta2 0.999) and B (Adam, beta1 0.9), without warm-up, on the
learning rates 2^``--log2-lr`` and seeds ``--seeds``, for decoders of widths ``--widths`` (``lm_d<width>``) and
runs of ``--steps`` steps (10 epochs; the schedule's flat phase is half of each, as in the preset), the rest as
the preset trains: every run trains through the workflow's own command (``python -m optbench train --stack``),
two jobs at a time. The runs of each (width, steps) are
classified as the preset's map classifies (:mod:`optbench.analysis.stability`), and A and B *differ* when every seed of
A has a smaller max stable lr than every seed of B. The preset uses the smallest width, then the fewest steps,
at which they differ.

    python benchmarks/adafactor_regime.py                    # trains what is missing, then writes the table
    python benchmarks/adafactor_regime.py --widths 16 --steps 1000

Records go to ``results/adafactor_regime/runs/``; the table to ``results/reference/adafactor_regime/``
(``regime.csv`` and ``.md``, and the runs' ``runs.csv``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from optbench.analysis.stability import BITS, boundary, map_runs  # noqa: E402
from optbench.atomic import atomic_write_csv, atomic_write_text  # noqa: E402
from optbench.experiment.config import load_checked  # noqa: E402
from optbench.experiment.stability_maps import MapRow  # noqa: E402
from optbench.records.aggregate import load_records  # noqa: E402
from optbench.records.table import runs_table  # noqa: E402
from optbench.report import text as fmt  # noqa: E402
from optbench.report.text import markdown_table  # noqa: E402

ROWS = {"A": "lm_A", "B": "lm_B"}


def experiment():
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    return load_checked({**config, "preset": "adafactor"}, ROOT / "workflow/schemas/config.schema.yaml")


def name(row: str, width: int, steps: int) -> str:
    return f"regime_{row}_d{width}_s{steps}"


def specs(exp, row: str, width: int, steps: int, lrs: list[float], seeds: list[int]) -> list[dict]:
    """The preset's runs of a row without warm-up, for model ``lm_d<width>``, ``steps`` steps (10 epochs), the
    learning rates ``lrs`` and the seeds ``seeds``."""
    per_epoch = steps // exp.settings["epochs"]
    variant = name(row, width, steps)
    return [
        {
            **exp.run(ROWS[row], lr, 0.0, seed).to_dict(),
            "variant": variant,
            "model": f"lm_d{width}",
            "preset": "adafactor_regime",
            "dataset_options": {**exp.settings["dataset_options"], "steps_per_epoch": per_epoch},
            "run_id": f"{variant}_lr{lr:g}_s{seed}",
        }
        for lr in lrs
        for seed in seeds
    ]


def train(batch: list[dict], out: Path) -> None:
    """One training job, as the workflow runs it; the runs whose record exists are skipped."""
    todo = [spec for spec in batch if not (out / f"{spec['run_id']}.json").exists()]
    if todo:
        command = [sys.executable, "-m", "optbench", "--threads", "1", "train", "--spec", "-", "--stack", "--quiet"]
        command += ["--out-dir", str(out)]
        subprocess.run(command, input=json.dumps(todo), text=True, check=True, cwd=ROOT)


def table(runs: pd.DataFrame, exp, configs: list[tuple[int, int]]) -> pd.DataFrame:
    (smap,) = exp.stability_maps
    rows = []
    for width, steps in configs:
        a, b = name("A", width, steps), name("B", width, steps)
        cut = replace(
            smap,
            columns=("no warm-up",),
            rows=(MapRow("A", "", (a,), (None,), False), MapRow("B", "", (b,), (None,), False)),
            longer=(),
        )
        classified = map_runs(runs, cut)
        found = {v: boundary(classified[classified["variant"].eq(v)]) for v in (a, b)}
        best = {v: classified[classified["variant"].eq(v)].groupby("lr")[BITS].mean().min() for v in (a, b)}
        rows.append(
            {
                "width": width,
                "steps": steps,
                **{
                    f"{r}_{key}": found[v][key]
                    for r, v in (("A", a), ("B", b))
                    for key in ("max_stable_lr", "seed_min", "seed_max")
                },
                "A_best_bits": best[a],
                "B_best_bits": best[b],
                "differ": bool(found[a]["seed_max"] < found[b]["seed_min"]),
            }
        )
    return pd.DataFrame(rows)


def markdown(regime: pd.DataFrame) -> str:
    def stable(r, row):
        lr = getattr(r, f"{row}_max_stable_lr")
        low, high = getattr(r, f"{row}_seed_min"), getattr(r, f"{row}_seed_max")
        text = "none" if pd.isna(lr) else fmt.power_of_two(lr)
        seeds = "none" if pd.isna(low) else f"{fmt.power_of_two(low)} to {fmt.power_of_two(high)}"
        return f"{text} (seeds: {seeds})"

    lines = [
        {
            "model": f"lm_d{r.width}",
            "steps": str(r.steps),
            "A: max stable lr": stable(r, "A"),
            "B: max stable lr": stable(r, "B"),
            "A, B best val bits": f"{r.A_best_bits:.2f}, {r.B_best_bits:.2f}",
            "A and B differ": "yes" if r.differ else "no",
        }
        for r in regime.itertuples(index=False)
    ]
    return markdown_table(pd.DataFrame(lines), {"model": None})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--steps", type=int, nargs="+", default=[500, 1000, 2000])
    parser.add_argument("--log2-lr", type=int, nargs=2, default=[-9, -2], help="the lr axis, low and high")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--jobs", type=int, default=2, help="training jobs at a time (one thread each)")
    parser.add_argument("--out", type=Path, default=ROOT / "results/adafactor_regime/runs")
    parser.add_argument("--tables", type=Path, default=ROOT / "results/reference/adafactor_regime")
    args = parser.parse_args()
    exp = experiment()
    configs = [(w, s) for w in args.widths for s in args.steps]
    lrs = [2.0**k for k in range(args.log2_lr[0], args.log2_lr[1] + 1)]
    jobs = [(specs(exp, row, w, s, lrs, args.seeds), args.out / name(row, w, s)) for w, s in configs for row in ROWS]
    with ThreadPoolExecutor(args.jobs) as pool:
        list(
            pool.map(
                lambda job: train(*job),
                sorted(jobs, key=lambda job: -len(job[0]) * job[0][0]["dataset_options"]["steps_per_epoch"]),
            )
        )
    runs = runs_table(
        load_records(sorted(p for w, s in configs for row in ROWS for p in (args.out / name(row, w, s)).glob("*.json")))
    )
    regime = table(runs, exp, configs)
    args.tables.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(args.tables / "runs.csv", runs)
    atomic_write_csv(args.tables / "regime.csv", regime)
    atomic_write_text(args.tables / "regime.md", markdown(regime))
    print(markdown(regime))


if __name__ == "__main__":
    main()
