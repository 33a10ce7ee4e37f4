rule aggregate:
    input:
        layout.shard_dirs(EXP, layout.runs_dir(RESULTS)),
    output:
        # update: a failed aggregation restores the runs.csv it found (Snakemake deletes other outputs first)
        update(RUNS_CSV),
    log:
        layout.log(RESULTS, "aggregate"),
    localrule: True
    conda:
        ENV
    params:
        runs=lambda w, input: layout.runs_of(input[0]),
        config=CONFIG_JSON,
    shell:
        f"{OPTBENCH} aggregate --runs {{params.runs}} --config-json - --out {{output}} 2> {{log}}{on_stdin('config')}"
