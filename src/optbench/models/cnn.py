"""The small CNN of the MNIST-1D paper (Greydanus 2020, ``ConvBase``)."""

import torch
from torch import nn


def build_cnn(*, num_classes: int, input_shape: tuple[int, ...]) -> nn.Sequential:
    """Three Conv1d layers (25 channels; kernels 5, 3, 3; stride 2; padding 1; ReLU), then a linear layer.

    As in the paper's code (the first kernel is 5, the other two 3). For MNIST-1D inputs
    of shape (1, 40) the feature map is 25 x 5 and the model has 5,210 parameters.
    """
    channels = 25
    features = nn.Sequential(
        nn.Conv1d(input_shape[0], channels, 5, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv1d(channels, channels, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv1d(channels, channels, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
    )
    num_features = features(torch.empty(1, *input_shape, device="meta")).shape[1]
    return nn.Sequential(features, nn.Linear(num_features, num_classes))
