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
from itertools import groupby
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
# One line per cell (a header: two at most), so that a table reads at a glance; a table wider than the page
# scrolls by itself, sideways, instead of wrapping its cells (the report's page has the width of the window).
STYLE = (
    "<style>.optbench-scroll{overflow-x:auto;margin-bottom:1.5em}"
    ".optbench-table{border-collapse:collapse;font-size:0.75em;margin:0}"
    ".optbench-table th,.optbench-table td{border:1px solid #ccc;padding:2px 4px}"
    ".optbench-table th{white-space:nowrap}"
    ".optbench-table thead{background:#eee}</style>"
)


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


def two_lines(header: str) -> list[str]:
    """A header cell's text as at most two lines, broken at the space that makes the longer line shortest."""
    spaces = [i for i, c in enumerate(header) if c == " "]
    if not spaces:
        return [header]
    i = min(spaces, key=lambda i: max(i, len(header) - i - 1))
    return [header[:i], header[i + 1 :]]


def header_groups(header: list[str]) -> list[tuple[str, list[str]]]:
    """The header's columns in runs of one group: a header ``group: name`` belongs to ``group`` (as the memory
    table's ``MNIST-1D CNN: bytes`` and the stability tables' ``warm-up: verdict``) where the next or previous
    column does too; any other column is a run of its own, under the group ``""``."""
    runs: list[tuple[str, list[str]]] = []
    parts = [h.partition(": ") for h in header]
    for group, members in groupby(zip(header, parts), key=lambda column: column[1][0] if column[1][1] else ""):
        members = list(members)
        if group and len(members) > 1:
            runs.append((group, [name for _, (_, _, name) in members]))
        else:
            runs += [("", [h]) for h, _ in members]
    return runs


def _head_cell(text: str, widest: int, align: str, span: str = "") -> str:
    """A header cell: two lines where it is longer than its column's widest cell (:func:`two_lines`), so that it
    widens its column no more than it must; ``span``: its rowspan or colspan attribute."""
    lines = two_lines(text) if len(text) > widest else [text]
    return f'<th{span} style="text-align: {align}">{"<br>".join(map(_escape, lines))}</th>'


def _head(header: list[str], aligns: list[str], widest: list[int]) -> str:
    """The table's header: one row, or two where columns share a group (:func:`header_groups`): the group's name
    over its columns, the other columns' headers spanning both rows."""
    runs = header_groups(header)
    if all(not group for group, _ in runs):
        return "<tr>" + "".join(map(_head_cell, header, widest, aligns)) + "</tr>"
    top, bottom, j = [], [], 0
    for group, names in runs:
        if group:
            top.append(f'<th colspan="{len(names)}" style="text-align: center">{_escape(group)}</th>')
            bottom += map(_head_cell, names, widest[j : j + len(names)], aligns[j : j + len(names)])
        else:
            top.append(_head_cell(names[0], widest[j], aligns[j], ' rowspan="2"'))
        j += len(names)
    return "<tr>" + "".join(top) + "</tr><tr>" + "".join(bottom) + "</tr>"


def table_html(text: str) -> str:
    """A Markdown table (:func:`parse_markdown_table`) as an HTML ``<table>``, every cell escaped, the header
    grouped (:func:`_head`)."""
    header, aligns, rows = parse_markdown_table(text)
    widest = [max((len(row[j]) for row in rows), default=0) for j in range(len(header))]
    cells = (zip(map(_escape, row), aligns) for row in rows)
    body = "\n".join(
        "<tr>" + "".join(f'<td style="text-align: {a}">{c}</td>' for c, a in row) + "</tr>" for row in cells
    )
    head = _head(header, aligns, widest)
    return f'<table class="optbench-table">\n<thead>{head}</thead>\n<tbody>\n{body}\n</tbody>\n</table>'


def _escape(text: str) -> str:
    return html.escape(text, quote=False)


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
        name = html.escape(path.name)
        sections.append(f'<h3>{title}</h3>\n<p>tables/{name}</p>\n<div class="optbench-scroll">\n{table}\n</div>')
    return "\n".join([STYLE, *sections]) + "\n"


def write_tables_page(paths: Iterable[str | os.PathLike], out: str | os.PathLike) -> None:
    """:func:`tables_page` of ``paths``, written atomically to ``out``."""
    atomic_write_text(out, tables_page(paths))
