"""optbench.report.html: the Markdown tables of a run as HTML tables for the report."""

from pathlib import Path

import pytest

from optbench.report.html import TITLES, header_groups, parse_markdown_table, table_html, tables_page, two_lines

ROOT = Path(__file__).resolve().parents[1]
TABLE = "| variant | best test error |\n| --- | ---: |\n| AdamW <b> | 2.7% |\n| Adam (L2) | 3.1% |\n"


def test_a_markdown_table_keeps_its_header_alignment_and_cells():
    header, aligns, rows = parse_markdown_table(TABLE)
    assert header == ["variant", "best test error"]
    assert aligns == ["left", "right"]
    assert rows == [["AdamW <b>", "2.7%"], ["Adam (L2)", "3.1%"]]


def test_a_long_header_takes_two_lines_of_nearly_equal_length():
    assert two_lines("slope of log2 best lambda on log2 lr") == ["slope of log2 best", "lambda on log2 lr"]
    assert two_lines("variant") == ["variant"]
    # only where the header is longer than every cell of its column: elsewhere it widens nothing
    text = table_html("| best test error | seeds of the run |\n| --- | --- |\n| 2.7% | 3 seeds of 3 in all |\n")
    assert '<th style="text-align: left">best test<br>error</th>' in text
    assert '<th style="text-align: left">seeds of the run</th>' in text


def test_columns_of_one_group_share_a_header_cell():
    header = ["variant", "CNN: bytes", "CNN: ratio to Adam", "Transformer: bytes", "Transformer: ratio", "note: x"]
    assert header_groups(header) == [
        ("", ["variant"]),
        ("CNN", ["bytes", "ratio to Adam"]),
        ("Transformer", ["bytes", "ratio"]),
        ("", ["note: x"]),  # a group of one column keeps its whole header
    ]
    text = table_html("| " + " | ".join(header) + " |\n|" + " --- |" * 6 + "\n|" + " 1 |" * 6 + "\n")
    top, bottom = text.split("<thead>")[1].split("</thead>")[0].split("</tr><tr>")
    assert '<th colspan="2" style="text-align: center">CNN</th>' in top
    assert '<th rowspan="2" style="text-align: left">variant</th>' in top and "note:<br>x" in top
    assert bottom.count("<th") == 4 and "ratio<br>to Adam" in bottom


def test_the_html_table_escapes_every_cell():
    text = table_html(TABLE)
    assert text.startswith('<table class="optbench-table">')
    assert '<th style="text-align: right">best test<br>error</th>' in text
    assert '<td style="text-align: left">AdamW &lt;b&gt;</td>' in text
    assert text.count("<tr>") == 3


@pytest.mark.parametrize(
    "text,message",
    [
        ("just text\n", "not a Markdown table"),
        ("| a | b |\n| --- |\n", "does not have the header's 2 cells"),
        ("| a |\n| b |\n", "not a rule of --- and ---:"),
    ],
)
def test_what_is_not_a_table_is_an_error(text, message):
    with pytest.raises(ValueError, match=message):
        parse_markdown_table(text)


def test_the_page_holds_every_committed_table_in_order(tmp_path):
    tables = ROOT / "results" / "reference" / "quick" / "tables"
    page = tables_page(sorted(tables.glob("*.md"), reverse=True))
    headings = [page.index(TITLES[name]) for name in ("summary", "improvements", "memory")]
    assert headings == sorted(headings)
    assert page.count("<table") == 3
    assert "slope of log2 best lambda on log2 lr [95% CI]" in page
    assert "Adam (L2), cosine" in page and '<th colspan="2" style="text-align: center">Transformer-base</th>' in page


def test_a_broken_table_names_its_file(tmp_path):
    (tmp_path / "summary.md").write_text("no table\n")
    with pytest.raises(ValueError, match="summary.md: not a Markdown table"):
        tables_page([tmp_path / "summary.md"])
