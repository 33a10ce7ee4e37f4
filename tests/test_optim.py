"""The optimizer family against torch.optim, a per-tensor reference written from the spec, and the papers' formulas."""

import itertools
import subprocess
import sys

import pytest
import torch
from optim_params import make_params

from optbench.optim import SGD, Adafactor, AdamW, AdaptiveOptimizer, predicted_state_bytes, state_bytes
from optbench.spec.switches import defaults


def run(opt, params, steps, seed=1, scheduler=None, each_step=None):
    g = torch.Generator().manual_seed(seed)
    for i in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, dtype=p.dtype, generator=g)
        if each_step:
            each_step(i)
        opt.step()
        if scheduler:
            scheduler.step()
    return params


def assert_close_lists(a, b, **tol):
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, **tol)


# --- parity with torch.optim -------------------------------------------------------------------


@pytest.mark.parametrize("lr,wd", [(1e-2, 0.1), (3e-3, 0.0)])
def test_torch_decay_matches_torch_adamw(lr, wd):
    ours, theirs = make_params(), make_params()
    run(AdamW(ours, lr=lr, weight_decay=wd, weight_decay_mode="torch"), ours, 60)
    run(torch.optim.AdamW(theirs, lr=lr, weight_decay=wd, foreach=True), theirs, 60)
    assert_close_lists(ours, theirs, rtol=0, atol=1e-13)


def test_l2_decay_matches_torch_adam():
    ours, theirs = make_params(), make_params()
    run(AdamW(ours, lr=1e-2, weight_decay=0.3, weight_decay_mode="l2"), ours, 60)
    run(torch.optim.Adam(theirs, lr=1e-2, weight_decay=0.3, foreach=True), theirs, 60)
    assert_close_lists(ours, theirs, rtol=0, atol=1e-13)


def test_decoupled_decay_is_not_scaled_by_lr():
    lr, lam = 2e-2, 0.05
    ours, theirs = make_params(), make_params()
    run(AdamW(ours, lr=lr, weight_decay=lam), ours, 60)
    run(torch.optim.AdamW(theirs, lr=lr, weight_decay=lam / lr, foreach=True), theirs, 60)
    assert_close_lists(ours, theirs, rtol=0, atol=1e-13)


def test_adafactor_matches_torch_adafactor():
    # torch clamps V_hat at eps1**2 (eps1 = machine eps) where the paper, and we, add
    # eps1 = 1e-30 to G**2; for generic gradients neither touches the result in float64.
    ours, theirs = make_params(), make_params()
    run(Adafactor(ours), ours, 60)
    run(torch.optim.Adafactor(theirs, foreach=True), theirs, 60)
    assert_close_lists(ours, theirs, rtol=0, atol=1e-13)


def test_float32_parity_with_torch_adamw():
    ours, theirs = make_params(torch.float32), make_params(torch.float32)
    run(AdamW(ours, lr=1e-2, weight_decay=0.1, weight_decay_mode="torch"), ours, 30)
    run(torch.optim.AdamW(theirs, lr=1e-2, weight_decay=0.1, foreach=True), theirs, 30)
    assert_close_lists(ours, theirs, rtol=1e-5, atol=1e-6)


def small_model(dtype=torch.float64):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).to(dtype)


