"""A preset's FLOPs, this machine's matrix-product rate on the model's own shapes, and the least time they allow.

    python benchmarks/flop_bound.py [--preset quick] [--cores 2] [--seconds S]

1. **FLOPs.** ``torch.utils.flop_counter.FlopCounterMode`` counts one model of the preset: one training
   batch's forward and backward, and one batch's forward in eval mode. It counts matrix products and
   convolutions only (``2 m n k`` each): BatchNorm, ReLU, the loss and the optimizer step are not counted.
   Then (every run counts its full length, diverged ones too):

       training   = step FLOPs x steps per epoch x epochs x runs
       evaluation = forward FLOPs per example x test examples x epochs x runs   (evaluation after every epoch)

2. **Rate.** One training step of the preset's stacked model (:class:`optbench.train.stacking.StackedModels`,
   K models as in the preset's most common stack) records every ``mm``/``bmm`` it runs, forward and backward,
   with the shapes and strides of their operands; each is timed alone on one thread (each Snakemake job has
   one). The model's rate is the FLOP-weighted one, ``sum(FLOPs) / sum(seconds)`` over those products; a
   square ``mm`` of ``--square`` rows is timed for reference. The evaluation's products have the forward's
   shapes, so the same rate serves for them.

3. **Bound.** ``FLOPs / (rate x cores)``: the seconds the preset's products alone would take on ``--cores``
   single-threaded jobs, at either rate. ``--seconds S`` (the wall seconds of a measured
   ``snakemake --cores N`` run) adds ``S / bound``.

MNIST-1D presets on the CPU in float32 only (models ``cnn``, ``cnn_bn``, ``mlp``); others stop with an error.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from optbench.experiment.preset import load_experiment  # noqa: E402
from optbench.models import build_model  # noqa: E402
from optbench.spec.datasets import CATALOG as DATASETS  # noqa: E402
from optbench.spec.datasets import MNIST1D_TRAIN_SPLIT, check_dataset  # noqa: E402
from optbench.spec.models import CATALOG as MODELS  # noqa: E402
from optbench.train.external import stacks  # noqa: E402
from optbench.train.loop import MAX_STACK, stack_key  # noqa: E402
from optbench.train.stacking import StackedModels, can_stack  # noqa: E402

PRODUCTS = {torch.ops.aten.mm.default, torch.ops.aten.bmm.default}
PRODUCTS_WITH_BIAS = {torch.ops.aten.addmm.default, torch.ops.aten.baddbmm.default}


@dataclass(frozen=True)
class Workload:
    """What a preset trains: its model, batches, epochs, runs and stack sizes (one entry per stack)."""

    model: str
    num_classes: int
    input_shape: tuple[int, ...]
    batch_size: int
    steps_per_epoch: int
    epochs: int
    n_test: int
    runs: int
    stack_sizes: tuple[int, ...]


def workload(preset: str) -> Workload:
    """The :class:`Workload` of ``preset`` in config.yaml; ValueError unless it trains a stackable model on
    MNIST-1D, on the CPU in float32."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["preset"] = preset
    experiment = load_experiment(config)
    s = experiment.settings
    if s["dataset"] != "mnist1d" or not can_stack(_model(s["model"])):
        raise ValueError(f"preset {preset}: model {s['model']} on {s['dataset']}; only MNIST-1D's cnn, cnn_bn, mlp")
    if s["device"] != "cpu" or s["bf16"]:
        raise ValueError(f"preset {preset}: device {s['device']}, bf16 {s['bf16']}; only the CPU in float32")
    options = check_dataset(s["dataset"], s["dataset_options"], s["batch_size"])
    n_train = DATASETS["mnist1d"].train_examples(options, s["batch_size"])
    model = MODELS[s["model"]]
    return Workload(
        model=s["model"],
        num_classes=model.num_classes,
        input_shape=model.input_shape,
        batch_size=s["batch_size"],
        steps_per_epoch=n_train // s["batch_size"],
        epochs=s["epochs"],
        n_test=options["num_samples"] - int(options["num_samples"] * MNIST1D_TRAIN_SPLIT),
        runs=sum(len(experiment.runs(v)) for v in experiment.variants),
        stack_sizes=tuple(
            size
            for v in experiment.variants
            for shard in experiment.shards(v)
            for size in _stack_sizes(shard, s["stacked"])
        ),
    )


