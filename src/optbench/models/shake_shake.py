"""Shake-Shake 26 2x64d (Gastaldi 2017), the CIFAR-10 model of the AdamW paper.

Shake-Shake-Image: during training each example gets its own random forward weight ``alpha``
and an independent random backward weight ``beta`` for its two residual branches; in
evaluation both weights are 0.5. Randomness comes only from torch's global RNG.
"""

import torch
from torch import nn

from optbench.models.cifar_resnet import cifar_resnet, residual_branch, shortcut


class _Shake(torch.autograd.Function):
    """alpha * a + (1 - alpha) * b forward; gradients beta * g and (1 - beta) * g backward."""

    @staticmethod
    def forward(ctx, a, b, alpha, beta):
        ctx.save_for_backward(beta)
        return alpha * a + (1 - alpha) * b

    @staticmethod
    def backward(ctx, grad):
        (beta,) = ctx.saved_tensors
        return beta * grad, (1 - beta) * grad, None, None


def shake(a: torch.Tensor, b: torch.Tensor, training: bool) -> torch.Tensor:
    """Combine two branch outputs; per-example ``alpha``, ``beta`` ~ U(0, 1) when training."""
    if not training:
        return 0.5 * (a + b)
    shape = (a.shape[0],) + (1,) * (a.dim() - 1)
    alpha = torch.rand(shape, dtype=a.dtype, device=a.device)
    beta = torch.rand(shape, dtype=a.dtype, device=a.device)
    return _Shake.apply(a, b, alpha, beta)


class ShakeShakeBlock(nn.Module):
    """shortcut(x) + shake(branch1(x), branch2(x))."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.branch1 = residual_branch(in_channels, out_channels, stride)
        self.branch2 = residual_branch(in_channels, out_channels, stride)
        self.shortcut = shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + shake(self.branch1(x), self.branch2(x), self.training)


def build_shake_shake_26_2x64d(*, num_classes: int, input_shape: tuple[int, ...]) -> nn.Sequential:
    """Depth 26 (4 blocks per stage), widths 64/128/256: 11,653,978 parameters for 10 classes
    (the paper reports 11.7M)."""
    return cifar_resnet(
        ShakeShakeBlock, widths=(64, 128, 256), blocks_per_stage=4, num_classes=num_classes, in_channels=input_shape[0]
    )
