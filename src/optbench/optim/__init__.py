"""AdamW, Adafactor and their combinations as one composable optimizer."""

from .memory import predicted_state_bytes, state_bytes
from .normalized import normalized_weight_decay
from .optimizer import AdaptiveOptimizer
from .presets import PRESETS, Adafactor, AdamW, make_optimizer

__all__ = ["AdaptiveOptimizer", "AdamW", "Adafactor", "PRESETS", "make_optimizer", "state_bytes", "predicted_state_bytes", "normalized_weight_decay"]