def train(model, opt, steps, scheduler=None, each_step=None):
    """``steps`` steps of cross-entropy on fixed random batches, the same for every call."""
    g = torch.Generator().manual_seed(5)
    for i in range(steps):
        x = torch.randn(16, 5, dtype=next(model.parameters()).dtype, generator=g)
        y = torch.randint(0, 3, (16,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        if each_step:
            each_step(i)
        opt.step()
        if scheduler:
            scheduler.step()
    return list(model.parameters())


@pytest.mark.parametrize("momentum,wd", [(0.9, 0.05), (0.9, 0.0), (0.0, 0.05)])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_sgd_matches_torch_sgd_under_a_scheduler(momentum, wd, dtype, tol):
    ours, theirs = small_model(dtype), small_model(dtype)
    opts = (
        SGD(ours.parameters(), lr=0.5, momentum=momentum, weight_decay=wd),
        torch.optim.SGD(theirs.parameters(), lr=0.5, momentum=momentum, weight_decay=wd, foreach=True),
    )
    schedulers = [torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=12) for opt in opts]
    assert_close_lists(
        train(ours, opts[0], 12, schedulers[0]), train(theirs, opts[1], 12, schedulers[1]), rtol=0, atol=tol
    )
    for p, q in zip(ours.parameters(), theirs.parameters()):
        if momentum:
            torch.testing.assert_close(opts[0].state[p]["momentum_buffer"], opts[1].state[q]["momentum_buffer"])


def test_sgdw_decay_is_eta_times_lambda_times_x():
    """SGDW (Loshchilov & Hutter, Algorithm 1): X_t = X_{t-1} - lr_t b_t - eta_t lambda X_{t-1}, no lambda in b_t."""
    lr, lam, mu = 0.3, 0.2, 0.9
    model = small_model()
    expected = [p.detach().clone() for p in model.parameters()]
    opt = SGD(model.parameters(), lr=lr, momentum=mu, weight_decay=lam, weight_decay_mode="decoupled")
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    buffers = [torch.zeros_like(x) for x in expected]
    decays = []

    def by_hand(_):
        lr_t = opt.param_groups[0]["lr"]
        eta = lr_t / lr
        decays.append(eta * lam)
        for i, p in enumerate(model.parameters()):
            buffers[i] = mu * buffers[i] + p.grad
            expected[i] = expected[i] - lr_t * buffers[i] - eta * lam * expected[i]

    assert_close_lists(train(model, opt, 10, sched, by_hand), expected, rtol=0, atol=1e-12)
    assert decays[0] == lam and 0 < decays[-1] < 0.03 * lam  # eta_t follows the cosine down
    for p, b in zip(model.parameters(), buffers):
        torch.testing.assert_close(opt.state[p]["momentum_buffer"], b, rtol=0, atol=1e-12)


def test_sgdw_decay_is_not_scaled_by_lr_and_stays_out_of_the_buffer():
    x = torch.ones(3, dtype=torch.float64)
    opt = SGD([x], lr=0.1, weight_decay=0.2, weight_decay_mode="decoupled")
    torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.25)
    x.grad = torch.zeros(3, dtype=torch.float64)  # b = 0: only the decay moves X
    opt.step()
    torch.testing.assert_close(x, torch.full((3,), 1.0 - 0.25 * 0.2, dtype=torch.float64))
    assert torch.equal(opt.state[x]["momentum_buffer"], torch.zeros(3, dtype=torch.float64))


def test_sgd_l2_is_in_the_buffer():
    x = torch.ones(3, dtype=torch.float64)
    opt = SGD([x], lr=0.1, weight_decay=0.2)
    x.grad = torch.zeros(3, dtype=torch.float64)
    opt.step()  # b_1 = G + lambda X = 0.2
    torch.testing.assert_close(opt.state[x]["momentum_buffer"], torch.full((3,), 0.2, dtype=torch.float64))
    torch.testing.assert_close(x, torch.full((3,), 1.0 - 0.1 * 0.2, dtype=torch.float64))


# --- every combination of switches against a per-tensor reference written from the spec -----


def rms(x):
    return x.pow(2).mean().sqrt()


