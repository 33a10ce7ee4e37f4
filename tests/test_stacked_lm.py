"""The decoder language model trained stacked (optbench.train.stacked_lm) gives the records it gives one run at a
time."""

import copy

import pytest
import torch
from run_specs import assert_same_records

from optbench.models import build_model
from optbench.models.lm import DecoderLM
from optbench.spec.run import RunSpec
from optbench.train.loop import train, train_together
from optbench.train.stacking import StackedModels, can_stack

pytestmark = pytest.mark.usefixtures("one_thread")

# Adafactor (row O) divides a gradient that is zero but for rounding, the attention keys' bias (softmax ignores a
# shift of every key), by its own RMS (eps1 = 1e-30): that noise becomes a full step, another one stacked than
# alone. It moves no prediction, but float64 records then agree to 1e-8, not 1e-10.
TOLERANCE = {("O", "float64"): 1e-8}
ROWS = {  # Table 2's rows A, B, H, L and O (docs/adafactor.md), each with its own per-tensor statistics
    "A": {"base": "AdamW", "beta1": 0.0},
    "B": {"base": "AdamW"},
    "H": {"base": "AdamW", "beta1": 0.0, "clip_threshold": 1.0},
    "L": {"base": "AdamW", "beta1": 0.0, "factored": True, "beta2_decay": 0.8},
    "O": {"base": "Adafactor"},
}


def lm_specs(data_dir, optimizer, dtype, lrs=(2**-8, 2**-6, 2**-4), **overrides):
    return [
        RunSpec.from_dict(
            {
                "variant": "lm",
                "optimizer": optimizer,
                "lr": lr,
                "weight_decay": 0.0,
                "dataset": "text_stdlib",
                "dataset_options": {"context": 16, "steps_per_epoch": 4, "eval_windows": 8},
                "model": "lm_d16",
                "schedule": {"kind": "inverse_sqrt", "decay_start": 1},
                "epochs": 2,
                "batch_size": 4,
                "device": "cpu",
                "dtype": dtype,
                "data_dir": data_dir,
                "trace_every": 3,
                **overrides,
            }
        )
        for lr in lrs
    ]


def test_the_decoder_stacks_and_its_logits_are_each_models():
    torch.manual_seed(0)
    model = build_model("lm_d16", num_classes=256, input_shape=(16,)).double()
    assert isinstance(model, DecoderLM) and can_stack(model)
    stacked = StackedModels(copy.deepcopy(model), 3)
    with torch.no_grad():
        for p in stacked.params:
            p.add_(torch.randn_like(p) * 0.05)
    x = torch.randint(0, 256, (5, 16))
    logits = stacked(x)
    assert logits.shape == (3, 5, 16, 256)
    for k in range(3):
        with torch.no_grad():
            for p, q in zip(model.parameters(), stacked.params):
                p.copy_(q[k])
        torch.testing.assert_close(logits[k], model(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("row", ROWS)
def test_a_stacked_lr_axis_matches_one_run_at_a_time(data_dir, row, dtype):
    specs = lm_specs(data_dir, ROWS[row], dtype)
    stacked = list(train_together(specs, stacked=True, quiet=True))
    alone = [train(spec, quiet=True) for spec in specs]
    tol = TOLERANCE.get((row, dtype), 1e-10 if dtype == "float64" else 1e-4)
    assert_same_records(stacked, alone, dtype, test_items=8 * 16, tol=tol)
    for s, a in zip(stacked, alone):
        assert s["final_val_bits_per_token"] == pytest.approx(a["final_val_bits_per_token"], rel=tol)
        traced = 1e-3 if dtype == "float64" else 1e-2  # the trace keeps 4 significant digits; RMS(U) amplifies
        assert s["trace"]["train_loss"] == pytest.approx(a["trace"]["train_loss"], rel=traced)
        for key in ("mean", "max"):
            assert s["trace"]["update_rms"][key] == pytest.approx(a["trace"]["update_rms"][key], rel=traced)
