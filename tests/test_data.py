import logging
import os
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import damage
import mnist1d.data
import numpy as np
import pytest
import torch
import torchvision.datasets.cifar
from cifar_fake import write_fake_cifar10

from optbench import checksummed
from optbench.data import loaders as data
from optbench.data import mnist1d as mnist1d_data
from optbench.data.cifar10 import CIFAR10_MEAN, CIFAR10_STD
from optbench.data.loaders import DATASETS, load_data


@pytest.fixture(scope="module")
def mnist1d_dir(tmp_path_factory):
    """A data directory holding the default (5000-sample) MNIST-1D cache, generated once."""
    path = tmp_path_factory.mktemp("data")
    load_data("mnist1d", data_dir=path, batch_size=100, seed=0)
    return path


def load_mnist1d(data_dir, batch_size=100, seed=0):
    return load_data("mnist1d", data_dir=data_dir, batch_size=batch_size, seed=seed)


def same_batches(first, second):
    return len(first) == len(second) and all(
        torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(first, second)
    )


# --- mnist1d: generation and cache ---------------------------------------------------


def test_mnist1d_default_split_and_complete_cache_file(mnist1d_dir):
    assert os.listdir(mnist1d_dir) == ["mnist1d-5000.pt"]  # no temporary file left behind
    cache = checksummed.load(mnist1d_dir / "mnist1d-5000.pt")
    shapes = {key: tuple(value.shape) for key, value in cache.items()}
    assert shapes == {"x": (4000, 40), "y": (4000,), "x_test": (1000, 40), "y_test": (1000,)}
    assert cache["x"].dtype == torch.float32 and set(cache["y"].tolist()) == set(range(10))
    bundle = load_mnist1d(mnist1d_dir)
    assert (bundle.name, bundle.num_classes, bundle.input_shape) == ("mnist1d", 10, (1, 40))
    assert (bundle.n_train, bundle.n_test, bundle.steps_per_epoch) == (4000, 1000, 40)


def test_mnist1d_second_load_reads_the_cache(mnist1d_dir, monkeypatch):
    def fail(args):
        raise AssertionError("regenerated although the cache exists")

    monkeypatch.setattr(mnist1d.data, "make_dataset", fail)
    x, y = next(load_mnist1d(mnist1d_dir).test_batches())
    cache = checksummed.load(mnist1d_dir / "mnist1d-5000.pt")
    assert torch.equal(x, cache["x_test"][:100].unsqueeze(1)) and torch.equal(y, cache["y_test"][:100])


def test_mnist1d_num_samples_is_generated_once_into_its_own_cache(tmp_path, monkeypatch):
    make_dataset, calls = mnist1d.data.make_dataset, []
    monkeypatch.setattr(mnist1d.data, "make_dataset", lambda args: calls.append(args) or make_dataset(args))
    for _ in range(2):
        bundle = load_data("mnist1d", data_dir=tmp_path, batch_size=10, seed=0, options={"num_samples": 200})
    assert len(calls) == 1
    assert os.listdir(tmp_path) == ["mnist1d-200.pt"]
    assert (bundle.n_train, bundle.n_test) == (160, 40)


def test_mnist1d_generation_leaves_global_rngs_alone(tmp_path):
    random.seed(1)
    np.random.seed(1)
    expected = (random.random(), np.random.rand())
    random.seed(1)
    np.random.seed(1)
    load_data("mnist1d", data_dir=tmp_path, batch_size=10, seed=0, options={"num_samples": 100})
    assert (random.random(), np.random.rand()) == expected


def test_interrupted_cache_write_leaves_no_file(tmp_path, monkeypatch):
    def save_then_die(obj, file):  # torch.save writes into a buffer, then the buffer goes to disk
        file.write(b"half a cache")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        load_data("mnist1d", data_dir=tmp_path, batch_size=10, seed=0, options={"num_samples": 100})
    assert os.listdir(tmp_path) == []


def test_concurrent_generation_of_one_cache(tmp_path):
    def load(_):
        return load_data("mnist1d", data_dir=tmp_path, batch_size=10, seed=0, options={"num_samples": 100})

    with ThreadPoolExecutor(3) as pool:
        bundles = list(pool.map(load, range(3)))
    assert os.listdir(tmp_path) == ["mnist1d-100.pt"]
    assert all(same_batches(list(b.test_batches()), list(bundles[0].test_batches())) for b in bundles)


def scramble_signals(cache):
    """The cache's first 1,000 bytes of test signals inverted."""
    damage.flip(cache, damage.find(cache, mnist1d_data.generate(100)["x_test"].numpy().tobytes()), 1000)