def reference_step(x, g, state, hp, t, eta):
    """One step for one tensor, spelled out from the issue's formula, no foreach, no tricks."""
    x_prev = x.clone()
    if hp["weight_decay_mode"] == "l2":
        g = g + hp["weight_decay"] * x_prev
    beta2_t = hp["beta2"] if hp["beta2_decay"] is None else 1 - t ** (-hp["beta2_decay"])
    g2 = g * g + hp["eps1"]
    if not hp["second_moment"]:
        v = None
    elif hp["factored"] and x.ndim >= 2:
        state["r"] = beta2_t * state.get("r", 0) + (1 - beta2_t) * g2.mean(-1)
        state["c"] = beta2_t * state.get("c", 0) + (1 - beta2_t) * g2.mean(-2)
        v = {
            "both": state["r"].unsqueeze(-1) * state["c"].unsqueeze(-2) / state["r"].mean(-1)[..., None, None],
            "rows": state["r"].unsqueeze(-1).expand_as(g),  # V_ij = R_i
            "columns": state["c"].unsqueeze(-2).expand_as(g),  # V_ij = C_j
        }[hp.get("factored_axes", "both")]
    else:
        state["v"] = beta2_t * state.get("v", 0) + (1 - beta2_t) * g2
        v = state["v"]
    if v is not None and hp["beta2_decay"] is None:
        v = v / (1 - hp["beta2"] ** t)
    beta1 = hp["beta1"]
    if hp["momentum"] == "gradient" and beta1 > 0:
        state["m"] = beta1 * state.get("m", 0) + (1 - beta1) * g
        u = state["m"] / (1 - beta1**t)
    elif hp["momentum"] == "heavy_ball" and beta1 > 0:
        state["b"] = beta1 * state.get("b", 0) + g  # torch.optim.SGD's buffer: b_1 = G_1
        u = state["b"]
    else:
        u = g
    if v is not None:
        u = u / (v.sqrt() + hp["eps"])
    if hp["clip_threshold"] is not None:
        u = u / max(1.0, rms(u).item() / hp["clip_threshold"])
    lr = hp["lr"] * eta
    alpha = max(hp["eps2"], rms(x_prev).item()) * min(lr, t**-0.5) if hp["relative_step"] else lr
    s = alpha * u
    if hp["momentum"] == "update" and beta1 > 0:
        state["M"] = beta1 * state.get("M", 0) + (1 - beta1) * s
        s = state["M"]
    rate = {"decoupled": eta * hp["weight_decay"], "torch": lr * hp["weight_decay"], "l2": 0.0}[hp["weight_decay_mode"]]
    return x_prev - s - rate * x_prev


SWITCHES = [
    combination
    for combination in itertools.product(
        [True, False],  # second_moment
        ["decoupled", "torch", "l2"],  # weight_decay_mode
        [False, True],  # factored
        ["gradient", "update", "heavy_ball"],  # momentum
        [0.0, 0.9],  # beta1
        [None, 0.8],  # beta2_decay
        [None, 1.0],  # clip_threshold
        [False, True],  # relative_step
    )
    # without a second moment, factored and beta2_decay have nothing to act on
    if combination[0] or (not combination[2] and combination[5] is None)
]


@pytest.mark.parametrize("second,mode,factored,momentum,beta1,beta2_decay,clip,relative", SWITCHES)
def test_every_combination_matches_reference(second, mode, factored, momentum, beta1, beta2_decay, clip, relative):
    assert_matches_reference(
        dict(
            lr=0.05,
            weight_decay=0.1,
            weight_decay_mode=mode,
            beta1=beta1,
            second_moment=second,
            beta2=0.99,
            beta2_decay=beta2_decay,
            eps=1e-8,
            eps1=1e-30,
            eps2=1e-3,
            factored=factored,
            momentum=momentum,
            clip_threshold=clip,
            relative_step=relative,
        )
    )


@pytest.mark.parametrize("axes", ["rows", "columns"])
@pytest.mark.parametrize("base", ["AdamW", "Adafactor"])
@pytest.mark.parametrize(
    "beta1,beta2_decay,clip,relative", list(itertools.product([0.0, 0.9], [None, 0.8], [None, 1.0], [False, True]))
)
def test_one_sided_factoring_matches_reference(axes, base, beta1, beta2_decay, clip, relative):
    hp = {**defaults(base), "factored": True, "factored_axes": axes, "beta1": beta1, "beta2": 0.99}
    assert_matches_reference(
        {
            **hp,
            "beta2_decay": beta2_decay,
            "clip_threshold": clip,
            "relative_step": relative,
            "lr": 0.05,
            "weight_decay": 0.1,
        }
    )


def assert_matches_reference(hp):
    """8 steps of the optimizer under a halving lr against :func:`reference_step`, to 1e-10 in float64."""
    params = make_params()
    expected = [p.clone() for p in params]
    opt = AdaptiveOptimizer(params, **hp)
    # a schedule that halves the lr every step exercises eta_t = lr_t / lr_0
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)
    states = [{} for _ in params]
    g = torch.Generator().manual_seed(3)
    for t in range(1, 9):
        eta = opt.param_groups[0]["lr"] / hp["lr"]
        for i, p in enumerate(params):
            p.grad = torch.randn(p.shape, dtype=p.dtype, generator=g)
            expected[i] = reference_step(expected[i], p.grad, states[i], hp, t, eta)
        opt.step()
        sched.step()
    assert_close_lists(params, expected, rtol=1e-10, atol=1e-12)


