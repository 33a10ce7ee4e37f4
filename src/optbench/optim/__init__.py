"""AdamW, Adafactor, SGD with momentum and their combinations as one composable optimizer."""

from .bases import SGD, Adafactor, AdamW, make_optimizer
from .memory import predicted_state_bytes, state_bytes
from .optimizer import AdaptiveOptimizer

__all__ = ["AdaptiveOptimizer", "AdamW", "Adafactor", "SGD", "make_optimizer", "state_bytes", "predicted_state_bytes"]
