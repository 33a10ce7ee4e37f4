from pathlib import Path

FIGURES = f"{OPTBENCH} figures --runs {{input}} --config-json {{params.config:q}} --results {{params.results}} 2> {{log}}"


rule plots:
    input:
        RUNS_CSV,
    output:
        report(figure_outputs(), caption="../report/figures.rst", category="Results"),
    params:
        config=json.dumps(config),
        results=lambda w, input: Path(input[0]).parent.parent,
    log:
        f"{RESULTS}/logs/plots.log",
    localrule: True
    conda:
        ENV
    shell:
        FIGURES


# `snakemake figures`: every table and figure again from the committed runs.csv alone.
# ancient() keeps the training jobs out of the DAG when the run records are absent.
rule figures:
    input:
        ancient(RUNS_CSV),
    params:
        config=json.dumps(config),
        results=lambda w, input: Path(input[0]).parent.parent,
    log:
        f"{RESULTS}/logs/figures.log",
    localrule: True
    conda:
        ENV
    shell:
        FIGURES
