"""What recording RMS(U) costs: the adafactor preset's training steps with the trainer's trace against
the same steps without it, side by side in one process.

    python benchmarks/update_rms.py [--every 10] [--rounds 30] [--threads 1]

The trace (``optbench.train.state.Trace``) keeps every step's training loss and asks the optimizer for its
RMS(U) report every ``--every`` steps (``step(report_update_rms=True)``). For each of the preset's
optimizers named below, one model and optimizer, built as the trainer builds a run
(``optbench.train.build``: seed 0, no weight decay, a fixed schedule, on the CPU in float32), train
``--rounds`` rounds of two blocks of ``--every`` steps (``optbench.train.epoch.train_epoch``, as in a run, a
block an "epoch"): one without the trace and one with it (one report per block, as in a run), in an order
that alternates from round to round. Printed, as medians over the rounds:

- the milliseconds per step without the trace;
- the trace's own time: what the block's reporting optimizer step took more than the median optimizer
  step of the block without it (steps timed by step hooks), plus the time in ``Trace.add``, as a fraction
  of the block without it. This is the overhead, measured where it happens: a machine whose speed drifts
  between blocks moves it little;
- the end-to-end ratio of the two blocks' times, which on a shared machine carries that drift too.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml

from optbench.experiment.preset import load_experiment
from optbench.spec.run import RunSpec
from optbench.spec.schedule import ScheduleSpec
from optbench.train.build import Runs, build_runs, prepare
from optbench.train.epoch import train_epoch
from optbench.train.loop import flushed_denormals
from optbench.train.state import Trace

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = ("lm_B", "lm_H", "lm_O")  # no clipping (U only for the report), clipping, Adafactor


def preset_spec(variant: str, data_dir: str) -> RunSpec:
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["preset"] = "adafactor"
    experiment = load_experiment(config)
    lr, weight_decay = (axis[0] for axis in experiment.grid(variant))
    return RunSpec.from_dict({**experiment.run(variant, lr, weight_decay, 0).to_dict(), "data_dir": data_dir})


class TimedTrace(Trace):
    """The trainer's trace, timing its own bookkeeping."""

    def __init__(self, every: int):
        super().__init__(every)
        self.seconds = 0.0

    def add(self, losses: torch.Tensor, opt) -> None:
        start = time.perf_counter()
        super().add(losses, opt)
        self.seconds += time.perf_counter() - start


def one_model(spec: RunSpec, every: int, rounds: int) -> Runs:
    """The spec's model and optimizer as the trainer builds them for one run, with seed 0, no weight decay,
    a fixed schedule of ``2 * rounds + 1`` epochs of ``every`` steps, on the CPU in float32."""
    spec = dataclasses.replace(
        spec,
        seed=0,
        weight_decay=0.0,
        normalized_weight_decay=False,
        schedule=ScheduleSpec(),
        epochs=2 * rounds + 1,
        dataset_options={**spec.dataset_options, "steps_per_epoch": every},
        device="cpu",
        dtype="float32",
        bf16=False,
    )
    return build_runs([spec], False, *prepare(spec))


def time_variant(spec: RunSpec, every: int, rounds: int) -> dict[str, float]:
    """Median ms per step without the trace, the trace's own time as a fraction of a step, and the median
    ratio of the blocks' times with and without it."""
    runs = one_model(spec, every, rounds)
    models, opt, schedule, data = runs.models, runs.opt, runs.schedule, runs.data
    steps: list[float] = []  # the optimizer-step seconds of the current block
    opt.register_step_pre_hook(lambda *_: steps.append(-time.perf_counter()))
    opt.register_step_post_hook(lambda *_: steps.append(steps.pop() + time.perf_counter()))
    ms, own, ratios = [], [], []
    epochs = iter(range(1, 2 * rounds + 1))
    with flushed_denormals():
        train_epoch(models, opt, schedule, data.train_batches(0), runs.dtype, runs.autocast, [], None)
        for r in range(rounds):
            blocks = {}
            for trace in [None, TimedTrace(every)][:: 1 if r % 2 else -1]:
                steps.clear()
                batches = data.train_batches(next(epochs))
                start = time.perf_counter()
                train_epoch(models, opt, schedule, batches, runs.dtype, runs.autocast, [], trace)
                blocks[trace is None] = (time.perf_counter() - start, list(steps), trace)
            (plain, plain_steps, _), (traced, traced_steps, trace) = blocks[True], blocks[False]
            report = traced_steps[0]  # a new trace reports at its first step
            ms.append(1e3 * plain / every)
            own.append((report - statistics.median(plain_steps) + trace.seconds) / plain)
            ratios.append(traced / plain)
    return {"ms": statistics.median(ms), "own": statistics.median(own), "ratio": statistics.median(ratios)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"| variant | ms/step without the trace | the trace's own time, RMS(U) every {args.every} | end-to-end ratio |"
    )
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as data_dir:
        for variant in VARIANTS:
            r = time_variant(preset_spec(variant, data_dir), args.every, args.rounds)
            print(f"| {variant} | {r['ms']:.1f} | {100 * r['own']:+.2f}% | {r['ratio']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
