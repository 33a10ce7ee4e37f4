import json
import shlex
import sys

from snakemake.settings.types import DeploymentMethod
from snakemake.utils import min_version, validate

min_version("9.0")

validate(config, "../schemas/config.schema.yaml")

SRC = f"{workflow.basedir}/src"  # jobs run the package from this checkout (PYTHONPATH), pip route or conda env
# The interpreter of the rules: the rule's environment under --use-conda, else the one running
# Snakemake, so that `.venv/bin/snakemake` works without an activated venv.
PYTHON = "python" if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method else sys.executable
OPTBENCH = f"PYTHONPATH={shlex.quote(SRC)} {shlex.quote(PYTHON)} -m optbench"
sys.path.insert(0, SRC)
from optbench.experiment import load_experiment

try:
    EXP = load_experiment(config)
except ValueError as err:
    raise ValueError(f"config.yaml: {err}") from None

PRESET = EXP.preset
RESULTS = f"results/{PRESET}"
RUNS_CSV = f"{RESULTS}/tables/runs.csv"
RESOURCES = EXP.settings["resources"]
STACK = "--stack" if EXP.settings["stacked"] else ""
ENV = "../../envs/optbench.yaml"


wildcard_constraints:
    variant="|".join(EXP.variants),
    shard=r"shard\d{3}",


def shard_names(variant):
    return [f"shard{i:03d}" for i in range(len(EXP.shards(variant)))]


def shard_dirs():
    return [f"{RESULTS}/runs/{v}/{s}" for v in EXP.variants for s in shard_names(v)]


def shard_specs(wildcards):
    """The run specs one training job carries, as JSON for the command line."""
    return json.dumps(EXP.shards(wildcards.variant)[int(wildcards.shard[5:])], separators=(",", ":"))


def output_files():
    out = EXP.outputs(RESULTS)
    return [
        *out["summary"],
        *out["improvements"],
        *out["memory"],
        *[p for paths in out["heatmaps"].values() for p in paths],
        *out["learning_curves"],
    ]


def all_outputs():
    return [RUNS_CSV, *output_files()]