@pytest.mark.parametrize("harm", [scramble_signals, damage.cut_short], ids=["scrambled", "cut short"])
def test_a_damaged_mnist1d_cache_is_rebuilt(tmp_path, caplog, harm):
    """One line naming the cache and what is wrong, then the cache is generated again and training gets the
    signals it would have got."""
    whole = load_data("mnist1d", data_dir=tmp_path, batch_size=10, seed=0, options={"num_samples": 100})
    cache = tmp_path / "mnist1d-100.pt"
    harm(cache)
    with caplog.at_level(logging.INFO, logger="optbench"):
        again = load_data("mnist1d", data_dir=tmp_path, batch_size=10, seed=0, options={"num_samples": 100})
    assert caplog.messages == [f"cache {cache} does not match its SHA-256 (changed or cut short): rebuilding it"]
    assert same_batches(list(again.test_batches()), list(whole.test_batches()))
    assert same_batches(list(again.train_batches(1)), list(whole.train_batches(1)))
    assert os.listdir(tmp_path) == ["mnist1d-100.pt"]
    assert torch.equal(checksummed.load(cache)["x_test"], mnist1d_data.generate(100)["x_test"])  # whole again


@pytest.mark.slow
def test_concurrent_processes_write_one_complete_cache(tmp_path):
    code = "import sys; from optbench.data.loaders import load_data; load_data('mnist1d', data_dir=sys.argv[1], "
    code += "batch_size=10, seed=0, options={'num_samples': 1000})"
    processes = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)]) for _ in range(3)]
    assert [process.wait(timeout=120) for process in processes] == [0, 0, 0]
    assert os.listdir(tmp_path) == ["mnist1d-1000.pt"]
    cache = checksummed.load(tmp_path / "mnist1d-1000.pt")
    expected = mnist1d_data.generate(1000)
    assert all(torch.equal(cache[key], expected[key]) for key in expected)


# --- mnist1d: batches ----------------------------------------------------------------


def test_mnist1d_batch_order_depends_only_on_seed_and_epoch(mnist1d_dir):
    first, second, other_seed = (load_mnist1d(mnist1d_dir, seed=seed) for seed in (3, 3, 4))
    epoch0 = list(first.train_batches(0))
    assert same_batches(epoch0, list(second.train_batches(0)))
    assert same_batches(epoch0, list(first.train_batches(0)))
    assert not torch.equal(epoch0[0][1], next(first.train_batches(1))[1])
    assert not torch.equal(epoch0[0][1], next(other_seed.train_batches(0))[1])


def test_mnist1d_drops_the_last_partial_training_batch(mnist1d_dir):
    bundle = load_mnist1d(mnist1d_dir, batch_size=300)  # 4000 = 13 * 300 + 100
    batches = list(bundle.train_batches(0))
    assert bundle.steps_per_epoch == len(batches) == 13
    assert all(x.shape == (300, 1, 40) and y.shape == (300,) for x, y in batches)
    rows = torch.cat([x for x, _ in batches]).flatten(1)
    assert len(torch.unique(rows, dim=0)) == 3900  # no example twice in an epoch
    test = list(bundle.test_batches())
    assert [len(y) for _, y in test] == [300, 300, 300, 100]


def test_mnist1d_train_size_keeps_the_first_signals_and_the_whole_test_set(mnist1d_dir):
    full = load_mnist1d(mnist1d_dir)
    subset = load_data("mnist1d", data_dir=mnist1d_dir, batch_size=100, seed=0, options={"train_size": 1000})
    assert (subset.n_train, subset.n_test, subset.steps_per_epoch) == (1000, 1000, 10)
    cache = checksummed.load(mnist1d_dir / "mnist1d-5000.pt")
    rows = torch.cat([x for x, _ in subset.train_batches(0)]).flatten(1)
    assert torch.equal(rows.sort(dim=0).values, cache["x"][:1000].sort(dim=0).values)
    assert same_batches(list(subset.test_batches()), list(full.test_batches()))
    assert os.listdir(mnist1d_dir) == ["mnist1d-5000.pt"]  # the same cache file


# --- cifar10 -------------------------------------------------------------------------


@pytest.fixture
def fake_cifar10(tmp_path, monkeypatch):
    """A fake CIFAR-10 (10 images per file) and the arrays it holds.

    torchvision checks the md5 sums of the official files; as torchvision's own dataset tests
    do, patch ``check_integrity`` in ``torchvision.datasets.cifar``, here so that it checks only
    that the file exists. Everything else runs torchvision's code unchanged.
    """
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))
    return tmp_path, write_fake_cifar10(tmp_path, images_per_file=10)


def load_cifar10(data_dir, seed=0, num_workers=0):
    return load_data("cifar10", data_dir=data_dir, batch_size=8, seed=seed, options={"num_workers": num_workers})


