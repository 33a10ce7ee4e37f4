"""Parameters for the optimizer tests: one bias, one linear and one convolution weight."""

import torch

SHAPES = [(7,), (5, 3), (4, 3, 3, 3)]  # bias, linear, conv


def make_params(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, dtype=dtype, generator=g) for s in SHAPES]
