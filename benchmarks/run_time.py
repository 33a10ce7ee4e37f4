"""Seconds per MNIST-1D CNN run of the quick preset's length, and where they go.

    python benchmarks/run_time.py [--runs 5] [--threads 1]

Starts a fresh interpreter per run (as one workflow job per run would), times the
imports there, and reads the rest from each run's record: setup (data from the
cache, model, optimizer), the training loop, evaluation.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import time, json, sys
start = time.perf_counter()
import torch
torch.set_num_threads({threads})
from optbench.spec.run import RunSpec
from optbench.train.loop import train
imported = time.perf_counter()
record = train(RunSpec.from_dict(json.loads(sys.argv[1])), quiet=True)
print(json.dumps({{"import": imported - start, "timing": record["timing"]}}))
"""


def quick_spec(data_dir: str) -> dict:
    """The quick preset's AdamW cosine run at a mid-grid cell."""
    sys.path.insert(0, str(ROOT / "src"))
    from optbench.experiment.preset import load_experiment

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["preset"] = "quick"
    return {**load_experiment(config).run("adamw_cosine", 2.0**-6, 2.0**-12, 0).to_dict(), "data_dir": data_dir}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        spec = json.dumps(quick_spec(data_dir))
        child = [sys.executable, "-c", CHILD.format(threads=args.threads), spec]
        subprocess.run(child, check=True, capture_output=True)  # generates the data cache once
        rows = []
        for _ in range(args.runs):
            start = time.perf_counter()
            out = subprocess.run(child, check=True, capture_output=True, text=True).stdout
            total = time.perf_counter() - start
            rows.append({"total": total, **json.loads(out)})
    med = {key: statistics.median(r[key] for r in rows) for key in ("total", "import")}
    for key in ("setup_seconds", "train_seconds", "eval_seconds"):
        med[key] = statistics.median(r["timing"][key] for r in rows)
    outside = med["total"] - med["train_seconds"]
    print(f"{args.runs} runs, {args.threads} thread(s), medians:")
    print(f"  process total   {med['total']:.2f} s")
    print(f"  imports (torch, optbench) {med['import']:.2f} s")
    print(f"  setup (data, model, optimizer) {med['setup_seconds']:.2f} s")
    print(f"  training loop   {med['train_seconds']:.2f} s")
    print(f"  evaluation      {med['eval_seconds']:.2f} s")
    print(f"  outside the training loop: {outside:.2f} s = {100 * outside / med['total']:.0f}% of the process")


if __name__ == "__main__":
    main()
