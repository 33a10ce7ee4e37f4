"""``--config variants=a,b``: a run of some of the preset's variants, without editing the config.

Snakemake merges ``--config`` over the config files, so ``variants=a,b`` replaces the variant table (the
config's key ``variants``) with the names. :func:`variant_table` reads the table back from the files Snakemake
loaded, and :func:`run_only` narrows the preset's ``variants:`` list to the names, so that the training jobs,
aggregation and the figures all see the same smaller preset.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from optbench.experiment.preset import preset_variants


def requested(config: dict[str, Any]) -> list[str] | None:
    """The variant names of ``--config variants=a,b`` (or ``variants=[a,b]``); None where ``variants`` is the
    table."""
    value = config.get("variants")
    if value is None and "variants" in config:  # --config variants= names none
        return []
    if isinstance(value, str):
        return [name.strip() for name in value.split(",") if name.strip()]
    if isinstance(value, list):
        return [str(name) for name in value]
    return None


def variant_table(files: Sequence[str | Path]) -> dict[str, Any]:
    """The variant table as Snakemake merges it from ``files`` (``config.yaml``, then each ``--configfile``):
    a later file's row updates an earlier one's, key by key."""
    table: dict[str, Any] = {}
    for path in files:
        rows = (yaml.safe_load(Path(path).read_text()) or {}).get("variants")
        if isinstance(rows, dict):
            table = _merged(table, rows)
    return table


def _merged(base: Any, update: Any) -> Any:
    if isinstance(base, dict) and isinstance(update, dict):
        return {**base, **{key: _merged(base.get(key), value) for key, value in update.items()}}
    return update


def run_only(config: dict[str, Any], names: list[str]) -> None:
    """Narrow the preset's variants to ``names``; ValueError ``"variants: ..."`` naming one the preset does not run,
    with those it does."""
    preset = config["preset"]
    runs = preset_variants(config, preset)
    unknown = [name for name in names if name not in runs]
    if unknown or not names:
        problem = f"{unknown[0]!r} is not a variant of preset {preset}" if unknown else "no variant named"
        raise ValueError(f"variants: {problem}; its variants: {', '.join(runs)}")
    config["presets"][preset]["variants"] = list(dict.fromkeys(names))
