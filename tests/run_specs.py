"""Run specs for the training tests, and how two trainings of the same specs are compared."""

import pytest

from optbench.records.record import validate_record


def spec_dict(data_dir, **overrides):
    d = {
        "variant": "adamw_cosine",
        "optimizer": {"base": "AdamW"},
        "lr": 2**-8,
        "weight_decay": 2**-6,
        "dataset": "mnist1d",
        "model": "cnn",
        "schedule": {"kind": "cosine"},
        "epochs": 2,
        "batch_size": 100,
        "seed": 0,
        "device": "cpu",
        "data_dir": data_dir,
        "preset": "test",
    }
    d.update(overrides)
    return d


# tolerance on losses and decays, and on test errors in test samples
PRECISION = {"float64": (1e-10, 0), "float32": (1e-4, 1)}


def assert_same_records(stacked, alone, dtype, test_items=200, tol=None):
    """``test_items``: the test set's size (200 MNIST-1D test signals by default), for the test errors' tolerance;
    ``tol``: on losses and decays, instead of the dtype's."""
    tol, samples = (tol or PRECISION[dtype][0]), PRECISION[dtype][1]
    error_tol = samples / test_items + 1e-12
    for s, a in zip(stacked, alone, strict=True):
        validate_record(s)
        assert s["timing"]["stacked_models"] == len(stacked) and a["timing"]["stacked_models"] == 1
        assert (s["run_id"], s["status"], len(s["history"])) == (a["run_id"], a["status"], len(a["history"]))
        assert s["memory"]["optimizer_state_bytes"] == a["memory"]["optimizer_state_bytes"]
        assert s["memory"]["parameter_bytes"] == a["memory"]["parameter_bytes"]
        assert s["weight_decay_applied"] == pytest.approx(a["weight_decay_applied"], rel=tol)
        for i, (hs, ha) in enumerate(zip(s["history"], a["history"], strict=True)):
            if a["status"] == "diverged" and i == len(a["history"]) - 1:
                assert (hs["train_loss"] is None) == (ha["train_loss"] is None)  # past the bound, or not finite
            else:
                assert hs["train_loss"] == pytest.approx(ha["train_loss"], rel=tol, abs=tol)
            assert hs["test_error"] == pytest.approx(ha["test_error"], abs=error_tol)
            assert hs["weight_decay"] == pytest.approx(ha["weight_decay"], rel=tol)
            assert hs["lr_multiplier"] == ha["lr_multiplier"]
