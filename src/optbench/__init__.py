"""optbench: AdamW, Adafactor and their combinations, reproduced and benchmarked."""

__version__ = "0.1.0"
