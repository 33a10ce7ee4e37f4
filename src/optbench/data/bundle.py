"""What every dataset is loaded into, :class:`DataBundle`, and the seeding of its training batches
(:func:`epoch_generator`). The datasets' modules (:mod:`optbench.data.mnist1d`, :mod:`optbench.data.cifar10`,
:mod:`optbench.data.text`) each build one; :func:`optbench.data.loaders.load_data` picks the loader."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

Batch = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class DataBundle:
    """A dataset ready for training: metadata plus batch iterators."""

    name: str
    num_classes: int
    input_shape: tuple[int, ...]  # per example, e.g. (1, 40) or (3, 32, 32)
    n_train: int
    n_test: int
    batch_size: int
    make_train_batches: Callable[[int], Iterator[Batch]] = field(repr=False)
    make_test_batches: Callable[[], Iterator[Batch]] = field(repr=False)
    bits_per_token: bool = False  # a language model: records carry the test loss in bits per token

    @property
    def steps_per_epoch(self) -> int:
        """Number of batches :meth:`train_batches` yields (the last partial batch is dropped)."""
        return self.n_train // self.batch_size

    def train_batches(self, epoch: int) -> Iterator[Batch]:
        """Shuffled, full training batches; the same for every run with the same seed."""
        return self.make_train_batches(epoch)

    def test_batches(self) -> Iterator[Batch]:
        """Test batches in a fixed order; the last one may be smaller."""
        return self.make_test_batches()


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator whose stream depends only on ``(seed, epoch)``: what draws an epoch's training batches."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))
