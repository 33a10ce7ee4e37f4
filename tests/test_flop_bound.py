"""benchmarks/flop_bound.py counts the FLOPs of a cnn_bn step as a hand count does, and multiplies them out over
the quick preset; its stacked step runs K times those FLOPs as matrix products."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("flop_bound", ROOT / "benchmarks" / "flop_bound.py")
flop_bound = sys.modules["flop_bound"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up there
_spec.loader.exec_module(flop_bound)

pytestmark = pytest.mark.usefixtures("one_thread")

BATCH = 100


def conv(out_channels, in_channels, kernel, length_out, batch=BATCH):
    """Forward FLOPs of a Conv1d: a multiply and an add per weight per output position and example."""
    return 2 * out_channels * in_channels * kernel * length_out * batch


def hand_count():
    """cnn_bn on (1, 40) inputs: lengths 40 -> 19 -> 10 -> 5 (stride 2, padding 1), then Linear(125, 10).
    Backward: weight and input gradients, each as many FLOPs as the forward; the first conv has no input
    gradient (its input needs none). BatchNorm and ReLU are not counted by FlopCounterMode."""
    first, second, third = conv(25, 1, 5, 19), conv(25, 25, 3, 10), conv(25, 25, 3, 5)
    linear = 2 * 10 * 125 * BATCH
    return {
        "0.0 Conv1d": (first, first),
        "0.3 Conv1d": (second, 2 * second),
        "0.6 Conv1d": (third, 2 * third),
        "1 Linear": (linear, 2 * linear),
    }


@pytest.fixture(scope="module")
def quick():
    return flop_bound.workload("quick")


def test_quick_workload(quick):
    assert (quick.model, quick.batch_size, quick.epochs) == ("cnn_bn", BATCH, 8)
    assert (quick.steps_per_epoch, quick.n_test, quick.runs) == (40, 1000, 17 * 132)
    assert sorted(set(quick.stack_sizes)) == [13, 14]  # shards of 66 runs in stacks of at most 16
    assert sum(quick.stack_sizes) == quick.runs


def test_one_cnn_bn_step_matches_the_hand_count(quick):
    layers = flop_bound.layer_flops(quick)
    assert layers == hand_count()
    assert sum(f + b for f, b in layers.values()) == 18_575_000


def test_preset_total_is_step_times_steps_times_runs_plus_evaluation(quick):
    step, forward = 18_575_000, 6_350_000
    training, evaluation = flop_bound.preset_flops(quick, hand_count())
    assert training == step * 40 * 8 * 2244
    assert evaluation == forward * (1000 // BATCH) * 8 * 2244


def test_stacked_step_runs_k_times_the_flops_as_matrix_products(quick):
    products = flop_bound.stacked_products(quick, 3)
    assert sum(p.flops for p in products) == 3 * 18_575_000
    assert [p.op for p in products].count("mm") == 2  # the first conv's forward and weight gradient


def test_bound_is_flops_over_rate_times_cores():
    assert flop_bound.bound(10**12, 50e9, 2) == 10.0


@pytest.mark.parametrize("preset", ["paper", "adafactor"])  # Shake-Shake on CIFAR-10, a decoder LM on text
def test_other_datasets_are_refused(preset):
    with pytest.raises(ValueError, match="only MNIST-1D"):
        flop_bound.workload(preset)
