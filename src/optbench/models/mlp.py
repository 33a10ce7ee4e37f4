"""A multilayer perceptron for MNIST-1D."""

import math

from torch import nn


def build_mlp(*, num_classes: int, input_shape: tuple[int, ...], hidden: int = 100) -> nn.Sequential:
    """Flatten, two hidden ReLU layers of ``hidden`` units, linear output.

    For MNIST-1D, 40-100-100-10: 15,210 parameters.
    """
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(input_shape), hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )
