"""Time one optimizer step: this project's two bases against torch.optim, side by side in one process.

    python benchmarks/optimizer_step.py [--repeats 50] [--threads N]

For each parameter set (the shapes of an 11.7M-parameter ResNet-18 and of the
MNIST-1D CNN) it prints the median step time of each optimizer after warm-up (the two
optimizers' steps interleaved), the
ratio ours / torch, the bytes one step must at least move through memory, and the
bandwidth that implies next to the copy bandwidth this process measures.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision

from optbench.models import build_model
from optbench.optim import Adafactor, AdamW

# Minimum memory traffic per parameter, in elements: AdamW reads X, G, m, v and
# writes X, m, v; Adafactor (factored, beta1 = 0) reads G and X and writes X (its
# row/column state is negligible), and must read X once more for RMS(X) and G once
# more after the row/column statistics.
MIN_PASSES = {"AdamW": 7, "Adafactor": 5}


def shapes_of(model: torch.nn.Module) -> list[torch.Size]:
    return [p.shape for p in model.parameters()]


def parameter_sets() -> dict[str, list[torch.Size]]:
    with torch.device("meta"):
        resnet = torchvision.models.resnet18()
    cnn = build_model("cnn", num_classes=10, input_shape=(1, 40), device="meta")
    return {"resnet18 (11.7M)": shapes_of(resnet), "mnist1d cnn": shapes_of(cnn)}


def timed(fn, device: torch.device) -> float:
    """Seconds of one call, waiting for the GPU where there is one."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def median_step_seconds(makers, shapes, repeats: int, device: torch.device, warmup: int = 5) -> list[float]:
    """Median seconds per step of each optimizer, their steps interleaved so that drift hits all alike."""
    optimizers = []
    for make in makers:
        torch.manual_seed(0)
        params = [torch.randn(s, device=device) * 0.1 for s in shapes]
        for p in params:
            p.grad = torch.randn_like(p) * 1e-2
        optimizers.append(make(params))
    times = [[timed(opt.step, device) for opt in optimizers] for _ in range(warmup + repeats)]
    return [statistics.median(column) for column in zip(*times[warmup:])]


def copy_bandwidth(device: torch.device, nbytes: int = 1 << 28, repeats: int = 10) -> float:
    """Bytes per second moved by a large tensor copy (read + write)."""
    src = torch.ones(nbytes // 4, device=device)
    dst = torch.empty_like(src)
    return 2 * nbytes / min(timed(lambda: dst.copy_(src), device) for _ in range(repeats))


PAIRS = {
    "AdamW": (
        lambda ps: AdamW(ps, lr=1e-3, weight_decay=1e-2, weight_decay_mode="torch"),
        lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=1e-2, foreach=True),
    ),
    "Adafactor": (lambda ps: Adafactor(ps), lambda ps: torch.optim.Adafactor(ps, foreach=True)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    bandwidth = copy_bandwidth(device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}, copy bandwidth {bandwidth / 1e9:.1f} GB/s")
    print("| parameters | optimizer | ours ms | torch ms | ours / torch | min MB moved | ours GB/s | % of copy |")
    print("|---|---|---|---|---|---|---|---|")
    for set_name, shapes in parameter_sets().items():
        numel = sum(s.numel() for s in shapes)
        for name, (ours, theirs) in PAIRS.items():
            t_ours, t_torch = median_step_seconds((ours, theirs), shapes, args.repeats, device)
            moved = MIN_PASSES[name] * numel * 4
            print(
                f"| {set_name} | {name} | {t_ours * 1e3:.3f} | {t_torch * 1e3:.3f} | {t_ours / t_torch:.2f} "
                f"| {moved / 1e6:.1f} | {moved / t_ours / 1e9:.1f} | {100 * moved / t_ours / bandwidth:.0f} |"
            )


if __name__ == "__main__":
    main()
