"""What each dataset accepts, checked without loading it: its options and their defaults, their values, and
how many training examples an epoch draws from, so that a batch can be checked against them.

The Snakefile checks a preset's data with :func:`check_dataset`
when the config is loaded, before any job starts, and :func:`optbench.data.loaders.load_data` checks with the same
function before it loads anything. A dataset's entry in :data:`CATALOG` and its loader in
:mod:`optbench.data.loaders` are added together (``tests/test_bad_input.py`` keeps the two equal).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from optbench.spec.values import is_integer, is_number

#: mnist1d's ``train_split``: the first 80% of its signals train, the rest test (4000 and 1000 of 5000).
MNIST1D_TRAIN_SPLIT = 0.8
CIFAR10_TRAIN_EXAMPLES = 50_000
#: SHA-256 of the ``text_stdlib`` corpus of Python 3.11.7 (168 files, 4,698,388 bytes).
TEXT_STDLIB_SHA256 = "2e31e854ce7c5a39d3549a94420e7ba4b51281ef0f32fc8b6ddd601eff6d7d42"


@dataclass(frozen=True)
class Dataset:
    """A dataset's options with their defaults, and ``train_examples(options, batch_size)``: the number of
    training examples an epoch draws from, after a ValueError naming the first bad option (``"name: ..."``)."""

    options: dict[str, Any]
    train_examples: Callable[[dict[str, Any], int], int]


def _integer(options: dict[str, Any], name: str, low: int, high: int | None = None) -> int:
    value = options[name]
    if not is_integer(value) or value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name}: must be an integer {bound}, got {value!r}")
    return value


def _mnist1d(options: dict[str, Any], batch_size: int) -> int:
    num_samples = options["num_samples"]
    if not is_integer(num_samples) or num_samples < 10 or num_samples % 10:
        raise ValueError(f"num_samples: must be a positive multiple of 10, got {num_samples!r}")
    n_train = int(num_samples * MNIST1D_TRAIN_SPLIT)
    if options["train_size"] is None:
        return n_train
    return _integer(options, "train_size", 1, n_train)  # at most the training signals of num_samples


def _cifar10(options: dict[str, Any], batch_size: int) -> int:
    _integer(options, "num_workers", 0)
    return CIFAR10_TRAIN_EXAMPLES


def _text_stdlib(options: dict[str, Any], batch_size: int) -> int:
    for name in ("context", "steps_per_epoch", "eval_windows"):
        _integer(options, name, 1)
    fraction = options["val_fraction"]
    if not is_number(fraction) or not 0 < fraction < 1:
        raise ValueError(f"val_fraction: must be a number in (0, 1), got {fraction!r}")
    sha256 = options["sha256"]
    if not isinstance(sha256, str) or len(sha256) != 64:
        raise ValueError(f"sha256: must be 64 hex digits, got {sha256!r}")
    return options["steps_per_epoch"] * batch_size  # an epoch's windows


CATALOG: dict[str, Dataset] = {
    "mnist1d": Dataset({"num_samples": 5000, "train_size": None}, _mnist1d),  # mnist1d's default size; all of it
    "cifar10": Dataset({"num_workers": 0}, _cifar10),
    "text_stdlib": Dataset(
        {"context": 64, "steps_per_epoch": 50, "eval_windows": 256, "val_fraction": 0.1, "sha256": TEXT_STDLIB_SHA256},
        _text_stdlib,
    ),
}
DATASETS = tuple(CATALOG)
#: Options accepted by each dataset, with their defaults.
DATASET_OPTIONS: dict[str, dict[str, Any]] = {name: dataset.options for name, dataset in CATALOG.items()}


def check_dataset(name: str, options: dict[str, Any], batch_size: int) -> dict[str, Any]:
    """The options of dataset ``name``, defaults filled in; a ValueError names the first bad key: ``dataset``,
    ``dataset_options.<option>``, or ``batch_size`` (not a positive integer, or more than an epoch's examples)."""
    if name not in CATALOG:
        raise ValueError(f"dataset: unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    if not isinstance(options, dict):
        raise ValueError(f"dataset_options: must be a mapping, got {options!r}")
    dataset = CATALOG[name]
    unknown = sorted(set(options) - set(dataset.options))
    if unknown:
        raise ValueError(
            f"dataset_options.{unknown[0]}: unknown option for dataset {name!r}; allowed: {', '.join(dataset.options)}"
        )
    if not is_integer(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size: must be an integer >= 1, got {batch_size!r}")
    merged = {**dataset.options, **options}
    try:
        n_train = dataset.train_examples(merged, batch_size)
    except ValueError as err:
        raise ValueError(f"dataset_options.{err}") from None
    if batch_size > n_train:
        raise ValueError(f"batch_size: {batch_size} exceeds the {n_train} training examples of {name}")
    return merged
