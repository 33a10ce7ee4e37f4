"""Model registry: ``build_model(name, num_classes=..., input_shape=..., device=...)``.

Registering a model is one line of ``REGISTRY``; ``workflow/schemas/config.schema.yaml`` lists
the models a preset can train (those with a dataset), and a test keeps the two equal.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from optbench.models.cifar_resnet import build_resnet_small
from optbench.models.cnn import build_cnn, build_cnn_bn
from optbench.models.lm import lm_builder
from optbench.models.mlp import build_mlp
from optbench.models.shake_shake import build_shake_shake_26_2x64d
from optbench.models.transformer import build_transformer_base


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its builder, display label, and the output size and input shape it is built
    for on ``dataset`` (None: no dataset here feeds it; it serves parameter accounting only)."""

    build: Callable[..., nn.Module]
    label: str
    num_classes: int
    input_shape: tuple[int, ...]
    dataset: str | None


REGISTRY = {
    "cnn": ModelEntry(build_cnn, "MNIST-1D CNN", 10, (1, 40), "mnist1d"),
    "cnn_bn": ModelEntry(build_cnn_bn, "MNIST-1D CNN with BatchNorm", 10, (1, 40), "mnist1d"),
    "mlp": ModelEntry(build_mlp, "MNIST-1D MLP", 10, (1, 40), "mnist1d"),
    "resnet_small": ModelEntry(build_resnet_small, "ResNet-14 small", 10, (3, 32, 32), "cifar10"),
    "shake_shake_26_2x64d": ModelEntry(build_shake_shake_26_2x64d, "Shake-Shake 26 2x64d", 10, (3, 32, 32), "cifar10"),
    **{
        name: ModelEntry(lm_builder(width), f"byte-level decoder LM (2 x {width})", 256, (64,), "text_stdlib")
        for name, width in (("lm_d8", 8), ("lm_d16", 16), ("lm_d32", 32), ("lm_d64", 64), ("lm_tiny", 128))
    },
    "transformer_base": ModelEntry(build_transformer_base, "Transformer-base", 32_000, (256,), None),  # vocabulary 32k
}
MODELS = tuple(REGISTRY)


def build_model(
    name: str, *, num_classes: int, input_shape: tuple[int, ...], device: torch.device | str = "cpu"
) -> nn.Module:
    """Build model ``name``; seed torch beforehand for reproducible weights.

    Weights are initialized on the CPU and then moved, so a seed gives the same weights on every
    device. ``device="meta"`` builds parameters with shapes but no storage.
    """
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(MODELS)}")
    build = REGISTRY[name].build
    device = torch.device(device)
    if device.type == "meta":
        with device:
            return build(num_classes=num_classes, input_shape=tuple(input_shape))
    return build(num_classes=num_classes, input_shape=tuple(input_shape)).to(device)
