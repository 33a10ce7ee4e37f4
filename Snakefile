# Reproduce AdamW and Adafactor: the variant table x grid -> runs -> tables and figures.
# `snakemake --cores 8` trains the default preset into results/<preset>/; `snakemake figures` redraws the
# committed reference, results/reference/<preset>/; `snakemake compare` checks the one against the other.
# See README.md for the rest.
import sys

sys.path.insert(0, f"{workflow.basedir}/src")
from optbench.experiment.config import check_yaml

try:  # before `configfile:` reads it: Snakemake's own error for bad YAML names neither the line nor the problem
    check_yaml("config.yaml")
except ValueError as err:
    sys.exit(str(err))


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/outputs.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/compare.smk"


rule all:
    default_target: True
    input:
        all_outputs(),
