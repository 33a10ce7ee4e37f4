import pytest
import torch

from optbench.data.loaders import DATASETS
from optbench.models import BUILDERS, MODELS, REGISTRY, build_model
from optbench.models.shake_shake import shake
from optbench.models.transformer import TransformerBase
from optbench.spec.models import CATALOG

pytestmark = pytest.mark.usefixtures("one_thread")

INPUT_SHAPES = {
    "cnn": (1, 40),
    "cnn_bn": (1, 40),
    "mlp": (1, 40),
    "resnet_small": (3, 32, 32),
    "shake_shake_26_2x64d": (3, 32, 32),
    "transformer_base": (16,),
    **{name: (64,) for name in ("lm_d8", "lm_d16", "lm_d32", "lm_d64", "lm_tiny")},
}
SEQUENCE_MODELS = (
    "transformer_base",
    "lm_d8",
    "lm_d16",
    "lm_d32",
    "lm_d64",
    "lm_tiny",
)  # token ids in, a prediction per position out


def test_every_catalogued_model_has_a_builder_and_a_known_dataset():
    assert list(BUILDERS) == list(CATALOG) == list(REGISTRY)
    assert {model.dataset for model in CATALOG.values()} - {None} <= set(DATASETS)


def num_parameters(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", [n for n in MODELS if n not in SEQUENCE_MODELS])
def test_forward_shape_in_train_and_eval(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=10, input_shape=INPUT_SHAPES[name])
    x = torch.randn(2, *INPUT_SHAPES[name])
    assert model(x).shape == (2, 10)
    assert model.eval()(x).shape == (2, 10)


def test_transformer_forward_shape():
    model = TransformerBase(vocab_size=50, d_model=16, heads=2, layers=1, d_ff=32)  # same code, tiny sizes
    src, tgt = torch.randint(50, (2, 7)), torch.randint(50, (2, 5))
    assert model(src, tgt).shape == (2, 5, 50)


@pytest.mark.parametrize(
    "name, num_classes, expected",
    [
        ("cnn", 10, 5_210),
        ("cnn_bn", 10, 5_285),
        ("mlp", 10, 15_210),
        ("resnet_small", 10, 692_122),
        ("shake_shake_26_2x64d", 10, 11_653_978),
        ("transformer_base", 32_000, 60_524_544),
        ("lm_d8", 256, 6_624),
        ("lm_d16", 256, 16_064),
        ("lm_d32", 256, 44_160),
        ("lm_d64", 256, 137_216),
        ("lm_tiny", 256, 470_784),
    ],
)
def test_parameter_counts(name, num_classes, expected):
    model = build_model(name, num_classes=num_classes, input_shape=INPUT_SHAPES[name], device="meta")
    assert all(p.is_meta for p in model.parameters())
    assert num_parameters(model) == expected


def test_lm_tiny_maps_tokens_to_next_token_logits_causally():
    torch.manual_seed(0)
    model = build_model("lm_tiny", num_classes=256, input_shape=(64,))
    x = torch.randint(256, (2, 16))
    logits = model(x)
    assert logits.shape == (2, 16, 256)
    later = x.clone()
    later[:, 10:] = (later[:, 10:] + 1) % 256
    torch.testing.assert_close(model(later)[:, :10], logits[:, :10])  # no position sees a later token
    assert not torch.allclose(model(later)[:, 10:], logits[:, 10:])


def test_shake_shake_matches_the_papers_size():
    model = build_model("shake_shake_26_2x64d", num_classes=10, input_shape=(3, 32, 32), device="meta")
    assert 11.6e6 * 0.98 <= num_parameters(model) <= 11.7e6 * 1.02


@pytest.mark.parametrize("name", ["cnn", "cnn_bn", "resnet_small"])
def test_same_seed_same_weights(name):
    def weights():
        torch.manual_seed(7)
        return build_model(name, num_classes=10, input_shape=INPUT_SHAPES[name]).state_dict()

    first, second = weights(), weights()
    assert all(torch.equal(first[key], second[key]) for key in first)


def test_shake_in_eval_is_the_deterministic_mean():
    a, b = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    torch.manual_seed(0)
    first = shake(a, b, training=False)
    torch.manual_seed(1)
    assert torch.equal(shake(a, b, training=False), first)
    torch.testing.assert_close(first, (a + b) / 2)


def test_shake_in_training_mixes_each_example_randomly():
    a, b = torch.zeros(64, 3, 2, 2), torch.ones(64, 3, 2, 2)
    torch.manual_seed(0)
    out = shake(a, b, training=True)  # = 1 - alpha, one alpha per example
    torch.manual_seed(0)
    assert torch.equal(shake(a, b, training=True), out)
    torch.manual_seed(1)
    assert not torch.equal(shake(a, b, training=True), out)
    per_example = out.flatten(1)
    assert torch.equal(per_example, per_example[:, :1].expand_as(per_example))
    assert len(per_example[:, 0].unique()) == 64 and 0 < per_example.min() and per_example.max() < 1


def test_shake_gradient_reaches_both_branches_with_an_independent_weight():
    a = torch.zeros(64, 3, 2, 2, requires_grad=True)
    b = torch.ones(64, 3, 2, 2, requires_grad=True)
    out = shake(a, b, training=True)  # = 1 - alpha
    out.backward(torch.ones_like(out))  # a.grad = beta, b.grad = 1 - beta
    torch.testing.assert_close(a.grad + b.grad, torch.ones_like(a))
    assert (a.grad > 0).all() and (b.grad > 0).all()
    assert torch.equal(a.grad.flatten(1), a.grad.flatten(1)[:, :1].expand(64, 12))  # one beta per example
    assert not torch.allclose(a.grad, 1 - out)  # beta is not alpha


def test_shake_shake_train_output_depends_on_rng_eval_does_not():
    torch.manual_seed(0)
    model = build_model("shake_shake_26_2x64d", num_classes=10, input_shape=(3, 32, 32))
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    torch.manual_seed(1)
    first = model(x)
    torch.manual_seed(2)
    assert torch.equal(model(x), first)
    model.train()
    torch.manual_seed(1)
    first = model(x)
    torch.manual_seed(2)
    assert not torch.allclose(model(x), first)
    first.sum().backward()
    block = model.body[2]  # first Shake-Shake block
    assert block.branch1[1].weight.grad.abs().sum() > 0 and block.branch2[1].weight.grad.abs().sum() > 0


def test_transformer_base_on_meta_allocates_nothing():
    process = pytest.importorskip("psutil").Process()
    before = process.memory_info().rss
    model = build_model("transformer_base", num_classes=32_000, input_shape=(16,), device="meta")
    grown = process.memory_info().rss - before
    fp32_bytes = 4 * num_parameters(model)
    assert all(p.is_meta for p in model.parameters()) and all(b.is_meta for b in model.buffers())
    assert fp32_bytes > 200e6 and grown < fp32_bytes / 20


def test_unknown_model_lists_the_allowed_ones():
    allowed = (
        "cnn, cnn_bn, mlp, resnet_small, shake_shake_26_2x64d, lm_d8, lm_d16, lm_d32, lm_d64, lm_tiny, transformer_base"
    )
    with pytest.raises(ValueError, match=f"'vgg'.*{allowed}"):
        build_model("vgg", num_classes=10, input_shape=(3, 32, 32))
