"""Datasets behind one interface: :func:`load_data` returns a :class:`~optbench.data.bundle.DataBundle`,
built by the dataset's loader in :data:`LOADERS`.

* ``mnist1d`` (:mod:`optbench.data.mnist1d`): generated offline by the ``mnist1d`` package (fixed seed),
  cached as ``<data_dir>/mnist1d-<num_samples>.pt``, kept in memory on the target device. ``train_size``
  keeps the first that many training signals and the whole test set, so runs on training sets of
  different sizes are tested on the same signals.
* ``cifar10`` (:mod:`optbench.data.cifar10`): read by ``torchvision.datasets.CIFAR10`` from
  ``<data_dir>/cifar-10-batches-py``; never downloaded.
* ``text_stdlib`` (:mod:`optbench.data.text`): next-byte prediction on the Python standard library's
  source, pinned by its hash, cached as ``<data_dir>/text_stdlib-<hash>.pt``. An "epoch" is a fixed
  number of batches of windows at random offsets; the test set is a fixed set of validation windows, and
  its loss is recorded in bits per token (``DataBundle.bits_per_token``).

Training batches drop the last partial batch, so every step sees exactly ``batch_size``
examples and ``steps_per_epoch == n_train // batch_size`` (the ``B / b`` of the normalized
weight decay formula). Test batches keep every example. Training batch order, and for
CIFAR-10 the augmentation too, is a function of ``(seed, epoch)`` alone
(:func:`optbench.data.bundle.epoch_generator`).

The caches carry a SHA-256 of their content, checked on every load; a damaged one is built again, after a log
line naming it (:mod:`optbench.checksummed`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from optbench.data import cifar10, mnist1d, text
from optbench.data.bundle import DataBundle
from optbench.spec.datasets import DATASET_OPTIONS as DATASET_OPTIONS  # re-exported: names and options of the datasets
from optbench.spec.datasets import DATASETS as DATASETS
from optbench.spec.datasets import check_dataset

# mnist1d and torchvision are imported where they are used: together they take two
# seconds to import, paid by every training job that reads MNIST-1D from the cache.

#: The loader of each dataset of :data:`optbench.spec.datasets.CATALOG` (which holds its options, their
#: defaults and checks), by name: called as ``loader(data_dir, batch_size, seed, device, **options)`` with
#: the dataset's checked options, it returns the dataset's :class:`~optbench.data.bundle.DataBundle`.
LOADERS: dict[str, Callable[..., DataBundle]] = {
    "mnist1d": mnist1d.load,
    "cifar10": cifar10.load,
    "text_stdlib": text.load,
}


def load_data(
    name: str,
    *,
    data_dir: str | Path,
    batch_size: int,
    seed: int,
    device: torch.device | str = "cpu",
    options: dict[str, Any] | None = None,
) -> DataBundle:
    """Load dataset ``name``; ``options`` override the per-dataset defaults in ``DATASET_OPTIONS``, checked
    with the batch size first (:func:`optbench.spec.datasets.check_dataset`)."""
    options = check_dataset(name, options or {}, batch_size)
    return LOADERS[name](Path(data_dir), batch_size, seed, torch.device(device), **options)
