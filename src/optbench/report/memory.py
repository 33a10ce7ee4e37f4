"""Optimizer state memory per variant and model: predicted from shapes, measured in runs.

The models are the registry's (:mod:`optbench.models`): the one a preset trains, then the
papers' models (:data:`PAPER_MODELS`), each built for the shape it is registered with.
Every model is built on the ``meta`` device, so a 60M-parameter Transformer costs no
memory. The first row holds each model's parameter bytes; the others each variant's
predicted optimizer state bytes and their ratio to Adam's state (first and second
moment in full, 2 x parameter bytes). Given runs, the
bytes they measured sit next to the prediction for the model they trained.

An external optimizer's state (:mod:`optbench.spec.external`) has no prediction from shapes: its bytes are
those its class holds after one step on zero gradients, on the ``meta`` device, or on the CPU for a class
whose step reads a value (``Tensor.item()``, as ``torch.optim.Adafactor``'s), which ``meta`` cannot give.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping

import pandas as pd
import torch

from optbench.models import REGISTRY, ModelEntry, build_model
from optbench.optim.bases import make_optimizer
from optbench.optim.memory import predicted_state_bytes, state_bytes
from optbench.report.files import write_table_and_markdown
from optbench.report.text import format_bytes, markdown_table
from optbench.spec.external import ExternalOptimizerSpec
from optbench.spec.run import OptimizerSpec, optimizer_spec
from optbench.train.optimizer_class import keywords, load_class

PARAMETERS = "parameters"
PARAMETERS_LABEL = "parameters (Adam's state: 2x)"
MEASURED = "memory.optimizer_state_bytes"
RUN_COLUMNS = ("variant", "model", MEASURED)
#: What the table gives per model, each a column ``<model> <quantity>`` (the longer of two that end alike first).
QUANTITIES = ("measured == predicted", "measured bytes", "ratio to Adam", "bytes")

#: The papers' models, in every table: AdamW's (CIFAR-10) and Adafactor's (translation).
PAPER_MODELS = ("shake_shake_26_2x64d", "transformer_base")


def memory_models(trained: Iterable[str] = ()) -> dict[str, ModelEntry]:
    """The table's models, from the registry: those ``trained`` (a preset's), then the papers'."""
    return {name: REGISTRY[name] for name in dict.fromkeys([*trained, *PAPER_MODELS])}


def _optimizer_spec(name: str, description: dict) -> OptimizerSpec | ExternalOptimizerSpec:
    """The optimizer of a variant described as in the config's ``optimizer`` block (``label`` allowed)."""
    optimizer = {k: v for k, v in description.items() if k != "label"}
    try:
        return optimizer_spec(optimizer)
    except ValueError as err:
        raise ValueError(f"variants.{name}.{err}") from None


def _params(name: str, model: ModelEntry, device: str) -> list[torch.Tensor]:
    """The parameters of registry model ``name``, built for its registered shape on ``device``."""
    net = build_model(name, num_classes=model.num_classes, input_shape=model.input_shape, device=device)
    return list(net.parameters())


def _external_bytes(spec: ExternalOptimizerSpec, name: str, model: ModelEntry) -> int:
    """State bytes of an external class after one step on zero gradients of model ``name`` (see the module's
    docstring): on ``meta``, else on the CPU."""
    try:
        return _one_step_bytes(spec, _params(name, model, "meta"))
    except (RuntimeError, NotImplementedError):
        return _one_step_bytes(spec, _params(name, model, "cpu"))


def _one_step_bytes(spec: ExternalOptimizerSpec, params: list[torch.Tensor]) -> int:
    """State bytes of ``spec``'s class over ``params`` after one step on zero gradients (in training mode, where
    the class has modes: Schedule-Free steps only then)."""
    opt = load_class(spec.class_path)(params, **keywords(spec, 1e-3, 0.0))
    for p in params:
        p.grad = torch.zeros_like(p)
    if callable(getattr(opt, "train", None)):
        opt.train()
    opt.step()
    return state_bytes(opt)


def _predicted(specs: dict[str, OptimizerSpec | ExternalOptimizerSpec], name: str, model: ModelEntry) -> pd.Series:
    """Parameter bytes, then each variant's predicted state bytes (an external class's: measured by
    :func:`_external_bytes`), of one model built on ``meta``."""
    params = _params(name, model, "meta")
    state = {
        variant: _external_bytes(spec, name, model)
        if isinstance(spec, ExternalOptimizerSpec)
        else predicted_state_bytes(make_optimizer(spec.base, params, lr=0.0, weight_decay=0.0, switches=spec.switches))
        for variant, spec in specs.items()
    }
    return pd.Series({PARAMETERS: sum(p.numel() * p.element_size() for p in params), **state})


