"""The small CNN of the MNIST-1D paper (Greydanus 2020, ``ConvBase``), without and with BatchNorm."""

from torch import nn


def build_cnn(*, num_classes: int, input_shape: tuple[int, ...], batch_norm: bool = False) -> nn.Sequential:
    """Three Conv1d layers (25 channels; kernels 5, 3, 3; stride 2; padding 1; ReLU), then a linear layer.

    As in the paper's code (the first kernel is 5, the other two 3). For MNIST-1D inputs
    of shape (1, 40) the feature map is 25 x 5 and the model has 5,210 parameters.

    ``batch_norm``: a ``BatchNorm1d`` after each conv, before its ReLU; see :func:`build_cnn_bn`.
    """
    channels, layers, length = 25, [], input_shape[1]
    for in_channels, kernel in zip((input_shape[0], channels, channels), (5, 3, 3)):
        layers.append(nn.Conv1d(in_channels, channels, kernel, stride=2, padding=1, bias=not batch_norm))
        layers += [nn.BatchNorm1d(channels), nn.ReLU()] if batch_norm else [nn.ReLU()]
        length = (length + 2 - kernel) // 2 + 1
    return nn.Sequential(nn.Sequential(*layers, nn.Flatten()), nn.Linear(channels * length, num_classes))


def build_cnn_bn(*, num_classes: int, input_shape: tuple[int, ...]) -> nn.Sequential:
    """:func:`build_cnn` with ``BatchNorm1d`` after each conv (before the ReLU).

    BatchNorm makes each conv's output invariant to the scale of its weights, as in the
    AdamW paper's networks. The convs have no bias (BatchNorm subtracts the channel mean,
    which would cancel it); each BatchNorm has a weight and a bias per channel. For MNIST-1D
    inputs of shape (1, 40) the model has 5,285 parameters: convs 125 + 1,875 + 1,875,
    BatchNorms 3 x 50, linear 1,260.
    """
    return build_cnn(num_classes=num_classes, input_shape=input_shape, batch_norm=True)
