"""Command line of optbench; the workflow's rules call these subcommands.

python -m optbench train --spec spec.json --out run.json
python -m optbench train --spec-json '[{...}, {...}]' --out-dir results/quick/runs/adamw_cosine/shard000
python -m optbench prepare-data --dataset mnist1d --data-dir data --out data.json
python -m optbench aggregate --records DIR_OR_JSON... --out runs.csv
python -m optbench outputs --runs runs.csv --config-json '{...}' --results results/quick
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import sys
from pathlib import Path

import torch


def _reuse_freed_memory() -> None:
    """Keep freed memory in the process (glibc only; elsewhere nothing happens).

    glibc hands every freed block above 128 KiB back to the operating system, so a CPU
    training loop pays page faults for each step's activations again. Raising the mmap
    and trim thresholds lets the allocator reuse them (measured in benchmarks/README.md).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 32 * 2**20)  # glibc's maximum
    libc.mallopt(m_trim_threshold, 2**30)


def _train(args: argparse.Namespace) -> None:
    from .shard import train_many
    from .spec import RunSpec

    source = args.spec or "--spec-json"
    loaded = json.loads(Path(args.spec).read_text() if args.spec else args.spec_json)
    raw = loaded if isinstance(loaded, list) else [loaded]
    specs = []
    for i, d in enumerate(raw):
        try:
            specs.append(RunSpec.from_dict(d))
        except ValueError as err:
            raise ValueError(f"{source}, run spec {i}: {err}") from None
    outs = args.out or [Path(args.out_dir) / f"{spec.run_id}.json" for spec in specs]
    if len(outs) != len(specs):
        raise ValueError(f"--out: {len(specs)} run spec(s) but {len(outs)} output path(s)")
    if args.out_dir:
        Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    _reuse_freed_memory()
    train_many(specs, outs, stack=args.stack, quiet=args.quiet)


def _prepare_data(args: argparse.Namespace) -> None:
    from .atomic import atomic_write_text
    from .data import load_data

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
    from .aggregate import aggregate

    paths = []
    for item in map(Path, args.records):
        paths.extend(sorted(item.glob("*.json")) if item.is_dir() else [item])
    aggregate(paths, args.out)


def _outputs(args: argparse.Namespace) -> None:
    from .experiment import load_experiment
    from .outputs import write_outputs

    write_outputs(args.runs, load_experiment(json.loads(args.config_json)), args.results)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="optbench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train run spec(s), one JSON record each")
    spec = p.add_mutually_exclusive_group(required=True)
    spec.add_argument("--spec", help="JSON file holding one run spec or a list of them")
    spec.add_argument("--spec-json", help="the same as a JSON string")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", nargs="+", help="record path(s), one per spec, in order")
    out.add_argument("--out-dir", help="directory for the records, named <run_id>.json")
    p.add_argument("--quiet", action="store_true", help="one line per run instead of one per epoch")
    p.add_argument(
        "--stack",
        action="store_true",
        help="train specs that differ only in lr and weight decay as stacked models "
        "(at most optbench.shard.MAX_STACK per stack)",
    )
    p.set_defaults(func=_train)

    p = sub.add_parser("prepare-data", help="generate or check a dataset once, before the training jobs")
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--options", default="{}", help="dataset options as JSON")
    p.add_argument("--out", required=True, help="JSON summary of the prepared data")
    p.set_defaults(func=_prepare_data)

    p = sub.add_parser("aggregate", help="run records -> runs.csv")
    p.add_argument("--records", nargs="+", required=True, help="record files or directories of them")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_aggregate)

    p = sub.add_parser("outputs", help="runs.csv -> summary and memory tables, heatmaps, learning curves")
    p.add_argument("--runs", required=True)
    p.add_argument("--config-json", required=True, help="the workflow's config as JSON")
    p.add_argument("--results", required=True, help="the preset's results directory")
    p.set_defaults(func=_outputs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"optbench {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
