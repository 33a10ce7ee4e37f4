"""A run record checked against itself: its history counts its epochs from 1, is as long as the run (or ends
where the run diverged), and its final and best test errors and final training loss are the history's.

Used on a record at aggregation (:mod:`optbench.records.checks`) and on a row of a runs table read back
(:mod:`optbench.records.table_checks`) alike. It imports nothing of the package, so that a table reader does
not import the run specs (and stays low in the layers that ``tests/test_architecture.py`` counts)."""

from __future__ import annotations


def contradictions(record: dict) -> list[str]:
    """Where ``record`` contradicts itself (see the module's docstring); empty for a consistent record."""
    history, epochs, status = record["history"], record["epochs"], record["status"]
    if not history:
        return ["the history is empty"]
    found = []
    numbers = [entry["epoch"] for entry in history]
    if numbers != list(range(1, len(history) + 1)):
        found.append(f"the history's epochs are {numbers}, not 1 to {len(history)}")
    if status == "ok" and len(history) != epochs:
        found.append(f"the history has {len(history)} epochs but the run has {epochs} and did not diverge")
    if status == "diverged" and len(history) > epochs:
        found.append(f"the history has {len(history)} epochs but the run has {epochs}")
    last = history[-1]
    best = last["test_error"] if status == "diverged" else min(entry["test_error"] for entry in history)
    for key, value in [
        ("final_test_error", last["test_error"]),
        ("best_test_error", best),
        ("final_train_loss", last["train_loss"]),
        ("final_val_bits_per_token", last.get("val_bits_per_token")),
    ]:
        if record.get(key) != value:
            found.append(f"{key} is {record.get(key)!r} but its history gives {value!r}")
    return found
