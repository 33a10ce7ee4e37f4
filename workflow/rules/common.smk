import json
import os
import shlex
import shutil
import sys

from snakemake.settings.types import DeploymentMethod
from snakemake.utils import min_version

min_version("9.0")

SRC = f"{workflow.basedir}/src"  # jobs run the package from this checkout (PYTHONPATH), pip route or conda env
# The interpreter of the rules: the rule's environment under --use-conda, else the one running
# Snakemake, so that `.venv/bin/snakemake` works without an activated venv.
PYTHON = "python" if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method else sys.executable
if PYTHON == "python" and not shutil.which("conda"):  # else Snakemake's "conda: command not found" and a WorkflowError
    sys.exit(
        "snakemake: --use-conda needs conda on the PATH, and there is none: install Miniforge and run Snakemake from"
        " envs/snakemake.yaml (README.md, 'The conda route'), or leave out --use-conda after bash scripts/setup.sh"
    )
# The jobs' PYTHONPATH: this checkout's package, then the user's own (an external optimizer's module may be
# there, or in the working directory, which `python -m` puts on the path).
OPTBENCH = f"PYTHONPATH={shlex.quote(SRC)}${{{{PYTHONPATH:+:$PYTHONPATH}}}} {shlex.quote(PYTHON)} -m optbench"
sys.path.insert(0, SRC)
sys.path.append(os.getcwd())  # as the jobs see it, for the check of external optimizers' classes below
from optbench.experiment import layout, run_lock
from optbench.experiment.machine import job_cores, machine_cores
from optbench.train.cuda import check_cuda
from optbench.train.external_check import check_external
from optbench.experiment.config import error_source, load_checked
from optbench.experiment.param_files import param_file
from optbench.experiment.preset import unused_variants
from optbench.experiment.job_requests import gpu_hours, runtime_warning
from optbench.experiment.subset import requested, run_only, variant_table

CONFIG_FILES = ["config.yaml", *workflow.config_settings.configfiles]  # in the order Snakemake merges them
SCHEMA = f"{workflow.basedir}/workflow/schemas/config.schema.yaml"


def config_error(err):
    """A config error's one line: the file the value came from (config.yaml, a --configfile, or --config), key first."""
    return f"{error_source(str(err), CONFIG_FILES, workflow.config_settings.config)}: {err}"


# --config variants=a,b replaced the variant table with the names (optbench.experiment.subset): the table comes back
# from the config files, and once the whole config is checked, the preset runs those variants only.
ONLY = requested(config)
if ONLY is not None:
    config["variants"] = variant_table(CONFIG_FILES)
# The schema, then everything a training job would check (optbench.experiment.config), external optimizers'
# classes included (a run of each variant stands for all of its runs): one line, key first.
try:
    EXP = load_checked(config, SCHEMA)
    UNUSED = unused_variants(config)
    if ONLY is not None:
        run_only(config, ONLY)
        EXP = load_checked(config, SCHEMA)
    check_external(EXP.runs(variant)[0] for variant in EXP.variants)
except ValueError as err:
    sys.exit(config_error(err))
if UNUSED:
    print(
        f"snakemake: warning: no preset runs variant(s) {', '.join(UNUSED)}; add each to the variants: list of"
        " the presets that should run it",
        file=sys.stderr,
    )

PRESET = EXP.preset
RESULTS = layout.results_dir(PRESET)  # a fresh run of the preset: every rule but `figures` writes here
RUNS_CSV = layout.runs_csv(RESULTS)
FIGURES = layout.figures_dir(RESULTS)
REFERENCE = layout.reference_dir(PRESET)  # the committed results of the preset: only `figures` writes here
# The results directory `figures` redraws: --config results=DIR, else this preset's own run where it has a runs.csv,
# else the committed reference.
DRAW = config.get("results", RESULTS if os.path.exists(RUNS_CSV) else REFERENCE)
# The config the jobs get: without `results`, which only chooses what `figures` draws, so that naming a run
# there changes no job's params (a change that would make Snakemake run the job again).
# It reaches them in a file named by its content (optbench.experiment.param_files), their param: not in their
# command, which Snakemake prints when a job fails.
CONFIG_FILE = param_file(json.dumps({key: value for key, value in config.items() if key != "results"}))
# What the training jobs ask of a cluster, said once by the Snakemake that plans them (not again in each SLURM job's):
# the GPU-hours, and whether a job's runs fit its runtime at the pace of a run of the preset (yours, else the
# reference), else the preset's resources.epoch_seconds.
if workflow.is_main_process:
    if GPU_HOURS := gpu_hours(EXP):
        print(f"snakemake: {GPU_HOURS}", file=sys.stderr)
    PACE = next((path for path in (RUNS_CSV, layout.runs_csv(REFERENCE)) if os.path.exists(path)), None)
    if LATE := runtime_warning(EXP, PACE):
        print(f"snakemake: warning: {config_error(LATE)}", file=sys.stderr)
