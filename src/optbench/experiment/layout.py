"""Where everything of a preset lives: every path the workflow and the package use, in one place.

A fresh run of preset ``P`` writes under ``results/P`` (:func:`results_dir`); the committed reference is
``results/reference/P`` (:func:`reference_dir`). Under a results directory:

- ``runs/<variant>/shardNNN/<run_id>.json``: the records of one training job (:func:`shard_dir`);
- ``checkpoints/<variant>/shardNNN/``: its checkpoints while it trains; ``logs/``: one log per job;
- ``tables/runs.csv``: every record, aggregated; ``tables/*.csv|md`` and ``figures/*.png|pdf``: what
  is made from ``runs.csv`` alone (:func:`outputs`); ``compare/`` and ``report/tables.html``.

Path arguments may be Snakemake wildcards (``"{variant}"``, ``"{shard}"``): the rules build their patterns
here too.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from optbench.experiment.preset import Experiment
from optbench.spec.run import RunSpec

#: A shard's directory name: ``shard`` and its index, three digits at least: zero-padded to three below 1000,
#: as it is from 1000 on (one name per index, so ``shard0007`` is none).
SHARD_PATTERN = r"shard(?:\d\d\d|[1-9]\d\d\d+)"  # not \d{3,}: Snakemake matched no shard with it
COMPARE_FILES = ("compare.md", "compare.csv", "difference.png", "difference.pdf")


def results_dir(preset: str) -> str:
    return f"results/{preset}"


def reference_dir(preset: str) -> str:
    return f"results/reference/{preset}"


def runs_csv(results: str | os.PathLike) -> str:
    return f"{results}/tables/runs.csv"


def figures_dir(results: str | os.PathLike) -> str:
    return f"{results}/figures"


def runs_dir(results: str | os.PathLike) -> str:
    return f"{results}/runs"


def results_of(runs_csv_path: str | os.PathLike) -> str:
    """The results directory of a ``runs.csv`` (:func:`runs_csv`)."""
    return str(Path(runs_csv_path).parent.parent)


def runs_of(shard_dir_path: str | os.PathLike) -> str:
    """The runs directory above a shard's directory (:func:`shard_dir`)."""
    return str(Path(shard_dir_path).parent.parent)


def data_summary(results: str | os.PathLike) -> str:
    """The summary of the prepared data set, which every training job waits for."""
    return f"{results}/data.json"


def log(results: str | os.PathLike, step: str) -> str:
    return f"{results}/logs/{step}.log"


def compare_dir(results: str | os.PathLike) -> str:
    return f"{results}/compare"


def compare_files(results: str | os.PathLike) -> list[str]:
    return [f"{compare_dir(results)}/{name}" for name in COMPARE_FILES]


def tables_page(results: str | os.PathLike) -> str:
    """The report's page of every Markdown table."""
    return f"{results}/report/tables.html"


def shard_name(index: int) -> str:
    """``shard007`` for index 7, ``shard1000`` for 1000 (:data:`SHARD_PATTERN`)."""
    return f"shard{index:03d}"


def shard_index(name: str) -> int:
    """The index in a shard's name; ValueError unless it matches :data:`SHARD_PATTERN`."""
    if not re.fullmatch(SHARD_PATTERN, name):
        raise ValueError(f"shard: {name!r} is not a shard's name ({SHARD_PATTERN})")
    return int(name[len("shard") :])


def shard_dir(runs: str | os.PathLike, variant: str, shard: str) -> str:
    """Where the training job of one shard writes its records, one ``<run_id>.json`` each."""
    return f"{runs}/{variant}/{shard}"


def checkpoint_dir(results: str | os.PathLike, variant: str, shard: str) -> str:
    """Where the training job of one shard keeps its checkpoints (outside its output, which Snakemake deletes
    when the job fails)."""
    return f"{results}/checkpoints/{variant}/{shard}"


def train_log(results: str | os.PathLike, variant: str, shard: str) -> str:
    return f"{results}/logs/train/{variant}/{shard}.log"


def shard_dirs(experiment: Experiment, runs: str | os.PathLike) -> list[str]:
    """Every training job's output directory, variant by variant."""
    return [
        shard_dir(runs, variant, shard_name(i))
        for variant in experiment.variants
        for i in range(len(experiment.shards(variant)))
    ]


def record_paths(experiment: Experiment, runs: str | os.PathLike) -> tuple[list[Path], list[RunSpec]]:
    """Every run spec of ``experiment``, and the path its training job writes its record to under ``runs``."""
    paths, specs = [], []
    for variant in experiment.variants:
        for index, shard in enumerate(experiment.shards(variant)):
            directory = Path(shard_dir(runs, variant, shard_name(index)))
            paths.extend(directory / f"{spec.run_id}.json" for spec in shard)
            specs.extend(shard)
    return paths, specs


def outputs(experiment: Experiment, results: str | os.PathLike) -> dict[str, Any]:
    """Tables and figures made from ``runs.csv`` alone, under ``results``; ``sweeps`` holds those of the
    sweeps and ``anytime`` pairs (:mod:`optbench.analysis.sweeps`), none for a preset without."""

    def figure(name: str) -> list[str]:
        return [f"{figures_dir(results)}/{name}.{ext}" for ext in ("png", "pdf")]

    def table(name: str) -> list[str]:
        return [f"{results}/tables/{name}.{ext}" for ext in ("csv", "md")]

    sweeps = experiment.sweeps
    return {
        "summary": table("summary"),
        "improvements": table("improvements"),
        **({"best_cell_shifts": table("best_cell_shifts")} if experiment.shifts else {}),
        "memory": table("memory"),
        "heatmaps": {name: figure(name) for name in experiment.figures},
        "learning_curves": figure("learning_curves"),
        "sweeps": {
            **(
                {
                    "best_decay": table("best_decay"),
                    "decay_slopes": table("decay_slopes"),
                    "best_decay_figure": figure("best_decay"),
                }
                if sweeps
                else {}
            ),
            **{f"heatmaps_{sweep.key}": figure(f"heatmaps_{sweep.key}") for sweep in sweeps},
            **({"anytime": table("anytime"), "anytime_figure": figure("anytime")} if experiment.anytime else {}),
        },
        "stability_maps": {m.name: m.outputs(table, figure) for m in experiment.stability_maps},
    }


def output_files(experiment: Experiment, results: str | os.PathLike) -> list[str]:
    """Every path of :func:`outputs`, in its order."""

    def paths(value: Any) -> list[str]:
        if isinstance(value, dict):
            return [p for item in value.values() for p in paths(item)]
        return list(value)

    return paths(outputs(experiment, results))


def table_files(experiment: Experiment, results: str | os.PathLike) -> list[str]:
    """The tables of :func:`outputs`: every path not under :func:`figures_dir`."""
    return [p for p in output_files(experiment, results) if not p.startswith(f"{figures_dir(results)}/")]
