"""The HTML report's tables: the Markdown tables of a results directory (``tables/*.md``) as one HTML page.

The outputs step writes each table twice, as CSV (exact numbers) and as Markdown for humans
(:mod:`optbench.report.outputs`). This module turns the Markdown form into HTML tables, with the same text and
alignment, so that the Snakemake report shows them as tables: ``workflow/report/workflow.rst`` includes
the page on the report's first view, and the rule ``report_tables`` adds it as a result of its own.
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable
from pathlib import Path

from optbench.atomic import atomic_write_text

# Headings of the tables every preset has; any other table (sweeps, stability maps) is headed by its file name.
TITLES = {
    "summary": "Summary: per variant, the best cell, the slope of log2 best weight decay on log2 lr, the noise floor",
    "improvements": "Claims: each configured comparison at each variant's best cell",
    "best_cell_shifts": "Claims: where a candidate's best cell sits against its baseline's, against a published ratio",
    "memory": "Optimizer state memory: predicted from parameter shapes, and measured",
}
ORDER = tuple(TITLES)


def parse_markdown_table(text: str) -> tuple[list[str], list[str], list[list[str]]]:
    """A GitHub Markdown table (``| a | b |`` lines, the second one of ``---`` or ``---:``) as its header,
    each column's alignment (``left`` or ``right``) and its rows of cells. ValueError if it is not one."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) < 2 or not all(line.startswith("|") and line.endswith("|") for line in lines):
        raise ValueError("not a Markdown table: every line must start and end with |")
    header, rule, *rows = ([cell.strip() for cell in line[1:-1].split("|")] for line in lines)
    if any(len(row) != len(header) for row in (rule, *rows)):
        raise ValueError(f"a Markdown table row does not have the header's {len(header)} cells")
    if not all(set(cell) <= {"-", ":"} and "-" in cell for cell in rule):
        raise ValueError(f"not a Markdown table: its second line is {rule}, not a rule of --- and ---:")
    return header, ["right" if cell.endswith(":") else "left" for cell in rule], rows


def table_html(text: str) -> str:
    """A Markdown table (:func:`parse_markdown_table`) as an HTML ``<table>``, every cell escaped."""
    header, aligns, rows = parse_markdown_table(text)

    def row(cells: list[str], tag: str) -> str:
        tags = (f'<{tag} style="text-align: {a}">{html.escape(c, quote=False)}</{tag}>' for c, a in zip(cells, aligns))
        return "<tr>" + "".join(tags) + "</tr>"

    body = "\n".join(row(cells, "td") for cells in rows)
    return f'<table class="optbench-table">\n<thead>{row(header, "th")}</thead>\n<tbody>\n{body}\n</tbody>\n</table>'


def _order(path: Path) -> tuple[int, str]:
    """The tables of :data:`TITLES` first, in that order; then the rest by name."""
    return (ORDER.index(path.stem) if path.stem in ORDER else len(ORDER), path.stem)


def tables_page(paths: Iterable[str | os.PathLike]) -> str:
    """One HTML fragment holding every Markdown table of ``paths``, each under a heading and its file name."""
    sections = []
    for path in sorted(map(Path, paths), key=_order):
        try:
            table = table_html(path.read_text())
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
        title = html.escape(TITLES.get(path.stem, path.stem.replace("_", " ")), quote=False)
        sections.append(f"<h3>{title}</h3>\n<p>tables/{html.escape(path.name)}</p>\n{table}")
    style = (
        "<style>.optbench-table{border-collapse:collapse;font-size:0.8em;margin-bottom:1.5em}"
        ".optbench-table th,.optbench-table td{border:1px solid #ccc;padding:2px 6px}"
        ".optbench-table thead{background:#eee}</style>"
    )
    return "\n".join([style, *sections]) + "\n"


def write_tables_page(paths: Iterable[str | os.PathLike], out: str | os.PathLike) -> None:
    """:func:`tables_page` of ``paths``, written atomically to ``out``."""
    atomic_write_text(out, tables_page(paths))
