"""The model catalog: every model a run spec can name, with what it is built for; no builders here.

:mod:`optbench.models` holds a builder for each name (a test keeps the two equal), so that a run spec
is checked without torch. A model with a ``dataset`` is one a preset can train; the others serve
parameter accounting only (the memory table's paper-scale models).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Model:
    """A catalogued model: its display label, and the output size and input shape it is built for on
    ``dataset`` (None: no dataset here feeds it)."""

    label: str
    num_classes: int
    input_shape: tuple[int, ...]
    dataset: str | None


#: The decoder language models, name -> width (two blocks each).
LM_WIDTHS = {"lm_d8": 8, "lm_d16": 16, "lm_d32": 32, "lm_d64": 64, "lm_tiny": 128}

CATALOG: dict[str, Model] = {
    "cnn": Model("MNIST-1D CNN", 10, (1, 40), "mnist1d"),
    "cnn_bn": Model("MNIST-1D CNN with BatchNorm", 10, (1, 40), "mnist1d"),
    "mlp": Model("MNIST-1D MLP", 10, (1, 40), "mnist1d"),
    "resnet_small": Model("ResNet-14 small", 10, (3, 32, 32), "cifar10"),
    "shake_shake_26_2x64d": Model("Shake-Shake 26 2x64d", 10, (3, 32, 32), "cifar10"),
    **{
        name: Model(f"byte-level decoder LM (2 x {width})", 256, (64,), "text_stdlib")
        for name, width in LM_WIDTHS.items()
    },
    "transformer_base": Model("Transformer-base", 32_000, (256,), None),  # vocabulary 32k
}
MODELS = tuple(CATALOG)
#: The models a preset can train: those a dataset feeds.
TRAINABLE = tuple(name for name, model in CATALOG.items() if model.dataset)
