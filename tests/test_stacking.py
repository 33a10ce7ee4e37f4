"""A shard trained as one stacked model gives the records it gives trained one run at a time."""

import copy
import json
import logging
import math

import pytest
import torch
import torch.nn.functional as F
from run_specs import assert_same_records, spec_dict

from optbench.models import build_model
from optbench.optim import AdamW
from optbench.spec.run import RunSpec
from optbench.train.loop import stack_key, train, train_many, train_together
from optbench.train.stacking import StackedModels, can_stack

CELLS = [(2**-9, 2**-12), (2**-8, 2**-10), (2**-7, 2**-8), (2**-6, 2**-6), (2**-5, 2**-4), (2**-4, 2**-9)]

OPTIMIZERS = {
    "adamw_decoupled": {"base": "AdamW"},
    "adamw_torch": {"base": "AdamW", "weight_decay_mode": "torch"},
    "adam_l2": {"base": "AdamW", "weight_decay_mode": "l2"},
    "adafactor": {"base": "Adafactor"},
    "adafactor_momentum": {"base": "Adafactor", "beta1": 0.9},
    "adamw_factored_clip_relative": {"base": "AdamW", "factored": True, "clip_threshold": 1.0, "relative_step": True},
}
NORMALIZED = {"adamw_factored_clip_relative"}  # trained with normalized weight decay
EPOCHS = {"float64": 1, "float32": 2}  # float64 convolutions on CPU are slow (no oneDNN kernels)


def shard(directory, optimizer, dtype, cells=CELLS, **overrides):
    return [
        RunSpec.from_dict(
            spec_dict(
                directory,
                optimizer=optimizer,
                lr=lr,
                weight_decay=wd,
                dtype=dtype,
                dataset_options={"num_samples": 1000},
                **overrides,
            )
        )
        for lr, wd in cells
    ]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_stacked_shard_matches_one_run_at_a_time(data_dir, name, dtype):
    specs = shard(data_dir, OPTIMIZERS[name], dtype, epochs=EPOCHS[dtype], normalized_weight_decay=name in NORMALIZED)
    stacked = list(train_together(specs, stacked=True, quiet=True))
    alone = [train(spec, quiet=True) for spec in specs]
    assert_same_records(stacked, alone, dtype)


# cnn_bn in float32: over 3 epochs the runs alone drift from float64 as far as the stacked ones (up to 3e-3 in
# loss at lr 2^-7, against 1e-4 stacked), past PRECISION's float32 tolerance; stacking is checked in float64.
@pytest.mark.parametrize("model,dtype", [("cnn", "float64"), ("cnn", "float32"), ("cnn_bn", "float64")])
def test_a_diverging_cell_leaves_the_others_alone(data_dir, model, dtype):
    cells = [*CELLS[:5], (1e6, 2**-8)]
    specs = shard(data_dir, {"base": "AdamW"}, dtype, cells=cells, epochs=3, schedule={"kind": "fixed"}, model=model)
    stacked = list(train_together(specs, stacked=True, quiet=True))
    alone = [train(spec, quiet=True) for spec in specs]
    assert [r["status"] for r in stacked] == ["ok"] * 5 + ["diverged"]
    assert len(stacked[-1]["history"]) < 3
    assert_same_records(stacked, alone, dtype)


def test_train_many_stacks_what_it_can_and_writes_every_record(tmp_path, data_dir):
    adamw = shard(data_dir, {"base": "AdamW"}, "float32", cells=CELLS[:3], epochs=1)
    adafactor = shard(data_dir, {"base": "Adafactor"}, "float32", cells=CELLS[:2], epochs=1)
    specs = [adamw[0], adafactor[0], adamw[1], adafactor[1], adamw[2]]
    assert len({stack_key(s) for s in specs}) == 2
    outs = [tmp_path / f"{i}.json" for i in range(len(specs))]
    train_many(specs, outs, stack=True, quiet=True)
    records = [json.loads(o.read_text()) for o in outs]
    assert [r["run_id"] for r in records] == [s.run_id for s in specs]
    assert [r["timing"]["stacked_models"] for r in records] == [3, 2, 3, 2, 3]
    train_many(specs, outs, stack=True, max_stack=2, quiet=True)  # AdamW's 3 in stacks of 1 and 2
    assert [json.loads(o.read_text())["timing"]["stacked_models"] for o in outs] == [1, 2, 2, 2, 2]


@pytest.mark.parametrize(
    "model,stacks",
    [
        (build_model("cnn", num_classes=10, input_shape=(1, 40)), True),
        (build_model("cnn_bn", num_classes=10, input_shape=(1, 40)), True),
        (build_model("mlp", num_classes=10, input_shape=(1, 40)), True),
        (build_model("resnet_small", num_classes=10, input_shape=(3, 32, 32)), False),  # Conv2d, BatchNorm2d
        (
            torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3, momentum=None), torch.nn.Linear(3, 2)),
            False,
        ),  # BatchNorm's cumulative average counts batches per model
        (torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2)), False),
        (torch.nn.Sequential(torch.nn.Conv1d(1, 2, 3, dilation=2), torch.nn.Flatten(), torch.nn.Linear(4, 2)), False),
        (torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()), False),  # does not end in Linear
    ],
)
def test_which_models_can_stack(model, stacks):
    assert can_stack(model) is stacks
    if not stacks:
        with pytest.raises(ValueError, match="cannot be stacked"):
            StackedModels(model, 2)


