"""Headless Chromium for the report's tests: a page's rendered DOM, a screenshot, and its layout measured in the
browser itself (where the title lies, how far the page has scrolled, how many lines each table cell takes)."""

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = next(filter(None, map(shutil.which, ["chromium", "chromium-browser", "google-chrome"])), None)
# Headless, offline and quiet: without the last four, Chromium's own connections are refused and it stalls.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--hide-scrollbars",
    "--virtual-time-budget=10000",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# Run after the page's own scripts: waits until the report has rendered its title and tables (the Snakemake report
# draws its pages with React after load), then writes what it measured as JSON into a <pre> at the end of the
# body, where --dump-dom reads it: the title's box, how many elements have scrolled, the top of the page's text,
# and per table its right edge and its cells' text and lines (the distinct tops of the text's line boxes).
MEASURE = """<script>
(function measure(tries) {
  const tables = document.querySelectorAll("table.optbench-table");
  const title = document.querySelector(".document h1.title");
  if ((!tables.length || !title) && tries > 0) { setTimeout(() => measure(tries - 1), 100); return; }
  const lines = (cell) => {
    const range = document.createRange();
    range.selectNodeContents(cell);
    return new Set(Array.from(range.getClientRects(), (r) => Math.round(r.top))).size;
  };
  const box = (el) => { const r = el.getBoundingClientRect(); return {top: r.top, bottom: r.bottom, right: r.right}; };
  const layout = {
    viewport: [innerWidth, innerHeight],
    title: title && title.textContent,
    title_box: title && box(title),
    scrolled: Array.from(document.querySelectorAll("*"), (el) => el.scrollTop).filter((top) => top > 0).length,
    content_top: Math.min(...Array.from(document.querySelectorAll(".document"), (el) => box(el).top)),
    tables: Array.from(tables, (table) => ({
      right: box(table).right,
      cells: Array.from(table.querySelectorAll("th, td"), (cell) => ({
        text: cell.innerText.replace(/\\s+/g, " "),
        lines: lines(cell),
      })),
    })),
  };
  const out = document.createElement("pre");
  out.id = "optbench-layout";
  out.textContent = JSON.stringify(layout);
  document.body.appendChild(out);
})(100);
</script>"""


def require_chromium() -> str:
    """Chromium's path; the test is skipped without it, unless OPTBENCH_REQUIRE_BROWSER=1 (CI installs it and sets
    that), where it fails."""
    if CHROMIUM is None:
        reason = "no chromium: `apt-get install -y chromium` (Debian) runs this check"
        if os.environ.get("OPTBENCH_REQUIRE_BROWSER", "") == "1":
            pytest.fail(f"OPTBENCH_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return CHROMIUM


def chromium(*args, page: Path) -> subprocess.CompletedProcess:
    """Chromium with :data:`FLAGS` and ``args`` on the file ``page``."""
    run = [require_chromium(), *FLAGS, *args, page.resolve().as_uri()]
    return subprocess.run(run, capture_output=True, text=True, timeout=120)


def rendered_dom(page: Path, size=(1400, 900)) -> str:
    """The page's DOM once its scripts have run, in a window of ``size`` pixels."""
    dom = chromium(f"--window-size={size[0]},{size[1]}", "--dump-dom", page=page)
    assert dom.returncode == 0, dom.stderr[-3000:]
    return dom.stdout


def measured_layout(page: Path, workdir: Path, size=(1400, 900)) -> dict:
    """What :data:`MEASURE` finds on ``page`` (a copy of it in ``workdir`` with the script appended), just after
    it has loaded in a window of ``size`` pixels."""
    probe = workdir / f"measured-{page.name}"
    head, tail = page.read_text().rsplit("</body>", 1)  # the page's own end, after any script's text
    probe.write_text(f"{head}{MEASURE}\n</body>{tail}")
    found = re.search(r'<pre id="optbench-layout">(.*?)</pre>', rendered_dom(probe, size), flags=re.DOTALL)
    assert found, "the report did not render its title and tables within 10 s"
    return json.loads(html.unescape(found[1]))
