"""Files of tensors that carry a SHA-256 of their content, checked before torch reads them: the training
jobs' checkpoints (:mod:`optbench.train.checkpoints`) and the datasets' caches (:func:`cached`).

``torch.load`` checks nothing: flipped bytes in a checkpoint resumed a run that then ended 8 points worse with
status "ok", and a text cache of scrambled tokens trained as if it were whole. So a file written here (:func:`save`)
starts with one line, ``optbench-sha256 <64 hex digits>\\n``, the SHA-256 of the ``torch.save`` bytes that
follow, and :func:`load` checks it before torch reads a byte. A file changed, cut short, or without that line
(written before optbench checked its files: it is treated as damaged too, and so rebuilt once) raises
:class:`Damaged`, whose one-line message names the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from optbench.atomic import atomic_write

log = logging.getLogger("optbench")

#: How a file of this module's begins; the hexadecimal digest and a newline follow.
MAGIC = b"optbench-sha256 "
HEADER_SIZE = len(MAGIC) + 64 + 1


class Damaged(ValueError):
    """A file that :func:`load` cannot trust; the message names it and says what is wrong."""


def save(path: str | Path, content: Any) -> None:
    """Writes ``content`` (tensors, numbers, strings and containers of them) to ``path``, atomically
    (:mod:`optbench.atomic`), after the line holding its SHA-256.

    It is serialized in memory first: ``torch.save`` reports a full disk as a RuntimeError in its own words,
    whereas the write of the bytes fails with an OSError naming the file, like any other write."""
    payload = io.BytesIO()
    torch.save(content, payload)
    digest = hashlib.sha256(payload.getbuffer()).hexdigest()

    def write(tmp: Path) -> None:
        with tmp.open("wb") as file:
            file.write(MAGIC + digest.encode() + b"\n")
            file.write(payload.getbuffer())

    atomic_write(path, write)


def load(path: str | Path, map_location: torch.device | str | None = None) -> Any:
    """The content :func:`save` wrote to ``path``, its tensors on ``map_location``; :class:`Damaged` unless the
    file is whole and torch can read it."""
    content = memoryview(Path(path).read_bytes())
    header, payload = bytes(content[:HEADER_SIZE]), content[HEADER_SIZE:]
    if not header.startswith(MAGIC):
        raise Damaged(f"{path} has no checksum (written by an older optbench, or not a file of its own)")
    if header != MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n":
        raise Damaged(f"{path} does not match its SHA-256 (changed or cut short)")
    try:
        return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as err:  # whole, but of a format or with types this torch cannot read
        raise Damaged(f"{path} cannot be read by torch {torch.__version__} ({str(err).splitlines()[0]})") from None


def cached(path: Path, build: Callable[[], Any]) -> Any:
    """The content of the cache file ``path``; built by ``build()`` and written there first where the file is
    absent, or :class:`Damaged` (after a log line naming it and saying what is wrong), so that nothing trains
    on a damaged cache."""
    if path.exists():
        try:
            return load(path)
        except Damaged as err:
            log.warning("cache %s: rebuilding it", err)
    content = build()
    save(path, content)
    return content
