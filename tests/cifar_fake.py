"""Write a small fake CIFAR-10 in the official ``cifar-10-batches-py`` format.

The official files are Python 2 pickles: dict keys, label names and the arrays' raw bytes
are Python 2 byte strings, read back as ``"data"`` by torchvision (``encoding="latin1"``) and as
``b"data"`` with ``encoding="bytes"``. ``_Py2Pickler`` writes ``str`` and ``bytes`` the same way.
"""

import pickle
import struct
from pathlib import Path

import numpy as np

TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class _Py2Pickler(pickle._Pickler):
    """Protocol-2 pickler that stores ``str`` and ``bytes`` as Python 2 byte strings (BINSTRING)."""

    def save_py2_string(self, obj: str | bytes) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch = {**pickle._Pickler.dispatch, str: save_py2_string, bytes: save_py2_string}


def _write_pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        _Py2Pickler(f, protocol=2).dump(obj)


def write_fake_cifar10(root: Path, images_per_file: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """Create ``root/cifar-10-batches-py`` with random images; return the train/test arrays written.

    Arrays are uint8 N x 3072 (channel-major 32x32 planes, as in the official files).
    """
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {"train_data": [], "train_labels": []}
    for name in TRAIN_FILES + ["test_batch"]:
        data = rng.integers(0, 256, (images_per_file, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, images_per_file).tolist()
        _write_pickle(folder / name, {"batch_label": name, "labels": labels, "data": data, "filenames": []})
        split = "test" if name == "test_batch" else "train"
        written.setdefault(f"{split}_data", []).append(data)
        written.setdefault(f"{split}_labels", []).extend(labels)
    meta = {"num_cases_per_batch": images_per_file, "label_names": LABEL_NAMES, "num_vis": 3072}
    _write_pickle(folder / "batches.meta", meta)
    return {key: np.concatenate(value) if key.endswith("data") else np.array(value) for key, value in written.items()}
