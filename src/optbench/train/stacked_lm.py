r"""K copies of the decoder language model (:class:`~optbench.models.lm.DecoderLM`) as one forward pass.

The parameters are those of ``model.named_parameters()``, each stacked to a leading model dimension
K (:class:`optbench.train.stacking.StackedModels`). For activations ``h`` of shape ``(K, N, d)``
(N = batch x length tokens):

* a ``Linear`` layer of model k is one batched product, ``h[k] W[k]^T + b[k]``
  (``torch.baddbmm``);
* a ``LayerNorm`` normalizes over d without affine parameters, then scales and shifts per model;
* causal self-attention runs the K models' sequences as one batch of K x batch sequences
  (``F.scaled_dot_product_attention``), since attention never mixes sequences;
* the token embedding of model k is row ``x`` of its table ``E[k]``.

Model k's logits are those :class:`DecoderLM` gives with model k's parameters, to float rounding
(``tests/test_stacked_lm.py`` checks it in float64).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from optbench.models.lm import DecoderLM


def _linear(h: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``(K, N, in) -> (K, N, out)``: each model's ``Linear``."""
    return bias.unsqueeze(1).baddbmm(h, weight.transpose(1, 2))


def _layer_norm(h: Tensor, layer: nn.LayerNorm, weight: Tensor, bias: Tensor) -> Tensor:
    """``(K, N, d)``: each model's ``LayerNorm``."""
    return F.layer_norm(h, layer.normalized_shape, eps=layer.eps).mul(weight.unsqueeze(1)).add(bias.unsqueeze(1))


def forward(model: DecoderLM, params: dict[str, Tensor], x: Tensor) -> Tensor:
    """Logits ``(K, batch, length, vocabulary)`` of the K models whose stacked parameters are ``params``
    (keyed as ``model.named_parameters()``) for token ids ``x`` of shape ``(batch, length)``."""
    batch, length = x.shape
    models = params["position"].shape[0]
    h = params["embedding.weight"][:, x] + params["position"][:, None, :length]  # (K, batch, length, d)
    width = h.shape[-1]
    h = h.reshape(models, batch * length, width)
    for i, block in enumerate(model.blocks):

        def p(name: str, i=i) -> Tensor:
            """The stacked parameter ``name`` of block ``i``."""
            return params[f"blocks.{i}.{name}"]

        a = _layer_norm(h, block.attn_norm, p("attn_norm.weight"), p("attn_norm.bias"))
        qkv = _linear(a, p("qkv.weight"), p("qkv.bias")).view(models * batch, length, 3, block.heads, -1)
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(dim=2))  # (K batch, heads, length, d / heads)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2)
        h = h + _linear(a.reshape(models, batch * length, width), p("out.weight"), p("out.bias"))
        m = _layer_norm(h, block.mlp_norm, p("mlp_norm.weight"), p("mlp_norm.bias"))
        h = h + _linear(F.gelu(_linear(m, p("up.weight"), p("up.bias"))), p("down.weight"), p("down.bias"))
    h = _layer_norm(h, model.norm, params["norm.weight"], params["norm.bias"])
    return _linear(h, params["head.weight"], params["head.bias"]).view(models, batch, length, -1)
