"""Datasets behind one interface: :func:`load_data` returns a :class:`DataBundle`.

* ``mnist1d``: generated offline by the ``mnist1d`` package (fixed seed), cached as
  ``<data_dir>/mnist1d-<num_samples>.pt``, kept in memory on the target device. ``train_size``
  keeps the first that many training signals and the whole test set, so runs on training
  sets of different sizes are tested on the same signals.
* ``cifar10``: read by ``torchvision.datasets.CIFAR10`` from ``<data_dir>/cifar-10-batches-py``;
  never downloaded.
* ``text_stdlib``: next-byte prediction on the Python standard library's source, pinned by its
  hash, cached as ``<data_dir>/text_stdlib-<hash>.pt`` (:mod:`optbench.data.text`). An "epoch" is a
  fixed number of batches of windows at random offsets; the test set is a fixed set of validation
  windows, and its loss is recorded in bits per token (``DataBundle.bits_per_token``).

Training batches drop the last partial batch, so every step sees exactly ``batch_size``
examples and ``steps_per_epoch == n_train // batch_size`` (the ``B / b`` of the normalized
weight decay formula). Test batches keep every example. Training batch order, and for
CIFAR-10 the augmentation too, is a function of ``(seed, epoch)`` alone.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from optbench.atomic import atomic_write_buffered
from optbench.data import text as text_data
from optbench.spec.datasets import DATASET_OPTIONS as DATASET_OPTIONS  # re-exported: names and options of the datasets
from optbench.spec.datasets import DATASETS as DATASETS
from optbench.spec.datasets import check_dataset

if TYPE_CHECKING:
    from torchvision.datasets import CIFAR10

# mnist1d and torchvision are imported where they are used: together they take two
# seconds to import, paid by every training job that reads MNIST-1D from the cache.

Batch = tuple[Tensor, Tensor]

#: Per-channel mean and standard deviation of the CIFAR-10 training images.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


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
    return _LOADERS[name](Path(data_dir), batch_size, seed, torch.device(device), **options)


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator whose stream depends only on ``(seed, epoch)``."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


# --- mnist1d -------------------------------------------------------------------------


def _load_mnist1d(
    data_dir: Path, batch_size: int, seed: int, device: torch.device, *, num_samples: int, train_size: int | None
) -> DataBundle:
    tensors = {key: value.to(device) for key, value in _mnist1d_tensors(data_dir, num_samples).items()}
    x, y = tensors["x"][:train_size].unsqueeze(1), tensors["y"][:train_size]  # (N, 1, 40): one input channel
    x_test, y_test = tensors["x_test"].unsqueeze(1), tensors["y_test"]

    def train_batches(epoch: int) -> Iterator[Batch]:
        order = torch.randperm(len(y), generator=_epoch_generator(seed, epoch)).to(device)
        for index in order[: len(y) // batch_size * batch_size].split(batch_size):
            yield x[index], y[index]

    return DataBundle(
        name="mnist1d",
        num_classes=10,
        input_shape=tuple(x.shape[1:]),
        n_train=len(y),
        n_test=len(y_test),
        batch_size=batch_size,
        make_train_batches=train_batches,
        make_test_batches=lambda: zip(x_test.split(batch_size), y_test.split(batch_size)),
    )


# make_dataset draws from NumPy's global RNG: two threads generating at once would interleave draws.
_MNIST1D_LOCK = threading.Lock()


def _mnist1d_tensors(data_dir: Path, num_samples: int) -> dict[str, Tensor]:
    """x, y, x_test, y_test of MNIST-1D; generated on first use, then read from the cache file."""
    path = data_dir / f"mnist1d-{num_samples}.pt"
    with _MNIST1D_LOCK:
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_buffered(path, partial(torch.save, _generate_mnist1d(num_samples)))
    return torch.load(path, weights_only=True)


def _generate_mnist1d(num_samples: int) -> dict[str, Tensor]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = num_samples
    with _preserved_global_rngs():  # make_dataset reseeds Python's and NumPy's global RNGs
        data = make_dataset(args)
    return {
        "x": torch.from_numpy(data["x"]).float(),
        "y": torch.from_numpy(data["y"]).long(),
        "x_test": torch.from_numpy(data["x_test"]).float(),
        "y_test": torch.from_numpy(data["y_test"]).long(),
    }


@contextlib.contextmanager
def _preserved_global_rngs() -> Iterator[None]:
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


# --- cifar10 -------------------------------------------------------------------------


def _load_cifar10(data_dir: Path, batch_size: int, seed: int, device: torch.device, *, num_workers: int) -> DataBundle:
    from torchvision import transforms

    _require_cifar10_files(data_dir)
    normalize = [transforms.ToTensor(), transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD)]
    augment = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
    train_set = _cifar10(data_dir, train=True, transform=transforms.Compose(augment + normalize))
    test_set = _cifar10(data_dir, train=False, transform=transforms.Compose(normalize))
    loader_args = dict(batch_size=batch_size, num_workers=num_workers, pin_memory=device.type == "cuda")

    def train_batches(epoch: int) -> Iterator[Batch]:
        generator = _epoch_generator(seed, epoch)
        order = torch.randperm(len(train_set), generator=generator).tolist()
        item_seeds = torch.randint(2**62, (len(train_set),), generator=generator).tolist()
        keys = list(zip(order, item_seeds))
        loader = DataLoader(_SeededItems(train_set), sampler=keys, drop_last=True, generator=generator, **loader_args)
        return _to_device(loader, device)

    def test_batches() -> Iterator[Batch]:
        # A generator of its own: a DataLoader without one draws its worker seed from the global RNG.
        return _to_device(DataLoader(test_set, generator=torch.Generator(), **loader_args), device)

    return DataBundle(
        name="cifar10",
        num_classes=10,
        input_shape=(3, 32, 32),
        n_train=len(train_set),
        n_test=len(test_set),
        batch_size=batch_size,
        make_train_batches=train_batches,
        make_test_batches=test_batches,
    )


def _require_cifar10_files(data_dir: Path) -> None:
    from torchvision.datasets import CIFAR10

    folder = data_dir / CIFAR10.base_folder
    names = [name for name, _ in CIFAR10.train_list + CIFAR10.test_list] + [CIFAR10.meta["filename"]]
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 not found: {folder} lacks {', '.join(missing)}. optbench never downloads; "
            f"on a machine with network access download {CIFAR10.url} and extract it into "
            f"{data_dir} so that {folder}/ exists."
        )


def _cifar10(data_dir: Path, *, train: bool, transform: Callable) -> CIFAR10:
    from torchvision.datasets import CIFAR10

    try:
        return CIFAR10(root=data_dir, train=train, transform=transform, download=False)
    except RuntimeError as error:  # torchvision's md5 check failed
        raise ValueError(
            f"CIFAR-10 files in {data_dir / CIFAR10.base_folder} are corrupted ({error}); "
            f"extract {CIFAR10.filename} there again."
        ) from error


class _SeededItems(Dataset):
    """Wraps a dataset so that keys are ``(index, seed)`` pairs.

    The item's random transforms draw from torch's default CPU generator seeded with ``seed``
    (its previous state is restored afterwards), so augmentation depends on the key alone:
    the same in the main process and in any DataLoader worker, whatever ``num_workers``.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)  # not torch.manual_seed: leave CUDA RNGs alone
            return self.dataset[index]


