"""Fixtures shared by the test modules."""

import pytest
import torch


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A data directory per test module: its MNIST-1D and text caches are built once there."""
    return str(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread (``pytestmark = pytest.mark.usefixtures("one_thread")``): small CPU forwards and
    in-process training gain nothing from threads, and slow down many-fold when cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
