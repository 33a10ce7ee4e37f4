"""Model registry: ``build_model(name, num_classes=..., input_shape=..., device=...)``."""

import torch
from torch import nn

from .cifar_resnet import build_resnet_small
from .cnn import build_cnn
from .mlp import build_mlp
from .shake_shake import build_shake_shake_26_2x64d
from .transformer import build_transformer_base

_BUILDERS = {
    "cnn": build_cnn,
    "mlp": build_mlp,
    "resnet_small": build_resnet_small,
    "shake_shake_26_2x64d": build_shake_shake_26_2x64d,
    "transformer_base": build_transformer_base,
}
MODELS = tuple(_BUILDERS)


def build_model(
    name: str, *, num_classes: int, input_shape: tuple[int, ...], device: torch.device | str = "cpu"
) -> nn.Module:
    """Build model ``name``; seed torch beforehand for reproducible weights.

    Weights are initialized on the CPU and then moved, so a seed gives the same weights on every
    device. ``device="meta"`` builds parameters with shapes but no storage.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(MODELS)}")
    device = torch.device(device)
    if device.type == "meta":
        with device:
            return _BUILDERS[name](num_classes=num_classes, input_shape=tuple(input_shape))
    return _BUILDERS[name](num_classes=num_classes, input_shape=tuple(input_shape)).to(device)