@pytest.mark.parametrize("name", ["cnn", "cnn_bn", "mlp"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stacked_models_compute_what_the_model_computes(name, dtype):
    torch.manual_seed(0)
    model = build_model(name, num_classes=10, input_shape=(1, 40)).to(dtype)
    stacked = StackedModels(model, 3)
    with torch.no_grad():
        stacked.params[0][1].mul_(2.0)  # model 1 differs
    x = torch.randn(7, 1, 40, dtype=dtype)
    out = stacked(x)
    assert out.shape == (3, 7, 10)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(out[[0, 2]], model(x).expand(2, 7, 10), rtol=tol, atol=tol)
    assert not torch.allclose(out[1], out[0])


def batch_norms(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]


def test_stacked_batch_norm_trains_and_evaluates_as_each_model_alone():
    """cnn_bn in float64, three models with their own lr, six AdamW steps; model 2's lr of 1e6 blows it up
    (loss ~1e13). An eval pass comes between steps 1 and 2; model 2 is poisoned with NaN before step 3 and
    zeroed after each step from then on, as the trainer holds a diverged model. Models 0 and 1 match their
    runs alone throughout: losses, gradients, parameters, running statistics and eval outputs."""
    torch.manual_seed(0)
    model = build_model("cnn_bn", num_classes=10, input_shape=(1, 40)).double()
    lrs = [2**-8, 2**-5, 1e6]
    alone = [copy.deepcopy(model) for _ in lrs[:2]]
    alone_opts = [AdamW(m.parameters(), lr=lr, weight_decay=2**-6) for m, lr in zip(alone, lrs)]
    stacked = StackedModels(model, len(lrs))
    opt = AdamW([stacked.param_group(stacked.per_model(lrs))], weight_decay=2**-6)
    generator = torch.Generator().manual_seed(1)

    def close(actual, expected):
        torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12)

    for step in range(6):
        x = torch.randn(16, 1, 40, dtype=torch.float64, generator=generator)
        if step == 2:  # eval mode between training steps: running statistics, no update
            stacked.train(False)
            for m in alone:
                m.eval()
            out = stacked(x)
            for k, m in enumerate(alone):
                close(out[k], m(x))
            stacked.train()
            for m in alone:
                m.train()
        if step == 3:
            with torch.no_grad():
                stacked.params[0][2].fill_(float("nan"))
        y = torch.randint(10, (16,), generator=generator)
        losses = F.cross_entropy(stacked(x).flatten(0, 1), y.repeat(3), reduction="none").view(3, -1).mean(dim=1)
        opt.zero_grad()
        losses.sum().backward()
        opt.step()
        if step >= 3:
            assert losses[2].isnan() if step == 3 else losses[2].item() == pytest.approx(math.log(10))  # zero: uniform
            stacked.zero_models([2])
            assert all(t[2].isfinite().all() for t in (*stacked.params, *(s for st in stacked.stats for s in st)))
        for k, (m, alone_opt) in enumerate(zip(alone, alone_opts)):
            loss = F.cross_entropy(m(x), y)
            alone_opt.zero_grad()
            loss.backward()
            close(losses[k], loss)
            for p, q in zip(stacked.params, m.parameters(), strict=True):
                close(p.grad[k], q.grad)
            alone_opt.step()
            for p, q in zip(stacked.params, m.parameters(), strict=True):
                close(p[k], q)
            for stats, bn in zip(stacked.stats, batch_norms(m), strict=True):
                for s, b in zip(stats, (bn.running_mean, bn.running_var, bn.num_batches_tracked)):
                    close(s[k], b)
    assert stacked.stats[0][2].tolist() == [6, 6, 0]

    stacked.train(False)
    for m in alone:
        m.eval()
    x = torch.randn(16, 1, 40, dtype=torch.float64, generator=generator)
    out = stacked(x)
    for k, m in enumerate(alone):
        close(out[k], m(x))
    assert (out[2] == 0).all()


def test_stacked_batch_norm_statistics_follow_the_model_to_its_device_and_dtype():
    model = build_model("cnn_bn", num_classes=10, input_shape=(1, 40)).to(torch.float64)
    for running_mean, running_var, batches in StackedModels(model, 4).stats:
        assert running_mean.shape == running_var.shape == (4, 25) and batches.shape == (4,)
        assert running_mean.dtype == running_var.dtype == torch.float64 and batches.dtype == torch.long
        assert not running_mean.requires_grad


def test_unstackable_shard_falls_back_and_says_so(data_dir, monkeypatch, caplog):
    monkeypatch.setattr("optbench.train.loop.can_stack", lambda model: False)  # as for resnet_small
    specs = shard(data_dir, {"base": "AdamW"}, "float32", cells=CELLS[:2], epochs=1)
    with caplog.at_level(logging.INFO, logger="optbench"):
        records = list(train_together(specs, stacked=True, quiet=True))
    assert [r["timing"]["stacked_models"] for r in records] == [1, 1]
    assert [r["run_id"] for r in records] == [s.run_id for s in specs]
    assert sum("one at a time" in m for m in caplog.messages) == 1


def test_stacked_batch_norm_needs_two_values_per_channel_in_training_as_torch_does():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    x = torch.randn(1, 4)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        model(x)
    with pytest.raises(ValueError, match="more than 1 value per channel; got 1"):
        StackedModels(model, 2)(x)
    stacked = StackedModels(model, 2)
    stacked.train(False)
    assert stacked(x).shape == (2, 1, 2)  # eval mode uses the running statistics
