"""AdamW, Adafactor, SGD with momentum and their combinations as one composable optimizer."""

from optbench.optim.bases import SGD, Adafactor, AdamW, make_optimizer
from optbench.optim.memory import predicted_state_bytes, state_bytes
from optbench.optim.optimizer import AdaptiveOptimizer

__all__ = ["AdaptiveOptimizer", "AdamW", "Adafactor", "SGD", "make_optimizer", "state_bytes", "predicted_state_bytes"]
