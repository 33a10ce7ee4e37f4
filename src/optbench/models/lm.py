r"""Small decoder-only Transformer language models that train on a CPU (``lm_d8`` to ``lm_tiny``).

Pre-norm blocks (Xiong et al. 2020): for the embeddings :math:`h_0 = E[x] + P` of the tokens and
their learned positions, each block computes

.. math::
    h \leftarrow h + W_o\, \mathrm{Attn}(\mathrm{LN}(h)), \qquad
    h \leftarrow h + W_2\, \mathrm{GELU}(W_1\, \mathrm{LN}(h)),

with causal multi-head self-attention, and the logits are :math:`W_{out}\, \mathrm{LN}(h)`. No dropout,
no weight tying: every matrix is its own parameter, which is what the factored second moment acts on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Block(nn.Module):
    """One pre-norm decoder block: causal self-attention, then a GELU MLP, each with a residual."""

    def __init__(self, d_model: int, heads: int, d_ff: int) -> None:
        super().__init__()
        self.heads = heads
        self.attn_norm, self.mlp_norm = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv, self.out = nn.Linear(d_model, 3 * d_model), nn.Linear(d_model, d_model)
        self.up, self.down = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)

    def forward(self, h: Tensor) -> Tensor:
        batch, length, width = h.shape
        q, k, v = self.qkv(self.attn_norm(h)).view(batch, length, 3, self.heads, -1).unbind(dim=2)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        h = h + self.out(a.transpose(1, 2).reshape(batch, length, width))
        return h + self.down(F.gelu(self.up(self.mlp_norm(h))))


class DecoderLM(nn.Module):
    """``forward(x)`` maps token ids ``(batch, length)`` to next-token logits ``(batch, length, vocab)``."""

    def __init__(self, vocab: int, context: int, d_model: int, heads: int, layers: int, d_ff: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, d_model)
        self.position = nn.Parameter(torch.randn(context, d_model) * 0.02)
        self.blocks = nn.Sequential(*(Block(d_model, heads, d_ff) for _ in range(layers)))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab)

    def forward(self, x: Tensor) -> Tensor:
        h = self.embedding(x) + self.position[: x.shape[1]]
        return self.head(self.norm(self.blocks(h)))


def lm_builder(d_model: int):
    """The builder of the 2-layer model of width ``d_model``: ``max(2, d_model // 32)`` heads, d_ff ``4 d_model``;
    its ``num_classes`` is the vocabulary, its ``input_shape`` ``(context,)``."""

    def build(*, num_classes: int, input_shape: tuple[int, ...]) -> DecoderLM:
        (context,) = input_shape
        return DecoderLM(num_classes, context, d_model=d_model, heads=max(2, d_model // 32), layers=2, d_ff=4 * d_model)

    return build
