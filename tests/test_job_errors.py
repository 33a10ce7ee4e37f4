"""A job that fails shows its one-line reason on the terminal, and Snakemake's report of it carries no config dump."""

import json
import subprocess
import sys

import pytest
import yaml
from workflow_copy import copy_workflow, snakemake

from optbench.experiment.param_files import param_file

BOOM = '''import torch


class Boom(torch.optim.SGD):
    """SGD whose step fails: a training job that fails once it runs."""

    def step(self, closure=None):
        raise ValueError("Boom: this optimizer refuses to step")
'''


def test_under_log_the_error_line_goes_to_the_log_and_the_terminal(tmp_path):
    log = tmp_path / "logs" / "train.log"
    result = subprocess.run(
        [sys.executable, "-m", "optbench", "train", "--log", str(log), "--spec-json", "[]", "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    line = "optbench train: error: --spec-json: no run specs (an empty list)"
    assert (result.returncode, result.stderr.splitlines()) == (2, [line])
    assert log.read_text().splitlines() == [line]


def test_under_log_an_unexpected_exception_is_one_line_its_traceback_in_the_log(tmp_path):
    """An exception that is no bad input (here a RuntimeError from a command): its first line on the terminal, with
    where its traceback is."""
    log = tmp_path / "report.log"
    script = f"""
import sys
import optbench.report.html


def fail(tables, out):
    raise RuntimeError("CUDA error: an illegal memory access was encountered\\nmore detail")


optbench.report.html.write_tables_page = fail
from optbench.__main__ import main
sys.exit(main(["report-tables", "--log", {str(log)!r}, "--tables", "t.md", "--out", "t.html"]))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    line = (
        "optbench report-tables: error: RuntimeError: CUDA error: an illegal memory access was encountered"
        f" (the traceback is in {log})"
    )
    assert (result.returncode, result.stderr.splitlines()) == (1, [line])
    text = log.read_text()
    assert text.startswith("Traceback (most recent call last):") and text.splitlines()[-1] == line


def test_a_param_file_is_named_by_its_content_and_written_once(tmp_path):
    first = param_file('{"a": 1}', tmp_path)
    assert param_file('{"a": 1}', tmp_path) == first != param_file('{"a": 2}', tmp_path)
    assert json.loads(open(first).read()) == {"a": 1}


@pytest.mark.slow
def test_a_failing_training_job_shows_its_reason_and_no_config(tmp_path):
    """An external optimizer that fails at its first step: the terminal shows the job's one line, and Snakemake's
    report of the failed job holds a short command, not the run specs' or the config's JSON."""
    workdir = copy_workflow(tmp_path)
    (workdir / "boom.py").write_text(BOOM)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["variants"]["boom"] = {
        "label": "Boom",
        "optimizer": {"class": "boom.Boom", "weight_decay_mode": "torch"},
        "schedule": "cosine",
        "grid": "raw",
        "in_all": False,
    }
    config["presets"]["smoke"].update(variants=["boom"], runs_per_job=4)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake(workdir, "--cores", "1", "--config", "preset=smoke")
    assert result.returncode != 0
    terminal = result.stdout + result.stderr
    assert "optbench train: error: Boom: this optimizer refuses to step" in terminal.splitlines()
    assert '"optimizer"' not in terminal and '"variants"' not in terminal
    assert len(terminal) < 6000, terminal