RESOURCES = EXP.settings["resources"]
# Of --cores, what a training job takes: on this machine, no more jobs at once than its cores hold
# (optbench.experiment.machine); on a cluster (--jobs, which only a cluster executor's run sets here) or without
# --cores (--report), the preset's threads. The job runs RESOURCES["threads"] threads.
TRAIN_CORES = RESOURCES["threads"]
CORES = workflow.resource_settings.cores
if workflow.resource_settings.nodes is None and CORES is not None:
    TRAIN_CORES = job_cores(CORES, RESOURCES["threads"], machine_cores())
    if TRAIN_CORES > RESOURCES["threads"]:
        print(
            f"snakemake: --cores {CORES} is more than this machine's {machine_cores()} cores: each training"
            f" job takes {TRAIN_CORES} of them, so {CORES // TRAIN_CORES} run at once",
            file=sys.stderr,
        )
STACK = "--stack" if EXP.settings["stacked"] else ""
ENV = "../../envs/optbench.yaml"
# Each heatmap figure's title where this preset draws it (optbench.experiment.preset.figure_title): the report's
# captions (workflow/report/figure.rst).
FIGURE_TITLES = {name: spec.get("title") or name for name, spec in EXP.figures.items()}


wildcard_constraints:
    variant="|".join(EXP.variants),
    shard=layout.SHARD_PATTERN,


def shard_specs(wildcards):
    """The file of the run specs one training job trains (optbench.experiment.param_files), its param: a change
    to them, and to nothing else of the config, trains the shard again."""
    shard = EXP.shards(wildcards.variant)[layout.shard_index(wildcards.shard)]
    return param_file(json.dumps([spec.to_dict() for spec in shard], separators=(",", ":")))


def before_jobs():
    """Once jobs are about to start (never in a dry run): take this preset's run lock, so that a second
    run started at the same time stops here (optbench.experiment.run_lock), and check CUDA when the jobs run on
    this machine. On SLURM the training jobs check their device when they start."""
    try:
        run_lock.hold(f".snakemake/optbench/{PRESET}.lock")
    except ValueError as err:
        sys.exit(f"snakemake: {err}")
    try:
        if workflow.local_exec:
            check_cuda(PRESET, EXP.settings["device"])
    except ValueError as err:
        sys.exit(config_error(err))


onstart:
    before_jobs()


def table_files():
    """The tables the outputs step writes; its figures are the directory FIGURES, so that the report can show
    each PNG in a category of its own (rule outputs)."""
    return layout.table_files(EXP, RESULTS)


def all_outputs():
    """What `snakemake` makes, and `snakemake --report` shows: the tables, figures and report page, and the
    comparison with the reference once `snakemake compare` has written one (then kept current). A fresh clone,
    which has none, plans no comparison. Every training job's output is among them too: Snakemake plans a job
    whose output is missing only for a target or for a job that must run anyway, so with runs.csv up to date a
    deleted shard directory would go unnoticed ("Nothing to be done"); as the target's input it is trained
    again, and then aggregated."""
    compare = layout.compare_files(RESULTS)
    return [
        *layout.shard_dirs(EXP, layout.runs_dir(RESULTS)),
        RUNS_CSV,
        *table_files(),
        FIGURES,
        layout.tables_page(RESULTS),
        *(compare if os.path.exists(compare[0]) else []),
    ]
