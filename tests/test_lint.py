"""Lint and format checks: ruff over the Python code, snakefmt over the workflow (settings in pyproject.toml)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the tools pinned in requirements.txt, installed beside this interpreter
PYTHON_CODE = ["src", "tests", "benchmarks"]
WORKFLOW = ["Snakefile", "workflow/rules"]


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", *PYTHON_CODE],
        ["ruff", "format", "--check", *PYTHON_CODE],
        ["snakefmt", "--check", *WORKFLOW],
    ],
    ids=["ruff-check", "ruff-format", "snakefmt"],
)
def test_code_is_clean(command):
    result = subprocess.run([str(BIN / command[0]), *command[1:]], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
