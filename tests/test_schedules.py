"""Schedules against their formulas, written out here independently of the module."""

import json
import math
import re
from fractions import Fraction

import pytest
import torch

from optbench.optim import AdamW
from optbench.train.schedules import ScheduleSpec, build_schedule, normalized_weight_decay

LR = 0.1


def run(spec, *, epochs, steps_per_epoch, n_steps=None):
    """Multiplier and T_i (epochs) used by batches 0..n_steps (default: one past the run's end)."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    sched = build_schedule(opt, spec, epochs=epochs, steps_per_epoch=steps_per_epoch)
    mults, cycles = [], []
    for _ in range(epochs * steps_per_epoch + 1 if n_steps is None else n_steps + 1):
        assert opt.param_groups[0]["lr"] == pytest.approx(LR * sched.multiplier, rel=1e-12, abs=1e-15)
        mults.append(sched.multiplier)
        cycles.append(sched.cycle_epochs)
        opt.step()
        sched.step()
    return mults, cycles


def cosine(t, total):
    return 0.5 * (1 + math.cos(math.pi * t / total))


def sgdr(t, steps_per_epoch, t_0, t_mult):
    """(multiplier, T_i) at batch t, by walking the cycles in exact rational epochs."""
    epoch, start, t_i = Fraction(t, steps_per_epoch), Fraction(0), Fraction(t_0)
    while epoch >= start + t_i:
        start, t_i = start + t_i, t_i * t_mult
    return 0.5 * (1 + math.cos(math.pi * (epoch - start) / t_i)), float(t_i)


def test_fixed():
    mults, cycles = run(ScheduleSpec(), epochs=3, steps_per_epoch=4)
    assert mults == [1.0] * 13
    assert cycles == [3.0] * 13


def test_step_drops_at_milestone_batches():
    # milestones at epochs 3 and 6.5 -> batches 12 and 26
    spec = ScheduleSpec(kind="step", milestones=(3, 6.5), gamma=0.5)
    mults, cycles = run(spec, epochs=10, steps_per_epoch=4)
    expected = [0.5 ** ((t >= 12) + (t >= 26)) for t in range(41)]
    assert mults == pytest.approx(expected, rel=1e-12)
    assert (mults[11], mults[12], mults[25], mults[26], mults[-1]) == pytest.approx((1, 0.5, 0.5, 0.25, 0.25))
    assert cycles == [10.0] * 41


@pytest.mark.parametrize("milestones", [(3, 6.5, 20), (3, 10), (30, 60, 80)])
def test_a_milestone_at_or_past_the_runs_end_is_refused(milestones):
    """A drop that never happens, such as the default milestones (30, 60, 80) in a 10-epoch run."""
    with pytest.raises(ValueError, match=re.escape("milestones must be < epochs (10), or the drop never happens")):
        run(ScheduleSpec(kind="step", milestones=milestones), epochs=10, steps_per_epoch=2)


def test_cosine_over_whole_run():
    mults, _ = run(ScheduleSpec(kind="cosine"), epochs=5, steps_per_epoch=8)
    assert mults == pytest.approx([cosine(t, 40) for t in range(41)], rel=1e-9, abs=1e-12)
    assert (mults[0], mults[20], mults[40]) == pytest.approx((1.0, 0.5, 0.0), abs=1e-12)


def check_restarts(spec, *, epochs, steps_per_epoch, t_0, restart_epochs):
    mults, cycles = run(spec, epochs=epochs, steps_per_epoch=steps_per_epoch)
    expected = [sgdr(t, steps_per_epoch, t_0, Fraction(spec.t_mult)) for t in range(len(mults))]
    assert mults == pytest.approx([m for m, _ in expected], abs=1e-12)
    assert cycles == pytest.approx([c for _, c in expected])
    restarts = [round(e * steps_per_epoch) for e in restart_epochs]
    assert [t for t in range(1, len(mults)) if mults[t] > mults[t - 1]] == restarts
    for t in restarts:
        assert mults[t] == 1.0
        assert cycles[t] == pytest.approx(cycles[t - 1] * spec.t_mult)
    if spec.t_mult > 1:  # T_i changes exactly at the restarts
        assert [t for t in range(1, len(cycles)) if cycles[t] != cycles[t - 1]] == restarts
    return mults, cycles


def test_warm_restarts_by_cycles_end_at_last_epoch():
    spec = ScheduleSpec(kind="warm_restarts", cycles=4, t_mult=2)  # T_0 = 15 / (2^4 - 1) = 1
    mults, cycles = check_restarts(spec, epochs=15, steps_per_epoch=10, t_0=1, restart_epochs=[1, 3, 7, 15])
    assert cycles[0] == 1.0 and cycles[149] == 8.0
    assert mults[149] < 1e-3  # the last batch of the run ends the last cycle


def test_warm_restarts_by_t_0():
    spec = ScheduleSpec(kind="warm_restarts", t_0=10, t_mult=2)
    _, cycles = check_restarts(spec, epochs=40, steps_per_epoch=2, t_0=10, restart_epochs=[10, 30])
    assert (cycles[0], cycles[20], cycles[60]) == (10.0, 20.0, 40.0)


def test_warm_restarts_fractional_t_0_lands_on_batches():
    # T_0 = 10 / 7 epochs; with 7 batches an epoch the boundaries are batches 10, 30, 70.
    spec = ScheduleSpec(kind="warm_restarts", cycles=3, t_mult=2)
    mults, _ = check_restarts(
        spec,
        epochs=10,
        steps_per_epoch=7,
        t_0=Fraction(10, 7),
        restart_epochs=[10 / 7, 30 / 7, 10],
    )
    assert mults[69] < 2e-3  # last batch of a 40-batch cycle: (1 + cos(39 pi / 40)) / 2


def test_warm_restarts_t_mult_3_where_torch_log_rounds_down():
    # restarts at 1, 4, 13, 40, 121 epochs; math.log(243, 3) < 5 drops the last in torch.
    spec = ScheduleSpec(kind="warm_restarts", t_0=1, t_mult=3)
    check_restarts(spec, epochs=122, steps_per_epoch=4, t_0=1, restart_epochs=[1, 4, 13, 40, 121])


def test_warm_restarts_t_mult_1_and_fractional_t_0():
    spec = ScheduleSpec(kind="warm_restarts", t_0=2.5, t_mult=1)
    check_restarts(
        spec,
        epochs=10,
        steps_per_epoch=2,
        t_0=Fraction(5, 2),
        restart_epochs=[2.5, 5, 7.5, 10],
    )


@pytest.mark.parametrize(
    ("kwargs", "main"),
    [
        ({}, lambda t: 1.0),
        (
            {"kind": "step", "milestones": (1, 4)},
            lambda t: 0.1 ** ((t >= 4) + (t >= 16)),
        ),
        ({"kind": "cosine"}, lambda t: cosine(t, 24)),
        (
            {"kind": "warm_restarts", "t_0": 0.5, "t_mult": 2},
            lambda t: sgdr(t, 4, Fraction(1, 2), 2)[0],
        ),
        ({"kind": "inverse_sqrt", "decay_start": 3}, lambda t: min(1, math.sqrt(12 / (t + 1)))),
    ],
    ids=["fixed", "step", "cosine", "warm_restarts", "inverse_sqrt"],
)
def test_warmup_scales_main_schedule_on_the_same_clock(kwargs, main):
    # 6 epochs x 4 batches, warm-up of 2 epochs = 8 batches; a drop / restart falls inside it.
    spec = ScheduleSpec(**kwargs, warmup_epochs=2)
    mults, _ = run(spec, epochs=6, steps_per_epoch=4)
    assert mults[0] == pytest.approx(1 / 8)
    expected = [min(1, (t + 1) / 8) * main(t) for t in range(25)]
    assert mults == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_inverse_sqrt_is_flat_then_decays_as_one_over_root_t():
    # decay from epoch 2.5 = batch 10: eta = min(1, sqrt(10 / (t + 1)))
    mults, _ = run(ScheduleSpec(kind="inverse_sqrt", decay_start=2.5), epochs=10, steps_per_epoch=4)
    assert mults[:10] == [1.0] * 10
    assert mults[10:] == pytest.approx([math.sqrt(10 / (t + 1)) for t in range(10, 41)], rel=1e-12)


def test_inverse_sqrt_with_its_warm_up_is_the_adafactor_papers_step_size():
    # Shazeer & Stern, Section 9: 0.1 min(1e-6 t', 1 / sqrt(t')) at step t' = t + 1, that is
    # min(t' / T^1.5, 1 / sqrt(t')) with T = 1e4; here T = 20 batches, divided by the peak 1 / sqrt(T)
    spec = ScheduleSpec(kind="inverse_sqrt", decay_start=5, warmup_epochs=5)
    mults, _ = run(spec, epochs=20, steps_per_epoch=4)
    paper = [min(t / 20**1.5, 1 / math.sqrt(t)) * math.sqrt(20) for t in range(1, 82)]
    assert mults == pytest.approx(paper, rel=1e-12)


def test_spec_round_trips_through_json():
    spec = ScheduleSpec(kind="warm_restarts", cycles=3, t_mult=1, warmup_epochs=0.5)
    assert ScheduleSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    spec = ScheduleSpec(kind="inverse_sqrt", decay_start=0.5, warmup_epochs=0.5)
    assert ScheduleSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert ScheduleSpec.from_dict({"kind": "step", "milestones": [1, 2]}).milestones == (1.0, 2.0)


@pytest.mark.parametrize(
    ("d", "field"),
    [
        ({"kind": "linear"}, "kind"),
        ({"kind": "step", "lr": 1}, "lr"),
        ({"kind": "step", "gamma": 0}, "gamma"),
        ({"kind": "step", "gamma": "0.1"}, "gamma"),
        ({"kind": "step", "milestones": [30, 20]}, "milestones"),
        ({"kind": "step", "milestones": [-1, 20]}, "milestones"),
        ({"kind": "step", "milestones": 30}, "milestones"),
        ({"kind": "warm_restarts"}, "t_0"),
        ({"kind": "warm_restarts", "t_0": 1, "cycles": 2}, "cycles"),
        ({"kind": "warm_restarts", "t_0": 0}, "t_0"),
        ({"kind": "warm_restarts", "cycles": 0}, "cycles"),
        ({"kind": "warm_restarts", "cycles": 2.5}, "cycles"),
        ({"kind": "warm_restarts", "cycles": 2, "t_mult": 0.5}, "t_mult"),
        ({"kind": "cosine", "cycles": 2}, "cycles"),
        ({"warmup_epochs": -1}, "warmup_epochs"),
        ({"kind": "inverse_sqrt"}, "decay_start"),
        ({"kind": "inverse_sqrt", "decay_start": 0}, "decay_start"),
        ({"kind": "cosine", "decay_start": 2}, "decay_start"),
    ],
)
def test_bad_spec_names_field(d, field):
    with pytest.raises(ValueError, match=field):
        ScheduleSpec.from_dict(d)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"epochs": 0, "steps_per_epoch": 5}, "epochs"),
        ({"epochs": 5, "steps_per_epoch": -1}, "steps_per_epoch"),
        (
            {"epochs": 5, "steps_per_epoch": 5, "spec": ScheduleSpec(warmup_epochs=5)},
            "warmup_epochs",
        ),
    ],
)
def test_bad_run_length_names_field(kwargs, field):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    with pytest.raises(ValueError, match=field):
        build_schedule(opt, kwargs.pop("spec", ScheduleSpec()), **kwargs)


def test_every_group_follows_its_initial_lr_even_zero():
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in (0.0, 0.3)]
    opt = torch.optim.SGD(groups, lr=LR)
    sched = build_schedule(opt, ScheduleSpec(kind="cosine", warmup_epochs=1), epochs=2, steps_per_epoch=2)
    for t in range(5):
        eta = min(1, (t + 1) / 2) * cosine(t, 4)
        assert sched.multiplier == pytest.approx(eta, abs=1e-12)
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.0, 0.3 * eta], abs=1e-12)
        assert [g["initial_lr"] for g in opt.param_groups] == [0.0, 0.3]
        # eta_t is handed to the optimizer, defined even where lr_0 = 0
        assert [g["schedule_multiplier"] for g in opt.param_groups] == pytest.approx([eta, eta], abs=1e-12)
        opt.step()
        sched.step()


def test_normalized_weight_decay():
    assert normalized_weight_decay(0.05, batch_size=128, n_train=50000, epochs=100) == pytest.approx(
        0.05 * math.sqrt(128 / (50000 * 100))
    )
    with pytest.raises(ValueError, match="epochs"):
        normalized_weight_decay(0.05, batch_size=128, n_train=50000, epochs=0)


def test_schedule_sets_lambda_per_restart_cycle_and_eta_per_model():
    # 2 cycles over 3 epochs of 2 batches: T_0 = 1 epoch (batches 0-1), T_1 = 2 epochs (batches 2-5)
    lr0, lambda_norm = torch.tensor([0.1, 0.3]), torch.tensor([0.05, 0.5])
    x = torch.zeros(2, 3)
    opt = AdamW([{"params": [x], "stacked": True, "lr": lr0, "weight_decay": lambda_norm}])
    sched = build_schedule(
        opt,
        ScheduleSpec(kind="warm_restarts", cycles=2, t_mult=2),
        epochs=3,
        steps_per_epoch=2,
        normalized_weight_decay=(10, 40),
    )
    group = opt.param_groups[0]
    for t in range(6):
        t_i = 1.0 if t < 2 else 2.0
        torch.testing.assert_close(group["weight_decay"], lambda_norm * math.sqrt(10 / (40 * t_i)))
        torch.testing.assert_close(group["lr"], lr0 * sched.multiplier)
        torch.testing.assert_close(group["schedule_multiplier"], group["lr"] / lr0)
        sched.step()
    assert group["initial_weight_decay"] is lambda_norm


def test_weight_decay_stays_lambda_without_normalization():
    opt = AdamW([torch.zeros(3)], lr=0.1, weight_decay=0.02)
    sched = build_schedule(opt, ScheduleSpec(kind="cosine"), epochs=2, steps_per_epoch=3)
    for _ in range(6):
        assert opt.param_groups[0]["weight_decay"] == 0.02
        sched.step()


@pytest.mark.parametrize(
    "spec",
    [
        ScheduleSpec(kind="step", milestones=(1, 2.5), gamma=0.5),
        ScheduleSpec(kind="cosine", warmup_epochs=0.5),
        ScheduleSpec(kind="warm_restarts", cycles=2, t_mult=2),
        ScheduleSpec(kind="inverse_sqrt", decay_start=1),
    ],
)
def test_a_schedule_loaded_from_its_state_goes_on_bit_for_bit(spec):
    """A checkpoint keeps the batch count alone; a new schedule replays the steps (torch's schedulers chain)."""

    def schedule():
        opt = AdamW([torch.zeros(2, 2)], lr=LR, weight_decay=0.1)
        return opt, build_schedule(opt, spec, epochs=4, steps_per_epoch=5, normalized_weight_decay=(10, 50))

    def settings(opt):
        return [opt.param_groups[0][key] for key in ("lr", "weight_decay", "schedule_multiplier")]

    opt, sched = schedule()
    for _ in range(7):
        sched.step()
    resumed_opt, resumed = schedule()
    resumed.load_state_dict(sched.state_dict())
    for _ in range(13):
        assert settings(resumed_opt) == settings(opt)
        sched.step()
        resumed.step()
    with pytest.raises(ValueError, match="needs a schedule at batch 0"):
        resumed.load_state_dict(sched.state_dict())
