"""What checkpointing costs a quick-preset training job: one stack trained with and without it, side by side.

    python benchmarks/checkpoint_overhead.py [--rounds 4] [--epochs 10] [--threads 1]

Trains the first stack of the quick preset's first adamw_cosine job (16 cnn_bn models, as the job stacks
them) in this process, ``--rounds`` times each way, alternating which goes first. With checkpoints, the
stack writes its checkpoint at epoch boundaries as a job does (:class:`optbench.train.checkpoints.Writer`: here,
after every epoch), and the script times each write. It prints the median seconds each way, their ratio,
and the writes' own time as a fraction of the stack's time without them. On a shared machine the ratios
carry its drift; the writes' own time does not.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from optbench.experiment.preset import load_experiment  # noqa: E402
from optbench.spec.run import RunSpec  # noqa: E402
from optbench.train import checkpoints  # noqa: E402
from optbench.train.checkpoint_files import stack_path  # noqa: E402
from optbench.train.job import reuse_freed_memory  # noqa: E402
from optbench.train.loop import MAX_STACK, train_together  # noqa: E402


def quick_stack(data_dir: str, epochs: int | None) -> list[RunSpec]:
    """The first stack of the quick preset's first adamw_cosine job, ``epochs`` long if given."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["preset"] = "quick"
    runs = load_experiment(config).shards("adamw_cosine")[0][:MAX_STACK]
    extra = {"data_dir": data_dir, **({"epochs": epochs} if epochs else {})}
    return [RunSpec.from_dict({**run.to_dict(), **extra}) for run in runs]


class TimedSaves:
    """Wraps :func:`optbench.train.checkpoints.save` to sum the seconds its calls take, and keep the last
    file's size."""

    def __init__(self):
        self.times: list[float] = []
        self.bytes, self.save = 0, checkpoints.save

    def __call__(self, path: Path, *args, **kwargs) -> None:
        start = time.perf_counter()
        self.save(path, *args, **kwargs)
        self.times.append(time.perf_counter() - start)
        self.bytes = path.stat().st_size


def train_seconds(specs: list[RunSpec], checkpoint: Path | None) -> float:
    """Seconds to train the stack (with its checkpoint written to ``checkpoint``, deleted after)."""
    start = time.perf_counter()
    list(train_together(specs, stacked=True, quiet=True, checkpoint=checkpoint))
    seconds = time.perf_counter() - start
    if checkpoint is not None:
        checkpoint.unlink()  # or the next round would resume from the finished stack
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=None, help="default: the quick preset's")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default=str(ROOT / "data"), help="MNIST-1D cache (made if absent)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    reuse_freed_memory()  # as the train command does
    specs = quick_stack(args.data_dir, args.epochs)
    saves = checkpoints.save = TimedSaves()
    with tempfile.TemporaryDirectory() as tmp:
        path = stack_path(tmp, 0)
        train_seconds(specs, path)  # warm-up: data cache, first-call costs
        plain, checkpointed = [], []
        saves.times.clear()
        for i in range(args.rounds):
            for with_checkpoints in (i % 2 == 0, i % 2 == 1):
                (checkpointed if with_checkpoints else plain).append(
                    train_seconds(specs, path if with_checkpoints else None)
                )
    without, with_ = statistics.median(plain), statistics.median(checkpointed)
    own = sum(saves.times) / len(checkpointed)
    times = ", ".join(f"{t:.3f}" for t in plain)
    print(f"{len(specs)} stacked runs of adamw_cosine, {specs[0].epochs} epochs, {args.threads} thread(s)")
    print(f"  without checkpoints: {without:.3f} s (median of {len(plain)}: {times})")
    times = ", ".join(f"{t:.3f}" for t in checkpointed)
    print(f"  with checkpoints:    {with_:.3f} s (median of {len(checkpointed)}: {times})")
    pairs = statistics.median(c / p for p, c in zip(plain, checkpointed))
    print(f"  ratio with / without: {with_ / without:.4f} (of the medians), {pairs:.4f} (median of the rounds' ratios)")
    print(
        f"  writes: {len(saves.times) // len(checkpointed)} per stack of {saves.bytes / 1024:.0f} KiB, "
        f"median {1000 * statistics.median(saves.times):.1f} ms, mean {1000 * statistics.mean(saves.times):.1f} ms, "
        f"max {1000 * max(saves.times):.1f} ms; their own time {100 * own / without:.2f}% of the stack without them"
    )


if __name__ == "__main__":
    main()