# --- the papers' formulas, and known bugs of other implementations ------------------------------


def factored_u(g, **kw):
    """The update U of one Adafactor step from X = 0 with lr 1 and an absolute step: X_1 = -U."""
    x = torch.zeros_like(g, requires_grad=True)
    opt = Adafactor([x], lr=1.0, relative_step=False, **kw)
    x.grad = g
    opt.step()
    return -x.detach()


def test_rank_one_gradient_first_step_is_sign():
    g = torch.outer(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64), torch.tensor([3.0, -1.0], dtype=torch.float64))
    u = factored_u(g, clip_threshold=None)
    torch.testing.assert_close(u, torch.sign(g), rtol=1e-12, atol=0)
    assert rms(u).item() == pytest.approx(1.0, abs=1e-12)


def test_factored_adamw_first_step_is_sign():
    # constant beta2: the bias correction applies to the factored V_hat too
    g = torch.outer(torch.tensor([1.0, -2.0], dtype=torch.float64), torch.tensor([3.0, -1.0, 4.0], dtype=torch.float64))
    x = torch.zeros_like(g)
    x.grad = g
    AdamW([x], lr=1.0, factored=True, eps=0.0).step()
    torch.testing.assert_close(-x, torch.sign(g), rtol=1e-12, atol=0)


def test_factored_moment_of_a_zero_gradient_matrix_is_zero_not_nan():
    # a dead unit: one matrix of a conv weight gets no gradient, and AdamW's eps1 is 0
    x = torch.ones(2, 4, 3, dtype=torch.float64)
    x.grad = torch.randn(2, 4, 3, dtype=torch.float64)
    x.grad[1] = 0.0
    AdamW([x], lr=0.1, factored=True).step()
    assert torch.isfinite(x).all()
    torch.testing.assert_close(x[1], torch.ones(4, 3, dtype=torch.float64))


def test_transposing_w_and_g_transposes_the_update():
    g = torch.randn(6, 4, dtype=torch.float64)
    u = factored_u(g)
    torch.testing.assert_close(factored_u(g.T.contiguous()), u.T, rtol=1e-12, atol=0)


def test_rows_only_first_step_is_sign_when_each_row_has_one_magnitude():
    # V_ij = R_i = mean_j G_ij^2 = G_ij^2 when |G| is constant along each row
    g = torch.tensor([[1.0, -1.0, 1.0], [-3.0, 3.0, 3.0]], dtype=torch.float64)
    u = factored_u(g, factored_axes="rows", clip_threshold=None)
    torch.testing.assert_close(u, torch.sign(g), rtol=1e-12, atol=0)


def test_columns_only_is_rows_only_of_the_transpose():
    g = torch.randn(6, 4, dtype=torch.float64)
    columns = factored_u(g, factored_axes="columns")
    torch.testing.assert_close(factored_u(g.T.contiguous(), factored_axes="rows"), columns.T, rtol=1e-12, atol=0)


def test_clipping_rescales_a_large_update_to_rms_d():
    g = torch.randn(6, 4, dtype=torch.float64)
    d = 0.25
    u = factored_u(g, clip_threshold=d)
    assert rms(u).item() == pytest.approx(d, rel=1e-12)
    torch.testing.assert_close(u / d, factored_u(g, clip_threshold=None) / rms(factored_u(g, clip_threshold=None)))


def test_clipping_leaves_a_small_update_alone():
    g = torch.randn(6, 4, dtype=torch.float64)
    torch.testing.assert_close(factored_u(g, clip_threshold=100.0), factored_u(g, clip_threshold=None))


def test_relative_step_uses_rms_of_x_before_decay():
    x = torch.full((4, 4), 2.0, dtype=torch.float64)
    g = torch.outer(torch.ones(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64))  # U = 1 everywhere
    x.grad = g
    lam, lr = 0.1, 0.01
    Adafactor([x], lr=lr, weight_decay=lam, weight_decay_mode="torch").step()
    # alpha = RMS(X_0) * min(lr, 1/sqrt(1)) = 2 * lr; decay r = lr * lam
    torch.testing.assert_close(x, torch.full((4, 4), 2.0 - 2.0 * lr - lr * lam * 2.0, dtype=torch.float64))


