"""Model builders: ``build_model(name, num_classes=..., input_shape=..., device=...)``.

Adding a model is a line of the catalog (:mod:`optbench.spec.models`: its label and shapes) and one of
:data:`BUILDERS` here; a test keeps the two equal.
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
from optbench.spec.models import CATALOG, LM_WIDTHS, MODELS, Model


@dataclass(frozen=True)
class ModelEntry(Model):
    """A catalogued model (:class:`optbench.spec.models.Model`) with its builder."""

    build: Callable[..., nn.Module]


BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "cnn": build_cnn,
    "cnn_bn": build_cnn_bn,
    "mlp": build_mlp,
    "resnet_small": build_resnet_small,
    "shake_shake_26_2x64d": build_shake_shake_26_2x64d,
    **{name: lm_builder(width) for name, width in LM_WIDTHS.items()},
    "transformer_base": build_transformer_base,
}
#: Every model of the catalog with its builder.
REGISTRY = {name: ModelEntry(**vars(model), build=BUILDERS[name]) for name, model in CATALOG.items()}


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
