"""``python -m optbench``: the command line; the workflow's rules call these subcommands.

python -m optbench train --spec spec.json --out run.json
python -m optbench train --spec - --out-dir results/quick/runs/adamw_cosine/shard000 < specs.json
python -m optbench train --spec - --out-dir runs/a/shard000 --checkpoint-dir checkpoints/a/shard000 < specs.json
python -m optbench train --spec-json '[{...}, {...}]' --out-dir runs
python -m optbench prepare-data --dataset mnist1d --data-dir data --out data.json
python -m optbench aggregate --records DIR_OR_JSON... --out runs.csv
python -m optbench aggregate --runs results/quick/runs --config config.json --out runs.csv
python -m optbench outputs --runs runs.csv --config-json '{...}' --results results/quick
python -m optbench compare --fresh results/quick/tables/runs.csv --reference results/reference/quick/tables/runs.csv \
    --config - --out-dir results/quick/compare < config.json
python -m optbench report-tables --tables results/quick/tables/*.md --out results/quick/report/tables.html
python -m optbench aggregate --log results/quick/logs/aggregate.log ...  (as the workflow's rules run each command)
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
import traceback
from pathlib import Path

import torch

from optbench.job_log import report, stderr_into


def _read(path: str) -> str:
    """The text of a file, or of standard input for ``-``: the workflow's rules hand over run specs and the
    config that way, so that no limit on the length of a command line applies."""
    return sys.stdin.read() if path == "-" else Path(path).read_text()


def _config(args: argparse.Namespace) -> dict:
    """The workflow's config: ``--config-json`` holds it, or ``--config`` names its file (``-``: standard input)."""
    return json.loads(args.config_json if args.config is None else _read(args.config))


def _train(args: argparse.Namespace) -> None:
    from optbench.train.job import read_specs, record_paths, reuse_freed_memory
    from optbench.train.loop import train_many

    source = {None: "--spec-json", "-": "standard input"}.get(args.spec, args.spec)
    specs = read_specs(args.spec_json if args.spec is None else _read(args.spec), source)
    outs = record_paths(specs, args.out, args.out_dir, source)
    if args.out_dir:
        Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    reuse_freed_memory()
    progress = train_many(
        specs,
        outs,
        stack=args.stack,
        quiet=args.quiet,
        checkpoints=args.checkpoint_dir,
        keep_checkpoints=args.keep_checkpoints,
    )
    print(progress.summary(args.out_dir or ", ".join(dict.fromkeys(spec.variant for spec in specs))), flush=True)


def _prepare_data(args: argparse.Namespace) -> None:
    from optbench.atomic import atomic_write_text
    from optbench.data.loaders import load_data

    options = json.loads(args.options)
    data = load_data(args.dataset, data_dir=args.data_dir, batch_size=1, seed=0, options=options)
    summary = {
        "dataset": args.dataset,
        "data_dir": args.data_dir,
        "options": options,
        "n_train": data.n_train,
        "n_test": data.n_test,
        "num_classes": data.num_classes,
        "input_shape": list(data.input_shape),
    }
    atomic_write_text(args.out, json.dumps(summary, indent=1) + "\n")


def _aggregate(args: argparse.Namespace) -> None:
    from optbench.experiment.checks import checked_experiment
    from optbench.records.aggregate import aggregate, aggregate_preset

    if args.runs:
        if args.config is None and args.config_json is None:
            raise ValueError("--runs: needs --config or --config-json, the config whose preset's runs to read")
        aggregate_preset(checked_experiment(_config(args)), args.runs, args.out)
        return
    paths = []
    for item in map(Path, args.records):
        paths.extend(sorted(item.glob("*.json")) if item.is_dir() else [item])
    aggregate(paths, args.out)


def _outputs(args: argparse.Namespace) -> None:
    from optbench.experiment.checks import checked_experiment
    from optbench.report.outputs import checked_runs, write_outputs

    experiment = checked_experiment(_config(args))
    checked_runs(args.runs, experiment)  # the whole table before anything is written
    written = write_outputs(args.runs, experiment, args.results)
    print(f"optbench outputs: wrote {len(written)} tables and figures under {args.results} from {args.runs}")


def _compare(args: argparse.Namespace) -> None:
    from optbench.experiment.checks import checked_experiment
    from optbench.report.compare import verdict_line, write_comparison

    comparison = write_comparison(args.fresh, args.reference, checked_experiment(_config(args)), args.out_dir)
    print(verdict_line(comparison, args.out_dir), flush=True)


def _report_tables(args: argparse.Namespace) -> None:
    from optbench.report.html import write_tables_page

    write_tables_page(args.tables, args.out)


