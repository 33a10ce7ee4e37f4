"""How many of Snakemake's cores (``--cores``) a training job takes on the machine that runs it.

Snakemake runs as many jobs at once as ``--cores`` holds, whatever the machine has: ``--cores 8`` on a
2-core machine runs 8 one-thread jobs that share 2 cores, slower than 2 at a time (benchmarks/README.md).
So on its own machine a training job takes as many of ``--cores`` as leave no more jobs running than the
machine's cores can hold, and runs with the preset's threads whatever it takes.
"""

from __future__ import annotations

import os


def machine_cores() -> int:
    """The cores this process may run on: its CPU affinity, which ``taskset``, containers and batch systems
    narrow (the number of the machine's CPUs where the system has no affinity)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def job_cores(cores: int, threads: int, machine: int) -> int:
    """Snakemake's cores one training job of ``threads`` threads takes out of ``cores``, so that at most
    ``m = max(1, machine // threads)`` jobs run at once on a machine of ``machine`` cores: ``threads`` where
    ``cores`` fits the machine, else ``cores // m`` (``--cores 8`` on 2 cores, one thread each: 4, so 2
    jobs at once)."""
    if min(cores, threads, machine) < 1:
        raise ValueError(f"cores, threads and machine cores must be >= 1; got {cores}, {threads}, {machine}")
    return max(threads, cores // max(1, machine // threads))
