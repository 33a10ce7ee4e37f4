"""Seconds per run of a preset's variant (the quick preset's by default), three ways, side by side on this machine.

    python benchmarks/sweep.py [--preset quick] [--variant adamw_cosine] [--model cnn_bn] [--alone 6] [--one-by-one 12]
                               [--threads 1]

``--preset zoo --variant zoo_torch_adamw`` times an external optimizer (``torch.optim.AdamW``, one param group
per stacked model, :mod:`optbench.train.external`); ``--kwargs '{"fused": true}'`` adds keywords to its own.

Every way goes through the real command line (``python -m optbench train``), so
interpreter start-up, imports, data loading and record writing count:

1. one process per run (``runs_per_job: 1``);
2. one process per shard, its runs one after another (``stacked: false``);
3. one process per shard, its runs stacked into one model (``stacked: true``, the
   presets' default).

Ways 1 and 2 time the first ``--alone`` / ``--one-by-one`` runs of the variant's first
shard, way 3 the whole shard (``runs_per_job`` runs). The estimate for the whole
preset is every run at each way's rate on ``--cores`` cores, training jobs only. ``--model``
trains another model than the preset's in every way (e.g. ``cnn_bn``, to time grouped
BatchNorm).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from optbench.experiment.preset import load_experiment  # noqa: E402


def seconds_per_run(specs: list[dict], out_dir: Path, *, threads: int, stack: bool) -> float:
    """Wall seconds of one ``optbench train`` process over ``specs``, per run."""
    command = [
        sys.executable,
        "-m",
        "optbench",
        "--threads",
        str(threads),
        "train",
        "--quiet",
        "--spec-json",
        json.dumps(specs),
        "--out-dir",
        str(out_dir),
    ]
    if stack:
        command.append("--stack")
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT / "src")})
    return (time.perf_counter() - start) / len(specs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--variant", default="adamw_cosine")
    parser.add_argument("--model", help="model to train instead of the preset's")
    parser.add_argument("--alone", type=int, default=6, help="runs timed one process each")
    parser.add_argument("--one-by-one", type=int, default=12, help="runs timed one after another in one process")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (the presets': 1)")
    parser.add_argument("--cores", type=int, default=2, help="cores for the whole-preset estimate")
    parser.add_argument("--kwargs", type=json.loads, default={}, help="JSON keywords added to an external class's")
    args = parser.parse_args()

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["preset"] = args.preset
    experiment = load_experiment(config)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = {"model": args.model} if args.model else {}
        data_dir = str(tmp / "data")
        shard = [{**spec.to_dict(), "data_dir": data_dir, **model} for spec in experiment.shards(args.variant)[0]]
        for spec in shard if args.kwargs else ():
            if "class" not in spec["optimizer"]:
                parser.error(f"--kwargs: variant {args.variant} is not an external optimizer")
            spec["optimizer"]["kwargs"] = {**spec["optimizer"].get("kwargs", {}), **args.kwargs}
        seconds_per_run(shard[:1], tmp / "warmup", threads=args.threads, stack=False)  # writes the data cache
        rows = [
            (
                "one process per run",
                args.alone,
                sum(
                    seconds_per_run([spec], tmp / "alone", threads=args.threads, stack=False)
                    for spec in shard[: args.alone]
                )
                / args.alone,
            ),
            (
                "one process per shard, one by one",
                args.one_by_one,
                seconds_per_run(shard[: args.one_by_one], tmp / "one_by_one", threads=args.threads, stack=False),
            ),
            (
                "one process per shard, stacked",
                len(shard),
                seconds_per_run(shard, tmp / "stacked", threads=args.threads, stack=True),
            ),
        ]
    total_runs = sum(len(experiment.runs(v)) for v in experiment.variants)
    baseline = rows[0][2]
    print(
        f"{args.preset} preset, variant {args.variant}, model {shard[0]['model']}, "
        f"{args.threads} thread(s) per process, {experiment.settings['epochs']} epochs per run"
        + (f", keywords {json.dumps(args.kwargs)}" if args.kwargs else "")
    )
    print(f"| way | runs timed | seconds per run | speed-up | whole preset on {args.cores} cores |")
    print("|---|---:|---:|---:|---:|")
    for name, runs, seconds in rows:
        minutes = total_runs * seconds / args.cores / 60
        print(f"| {name} | {runs} | {seconds:.3f} | {baseline / seconds:.1f}x | {minutes:.1f} min |")


if __name__ == "__main__":
    main()
