import os


# `snakemake compare`: the preset's fresh run (trained first if need be) against its committed reference,
# results/reference/<preset>: a verdict, per variant the best cell, the slope and the per-cell differences
# (optbench.report.compare). It succeeds whatever the verdict, and prints it; a preset without a reference
# stops at its missing runs.csv. Once run, its outputs belong to the default target (all_outputs), which keeps
# them current and shows the verdict and difference.png in `snakemake --report` (workflow/report/compare.rst).
rule compare:
    input:
        fresh=RUNS_CSV,
        reference=layout.runs_csv(REFERENCE),
    output:
        [
            (report(p, caption="../report/compare.rst", category="Compare") if p.endswith(".png") else p)
            for p in layout.compare_files(RESULTS)
        ],
    log:
        layout.log(RESULTS, "compare"),
    localrule: True
    conda:
        ENV
    params:
        config=CONFIG_FILE,
        out_dir=lambda w, output: os.path.dirname(output[0]),
    shell:
        f"{OPTBENCH} compare --log {{log}} --fresh {{input.fresh}} --reference {{input.reference}}"
        f" --config {{params.config}} --out-dir {{params.out_dir}}"
