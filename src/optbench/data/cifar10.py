"""``cifar10``: read by ``torchvision.datasets.CIFAR10`` from ``<data_dir>/cifar-10-batches-py``; never
downloaded.

Training batches are augmented (random crop with 4 pixels of padding, horizontal flip), and both the
order and the augmentation are a function of ``(seed, epoch)`` alone, whatever ``num_workers``
(:class:`_SeededItems`). torchvision is imported only where it is used: it is slow to import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader, Dataset

from optbench.data.bundle import Batch, DataBundle, epoch_generator

if TYPE_CHECKING:
    from torchvision.datasets import CIFAR10

#: Per-channel mean and standard deviation of the CIFAR-10 training images.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def load(data_dir: Path, batch_size: int, seed: int, device: torch.device, *, num_workers: int) -> DataBundle:
    """CIFAR-10 from ``data_dir``, normalized, its training images augmented, read by ``num_workers`` workers."""
    from torchvision import transforms

    _require_files(data_dir)
    normalize = [transforms.ToTensor(), transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD)]
    augment = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
    train_set = _dataset(data_dir, train=True, transform=transforms.Compose(augment + normalize))
    test_set = _dataset(data_dir, train=False, transform=transforms.Compose(normalize))
    loader_args = dict(batch_size=batch_size, num_workers=num_workers, pin_memory=device.type == "cuda")

    def train_batches(epoch: int) -> Iterator[Batch]:
        """Epoch ``epoch``'s augmented training batches, in an order and with augmentations of its own."""
        generator = epoch_generator(seed, epoch)
        order = torch.randperm(len(train_set), generator=generator).tolist()
        item_seeds = torch.randint(2**62, (len(train_set),), generator=generator).tolist()
        keys = list(zip(order, item_seeds))
        loader = DataLoader(_SeededItems(train_set), sampler=keys, drop_last=True, generator=generator, **loader_args)
        return _to_device(loader, device)

    def test_batches() -> Iterator[Batch]:
        """The test batches, in order."""
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


def _require_files(data_dir: Path) -> None:
    """FileNotFoundError, saying where to get them, unless every CIFAR-10 file is in ``data_dir``."""
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


def _dataset(data_dir: Path, *, train: bool, transform: Callable) -> CIFAR10:
    """torchvision's CIFAR-10 training or test set; ValueError when its files fail torchvision's md5 check."""
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
        """Wraps ``dataset``."""
        self.dataset = dataset

    def __getitem__(self, key: tuple[int, int]) -> Any:
        """Item ``index`` of the dataset, transformed with torch's CPU generator seeded by ``seed``."""
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)  # not torch.manual_seed: leave CUDA RNGs alone
            return self.dataset[index]


def _to_device(batches: Iterable[Batch], device: torch.device) -> Iterator[Batch]:
    """The batches moved to ``device`` (without waiting where the memory is pinned)."""
    for x, y in batches:
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)
