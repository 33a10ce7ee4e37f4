"""The text_stdlib dataset: its pin, cache, split and batches, on a small corpus the tests write, and the shipped
corpus, the same bytes whatever the interpreter."""

import hashlib
import json
import logging
import lzma
import os
import subprocess
import sys
from pathlib import Path

import damage
import pytest
import torch
import yaml

from optbench import checksummed
from optbench.data import text as text_data
from optbench.data.loaders import load_data
from optbench.spec.datasets import DATASET_OPTIONS, TEXT_STDLIB_SHA256

FILES = {"a.py": b"import os\n" * 50, "b.py": b"print('b')\n" * 40, "d.py": b"x = 1\n" * 30}


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    """A small corpus of three files, shipped as the real one is (xz and a manifest); returns its hash."""
    text = b"".join(FILES.values())
    shipped = tmp_path / "corpus" / "small.xz"
    shipped.parent.mkdir()
    shipped.write_bytes(lzma.compress(text))
    manifest = {"sha256": hashlib.sha256(text).hexdigest(), "files": [[n, len(t)] for n, t in FILES.items()]}
    shipped.with_suffix(".json").write_text(json.dumps(manifest))
    monkeypatch.setattr(text_data, "CORPUS", shipped)
    return manifest["sha256"]


def load(data_dir, sha256, batch_size=4, seed=0, **options):
    options = {"context": 8, "steps_per_epoch": 3, "eval_windows": 5, "sha256": sha256, **options}
    return load_data("text_stdlib", data_dir=data_dir, batch_size=batch_size, seed=seed, options=options)


def test_corpus_is_read_once_into_its_cache(tmp_path, corpus, monkeypatch):
    data = load(tmp_path / "data", corpus)
    assert (data.num_classes, data.input_shape, data.n_train, data.n_test) == (256, (8,), 12, 5)
    assert data.bits_per_token
    (cache,) = (tmp_path / "data").iterdir()
    assert cache.name == f"text_stdlib-{corpus[:16]}.pt"
    saved = checksummed.load(cache)
    assert saved["files"] == ["a.py", "b.py", "d.py"] and saved["sha256"] == corpus
    assert bytes(saved["tokens"].tolist()) == FILES["a.py"] + FILES["b.py"] + FILES["d.py"]
    monkeypatch.setattr(text_data, "read_corpus", lambda *a: pytest.fail("read the sources again"))
    load(tmp_path / "data", corpus)  # from the cache alone


def scramble_tokens(cache):
    """The tokens of the cache's first file inverted."""
    damage.flip(cache, damage.find(cache, FILES["a.py"]), len(FILES["a.py"]))


@pytest.mark.parametrize("harm", [scramble_tokens, damage.cut_short], ids=["scrambled", "cut short"])
def test_a_damaged_cache_is_rebuilt(tmp_path, corpus, caplog, harm):
    """One line naming the cache and what is wrong, then the cache is read from the corpus again and training
    gets the windows it would have got."""
    whole = load(tmp_path / "data", corpus)
    (cache,) = (tmp_path / "data").iterdir()
    harm(cache)
    with caplog.at_level(logging.INFO, logger="optbench"):
        again = load(tmp_path / "data", corpus)
    assert caplog.messages == [f"cache {cache} does not match its SHA-256 (changed or cut short): rebuilding it"]
    for epoch in (1, 2):
        assert all(map(torch.equal, sum(again.train_batches(epoch), ()), sum(whole.train_batches(epoch), ())))
    assert all(map(torch.equal, sum(again.test_batches(), ()), sum(whole.test_batches(), ())))
    assert bytes(checksummed.load(cache)["tokens"].tolist()) == b"".join(FILES.values())  # whole again


def test_a_different_corpus_stops_naming_the_option_and_the_hash_found(tmp_path, corpus):
    with pytest.raises(
        ValueError,
        match=rf"sha256: the corpus .*small.xz .* hashes to {corpus}, not the pinned 0{{64}}; dataset_options",
    ):
        load(tmp_path, "0" * 64)
    assert os.listdir(tmp_path) == ["corpus"]  # no cache written


