"""What a training job would reject, found when the config is loaded, before any job starts.

The JSON schema (``workflow/schemas/config.schema.yaml``, applied by :mod:`optbench.experiment.config`)
checks each value alone, finite numbers included. :func:`check_experiment` checks what a job checks of
the values together, with the job's own code: each optimizer of the variant table
(:func:`optbench.spec.switches.resolve`), the schedule of each variant's runs against their epochs
(:class:`optbench.spec.schedule.ScheduleSpec`), their dataset options and batch size
(:func:`optbench.spec.datasets.check_dataset`); and that figure panels name variants of the table.
Grid axes and run ids are checked by :func:`optbench.experiment.preset.load_experiment` itself
(:mod:`optbench.spec.run_ids`). A ValueError names the config key.

:func:`check_cuda` checks the device on the machine the jobs run on; the Snakefile calls it when they
run on its own machine.

Imports nothing but the standard library and modules that import no more: the Snakefile runs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from optbench.spec.datasets import check_dataset
from optbench.spec.schedule import ScheduleSpec
from optbench.spec.switches import resolve

if TYPE_CHECKING:
    from optbench.experiment.preset import Experiment


def check_experiment(experiment: Experiment, config: dict[str, Any]) -> None:
    """ValueError naming the config key of the first value a training job of ``experiment`` would reject."""
    _check_panels(config["figures"], config["variants"])
    for name, row in config["variants"].items():
        _check_optimizer(row["optimizer"], f"variants.{name}.optimizer")
    for variant in experiment.variants:
        _check_runs(experiment, variant)


def _check_panels(figures: dict[str, Any], variants: dict[str, Any]) -> None:
    for name, figure in figures.items():
        for r, row in enumerate(figure["panels"]):
            for c, panel in enumerate(row):
                if panel is not None and panel not in variants:
                    raise ValueError(
                        f"figures.{name}.panels[{r}][{c}]: unknown variant {panel!r}; allowed: {', '.join(variants)}"
                    )


def _check_optimizer(optimizer: dict[str, Any], where: str) -> None:
    switches = {key: value for key, value in optimizer.items() if key != "base"}
    try:
        resolve(optimizer["base"], switches)
    except ValueError as err:
        raise ValueError(f"{where}.{err}") from None


def _check_runs(experiment: Experiment, variant: str) -> None:
    """A variant's runs differ only in lr, weight decay and seed (checked by the schema): its first run
    stands for all of them."""
    run = experiment.shards(variant)[0][0]
    preset = f"presets.{experiment.preset}"
    of_variant = f" (in the runs of variant {variant}, {run['epochs']} epochs)"
    try:
        ScheduleSpec.from_dict(run["schedule"]).check_run(run["epochs"])
    except ValueError as err:
        raise ValueError(f"{preset}.schedules.{experiment.variants[variant]['schedule']}: {err}{of_variant}") from None
    try:
        check_dataset(run["dataset"], run["dataset_options"], run["batch_size"])
    except ValueError as err:
        raise ValueError(f"{preset}.{err}{of_variant}") from None


def check_cuda(preset: str, device: str) -> None:
    """ValueError if the preset asks for ``device: cuda`` and torch, imported here only then, sees no GPU.

    Without torch here (Snakemake run from its own conda environment) nothing is checked: the training
    jobs check when they start, before they train (:func:`optbench.train.loop.resolve_device`).
    """
    if device != "cuda":
        return
    try:
        import torch
    except ImportError:
        return
    if not torch.cuda.is_available():
        raise ValueError(
            f"presets.{preset}.device: 'cuda', but torch sees no CUDA device on this machine, where the jobs "
            "would run; use auto or cpu, or run the jobs on GPU nodes (--profile profiles/slurm)"
        )