def _config_arguments(parser: argparse.ArgumentParser, required: bool = True, use: str = "") -> None:
    """The workflow's config, as a file (the workflow's rules) or a JSON string."""
    config = parser.add_mutually_exclusive_group(required=required)
    config.add_argument("--config", help=f"JSON file holding the workflow's config {use}; - for standard input")
    config.add_argument("--config-json", help="the same as a JSON string")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="optbench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    log = argparse.ArgumentParser(add_help=False)  # an option of every command
    log.add_argument(
        "--log",
        help="write standard error (progress, warnings, a traceback) to this file, and the error lines of a "
        "failure to the terminal as well (optbench.job_log)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_command = functools.partial(sub.add_parser, parents=[log])

    p = add_command("train", help="train run spec(s), one JSON record each")
    spec = p.add_mutually_exclusive_group(required=True)
    spec.add_argument("--spec", help="JSON file holding one run spec or a list of them; - for standard input")
    spec.add_argument("--spec-json", help="the same as a JSON string")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", nargs="+", help="record path(s), one per spec, in order")
    out.add_argument("--out-dir", help="directory for the records, named <run_id>.json")
    p.add_argument("--quiet", action="store_true", help="no line per epoch in the log, only one per run")
    p.add_argument(
        "--checkpoint-dir",
        help="keep a checkpoint per stack here after every epoch, resume from it when run again with the same "
        "specs, delete it once every record is written (optbench.train.checkpoints)",
    )
    p.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="leave the checkpoint directory when the job ends, for a caller that deletes it once it has recorded "
        "the output complete: run again, the job writes the records it kept without training (the workflow does)",
    )
    p.add_argument(
        "--stack",
        action="store_true",
        help="train specs that differ only in lr and weight decay as stacked models "
        "(at most optbench.train.loop.MAX_STACK per stack)",
    )
    p.set_defaults(func=_train)

    p = add_command("prepare-data", help="generate or check a dataset once, before the training jobs")
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--options", default="{}", help="dataset options as JSON")
    p.add_argument("--out", required=True, help="JSON summary of the prepared data")
    p.set_defaults(func=_prepare_data)

    p = add_command("aggregate", help="run records -> runs.csv")
    records = p.add_mutually_exclusive_group(required=True)
    records.add_argument("--records", nargs="+", help="record files or directories of them")
    records.add_argument(
        "--runs",
        help="the preset's runs directory (<variant>/shardNNN/<run_id>.json): with the config, "
        "the record of every run of the preset, checked against the config",
    )
    _config_arguments(p, required=False, use="for --runs")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_aggregate)

    p = add_command("outputs", help="runs.csv -> summary and memory tables, heatmaps, learning curves")
    p.add_argument("--runs", required=True)
    _config_arguments(p)
    p.add_argument("--results", required=True, help="the preset's results directory")
    p.set_defaults(func=_outputs)

    p = add_command(
        "compare",
        help="a fresh run's runs.csv against the reference's: best cells, slopes, per-cell differences, a verdict "
        "(optbench.report.compare); exits 0 whatever the verdict, which it prints",
    )
    p.add_argument("--fresh", required=True, help="the fresh run's runs.csv")
    p.add_argument("--reference", required=True, help="the reference's runs.csv")
    _config_arguments(p, use="(labels)")
    p.add_argument("--out-dir", required=True, help="for compare.md, compare.csv and difference.png/.pdf")
    p.set_defaults(func=_compare)

    p = add_command("report-tables", help="Markdown tables (tables/*.md) -> one HTML page for the report")
    p.add_argument("--tables", nargs="+", required=True, help="Markdown table files")
    p.add_argument("--out", required=True, help="the HTML page")
    p.set_defaults(func=_report_tables)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with stderr_into(args.log) as terminal:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
        if args.threads:
            torch.set_num_threads(args.threads)
        return _run(args, terminal)


def _run(args: argparse.Namespace, terminal) -> int:
    """The command's exit status: 2 for a bad input or config, a read-only or full disk (one line per bad
    file); under ``--log``, 1 for any other exception, its traceback in the log and its first line also on the
    terminal. Without ``--log`` such an exception propagates, its traceback on the terminal."""
    error = f"optbench {args.command}: error:"
    try:
        args.func(args)
    except (ValueError, OSError) as err:
        report([f"{error} {line}" for line in str(err).splitlines()], terminal)
        return 2
    except Exception as err:
        if args.log is None:
            raise
        traceback.print_exc()
        reason = next(iter(str(err).splitlines()), "")
        report([f"{error} {type(err).__name__}: {reason} (the traceback is in {args.log})"], terminal)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
