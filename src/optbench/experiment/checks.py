"""What a training job would reject, found when the config is loaded, before any job starts.

The JSON schema (``workflow/schemas/config.schema.yaml``, applied by :mod:`optbench.experiment.config`)
checks each value alone, finite numbers included. :func:`check_experiment` checks what a job checks of
the values together, with the job's own code: each optimizer of the variant table
(:func:`optbench.spec.run.optimizer_spec`: a base and its switches, or an external class's block, whose class
:func:`optbench.train.external_check.check_external` imports and builds), and each variant's run spec
(:meth:`optbench.spec.run.RunSpec.check`: the schedule against the epochs, the dataset options and batch
size); and that figure panels name variants of the table. Grid axes and run ids are checked by
:func:`optbench.experiment.preset.load_experiment` itself (:mod:`optbench.spec.run_ids`). A ValueError names the
config key.
"""

from __future__ import annotations

from typing import Any

from optbench.experiment.preset import Experiment, load_experiment
from optbench.spec.run import RunSpec, optimizer_spec


def checked_experiment(config: dict[str, Any]) -> Experiment:
    """The experiment of ``config`` (:func:`load_experiment`), after :func:`check_experiment`."""
    experiment = load_experiment(config)
    check_experiment(experiment, config)
    return experiment


def check_experiment(experiment: Experiment, config: dict[str, Any]) -> None:
    """ValueError naming the config key of the first value a training job of ``experiment`` would reject."""
    _check_panels(config["figures"], config["variants"])
    for name, row in config["variants"].items():
        _check_optimizer(row["optimizer"], f"variants.{name}")
    for variant in experiment.variants:
        _check_runs(experiment, variant)


def _check_panels(figures: dict[str, Any], variants: dict[str, Any]) -> None:
    for name, figure in figures.items():
        rows, titles = len(figure["panels"]), len(figure.get("row_titles", figure["panels"]))
        if titles != rows:
            raise ValueError(
                f"figures.{name}.row_titles: {titles} given for {rows} rows of panels; give one title per row"
            )
        for r, row in enumerate(figure["panels"]):
            for c, panel in enumerate(row):
                if panel is not None and panel not in variants:
                    raise ValueError(
                        f"figures.{name}.panels[{r}][{c}]: unknown variant {panel!r}; allowed: {', '.join(variants)}"
                    )


def _check_optimizer(optimizer: dict[str, Any], where: str) -> None:
    try:
        optimizer_spec(optimizer)  # its errors start with "optimizer."
    except ValueError as err:
        raise ValueError(f"{where}.{err}") from None


def _check_runs(experiment: Experiment, variant: str) -> None:
    """A variant's runs differ only in lr, weight decay and seed (checked by the schema): its first run spec
    stands for all of them. Its fields come from the preset's settings, but the schedule, which comes from
    ``presets.<preset>.schedules.<name>``."""
    (lrs, decays), seeds = experiment.grid(variant), experiment.settings["seeds"]
    fields = experiment.run_fields(variant, lrs[0], decays[0], seeds[0])
    try:
        RunSpec.from_dict(fields)
    except ValueError as err:
        field, _, reason = str(err).partition(": ")
        key = f"schedules.{experiment.variants[variant]['schedule']}: {reason}" if field == "schedule" else err
        raise ValueError(
            f"presets.{experiment.preset}.{key} (in the runs of variant {variant}, {fields['epochs']} epochs)"
        ) from None
