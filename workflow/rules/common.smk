import json
import shlex
import sys

from snakemake.settings.types import DeploymentMethod
from snakemake.utils import min_version

min_version("9.0")

SRC = f"{workflow.basedir}/src"  # jobs run the package from this checkout (PYTHONPATH), pip route or conda env
# The interpreter of the rules: the rule's environment under --use-conda, else the one running
# Snakemake, so that `.venv/bin/snakemake` works without an activated venv.
PYTHON = "python" if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method else sys.executable
OPTBENCH = f"PYTHONPATH={shlex.quote(SRC)} {shlex.quote(PYTHON)} -m optbench"
sys.path.insert(0, SRC)
from optbench.experiment import run_lock
from optbench.experiment.checks import check_cuda
from optbench.records.checks import shard_dir
from optbench.experiment.config import load_checked

# The schema, then everything a training job would check (optbench.experiment.config): one line, key first.
try:
    EXP = load_checked(config, f"{workflow.basedir}/workflow/schemas/config.schema.yaml")
except ValueError as err:
    sys.exit(f"config.yaml: {err}")

PRESET = EXP.preset
RESULTS = f"results/{PRESET}"  # a fresh run of the preset: every rule but `figures` writes here
RUNS_CSV = f"{RESULTS}/tables/runs.csv"
FIGURES = f"{RESULTS}/figures"
REFERENCE = f"results/reference/{PRESET}"  # the committed results of the preset: only `figures` writes here
DRAW = config.get("results", REFERENCE)  # the results directory `figures` redraws (--config results=DIR)
# The config the jobs get: without `results`, which only chooses what `figures` draws, so that naming a run
# there changes no job's params (a change that would make Snakemake run the job again).
CONFIG_JSON = json.dumps({key: value for key, value in config.items() if key != "results"})
RESOURCES = EXP.settings["resources"]
STACK = "--stack" if EXP.settings["stacked"] else ""
ENV = "../../envs/optbench.yaml"


wildcard_constraints:
    variant="|".join(EXP.variants),
    shard=r"shard\d{3}",


def shard_dirs():
    """Where each training job writes its records (rule train's output; optbench.records.checks.shard_dir)."""
    return [str(shard_dir(f"{RESULTS}/runs", v, i)) for v in EXP.variants for i in range(len(EXP.shards(v)))]


def shard_specs(wildcards):
    """The run specs one training job carries, as JSON for its standard input (on_stdin)."""
    return json.dumps(EXP.shards(wildcards.variant)[int(wildcards.shard[5:])], separators=(",", ":"))


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
        sys.exit(f"config.yaml: {err}")


onstart:
    before_jobs()


def on_stdin(param):
    """A here-document handing the JSON of params.<param> to a command's standard input, where no limit on the
    length of an argument applies (Linux: 128 KiB); Snakemake runs a command that long from a script file."""
    return "\n".join([" <<'JSON'", f"{{params.{param}}}", "JSON"])


def output_files():
    out = EXP.outputs(RESULTS)
    return [
        *out["summary"],
        *out["improvements"],
        *out["memory"],
        *[p for paths in out["heatmaps"].values() for p in paths],
        *out["learning_curves"],
        *[p for paths in out["sweeps"].values() for p in paths],
        *[p for paths in out["stability_maps"].values() for p in paths],
    ]


def table_files():
    """The tables the outputs step writes; its figures are the directory FIGURES, so that the report can show
    each PNG in a category of its own (rule outputs)."""
    return [p for p in output_files() if not p.startswith(f"{FIGURES}/")]


def all_outputs():
    return [RUNS_CSV, *table_files(), FIGURES, f"{RESULTS}/report/tables.html"]
