rule aggregate:
    input:
        layout.shard_dirs(EXP, layout.runs_dir(RESULTS)),
    output:
        # Not update(): Snakemake would restore the old runs.csv after a failed aggregation, with a new mtime and the
        # failed job's params in its metadata, so that the next run took the stale table for current. Deleted
        # before the job runs, a failed aggregation leaves no table, and the next run aggregates again.
        RUNS_CSV,
    log:
        layout.log(RESULTS, "aggregate"),
    localrule: True
    conda:
        ENV
    params:
        runs=lambda w, input: layout.runs_of(input[0]),
        config=CONFIG_FILE,
    shell:
        f"{OPTBENCH} aggregate --log {{log}} --runs {{params.runs}} --config {{params.config}} --out {{output}}"