def test_split_windows_and_batches(tmp_path, corpus):
    data = load(tmp_path, corpus, val_fraction=0.2)
    tokens = checksummed.load(next(tmp_path.glob("*.pt")))["tokens"]
    cut = int(0.8 * len(tokens))
    train, val = tokens[:cut].long(), tokens[cut:].long()
    batches = list(data.train_batches(1))
    assert len(batches) == 3 and all(x.shape == y.shape == (4, 8) for x, y in batches)
    for x, y in batches:
        assert torch.equal(x[:, 1:], y[:, :-1])  # y is the next byte
        for row, target in zip(x, y):
            start = next(i for i in range(cut - 8) if torch.equal(train[i : i + 8], row) and train[i + 8] == target[-1])
            assert torch.equal(train[start + 1 : start + 9], target)
    (x_val, y_val), *rest = list(data.test_batches())
    assert sum(len(x) for x, _ in [(x_val, y_val), *rest]) == 5
    assert torch.equal(x_val[0], val[:8]) and torch.equal(y_val[0], val[1:9])  # the first window starts the split
    assert x_val.dtype == torch.int64


def test_training_windows_are_a_function_of_seed_and_epoch(tmp_path, corpus):
    first, again, other = load(tmp_path, corpus), load(tmp_path, corpus), load(tmp_path, corpus, seed=1)
    same = [torch.equal(a[0], b[0]) for a, b in zip(first.train_batches(2), again.train_batches(2))]
    assert all(same)
    assert not torch.equal(next(first.train_batches(2))[0], next(first.train_batches(3))[0])
    assert not torch.equal(next(first.train_batches(2))[0], next(other.train_batches(2))[0])
    assert [torch.equal(a[0], b[0]) for a, b in zip(first.test_batches(), other.test_batches())] == [True, True]


@pytest.mark.parametrize(
    "options, match",
    [
        ({"context": 0}, "dataset_options.context: must be an integer >= 1"),
        ({"steps_per_epoch": 2.5}, "dataset_options.steps_per_epoch: must be an integer"),
        ({"eval_windows": True}, "dataset_options.eval_windows: must be an integer"),
        ({"val_fraction": 1.0}, r"dataset_options.val_fraction: must be a number in \(0, 1\)"),
        ({"sha256": "abc"}, "dataset_options.sha256: must be 64 hex digits"),
        ({"context": 400}, r"dataset_options.context: 400 \+ 1 exceeds the \d+ bytes of the validation split"),
    ],
)
def test_bad_options_are_named(tmp_path, corpus, options, match):
    with pytest.raises(ValueError, match=match):
        load(tmp_path, options.pop("sha256", corpus), **options)


def test_the_shipped_corpus_is_the_pinned_one():
    manifest = json.loads(text_data.CORPUS.with_suffix(".json").read_text())
    saved = text_data.read_corpus(text_data.CORPUS, TEXT_STDLIB_SHA256)
    assert (
        (len(saved["files"]), len(saved["tokens"])) == (168, 4_698_388) == (len(manifest["files"]), manifest["bytes"])
    )
    assert sum(size for _, size in manifest["files"]) == manifest["bytes"]
    assert saved["sha256"] == manifest["sha256"] == TEXT_STDLIB_SHA256 == DATASET_OPTIONS["text_stdlib"]["sha256"]


def test_the_stability_maps_unigram_bits_are_the_corpus_byte_frequencies():
    """config.yaml's unigram_bits: the validation split's cross-entropy under the training split's byte frequencies."""
    tokens = text_data.read_corpus(text_data.CORPUS, TEXT_STDLIB_SHA256)["tokens"].long()
    train, val = text_data.split(tokens, DATASET_OPTIONS["text_stdlib"]["val_fraction"])
    frequencies = torch.bincount(train, minlength=256).double() / len(train)
    bits = -torch.log2(frequencies[val]).mean().item()
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())
    assert config["stability_maps"]["adafactor"]["unigram_bits"] == round(bits, 3) == 4.543


def test_the_corpus_does_not_depend_on_the_interpreters_standard_library(tmp_path):
    """Another interpreter's standard library (here: none, its directory empty) gives the same corpus: the loader
    reads the copy shipped in the package, in a fresh process whose sysconfig points nowhere."""
    script = f"""
import sysconfig
sysconfig.get_paths = lambda *a, **k: {{"stdlib": {str(tmp_path)!r}, "platstdlib": {str(tmp_path)!r}}}
sysconfig.get_path = lambda name, *a, **k: {str(tmp_path)!r}
from optbench.data.loaders import load_data
data = load_data("text_stdlib", data_dir={str(tmp_path / "data")!r}, batch_size=4, seed=0,
                 options={{"context": 8, "steps_per_epoch": 1, "eval_windows": 2}})
print(next(iter(data.test_batches()))[0].tolist())
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    tokens = lzma.decompress(text_data.CORPUS.read_bytes())
    first = list(tokens[int(0.9 * len(tokens)) :][:8])
    assert json.loads(out)[0] == first
