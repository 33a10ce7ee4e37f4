# Reproduce AdamW and Adafactor: the variant table x grid -> runs -> tables and figures.
# `snakemake --cores 8` runs the default preset; see README.md for the rest.


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/outputs.smk"


rule all:
    default_target: True
    input:
        all_outputs(),
