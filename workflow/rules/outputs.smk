from pathlib import Path


# Every table and figure of the preset, from runs.csv alone.
rule outputs:
    input:
        RUNS_CSV,
    output:
        report(output_files(), caption="../report/outputs.rst", category="Results"),
    log:
        f"{RESULTS}/logs/outputs.log",
    localrule: True
    conda:
        ENV
    params:
        config=json.dumps(config),
        results=lambda w, input: Path(input[0]).parent.parent,
    shell:
        f"{OPTBENCH} outputs --runs {{input}} --config-json {{params.config:q}} --results {{params.results}} 2> {{log}}"


# `snakemake figures`: the same job, redrawing every output from the committed runs.csv alone.
# Without declared outputs it always runs; ancient() keeps the training jobs out of the DAG
# when the run records are absent.
use rule outputs as figures with:
    input:
        ancient(RUNS_CSV),
    output:
        [],
    log:
        f"{RESULTS}/logs/figures.log",
