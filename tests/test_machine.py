"""How many of Snakemake's cores a training job takes (optbench.experiment.machine)."""

import pytest

from optbench.experiment.machine import job_cores, machine_cores


@pytest.mark.parametrize(
    ("cores", "threads", "machine", "taken", "at_once"),
    [
        (2, 1, 2, 1, 2),  # --cores fits the machine: the preset's threads
        (8, 1, 2, 4, 2),  # the README's --cores 8 on a 2-core machine: 2 jobs at once, not 8
        (5, 1, 2, 2, 2),
        (8, 1, 16, 1, 8),
        (16, 8, 16, 8, 2),  # the paper preset's 8 threads
        (8, 4, 2, 8, 1),  # more threads than the machine has: one job at a time
        (1, 1, 2, 1, 1),
    ],
)
def test_no_more_jobs_run_at_once_than_the_machine_holds(cores, threads, machine, taken, at_once):
    assert job_cores(cores, threads, machine) == taken
    assert cores // taken == at_once


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="must be >= 1; got 0, 1, 2"):
        job_cores(0, 1, 2)


def test_the_machine_has_at_least_one_core():
    assert machine_cores() >= 1
