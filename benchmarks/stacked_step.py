"""One stacked training step of this checkout against the same step at an earlier commit, side by side.

    python benchmarks/stacked_step.py [--against REV] [--models 14] [--steps 200] [--rounds 5] [--threads 1]

Loads ``optbench.train.stacking`` (and ``grouped_layers``) as here and as at ``--against`` (``git show``), builds
``--models`` stacked copies of the quick preset's ``cnn_bn`` with each, and times forward + loss + backward on
one MNIST-1D-shaped batch (100 signals of 1 x 40), the two versions' steps interleaved round by round so that
the machine's load hits both alike. Prints the median milliseconds per step of each and the ratio, and checks
that both give the same loss and gradients bit for bit.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from optbench.models.cnn import build_cnn_bn  # noqa: E402
from optbench.train import stacking  # noqa: E402
from optbench.train.job import reuse_freed_memory  # noqa: E402

#: The modules of the stacked step, by import name: the second imports the first where both exist.
MODULES = {
    "optbench.train.grouped_layers": "src/optbench/train/grouped_layers.py",
    "optbench.train.stacking": "src/optbench/train/stacking.py",
}


def module_at(rev: str, tmp: Path):
    """``optbench.train.stacking`` as it was at commit ``rev``, importing the grouped layers of ``rev`` too
    (where that commit has them in a module of their own)."""
    here = {name: sys.modules[name] for name in MODULES}
    try:
        for name, path in MODULES.items():
            shown = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True)
            if shown.returncode:  # not in that commit: its stacking.py holds the layers itself
                continue
            (tmp / path.replace("/", "_")).write_text(shown.stdout)
            spec = importlib.util.spec_from_file_location(f"{name}_at_rev", tmp / path.replace("/", "_"))
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        return sys.modules["optbench.train.stacking"]
    finally:
        sys.modules.update(here)


def step_of(module, count: int):
    """A function running one training step of ``count`` stacked models built by ``module``; it returns the
    loss and the gradients."""
    torch.manual_seed(0)
    models = module.StackedModels(build_cnn_bn(num_classes=10, input_shape=(1, 40)), count)
    x, y = torch.randn(100, 1, 40), torch.randint(0, 10, (100,))

    def step() -> tuple[torch.Tensor, list[torch.Tensor]]:
        logits = models(x)
        loss = F.cross_entropy(logits.reshape(-1, 10), y.repeat(count), reduction="none").view(count, -1).mean(1).sum()
        for p in models.params:
            p.grad = None
        loss.backward()
        return loss.detach(), [p.grad for p in models.params]

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", default="HEAD", help="the commit to compare with (default: HEAD)")
    parser.add_argument("--models", type=int, default=14, help="stacked models (the quick preset's stacks: 13-14)")
    parser.add_argument("--steps", type=int, default=200, help="steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as training does
    reuse_freed_memory()
    with tempfile.TemporaryDirectory() as tmp:
        steps = {
            "here": step_of(stacking, args.models),
            args.against: step_of(module_at(args.against, Path(tmp)), args.models),
        }
    (loss, grads), (loss_then, grads_then) = (step() for step in steps.values())
    same = torch.equal(loss, loss_then) and all(map(torch.equal, grads, grads_then))
    times = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            for _ in range(10):  # warm-up
                step()
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            times[name].append((time.perf_counter() - start) / args.steps * 1e3)
    here, then = (statistics.median(t) for t in times.values())
    print(
        f"{args.models} stacked cnn_bn, batch 100, {args.threads} thread(s),"
        f" medians of {args.rounds} rounds of {args.steps} steps"
    )
    print("| code | ms per step | ms per model |\n|---|---:|---:|")
    for name, ms in zip(steps, (here, then)):
        print(f"| {name} | {ms:.3f} | {ms / args.models:.3f} |")
    print(f"here / {args.against} = {here / then:.2f}; loss and gradients bit for bit equal: {same}")


if __name__ == "__main__":
    main()
