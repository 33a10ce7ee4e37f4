import contextlib
import os

from optbench.train.checkpoint_files import remove as remove_checkpoints


# The shard's run specs go in a file (shard_specs), not on the command line, which Snakemake prints when a job
# fails: the command is short however many runs a job carries. --log: the job's error line on the terminal too.
# Checkpoints (optbench.train.checkpoints) live outside the rule's output, which Snakemake deletes when a job fails:
# a retried or requeued job resumes from them. The job keeps them when it ends: Snakemake, stopped by SIGINT, waits
# for its running jobs but leaves their outputs incomplete, and the job run again then writes its records from them
# without training. The log gets a line per epoch; the terminal, a line per job.
rule train:
    input:
        layout.data_summary(RESULTS),
    output:
        directory(layout.shard_dir(layout.runs_dir(RESULTS), "{variant}", "{shard}")),
    log:
        layout.train_log(RESULTS, "{variant}", "{shard}"),
    conda:
        ENV
    threads: TRAIN_CORES
    # cpus_per_task: what the SLURM plugin gives sbatch (and the job's srun) as --cpus-per-task; without it, the
    # rule's threads, which Snakemake caps at --cores (1 in a dry run), not the preset's. gpu: sbatch --gpus.
    resources:
        cpus_per_task=RESOURCES["threads"],
        gpu=RESOURCES["gpu"],
        runtime=RESOURCES["runtime"],
        mem_mb=RESOURCES["mem_mb"],
    params:
        specs=shard_specs,
        stack=STACK,
        checkpoints=lambda w: layout.checkpoint_dir(RESULTS, w.variant, w.shard),
    shell:
        f"{OPTBENCH} --threads {RESOURCES['threads']} train --log {{log}} {{params.stack}} --spec {{params.specs}}"
        f" --out-dir {{output}} --checkpoint-dir {{params.checkpoints}} --keep-checkpoints"


# Once a run has succeeded, and no job runs: Snakemake has recorded the output of every training job of the run
# complete, so their checkpoints go; then the directories that leaves empty.
onsuccess:
    for job in workflow.dag.jobs:
        if job.rule.name == "train":
            remove_checkpoints(layout.checkpoint_dir(RESULTS, job.wildcards.variant, job.wildcards.shard))
    for directory, _, _ in os.walk(f"{RESULTS}/checkpoints", topdown=False):
        with contextlib.suppress(OSError):  # not empty: checkpoints of specs no job trains now
            os.rmdir(directory)
