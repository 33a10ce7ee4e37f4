"""Writing a report's tables: each as CSV (exact numbers) and, for humans, as Markdown; every file atomically."""

from __future__ import annotations

import os

import pandas as pd

from optbench.atomic import atomic_write_csv, atomic_write_text


def write_table_and_markdown(
    table: pd.DataFrame, markdown: str, csv_path: str | os.PathLike, md_path: str | os.PathLike
) -> None:
    """``table`` as CSV to ``csv_path`` and its Markdown form, ``markdown``, to ``md_path``."""
    atomic_write_csv(csv_path, table)
    atomic_write_text(md_path, markdown)
