"""Memory tables: predicted optimizer state per variant and model, against shape formulas and measured runs."""

import math

import pandas as pd
import pytest
import torch

from optbench.models import REGISTRY, build_model
from optbench.report import memory as memory_tables
from optbench.report.memory import format_ratio, memory_markdown, memory_models, memory_table, write_memory_tables
from optbench.report.text import format_bytes

FACTORED = {"factored": True, "clip_threshold": 1.0, "relative_step": True}
VARIANTS = {
    "adamw": {"label": "AdamW", "base": "AdamW"},
    "adam_l2": {"label": "Adam (L2)", "base": "AdamW", "weight_decay_mode": "l2"},
    "adafactor": {"label": "Adafactor", "base": "Adafactor"},
    "adafactor_momentum": {"base": "Adafactor", "beta1": 0.9},
    "adamw_factored": {"base": "AdamW", "beta1": 0.0, **FACTORED},
    "adamw_factored_momentum": {"base": "AdamW", "beta1": 0.9, **FACTORED},
    "sgd": {"label": "SGD", "base": "SGD"},
    "sgdw": {"label": "SGDW", "base": "SGD", "weight_decay_mode": "decoupled"},
}
CNN = {"cnn": REGISTRY["cnn"]}
CNN_STATE = {"adamw": 41680, "adafactor": 7080}  # the CNN's predicted state: 2 x 20840 parameter bytes; factored


@pytest.fixture(scope="module")
def table():
    return memory_table(VARIANTS, None).set_index("variant")


def factored_bytes(model: torch.nn.Module) -> int:
    """Adafactor's beta1 = 0 state from the shapes: a row and a column per matrix, leading dims multiply."""
    return 4 * sum(
        math.prod(p.shape[:-2]) * (p.shape[-2] + p.shape[-1]) if p.ndim >= 2 else p.numel() for p in model.parameters()
    )


def synthetic_runs(adafactor_bytes=(7080, 7080)) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "variant": ["adamw", "adamw", *["adafactor"] * len(adafactor_bytes), "not_in_table"],
            "status": "ok",
            "model": "cnn",
            "memory.optimizer_state_bytes": [CNN_STATE["adamw"]] * 2 + list(adafactor_bytes) + [1],
        }
    )


def test_adafactor_on_transformer_base_is_its_factored_formula(table):
    spec = REGISTRY["transformer_base"]
    model = build_model("transformer_base", num_classes=spec.num_classes, input_shape=spec.input_shape, device="meta")
    expected = factored_bytes(model)
    adafactor = table.loc["adafactor"]
    assert adafactor["Transformer-base bytes"] == expected == 998_400
    assert table.loc["parameters", "Transformer-base bytes"] == 4 * sum(p.numel() for p in model.parameters())
    assert adafactor["Transformer-base ratio to Adam"] == pytest.approx(0.00206, abs=1e-5)


def test_adam_state_is_twice_the_parameters_and_momentum_adds_half(table):
    ratios = table.filter(like="ratio to Adam")
    assert len(ratios.columns) == len(memory_models())
    assert (ratios.loc[["adamw", "adam_l2"]] == 1.0).all().all()
    assert (ratios.loc["parameters"] == 0.5).all()
    for momentum, factored in (("adafactor_momentum", "adafactor"), ("adamw_factored_momentum", "adamw_factored")):
        assert ratios.loc[momentum].to_numpy() == pytest.approx(0.5 + ratios.loc[factored].to_numpy())
    assert table.loc["adamw_factored"].drop("label").equals(table.loc["adafactor"].drop("label"))


def test_sgd_keeps_one_momentum_buffer_per_parameter(table):
    for variant in ("sgd", "sgdw"):
        assert table.loc[variant].filter(like=" bytes").equals(table.loc["parameters"].filter(like=" bytes"))
        assert (table.loc[variant].filter(like="ratio to Adam") == 0.5).all()


def test_labels_default_to_the_variant_name(table):
    assert table.loc["adam_l2", "label"] == "Adam (L2)"
    assert table.loc["adamw_factored", "label"] == "adamw_factored"


def test_measured_bytes_sit_next_to_the_prediction():
    runs = synthetic_runs(adafactor_bytes=(7000, 7000))  # a measurement that disagrees with the prediction
    table = memory_table(VARIANTS, runs, models=CNN).set_index("variant")
    assert list(table.columns) == [
        "label",
        "MNIST-1D CNN bytes",
        "MNIST-1D CNN ratio to Adam",
        "MNIST-1D CNN measured bytes",
        "MNIST-1D CNN measured == predicted",
    ]
    measured, agrees = table["MNIST-1D CNN measured bytes"], table["MNIST-1D CNN measured == predicted"]
    assert measured["adamw"] == table.loc["adamw", "MNIST-1D CNN bytes"] == CNN_STATE["adamw"]
    assert agrees["adamw"] and not agrees["adafactor"] and measured["adafactor"] == 7000
    assert measured.drop(["adamw", "adafactor"]).isna().all() and agrees.drop(["adamw", "adafactor"]).isna().all()


