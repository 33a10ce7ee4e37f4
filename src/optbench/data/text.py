r"""``text_stdlib``: byte-level language modelling on a shipped copy of Python's standard library source.

**Source.** The bytes of every ``*.py`` file directly in CPython 3.11.7's ``Lib/`` directory, in
sorted file-name order, concatenated: 168 files and 4,698,388 bytes. They ship with this package,
xz-compressed, in ``optbench/data/corpus/`` (:data:`CORPUS`, with a manifest of the files and the Python
Software Foundation's license), so every machine and every interpreter reads the same bytes; the
running interpreter's own standard library is never read.

**Pin.** The corpus's SHA-256 must equal the dataset option ``sha256`` (default
:data:`optbench.spec.datasets.TEXT_STDLIB_SHA256`; the options are checked there). A
mismatch stops loading with an error naming the option, the file and the hash found, rather than
train on another text.

**Cache.** The corpus is tokenized once (one token per byte, vocabulary 256) into
``<data_dir>/text_stdlib-<first 16 hex digits of the hash>.pt``, written atomically, holding the
tokens, the file names and the hash; later loads read only that file, after checking the SHA-256 of its content
(:mod:`optbench.checksummed`): a damaged cache is rebuilt, after a log line naming it.

**Split.** The first :math:`\lfloor (1 - f) N \rfloor` bytes train and the rest validate,
f = ``val_fraction`` (0.1). The cut falls inside one file; the files after it (the alphabetically
last) are never trained on.

**Batches.** A training "epoch" is ``steps_per_epoch`` batches of ``batch_size`` windows of
``context + 1`` bytes at offsets drawn uniformly from the training split, a function of
``(seed, epoch)`` alone: x is a window's first ``context`` bytes, y the byte after each of them.
Validation uses ``eval_windows`` windows at evenly spaced offsets of the validation split, the
same for every run and every evaluation. :func:`load` builds the :class:`~optbench.data.bundle.DataBundle`,
whose test loss is recorded in bits per token (``DataBundle.bits_per_token``).
"""

from __future__ import annotations

import hashlib
import json
import lzma
import math
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import torch
from torch import Tensor

from optbench.checksummed import cached
from optbench.data.bundle import Batch, DataBundle, epoch_generator

VOCABULARY = 256  # one token per byte


#: The shipped corpus: the concatenated files, xz-compressed; beside it their manifest (``.json``).
CORPUS = Path(__file__).parent / "corpus" / "python-3.11.7-stdlib.xz"


def read_corpus(path: Path, sha256: str) -> dict:
    """Tokens, file names and hash of the corpus in ``path``; ValueError unless it hashes to ``sha256``."""
    text = lzma.decompress(path.read_bytes())
    found = hashlib.sha256(text).hexdigest()
    if found != sha256:
        raise ValueError(
            f"text_stdlib sha256: the corpus {path} ({len(text)} bytes) hashes to {found}, not the pinned {sha256}; "
            f"dataset_options.sha256 must be the shipped corpus's hash, or the file is damaged"
        )
    files = [name for name, _ in json.loads(path.with_suffix(".json").read_text())["files"]]
    tokens = torch.frombuffer(bytearray(text), dtype=torch.uint8).clone()
    return {"tokens": tokens, "files": files, "sha256": found}


def cached_corpus(data_dir: Path, sha256: str) -> dict:
    """The pinned corpus from its cache file, tokenized and written there on first use (or where the cache
    file is damaged: :func:`optbench.checksummed.cached`)."""
    return cached(data_dir / f"text_stdlib-{sha256[:16]}.pt", partial(read_corpus, CORPUS, sha256))


def split(tokens: Tensor, val_fraction: float) -> tuple[Tensor, Tensor]:
    """Training and validation tokens: the first floor((1 - f) N) bytes, and the rest."""
    cut = math.floor((1 - val_fraction) * len(tokens))
    return tokens[:cut], tokens[cut:]


def windows(tokens: Tensor, starts: Tensor, context: int) -> tuple[Tensor, Tensor]:
    """Inputs ``(n, context)`` and next-byte targets ``(n, context)`` of the windows at ``starts``, as int64."""
    index = starts.unsqueeze(1) + torch.arange(context + 1, device=starts.device)
    window = tokens[index].long()
    return window[:, :-1], window[:, 1:]


def eval_starts(n_tokens: int, context: int, count: int) -> Tensor:
    """``count`` evenly spaced window offsets covering ``n_tokens`` tokens; ValueError if the split is too short."""
    last = n_tokens - context - 1
    if last < 0:
        raise ValueError(f"dataset_options.context: {context} + 1 exceeds the {n_tokens} bytes of the validation split")
    return torch.linspace(0, last, count).round().long()


def train_starts(n_tokens: int, context: int, count: int, generator: torch.Generator) -> Tensor:
    """``count`` window offsets drawn uniformly from those that fit in ``n_tokens`` tokens."""
    return torch.randint(n_tokens - context, (count,), generator=generator)


def batches(x: Tensor, y: Tensor, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Consecutive batches of ``batch_size`` rows (the last one may be smaller)."""
    return zip(x.split(batch_size), y.split(batch_size))


def load(
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
    """The pinned corpus as next-byte prediction on ``device``: epochs of ``steps_per_epoch`` batches of
    random training windows, and ``eval_windows`` fixed validation windows, each ``context`` bytes long."""
    train, val = (t.to(device) for t in split(cached_corpus(data_dir, sha256)["tokens"], val_fraction))
    starts = eval_starts(len(val), context, eval_windows).to(device)
    x_val, y_val = windows(val, starts, context)
    n_train = steps_per_epoch * batch_size  # windows per epoch

    def train_batches(epoch: int) -> Iterator[Batch]:
        """Epoch ``epoch``'s batches of windows at offsets of its own."""
        starts = train_starts(len(train), context, n_train, epoch_generator(seed, epoch)).to(device)
        return batches(*windows(train, starts, context), batch_size)

    return DataBundle(
        name="text_stdlib",
        num_classes=VOCABULARY,
        input_shape=(context,),
        n_train=n_train,
        n_test=eval_windows,
        batch_size=batch_size,
        make_train_batches=train_batches,
        make_test_batches=lambda: batches(x_val, y_val, batch_size),
        bits_per_token=True,
    )
