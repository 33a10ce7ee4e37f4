# Every table and figure of the preset, from runs.csv alone. The report shows each figure's PNG in a category
# of its own, captioned with its title (workflow/report/figure.rst); the PDFs and tables stay files.
rule outputs:
    input:
        RUNS_CSV,
    output:
        table_files(),
        report(
            directory(FIGURES),
            patterns=["{name}.png"],
            caption="../report/figure.rst",
            category="{name}",  # the figure's name
        ),
    log:
        layout.log(RESULTS, "outputs"),
    localrule: True
    conda:
        ENV
    params:
        config=CONFIG_FILE,
        titles=FIGURE_TITLES,
        results=lambda w, input: layout.results_of(input[0]),
    shell:
        f"{OPTBENCH} outputs --log {{log}} --runs {{input}} --config {{params.config}} --results {{params.results}}"


# `snakemake figures`: the same job, redrawing every table and figure of DRAW from its runs.csv alone:
# `--config results=DIR`, else the preset's own run where it has one, else the committed reference
# results/reference/<preset> (the one rule that writes there). It says what it wrote, and where.
# Without declared outputs it always runs; ancient() keeps the training jobs out of the DAG when
# DIR is this preset's fresh run and its run records are absent.
use rule outputs as figures with:
    input:
        ancient(layout.runs_csv(DRAW)),
    output:
        [],
    log:
        layout.log(RESULTS, "figures"),
