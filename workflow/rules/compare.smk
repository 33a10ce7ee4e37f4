from pathlib import Path


# `snakemake compare`: the preset's fresh run (trained first if need be) against its committed reference,
# results/reference/<preset>: a verdict, per variant the best cell, the slope and the per-cell differences
# (optbench.report.compare). It succeeds whatever the verdict, and prints it; a preset without a reference
# stops at its missing runs.csv.
rule compare:
    input:
        fresh=RUNS_CSV,
        reference=f"{REFERENCE}/tables/runs.csv",
    output:
        multiext(f"{RESULTS}/compare/", "compare.md", "compare.csv", "difference.png", "difference.pdf"),
    log:
        f"{RESULTS}/logs/compare.log",
    localrule: True
    conda:
        ENV
    params:
        config=CONFIG_JSON,
        out_dir=lambda w, output: Path(output[0]).parent,
    shell:
        f"{OPTBENCH} compare --fresh {{input.fresh}} --reference {{input.reference}} --config-json -"
        f" --out-dir {{params.out_dir}} 2> {{log}}{on_stdin('config')}"