def test_relative_step_floor_for_zero_initialized_x():
    u = torch.ones(3, 5, dtype=torch.float64)
    x = torch.zeros(3, 5, dtype=torch.float64)
    x.grad = u.clone()
    Adafactor([x], lr=0.5, eps2=1e-3).step()
    torch.testing.assert_close(x, -1e-3 * 0.5 * u)


def test_beta2_hat_at_step_one_is_zero():
    # 1 - 1**-0.8 = 0: the first average is exactly G**2 (+ eps1), whatever came before
    x = torch.zeros(5, dtype=torch.float64)
    x.grad = torch.tensor([1.0, 2.0, -3.0, 0.5, 4.0], dtype=torch.float64)
    opt = Adafactor([x], eps1=0.0)
    opt.step()
    torch.testing.assert_close(opt.state[x]["exp_avg_sq"], x.grad**2)


def test_decoupled_decay_follows_the_schedule_multiplier():
    x = torch.ones(3, dtype=torch.float64)
    opt = AdamW([x], lr=0.1, weight_decay=0.2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.25)
    x.grad = torch.zeros(3, dtype=torch.float64)  # U = 0: only the decay moves X
    opt.step()
    torch.testing.assert_close(x, torch.full((3,), 1.0 - 0.25 * 0.2, dtype=torch.float64))
    assert sched.get_last_lr() == [0.025]


def test_update_momentum_averages_the_scaled_update():
    x = torch.zeros(2, 3, dtype=torch.float64)
    opt = Adafactor([x], beta1=0.9, lr=1.0, relative_step=False, clip_threshold=None)
    x.grad = torch.ones(2, 3, dtype=torch.float64)
    opt.step()  # U = 1, M_1 = 0.1
    torch.testing.assert_close(x, torch.full((2, 3), -0.1, dtype=torch.float64))
    torch.testing.assert_close(opt.state[x]["update_avg"], torch.full((2, 3), 0.1, dtype=torch.float64))


def test_gradients_are_not_modified():
    x = torch.randn(4, 3, dtype=torch.float64)
    g = torch.randn(4, 3, dtype=torch.float64)
    x.grad = g.clone()
    AdamW([x], weight_decay=0.5, weight_decay_mode="l2", clip_threshold=1.0).step()
    torch.testing.assert_close(x.grad, g)


