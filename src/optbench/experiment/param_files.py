"""The JSON a workflow job reads (its run specs, the config) in a file named by its content, written when the
workflow is planned.

A job's command names the file rather than carrying the JSON (as a here-document it did): Snakemake prints a
failed job's command, twice, and with the config in it that was about 38 KB around the one line that says what
went wrong. Named by a hash of its content, a file never changes once written: a second Snakemake run planned
with another config (a dry run, say) writes files of its own beside it, and the jobs of the first read theirs.
The rules pass the file's path as the job's param, so a change to the JSON is a change to the params, and
Snakemake runs the job again, as it did when the JSON was the param itself.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from optbench.atomic import atomic_write_text

PARAMS_DIR = ".snakemake/optbench/params"


def param_file(text: str, directory: str = PARAMS_DIR) -> str:
    """The path of the file holding ``text``, ``<directory>/<hash>.json``, written there unless it already is."""
    path = Path(directory) / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
    if not path.exists():
        atomic_write_text(path, text)
    return str(path)