def _to_device(batches: Iterable[Batch], device: torch.device) -> Iterator[Batch]:
    for x, y in batches:
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


# --- text_stdlib ---------------------------------------------------------------------


def _load_text_stdlib(
    data_dir: Path,
    batch_size: int,
    seed: int,
    device: torch.device,
    *,
    context: int,
    steps_per_epoch: int,
    eval_windows: int,
    val_fraction: float,
    sha256: str,
) -> DataBundle:
    train, val = (
        t.to(device) for t in text_data.split(text_data.cached_corpus(data_dir, sha256)["tokens"], val_fraction)
    )
    starts = text_data.eval_starts(len(val), context, eval_windows).to(device)
    x_val, y_val = text_data.windows(val, starts, context)
    n_train = steps_per_epoch * batch_size  # windows per epoch

    def train_batches(epoch: int) -> Iterator[Batch]:
        starts = text_data.train_starts(len(train), context, n_train, _epoch_generator(seed, epoch)).to(device)
        return text_data.batches(*text_data.windows(train, starts, context), batch_size)

    return DataBundle(
        name="text_stdlib",
        num_classes=text_data.VOCABULARY,
        input_shape=(context,),
        n_train=n_train,
        n_test=eval_windows,
        batch_size=batch_size,
        make_train_batches=train_batches,
        make_test_batches=lambda: text_data.batches(x_val, y_val, batch_size),
        bits_per_token=True,
    )


#: One loader per dataset of :data:`optbench.spec.datasets.CATALOG` (its options, their defaults and checks).
_LOADERS = {"mnist1d": _load_mnist1d, "cifar10": _load_cifar10, "text_stdlib": _load_text_stdlib}