def test_parameters_without_grad_are_skipped_and_closure_returns_loss():
    a, b = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    opt = AdamW([a, b], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (a * 3).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == 6.0
    assert b.grad is None and opt.state[b] == {} and torch.equal(b, torch.ones(2))
    assert opt.state[a]["step"] == 1


def test_state_dict_round_trip_continues_identically():
    a, b = make_params(), make_params()
    opt_a = Adafactor(a, beta1=0.9)
    run(opt_a, a, 5)
    opt_b = Adafactor(b, beta1=0.9)
    run(opt_b, b, 5)
    restored = Adafactor(b, beta1=0.9)
    restored.load_state_dict(opt_b.state_dict())
    run(opt_a, a, 5, seed=9)
    run(restored, b, 5, seed=9)
    assert_close_lists(a, b, rtol=0, atol=0)


NO_DYNAMO = """
import sys
import torch
from optbench.optim import Adafactor, AdamW

for make in (AdamW, Adafactor):
    params = [torch.nn.Parameter(torch.randn(3, 4)), torch.nn.Parameter(torch.randn(4))]
    opt = make(params)
    opt.zero_grad()
    sum(p.sum() for p in params).backward()
    opt.step()
    opt.load_state_dict(opt.state_dict())
assert "torch._dynamo" not in sys.modules
"""


def test_optimizer_does_not_import_dynamo():
    # torch.optim.Optimizer's methods import torch._dynamo on first call, seconds in every training job
    result = subprocess.run([sys.executable, "-c", NO_DYNAMO], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# --- state shapes and bytes ----------------------------------------------------------------------

OPTIMIZERS = {
    "sgd": (SGD, {}, {"momentum_buffer"}, {"momentum_buffer"}),
    "sgdw": (SGD, {"weight_decay_mode": "decoupled"}, {"momentum_buffer"}, {"momentum_buffer"}),
    "sgd_no_momentum": (SGD, {"momentum": 0.0}, set(), set()),
    "adamw": (AdamW, {}, {"exp_avg", "exp_avg_sq"}, {"exp_avg", "exp_avg_sq"}),
    "adam_l2": (AdamW, {"weight_decay_mode": "l2"}, {"exp_avg", "exp_avg_sq"}, {"exp_avg", "exp_avg_sq"}),
    "adamw_factored": (
        AdamW,
        {"factored": True},
        {"exp_avg", "exp_avg_sq"},
        {"exp_avg", "exp_avg_sq_row", "exp_avg_sq_col"},
    ),
    "adamw_factored_no_momentum": (
        AdamW,
        {"factored": True, "betas": (0.0, 0.999)},
        {"exp_avg_sq"},
        {"exp_avg_sq_row", "exp_avg_sq_col"},
    ),
    "adafactor": (Adafactor, {}, {"exp_avg_sq"}, {"exp_avg_sq_row", "exp_avg_sq_col"}),
    "adafactor_rows": (Adafactor, {"factored_axes": "rows"}, {"exp_avg_sq"}, {"exp_avg_sq_row"}),
    "adafactor_columns": (Adafactor, {"factored_axes": "columns"}, {"exp_avg_sq"}, {"exp_avg_sq_col"}),
    "adafactor_momentum": (
        Adafactor,
        {"beta1": 0.9},
        {"exp_avg_sq", "update_avg"},
        {"exp_avg_sq_row", "exp_avg_sq_col", "update_avg"},
    ),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_state_shapes_and_bytes(name, dtype):
    cls, kw, vector_keys, matrix_keys = OPTIMIZERS[name]
    params = make_params(dtype)
    opt = cls(params, **kw)
    predicted = predicted_state_bytes(opt)
    assert state_bytes(opt) == 0
    run(opt, params, 2)
    assert state_bytes(opt) == predicted
    for p in params:
        state = opt.state[p]
        keys = set(state) - {"step"}
        assert keys == (matrix_keys if p.ndim >= 2 else vector_keys)
        if "exp_avg_sq_row" in state:
            assert state["exp_avg_sq_row"].shape == p.shape[:-1]
        if "exp_avg_sq_col" in state:
            assert state["exp_avg_sq_col"].shape == p.shape[:-2] + p.shape[-1:]


def test_factored_prediction_formula():
    p = torch.empty(3, 2, 100, 40, device="meta")
    opt = Adafactor([p])
    assert predicted_state_bytes(opt) == 3 * 2 * (100 + 40) * 4
    assert predicted_state_bytes(Adafactor([p], factored_axes="rows")) == 3 * 2 * 100 * 4
    assert predicted_state_bytes(Adafactor([p], factored_axes="columns")) == 3 * 2 * 40 * 4
    assert predicted_state_bytes(AdamW([p])) == 2 * p.numel() * 4
    assert predicted_state_bytes(SGD([p])) == p.numel() * 4  # one momentum buffer
    assert predicted_state_bytes(SGD([p], momentum=0.0)) == 0


# --- the update-RMS report ----------------------------------------------------------------------


@pytest.mark.parametrize("kw", [{}, {"clip_threshold": 1.0}, {"betas": (0.0, 0.999), "factored": True}])
def test_update_rms_report_is_rms_of_u_before_clipping(kw):
    # from X = 0 with lr 1 and no clipping X_1 = -U, so RMS(U) per tensor is RMS(X_1) of an unclipped twin
    params, twins = make_params(), make_params()
    report_opt = AdamW(params, lr=1.0, **kw)
    twin_opt = AdamW(twins, lr=1.0, **{**kw, "clip_threshold": None})
    for p, q in zip(params, twins):
        p.grad = torch.randn(p.shape, dtype=p.dtype, generator=torch.Generator().manual_seed(p.numel()))
        q.grad = p.grad.clone()
        p.data.zero_()
        q.data.zero_()
    report_opt.step(report_update_rms=True)
    twin_opt.step()
    expected = torch.stack([rms(-q) for q in twins])
    torch.testing.assert_close(report_opt.update_rms.rms, expected, rtol=1e-12, atol=0)
    summary = report_opt.update_rms.summary()
    d = kw.get("clip_threshold") or 1.0
    assert summary == {
        "mean": [pytest.approx(expected.mean().item(), rel=1e-12)],
        "max": [pytest.approx(expected.max().item(), rel=1e-12)],
        "clipped_fraction": [pytest.approx((expected > d).double().mean().item())],
    }


def same_gradients(params, twins, steps, seed=5):
    """Yields each step's index, after giving every parameter and its twin the same random gradient."""
    g = torch.Generator().manual_seed(seed)
    for t in range(steps):
        for p, q in zip(params, twins):
            p.grad = torch.randn(p.shape, dtype=p.dtype, generator=g)
            q.grad = p.grad.clone()
        yield t


@pytest.mark.parametrize("cls,kw", [(AdamW, {}), (Adafactor, {}), (AdamW, {"clip_threshold": 1.0}), (SGD, {})])
def test_update_rms_report_changes_nothing_and_is_only_kept_for_its_step(cls, kw):
    params, twins = make_params(), make_params()
    opt, twin = cls(params, **kw), cls(twins, **kw)
    for t in same_gradients(params, twins, 6):
        opt.step(report_update_rms=t % 2 == 0)
        twin.step()
        assert (opt.update_rms is not None) == (t % 2 == 0)
        assert twin.update_rms is None
    assert_close_lists(params, twins, rtol=0, atol=0)  # bit for bit


@pytest.mark.parametrize("cls,kw", [(AdamW, {}), (Adafactor, {"beta1": 0.9}), (AdamW, {"clip_threshold": 1.0})])
def test_cache_sized_chunks_step_as_the_whole_bucket(cls, kw, monkeypatch):
    # chunks of one tensor each (the bucket in make_params is far under CHUNK_BYTES) change no bit
    whole, chunked = make_params(), make_params()
    opt, chunked_opt = cls(whole, **kw), cls(chunked, **kw)
    for _ in same_gradients(whole, chunked, 4):
        opt.step(report_update_rms=True)
        with monkeypatch.context() as m:
            m.setattr("optbench.optim.optimizer.CHUNK_BYTES", 1)
            chunked_opt.step(report_update_rms=True)
        assert torch.equal(opt.update_rms.rms, chunked_opt.update_rms.rms)
    assert_close_lists(whole, chunked, rtol=0, atol=0)


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"lr": -1.0}, "lr"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"betas": (1.0, 0.999)}, "beta1"),
        ({"betas": (0.9, -0.1)}, "beta2"),
        ({"weight_decay_mode": "l1"}, "weight_decay_mode"),
        ({"momentum": "nesterov"}, "momentum"),
        ({"clip_threshold": 0.0}, "clip_threshold"),
        ({"beta2_decay": -0.8}, "beta2_decay"),
        ({"eps": -1e-8}, "eps"),
        ({"eps": float("inf")}, "eps"),
        ({"eps1": float("nan")}, "eps1"),
        ({"lr": float("inf")}, "lr"),
        ({"clip_threshold": float("inf")}, "clip_threshold"),
        ({"factored": 1}, "factored"),
        ({"factored_axes": "diagonal"}, "factored_axes"),
        ({"decay": "l2"}, "decay"),
    ],
)
def test_bad_settings_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name}:"):
        AdamW([torch.zeros(2)], **kwargs)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"momentum": 1.0}, "momentum"),
        ({"momentum": -0.1}, "momentum"),
        ({"momentum": "heavy_ball"}, "momentum"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"weight_decay_mode": "sgdw"}, "weight_decay_mode"),
        ({"second_moment": "no"}, "second_moment"),
        ({"nesterov": True}, "nesterov"),
    ],
)
def test_bad_sgd_settings_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name}:"):
        SGD([torch.zeros(2)], **kwargs)


def test_bad_group_setting_is_rejected():
    opt = AdamW([torch.zeros(2)])
    with pytest.raises(ValueError, match="^lr:"):
        opt.add_param_group({"params": [torch.zeros(3)], "lr": -0.5})


def test_complex_parameters_are_rejected():
    with pytest.raises(ValueError, match="complex"):
        Adafactor([torch.zeros(2, dtype=torch.complex64)])


def test_sparse_gradients_are_rejected():
    x = torch.zeros(3, 3)
    x.grad = torch.eye(3).to_sparse()
    with pytest.raises(ValueError, match="sparse"):
        AdamW([x]).step()