def test_the_table_has_the_trained_models_then_the_papers():
    assert list(memory_models()) == ["shake_shake_26_2x64d", "transformer_base"]
    assert list(memory_models(["mlp"])) == ["mlp", "shake_shake_26_2x64d", "transformer_base"]
    assert list(memory_models(["shake_shake_26_2x64d"])) == ["shake_shake_26_2x64d", "transformer_base"]


@pytest.mark.parametrize("name", [name for name, model in REGISTRY.items() if model.dataset])
def test_every_trainable_model_has_its_measured_column(name):
    predicted = memory_table({"adamw": VARIANTS["adamw"]}, None, memory_models([name])).set_index("variant")
    runs = pd.DataFrame(
        {
            "variant": ["adamw"],
            "model": [name],
            "memory.optimizer_state_bytes": [predicted.loc["adamw", f"{REGISTRY[name].label} bytes"]],
        }
    )
    table = memory_table({"adamw": VARIANTS["adamw"]}, runs, memory_models([name])).set_index("variant")
    assert table.loc["adamw", f"{REGISTRY[name].label} measured == predicted"]


def test_runs_of_one_variant_that_measured_different_bytes_are_refused():
    with pytest.raises(ValueError, match=r"variant 'adafactor'.*\[7000, 7080\]"):
        memory_table(VARIANTS, synthetic_runs(adafactor_bytes=(7080, 7000)), models=CNN)


@pytest.mark.parametrize(
    "runs,kwargs,message",
    [
        (synthetic_runs().drop(columns="model"), {}, r"runs lack columns: \['model'\]"),
        (synthetic_runs().assign(model="mlp"), {}, r"model 'mlp' is not among the table's models: cnn"),
        (None, {"models": {}}, "models: none given"),
    ],
)
def test_bad_input_is_named(runs, kwargs, message):
    with pytest.raises(ValueError, match=message):
        memory_table(VARIANTS, runs, **{"models": CNN, **kwargs})


def test_bad_variant_is_named():
    with pytest.raises(ValueError, match=r"variants\.odd\.optimizer\.beta3"):
        memory_table({"odd": {"base": "AdamW", "beta3": 0.5}}, None, models=CNN)
    with pytest.raises(ValueError, match="'parameters' names the table's first row"):
        memory_table({"parameters": {"base": "AdamW"}}, None, models=CNN)


def test_every_model_is_built_on_meta(monkeypatch):
    built = []

    def spy(*args, **kwargs):
        built.append(build_model(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(memory_tables, "build_model", spy)
    memory_table({"adamw": VARIANTS["adamw"]}, None)
    assert len(built) == len(memory_models())
    assert all(p.is_meta for model in built for p in model.parameters())


def test_csv_keeps_exact_bytes_and_markdown_is_human(tmp_path):
    table = memory_table(VARIANTS, synthetic_runs(), models=CNN)
    csv, md = tmp_path / "tables" / "memory.csv", tmp_path / "tables" / "memory.md"
    write_memory_tables(table, csv, md)
    pd.testing.assert_frame_equal(
        pd.read_csv(
            csv, dtype={"MNIST-1D CNN measured bytes": "Int64", "MNIST-1D CNN measured == predicted": "boolean"}
        ),
        table,
        check_dtype=False,
    )
    lines = md.read_text().splitlines()
    # each model's columns headed <model>: <quantity>, for the report to show the model once over them
    assert lines[0] == (
        "| variant | label | MNIST-1D CNN: bytes | MNIST-1D CNN: ratio to Adam | MNIST-1D CNN: measured bytes "
        "| MNIST-1D CNN: measured == predicted |"
    )
    assert len(lines) == 2 + len(table) and lines[1] == "| --- | --- | ---: | ---: | ---: | --- |"
    assert lines[3] == "| adamw | AdamW | 40.70 KiB | 1.00 | 40.70 KiB | True |"
    assert lines[6] == "| adafactor_momentum | adafactor_momentum | 27.27 KiB | 0.67 |  |  |"
    assert sorted(p.name for p in tmp_path.joinpath("tables").iterdir()) == ["memory.csv", "memory.md"]
    assert memory_markdown(table) == md.read_text()


@pytest.mark.parametrize(
    "n,text", [(0, "0 B"), (1023, "1023 B"), (1536, "1.50 KiB"), (3 * 2**20, "3.00 MiB"), (5 * 2**40, "5120.00 GiB")]
)
def test_format_bytes(n, text):
    assert format_bytes(n) == text


@pytest.mark.parametrize("r,text", [(1.0, "1.00"), (0.335892, "0.34"), (0.002062, "0.0021"), (0.0, "0.00")])
def test_format_ratio(r, text):
    assert format_ratio(r) == text
