"""Damage done to a file in the tests of checksummed checkpoints and caches (optbench.checksummed)."""

from pathlib import Path


def flip(path: Path, start: int, count: int) -> None:
    """Inverts ``count`` bytes of ``path`` from ``start`` on, as a bad disk or a stray write would."""
    content = bytearray(path.read_bytes())
    content[start : start + count] = bytes(b ^ 0xFF for b in content[start : start + count])
    path.write_bytes(bytes(content))


def cut_short(path: Path) -> None:
    """Keeps the first half of ``path``, as a full disk or a copy stopped midway would."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def find(path: Path, data: bytes) -> int:
    """Where ``data`` starts in ``path`` (a tensor's bytes: torch.save stores them as they are)."""
    start = path.read_bytes().find(data)
    assert start >= 0, f"not in {path}"
    return start
