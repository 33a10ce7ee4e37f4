from pathlib import Path


rule aggregate:
    input:
        shard_dirs(),
    output:
        # update: a failed aggregation restores the runs.csv it found (Snakemake deletes other outputs first)
        update(RUNS_CSV),
    log:
        f"{RESULTS}/logs/aggregate.log",
    localrule: True
    conda:
        ENV
    params:
        runs=lambda w, input: Path(input[0]).parent.parent,  # results/<preset>/runs, above the shards
        config=CONFIG_JSON,
    shell:
        f"{OPTBENCH} aggregate --runs {{params.runs}} --config-json - --out {{output}} 2> {{log}}{on_stdin('config')}"
