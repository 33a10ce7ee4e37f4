"""A Transformer-base encoder-decoder (Vaswani et al. 2017), the Adafactor paper's model.

Used to account for parameter shapes (build it with ``device="meta"``): d_model 512, 8 heads,
6 + 6 layers, d_ff 2048, one token embedding shared by encoder, decoder and output projection.
"""

import math

import torch
from torch import nn


class TransformerBase(nn.Module):
    """``forward(src, tgt)`` maps token ids (batch, length) to next-token logits (batch, tgt_length, vocab)."""

    def __init__(self, vocab_size: int, d_model: int = 512, heads: int = 8, layers: int = 6, d_ff: int = 2048) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.transformer = nn.Transformer(d_model, heads, layers, layers, d_ff, batch_first=True)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        mask = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1], device=tgt.device)
        hidden = self.transformer(self._embed(src), self._embed(tgt), tgt_mask=mask, tgt_is_causal=True)
        return hidden @ self.embedding.weight.T

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        d_model = self.embedding.embedding_dim
        return self.embedding(tokens) * math.sqrt(d_model) + _sinusoidal_positions(
            tokens.shape[1], d_model, tokens.device
        )


def _sinusoidal_positions(length: int, d_model: int, device: torch.device) -> torch.Tensor:
    position = torch.arange(length, device=device).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, d_model, 2, device=device) * (-math.log(10000.0) / d_model))
    table = torch.zeros(length, d_model, device=device)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table


def build_transformer_base(*, num_classes: int, input_shape: tuple[int, ...]) -> TransformerBase:
    """``num_classes`` is the vocabulary size (32,000 in the Adafactor setting: 60,524,544 parameters).

    ``input_shape`` is ``(sequence_length,)``; positions are sinusoidal, so it sets no parameter.
    """
    return TransformerBase(num_classes)