def _stack_sizes(shard: list, stacked: bool) -> list[int]:
    """The sizes of the stacks ``optbench.train.loop.train_many`` trains ``shard`` in: runs of one
    ``stack_key`` in as few stacks of at most ``MAX_STACK`` as can be, as equal as can be (1 each unstacked)."""
    if not stacked or not stacks(shard[0]):
        return [1] * len(shard)
    groups = Counter(stack_key(spec) for spec in shard)
    sizes = []
    for n in groups.values():
        count = math.ceil(n / MAX_STACK)
        sizes += [(i + 1) * n // count - i * n // count for i in range(count)]
    return sizes


def _model(name: str) -> torch.nn.Module:
    """Model ``name`` as a preset builds it, seeded."""
    torch.manual_seed(0)
    entry = MODELS[name]
    return build_model(name, num_classes=entry.num_classes, input_shape=entry.input_shape)


def _batch(work: Workload) -> tuple[torch.Tensor, torch.Tensor]:
    """A random batch of the workload's shape: inputs ``(B, *input_shape)`` and class labels ``(B,)``."""
    return torch.randn(work.batch_size, *work.input_shape), torch.randint(work.num_classes, (work.batch_size,))


def _leaf_counts(counter: FlopCounterMode, model: torch.nn.Module) -> dict[str, int]:
    """FLOPs per leaf layer (``"<index> <type>"``) from ``counter``, which names modules ``Root.path``."""
    counts = counter.get_flop_counts()
    root = type(model).__name__
    return {
        f"{name} {type(m).__name__}": sum(counts.get(f"{root}.{name}", {}).values())
        for name, m in model.named_modules()
        if name and not list(m.children())
    }


def layer_flops(work: Workload) -> dict[str, tuple[int, int]]:
    """Per leaf layer with FLOPs: (forward, backward) of one training step on a batch of ``batch_size``.

    The forward is counted in eval mode (the same products as in training mode), the backward as the training
    step's count less it. For a conv of O outputs, C inputs, kernel k, L_out positions and B examples the
    forward is ``2 O C k L_out B``; its backward twice that (input and weight gradients), or once for the
    first conv, whose input needs no gradient. A linear layer is ``2 O F B`` forward, likewise.
    """
    model, (x, y) = _model(work.model), _batch(work)
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as forward:
        model(x)
    model.train()
    with FlopCounterMode(display=False) as step:
        F.cross_entropy(model(x), y).backward()
    fwd, total = _leaf_counts(forward, model), _leaf_counts(step, model)
    return {name: (fwd[name], total[name] - fwd[name]) for name in total if total[name]}


def preset_flops(work: Workload, layers: dict[str, tuple[int, int]]) -> tuple[int, int]:
    """The preset's (training, evaluation) FLOPs from one step's per-layer counts (see the module's docstring)."""
    step = sum(f + b for f, b in layers.values())
    forward = sum(f for f, _ in layers.values())
    training = step * work.steps_per_epoch * work.epochs * work.runs
    evaluation = forward * work.n_test // work.batch_size * work.epochs * work.runs  # FLOPs linear in the batch
    return training, evaluation


@dataclass(frozen=True)
class Product:
    """One matrix product a step runs: ``mm`` or ``bmm`` of two operands of these shapes and strides."""

    op: str
    shapes: tuple[tuple[int, ...], tuple[int, ...]]
    strides: tuple[tuple[int, ...], tuple[int, ...]]

    @property
    def flops(self) -> int:
        """``2 b m k n`` for ``(b, m, k) x (b, k, n)``; b = 1 for ``mm``."""
        a, b = self.shapes
        return 2 * math.prod(a) * b[-1]


class _Recorder(TorchDispatchMode):
    """Records the operands of every ``mm``, ``bmm``, ``addmm`` and ``baddbmm`` (a bias is not a product)."""

    def __init__(self):
        super().__init__()
        self.products: list[Product] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in PRODUCTS or func in PRODUCTS_WITH_BIAS:
            a, b = args[:2] if func in PRODUCTS else args[1:3]
            op = "bmm" if a.dim() == 3 else "mm"
            self.products.append(Product(op, (tuple(a.shape), tuple(b.shape)), (a.stride(), b.stride())))
        return func(*args, **(kwargs or {}))


def stacked_products(work: Workload, count: int) -> list[Product]:
    """The matrix products of one training step of ``count`` stacked models: forward and backward."""
    models, (x, y) = StackedModels(_model(work.model), count), _batch(work)
    with _Recorder() as recorder:
        logits = models(x)
        F.cross_entropy(logits.reshape(-1, work.num_classes), y.repeat(count)).backward()
    return recorder.products


def _operand(shape: tuple[int, ...], stride: tuple[int, ...]) -> torch.Tensor:
    """A random tensor of ``shape`` laid out with ``stride`` (transposed, or expanded with stride 0)."""
    storage = 1 + sum((n - 1) * s for n, s in zip(shape, stride))
    return torch.randn(storage).as_strided(shape, stride)


def seconds(run, repeats: int = 7, target: float = 0.01) -> float:
    """Seconds of one call of ``run()``: the fastest of ``repeats`` timed loops of about ``target`` seconds each.
    The fastest, not the median: the bound is a least time, and other processes on a shared machine only
    slow a loop down."""
    run()
    start = time.perf_counter()
    run()
    loops = max(1, round(target / max(time.perf_counter() - start, 1e-9)))
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(loops):
            run()
        timings.append((time.perf_counter() - start) / loops)
    return min(timings)


def time_product(product: Product) -> float:
    """Seconds of one call of ``torch.mm``/``torch.bmm`` on operands of the product's shapes and strides."""
    a, b = (_operand(shape, stride) for shape, stride in zip(product.shapes, product.strides))
    op = torch.bmm if product.op == "bmm" else torch.mm
    return seconds(lambda: op(a, b))


def square_rate(n: int) -> float:
    """FLOP/s of ``torch.mm`` of two ``n x n`` matrices: ``2 n^3 / seconds``."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / seconds(lambda: torch.mm(a, b), repeats=5, target=0.0)


def bound(flops: int, rate: float, cores: int) -> float:
    """Seconds ``flops`` take at ``rate`` FLOP/s per core on ``cores`` single-threaded jobs."""
    return flops / (rate * cores)


def print_flops(args: argparse.Namespace, work: Workload, layers: dict[str, tuple[int, int]]) -> int:
    """Prints the per-layer and preset FLOPs; returns the preset's total."""
    training, evaluation = preset_flops(work, layers)
    step = sum(f + b for f, b in layers.values())
    forward = sum(f for f, _ in layers.values())
    print(
        f"{args.preset} preset: {work.model}, {work.runs} runs x {work.epochs} epochs x {work.steps_per_epoch} steps "
        f"(batch {work.batch_size}), {work.n_test} test examples evaluated every epoch, float32\n"
    )
    print("One training step of one model (FlopCounterMode; BatchNorm, ReLU, loss, optimizer not counted):\n")
    print("| layer | forward MFLOP | backward MFLOP |\n|---|---:|---:|")
    for name, (f, b) in layers.items():
        print(f"| {name} | {f / 1e6:.3f} | {b / 1e6:.3f} |")
    print(f"| step | {forward / 1e6:.3f} | {(step - forward) / 1e6:.3f} |\n")
    batches = work.n_test / work.batch_size
    print("| FLOPs | TFLOP |\n|---|---:|")
    steps = work.steps_per_epoch * work.epochs
    print(f"| training: {step / 1e6:.3f} MFLOP x {steps} steps x {work.runs} runs | {training / 1e12:.4g} |")
    print(
        f"| evaluation: {forward / 1e6:.3f} MFLOP x {batches:g} batches x {work.epochs} epochs x {work.runs} runs "
        f"| {evaluation / 1e12:.4g} |"
    )
    print(f"| total | {(training + evaluation) / 1e12:.4g} |\n")
    return training + evaluation


def print_rates(args: argparse.Namespace, work: Workload) -> dict[str, float]:
    """Times the stacked step's products and a square ``mm``; prints them; returns both rates (FLOP/s)."""
    sizes = Counter(work.stack_sizes)
    count = sizes.most_common(1)[0][0]
    print(
        f"Matrix products of one training step of {count} stacked models (stacks of "
        f"{'/'.join(map(str, sorted(sizes)))}, the most common timed), 1 thread:\n"
    )
    print("| product | operands | MFLOP | us | GFLOP/s |\n|---|---|---:|---:|---:|")
    products = stacked_products(work, count)
    total_flops = total_seconds = 0
    for p in products:
        s = time_product(p)
        total_flops, total_seconds = total_flops + p.flops, total_seconds + s
        operands = " x ".join("(" + ", ".join(map(str, shape)) + ")" for shape in p.shapes)
        print(f"| {p.op} | {operands} | {p.flops / 1e6:.3f} | {s * 1e6:.1f} | {p.flops / s / 1e9:.1f} |")
    model_rate, square = total_flops / total_seconds, square_rate(args.square)
    print(f"| FLOP-weighted | | {total_flops / 1e6:.3f} | {total_seconds * 1e6:.1f} | {model_rate / 1e9:.1f} |")
    print(f"| square mm | ({args.square}, {args.square}) x ({args.square}, {args.square}) | | | {square / 1e9:.1f} |\n")
    return {"model's products": model_rate, f"square mm {args.square}": square}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--cores", type=int, default=2, help="Snakemake --cores (jobs are single-threaded)")
    parser.add_argument("--seconds", type=float, help="wall seconds of a measured snakemake run of the preset")
    parser.add_argument("--square", type=int, default=2048, help="rows of the reference square mm")
    args = parser.parse_args()
    torch.set_num_threads(1)
    try:
        work = workload(args.preset)
    except ValueError as err:
        parser.error(str(err))
    flops = print_flops(args, work, layer_flops(work))
    rates = print_rates(args, work)
    print(f"Bound on {args.cores} cores: FLOPs / (rate x cores)\n")
    measured = f" {args.seconds:g} s / bound |" if args.seconds else ""
    print(f"| rate | GFLOP/s per core | bound s |{measured}\n|---|---:|---:|{'---:|' if measured else ''}")
    for name, rate in rates.items():
        seconds_bound = bound(flops, rate, args.cores)
        ratio = f" {args.seconds / seconds_bound:.1f} |" if args.seconds else ""
        print(f"| {name} | {rate / 1e9:.1f} | {seconds_bound:.1f} |{ratio}")


if __name__ == "__main__":
    main()