def normalized(images):
    x = torch.from_numpy(images).float().view(-1, 3, 32, 32) / 255
    return (x - torch.tensor(CIFAR10_MEAN).view(3, 1, 1)) / torch.tensor(CIFAR10_STD).view(3, 1, 1)


def test_cifar10_test_batches_are_normalized_images_in_order(fake_cifar10):
    data_dir, arrays = fake_cifar10
    bundle = load_cifar10(data_dir)
    assert (bundle.name, bundle.num_classes, bundle.input_shape) == ("cifar10", 10, (3, 32, 32))
    assert (bundle.n_train, bundle.n_test, bundle.steps_per_epoch) == (50, 10, 6)
    batches = list(bundle.test_batches())
    assert [len(y) for _, y in batches] == [8, 2]
    torch.testing.assert_close(torch.cat([x for x, _ in batches]), normalized(arrays["test_data"]))
    assert torch.cat([y for _, y in batches]).tolist() == arrays["test_labels"].tolist()


def test_cifar10_train_batches_are_augmented_reproducibly(fake_cifar10):
    data_dir, arrays = fake_cifar10
    bundle = load_cifar10(data_dir, seed=5)
    rng_state = torch.get_rng_state()
    epoch0 = list(bundle.train_batches(0))
    assert torch.equal(torch.get_rng_state(), rng_state)  # augmentation leaves the global RNG alone
    assert len(epoch0) == bundle.steps_per_epoch
    assert all(x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 and y.shape == (8,) for x, y in epoch0)
    torch.manual_seed(123)  # a different global RNG state changes nothing
    assert same_batches(epoch0, list(load_cifar10(data_dir, seed=5).train_batches(0)))
    assert same_batches(epoch0, list(load_cifar10(data_dir, seed=5, num_workers=1).train_batches(0)))
    assert not same_batches(epoch0, list(bundle.train_batches(1)))
    plain = normalized(arrays["train_data"])
    unchanged = [any(torch.equal(image, source) for source in plain) for x, _ in epoch0 for image in x]
    assert sum(unchanged) < len(unchanged) / 4  # crop offset (4, 4) and no flip: p = 1/162


def test_cifar10_absent_fails_at_once_and_writes_nothing(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        load_cifar10(tmp_path)
    message = str(error.value)
    assert str(tmp_path / "cifar-10-batches-py") in message and "cifar-10-python.tar.gz" in message
    assert os.listdir(tmp_path) == []
    with pytest.raises(FileNotFoundError):
        load_cifar10(tmp_path / "absent")
    assert not (tmp_path / "absent").exists()


def test_cifar10_failing_md5_check_is_reported_as_corrupted(tmp_path):
    write_fake_cifar10(tmp_path, images_per_file=1)  # real md5 check, fake files
    with pytest.raises(ValueError, match="corrupted"):
        load_cifar10(tmp_path)


# --- errors --------------------------------------------------------------------------


def test_unknown_dataset_lists_the_allowed_ones(tmp_path):
    with pytest.raises(ValueError, match=r"'imagenet'.*mnist1d, cifar10"):
        load_data("imagenet", data_dir=tmp_path, batch_size=8, seed=0)


def test_unknown_option_lists_the_allowed_ones(tmp_path):
    with pytest.raises(ValueError, match=r"num_workers.*'mnist1d'.*allowed: num_samples"):
        load_data("mnist1d", data_dir=tmp_path, batch_size=8, seed=0, options={"num_workers": 2})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "batch_size, options, match",
    [
        (0, {}, "batch_size"),
        (4001, {}, "exceeds"),
        (10, {"num_samples": 105}, "multiple of 10"),
        (10, {"train_size": 4001}, "train_size: must be an integer from 1 to 4000"),
        (10, {"train_size": 1000.0}, "train_size: must be an integer"),
        (200, {"train_size": 100}, "200 exceeds the 100 training examples"),
    ],
)
def test_bad_values_are_rejected(mnist1d_dir, batch_size, options, match):
    with pytest.raises(ValueError, match=match):
        load_data("mnist1d", data_dir=mnist1d_dir, batch_size=batch_size, seed=0, options=options)


def test_mnist1d_default_size_is_the_packages_default():
    assert data.DATASET_OPTIONS["mnist1d"]["num_samples"] == mnist1d.data.get_dataset_args().num_samples


def test_training_jobs_do_not_import_torchvision_or_mnist1d():
    # two seconds of start-up per job; only CIFAR-10 and generating MNIST-1D need them
    code = "import sys, optbench.train.loop; print(sorted(m for m in ('torchvision', 'mnist1d') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_catalogued_dataset_has_a_loader():
    assert sorted(data.LOADERS) == sorted(DATASETS)
