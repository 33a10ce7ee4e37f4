"""Stacked parameter groups: K models stepped at once, each exactly as it would step alone."""

import pytest
import torch
from optim_params import SHAPES, make_params

from optbench.optim import SGD, Adafactor, AdamW, predicted_state_bytes, state_bytes

K = 4
LRS = [1e-3, 3e-3, 1e-2, 0.5]
DECAYS = [0.0, 1e-3, 0.1, 0.5]

VARIANTS = {
    "adamw_decoupled": (AdamW, {}),
    "adamw_torch": (AdamW, {"weight_decay_mode": "torch"}),
    "adam_l2": (AdamW, {"weight_decay_mode": "l2"}),
    "adafactor": (Adafactor, {}),
    "adafactor_momentum": (Adafactor, {"beta1": 0.9}),
    "adafactor_rows": (Adafactor, {"factored_axes": "rows"}),
    "adafactor_columns": (Adafactor, {"factored_axes": "columns"}),
    "adamw_factored_clip_relative": (
        AdamW,
        {"factored": True, "clip_threshold": 1.0, "relative_step": True, "betas": (0.0, 0.999)},
    ),
    "adamw_factored_momentum_clip_relative": (AdamW, {"factored": True, "clip_threshold": 1.0, "relative_step": True}),
    "sgd_l2": (SGD, {}),
    "sgdw": (SGD, {"weight_decay_mode": "decoupled"}),
    "sgd_no_momentum": (SGD, {"momentum": 0.0}),
}

MULTIPLIERS = [1.0, 0.7, 0.2, 0.05, 1.0, 0.5]  # a schedule, set as torch's schedulers set it


def gradients(step: int, model: int, dtype) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1000 * step + model)
    return [torch.randn(s, dtype=dtype, generator=g) * (1 + model) for s in SHAPES]


def step_alone(cls, kw, k, dtype):
    params = make_params(dtype)
    opt = cls(params, lr=LRS[k], weight_decay=DECAYS[k], **kw)
    opt.param_groups[0]["initial_lr"] = LRS[k]
    for t, m in enumerate(MULTIPLIERS):
        opt.param_groups[0]["lr"] = LRS[k] * m
        for p, g in zip(params, gradients(t, k, dtype)):
            p.grad = g
        opt.step()
    return params, opt


def step_stacked(cls, kw, dtype):
    params = [p.unsqueeze(0).repeat(K, *(1,) * p.ndim) for p in make_params(dtype)]
    lr0 = torch.tensor(LRS, dtype=dtype)
    group = {
        "params": params,
        "stacked": True,
        "lr": lr0.clone(),
        "weight_decay": torch.tensor(DECAYS, dtype=dtype),
        "initial_lr": lr0,
    }
    opt = cls([group], **kw)
    for t, m in enumerate(MULTIPLIERS):
        opt.param_groups[0]["lr"] = lr0 * m
        per_model = [gradients(t, k, dtype) for k in range(K)]
        for i, p in enumerate(params):
            p.grad = torch.stack([per_model[k][i] for k in range(K)])
        opt.step()
    return params, opt


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_stacked_models_step_as_they_would_alone(name, dtype, tol):
    cls, kw = VARIANTS[name]
    stacked, opt = step_stacked(cls, kw, dtype)
    for k in range(K):
        alone, _ = step_alone(cls, kw, k, dtype)
        for x, y in zip(alone, stacked):
            torch.testing.assert_close(y[k], x, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", VARIANTS)
def test_stacked_state_is_k_times_one_model(name):
    cls, kw = VARIANTS[name]
    stacked, opt = step_stacked(cls, kw, torch.float32)
    _, alone = step_alone(cls, kw, 0, torch.float32)
    assert state_bytes(opt) == predicted_state_bytes(opt) == K * state_bytes(alone)
    axes = kw.get("factored_axes", "both")
    for p in stacked:
        keys = set(opt.state[p])
        factored = kw.get("factored", cls is Adafactor) and p.ndim >= 3
        assert ("exp_avg_sq_row" in keys) == (factored and axes != "columns")
        assert ("exp_avg_sq_col" in keys) == (factored and axes != "rows")


@pytest.mark.parametrize("name", ["adamw_decoupled", "adafactor", "adamw_factored_momentum_clip_relative"])
def test_stacked_update_rms_report_is_each_models_own(name):
    cls, kw = VARIANTS[name]
    stacked, opt = step_stacked(cls, kw, torch.float64)
    reports = []
    for k in range(K):
        alone, alone_opt = step_alone(cls, kw, k, torch.float64)
        for p, g in zip(alone, gradients(99, k, torch.float64)):
            p.grad = g
        alone_opt.step(report_update_rms=True)
        reports.append(alone_opt.update_rms)
    for i, p in enumerate(stacked):
        p.grad = torch.stack([gradients(99, k, torch.float64)[i] for k in range(K)])
    opt.step(report_update_rms=True)
    assert opt.update_rms.rms.shape == (len(SHAPES), K)
    for k, report in enumerate(reports):
        torch.testing.assert_close(opt.update_rms.rms[:, k], report.rms, rtol=1e-10, atol=0)
        assert {key: v[k] for key, v in opt.update_rms.summary().items()} == pytest.approx(
            {key: v[0] for key, v in report.summary().items()}, rel=1e-10
        )


def test_a_diverged_model_leaves_the_others_alone():
    params = [p.unsqueeze(0).repeat(K, *(1,) * p.ndim) for p in make_params(torch.float64)]
    opt = Adafactor([{"params": params, "stacked": True, "lr": torch.tensor(LRS, dtype=torch.float64)}], beta1=0.9)
    clean = [p.clone() for p in params]
    clean_opt = Adafactor([{"params": clean, "stacked": True, "lr": torch.tensor(LRS, dtype=torch.float64)}], beta1=0.9)
    for t in range(3):
        grads = [torch.stack([gradients(t, k, torch.float64)[i] for k in range(K)]) for i in range(len(SHAPES))]
        for p, q, g in zip(params, clean, grads):
            q.grad = g.clone()
            g[1] = float("nan")
            p.grad = g
        opt.step()
        clean_opt.step()
    for p, q in zip(params, clean):
        assert p[1].isnan().all()
        torch.testing.assert_close(p[[0, 2, 3]], q[[0, 2, 3]], rtol=0, atol=0)


@pytest.mark.parametrize(
    "group,message",
    [
        ({"lr": torch.tensor([1e-3, 1e-2])}, "lr: a tensor is allowed only in a stacked group"),
        ({"stacked": True, "lr": torch.tensor([[1e-3]])}, "lr: a tensor is allowed only in a stacked group"),
        ({"stacked": True, "weight_decay": torch.tensor([-1.0, 0.0, 0.0])}, "weight_decay: a tensor"),
        ({"stacked": True, "lr": torch.tensor([1e-3, 1e-2])}, "params: a stacked group needs one leading model"),
        ({"stacked": "yes"}, "stacked: must be True or False"),
    ],
)
def test_bad_stacked_groups_name_the_setting(group, message):
    params = [torch.zeros(3, 4, 5), torch.zeros(3, 5)]
    with pytest.raises(ValueError, match=message):
        AdamW([{"params": params, **group}])
