"""Milliseconds per training step of K stacked ``cnn_bn`` models, forward + backward and the optimizer step apart:
``torch.optim.AdamW`` as an external class (one param group per model, :mod:`optbench.train.external`) with
torch's defaults, ``foreach: true`` and ``fused: true``, against this project's stacked ``AdamW``, side by side in
one process, interleaved over ``--rounds``.

    python benchmarks/external_step.py [--models 14] [--steps 200] [--rounds 2]
"""

import argparse
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from optbench.models import REGISTRY  # noqa: E402
from optbench.optim import AdamW  # noqa: E402
from optbench.spec.external import ExternalOptimizerSpec  # noqa: E402
from optbench.train.external import External  # noqa: E402
from optbench.train.stacking import StackedModels  # noqa: E402

LR, DECAY = 2.0**-6, 2.0**-3
WAYS = {
    "torch.optim.AdamW, torch's defaults": {},
    "torch.optim.AdamW, foreach: true": {"foreach": True},
    "torch.optim.AdamW, fused: true": {"fused": True},
}


def external(models: StackedModels, kwargs: dict) -> External:
    """``torch.optim.AdamW`` over one param group per model (the runs need only an lr and a weight decay)."""
    spec = ExternalOptimizerSpec.from_dict(
        {"class": "torch.optim.AdamW", "weight_decay_mode": "torch", "kwargs": kwargs}
    )
    return External(spec, [SimpleNamespace(lr=LR, weight_decay=DECAY)] * models.count, models)


def ours(models: StackedModels) -> AdamW:
    """This project's AdamW over the stacked tensors, with (K,) learning rates and weight decays."""
    group = {
        **models.param_group(models.per_model([LR] * models.count)),
        "weight_decay": models.per_model([DECAY] * models.count),
    }
    return AdamW([group], lr=LR, weight_decay=DECAY, weight_decay_mode="torch")


def milliseconds(models: StackedModels, opt, steps: int) -> tuple[float, float]:
    """Mean milliseconds of forward + backward and of the optimizer step (with zero_grad), after 20 warm-up steps."""
    x, y = torch.randn(100, 1, 40), torch.randint(0, 10, (100,))
    passes = step = 0.0
    for i in range(20 + steps):
        start = time.perf_counter()
        logits = models(x)
        F.cross_entropy(logits.reshape(-1, 10), y.repeat(models.count), reduction="sum").backward()
        middle = time.perf_counter()
        opt.step()
        opt.zero_grad()
        if i >= 20:
            passes, step = passes + middle - start, step + time.perf_counter() - middle
    return 1e3 * passes / steps, 1e3 * step / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=14, help="K, the models of a stack (the zoo's: 14)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = REGISTRY["cnn_bn"].build(num_classes=10, input_shape=(1, 40))
    builders = {name: (lambda m, kw=kw: external(m, kw)) for name, kw in WAYS.items()}
    builders["our AdamW, stacked"] = ours
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in builders}
    for _ in range(args.rounds):
        for name, build in builders.items():
            models = StackedModels(model, args.models)
            times[name].append(milliseconds(models, build(models), args.steps))
    print(f"{args.models} stacked cnn_bn models, batch 100, 1 thread, {args.steps} steps x {args.rounds} rounds")
    print("| optimizer | forward + backward (ms) | optimizer step (ms) | step / ours |")
    print("|---|---:|---:|---:|")
    ours_step = sum(s for _, s in times["our AdamW, stacked"]) / args.rounds
    for name, pairs in times.items():
        passes, step = (sum(p[i] for p in pairs) / args.rounds for i in (0, 1))
        print(f"| {name} | {passes:.1f} | {step:.2f} | {step / ours_step:.1f}x |")


if __name__ == "__main__":
    main()
