"""The CUDA path: skipped without a GPU (CI has none); run on a GPU machine to check it."""

import pytest
import torch

from optbench.optim import Adafactor, AdamW, predicted_state_bytes, state_bytes
from optbench.records.record import validate_record
from optbench.spec.run import RunSpec
from optbench.train.loop import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SHAPES = [(7,), (64, 32), (16, 8, 3, 3)]


def steps(make, device, n=20):
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=g).to(device) for s in SHAPES]
    grads = [[torch.randn(s, generator=g).to(device) for s in SHAPES] for _ in range(n)]
    opt = make(params)
    for step in grads:
        for p, grad in zip(params, step):
            p.grad = grad
        opt.step()
    return opt, [p.cpu() for p in params]


@pytest.mark.parametrize(
    "ours,theirs",
    [
        (
            lambda ps: AdamW(ps, lr=1e-2, weight_decay=0.1, weight_decay_mode="torch"),
            lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1, foreach=True),
        ),
        (lambda ps: Adafactor(ps), lambda ps: torch.optim.Adafactor(ps, foreach=True)),
    ],
)
def test_cuda_matches_torch_and_cpu(ours, theirs):
    opt, on_gpu = steps(ours, "cuda")
    _, torch_gpu = steps(theirs, "cuda")
    _, on_cpu = steps(ours, "cpu")
    for a, b, c in zip(on_gpu, torch_gpu, on_cpu):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6)
    assert state_bytes(opt) == predicted_state_bytes(opt)


@pytest.mark.parametrize("bf16", [False, True])
def test_training_run_on_cuda(tmp_path, bf16):
    spec = RunSpec.from_dict(
        {
            "variant": "adamw_cosine",
            "optimizer": {"base": "AdamW"},
            "lr": 2**-6,
            "weight_decay": 2**-12,
            "schedule": {"kind": "cosine"},
            "epochs": 3,
            "batch_size": 100,
            "device": "auto",
            "bf16": bf16,
            "data_dir": str(tmp_path),
            "model": "cnn",
            "dataset": "mnist1d",
        }
    )
    record = train(spec, quiet=True)
    validate_record(record)
    assert record["device"] == "cuda" and record["status"] == "ok"
    assert record["final_test_error"] < 0.7
    assert record["memory"]["peak_bytes"] > 0
    assert record["memory"]["optimizer_state_bytes"] == record["memory"]["optimizer_state_bytes_predicted"]