def _measured(runs: pd.DataFrame, variants: list[str], models: Mapping[str, ModelEntry]) -> pd.DataFrame:
    """Measured state bytes by variant (rows) and model (columns); runs of other variants are ignored."""
    missing = [c for c in RUN_COLUMNS if c not in runs.columns]
    if missing:
        raise ValueError(f"runs lack columns: {missing}")
    runs = runs[runs["variant"].isin(variants)]
    unknown = sorted(set(runs["model"]) - set(models))
    if unknown:
        raise ValueError(f"runs: model {unknown[0]!r} is not among the table's models: {', '.join(models)}")
    grouped = runs.groupby(["variant", "model"])[MEASURED]
    values = grouped.unique()
    differing = values[values.map(len) > 1]
    if len(differing):
        (variant, model), found = next(iter(differing.items()))
        raise ValueError(
            f"variant {variant!r}: its runs on {model!r} measured different optimizer state bytes: "
            f"{sorted(found.tolist())}"
        )
    return grouped.first().unstack("model").astype("Int64")


def memory_table(
    variants: dict[str, dict],
    runs: pd.DataFrame | None,
    models: Mapping[str, ModelEntry] | None = None,
) -> pd.DataFrame:
    """One row of parameter bytes, then one row per variant, with for each of ``models`` (by label;
    default: :func:`memory_models`, the papers' models):

    ``<model> bytes``, ``<model> ratio to Adam`` (Adam keeps 2 numbers per parameter) and, for the models ``runs``
    trained, ``<model> measured bytes`` and ``<model> measured == predicted``.
    """
    models = memory_models() if models is None else models
    if not models:
        raise ValueError("models: none given")
    if PARAMETERS in variants:
        raise ValueError(f"variants: {PARAMETERS!r} names the table's first row; rename that variant")
    specs = {name: _optimizer_spec(name, description) for name, description in variants.items()}
    predicted = pd.DataFrame({name: _predicted(specs, name, model) for name, model in models.items()})
    adam = 2 * predicted.loc[PARAMETERS]
    measured = pd.DataFrame() if runs is None else _measured(runs, list(variants), models)

    columns = {}
    for name, model in models.items():
        columns[f"{model.label} bytes"] = predicted[name]
        columns[f"{model.label} ratio to Adam"] = predicted[name] / adam[name]
        if name in measured.columns:
            found = measured[name].reindex(predicted.index)
            columns[f"{model.label} measured bytes"] = found
            columns[f"{model.label} measured == predicted"] = found.eq(predicted[name])
    labels = [PARAMETERS_LABEL, *(description.get("label", name) for name, description in variants.items())]
    table = pd.DataFrame({"label": labels, **columns}, index=predicted.index)
    return table.rename_axis("variant").reset_index()


def format_ratio(r: float) -> str:
    """Two decimals; two significant digits below 0.01, so a small ratio does not read 0.00."""
    return f"{r:.2f}" if r == 0 or abs(r) >= 0.01 else f"{r:.2g}"


def _formatter(column: str) -> Callable | None:
    """How a numeric column is shown in Markdown; None for a text column."""
    if column.endswith("bytes"):
        return format_bytes
    if " ratio to " in column:
        return format_ratio
    return None


def memory_markdown(table: pd.DataFrame) -> str:
    """:func:`memory_table` as a Markdown table: bytes in binary units, ratios with 2 decimals, both
    right-aligned; the rest as text. A model's columns are headed ``<model>: <quantity>``, so that the report
    shows the model once, over its columns (:func:`optbench.report.html.header_groups`)."""
    table = table.rename(columns=_grouped_header)
    return markdown_table(table, {column: _formatter(column) for column in table.columns})


def _grouped_header(column: str) -> str:
    """``<model> <quantity>`` (:func:`memory_table`) as ``<model>: <quantity>``; other columns as they are."""
    quantity = next((q for q in QUANTITIES if column.endswith(f" {q}")), None)
    return f"{column[: -len(quantity) - 1]}: {quantity}" if quantity else column


def write_memory_tables(table: pd.DataFrame, csv_path: str | os.PathLike, md_path: str | os.PathLike) -> None:
    """The table as CSV (exact bytes) and as Markdown for humans (:func:`memory_markdown`), each written
    atomically."""
    write_table_and_markdown(table, memory_markdown(table), csv_path, md_path)
