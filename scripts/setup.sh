#!/usr/bin/env bash
# Sets up the pip route on a fresh machine with Python 3.11: a virtual environment in .venv
# holding the pinned requirements and this package (editable). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements.txt
.venv/bin/python -m pip install --quiet --no-deps -e .
