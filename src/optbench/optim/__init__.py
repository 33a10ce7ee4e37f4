"""AdamW, Adafactor and their combinations as one composable optimizer."""

from .bases import Adafactor, AdamW, make_optimizer
from .memory import predicted_state_bytes, state_bytes
from .optimizer import AdaptiveOptimizer

__all__ = ["AdaptiveOptimizer", "AdamW", "Adafactor", "make_optimizer", "state_bytes", "predicted_state_bytes"]
