"""An external optimizer: any ``torch.optim.Optimizer`` class, named by import path in a variant's
``optimizer`` block, run through the same protocol as this project's own.

The block is ``{class: torch.optim.NAdam, weight_decay_mode: torch, kwargs: {...}, axes: {...}}``:

- ``class``: the import path of the class, ``package.module.Class``;
- ``weight_decay_mode`` (required): what the weight-decay axis means for this class
  (:mod:`optbench.spec.decay_modes`: ``torch`` for ``torch.optim.AdamW``'s lr_t x lambda per step). It is
  recorded, and labels the axis in tables and figures;
- ``kwargs``: fixed keyword arguments of the class (``{decoupled_weight_decay: true}``);
- ``axes``: which keyword each grid axis sets, ``{lr: lr, weight_decay: weight_decay}`` by default;
- ``stack``: whether a stack of runs may train as one stacked model with one param group per model (default
  true); false trains them one after another, for a class whose groups do not step independently.

This module checks the block's form without importing the class; :mod:`optbench.train.external` imports
and checks the class itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from optbench.spec.decay_modes import DECAY_MODES, MEANING

#: The grid axes, each setting one keyword of the class.
AXES = ("lr", "weight_decay")
DEFAULT_AXES = {axis: axis for axis in AXES}
KEYS = ("class", "weight_decay_mode", "kwargs", "axes", "stack")
_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")
_KEYWORD = re.compile(r"[A-Za-z_]\w*")


@dataclass(frozen=True)
class ExternalOptimizerSpec:
    """An optimizer class by import path, its fixed keyword arguments, the keywords the grid's axes set,
    what its weight decay means and whether its runs may stack (see the module's docstring)."""

    class_path: str
    weight_decay_mode: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_AXES))
    stack: bool = True

    @classmethod
    def from_dict(cls, d: dict) -> ExternalOptimizerSpec:
        """The spec of an ``optimizer`` block with ``class``; ValueError naming the first bad key."""
        unknown = sorted(set(d) - set(KEYS))
        if unknown:
            raise ValueError(
                f"optimizer.{unknown[0]}: unknown key of an external optimizer; allowed: {', '.join(KEYS)}"
            )
        path = d["class"]
        if not isinstance(path, str) or not _PATH.fullmatch(path):
            raise ValueError(f"optimizer.class: must be an import path such as torch.optim.NAdam, got {path!r}")
        mode = d.get("weight_decay_mode")
        if mode not in DECAY_MODES:
            raise ValueError(
                f"optimizer.weight_decay_mode: required with class, what the weight-decay axis means for "
                f"{path}: one of {', '.join(DECAY_MODES)} ({MEANING}); got {mode!r}"
            )
        axes = {**DEFAULT_AXES, **_keywords(d.get("axes", {}), "axes")}
        if set(axes) != set(AXES):
            raise ValueError(f"optimizer.axes: the axes are {', '.join(AXES)}; got {sorted(axes)}")
        kwargs = _keywords(d.get("kwargs", {}), "kwargs", values=False)
        for axis, keyword in axes.items():
            if keyword in kwargs:
                raise ValueError(f"optimizer.kwargs.{keyword}: set by the grid's {axis} axis; leave it out of kwargs")
        if "params" in kwargs or "params" in axes.values():
            raise ValueError("optimizer: params is the models' parameters, not a keyword to set")
        stack = d.get("stack", True)
        if not isinstance(stack, bool):
            raise ValueError(f"optimizer.stack: must be true or false, got {stack!r}")
        return cls(path, mode, kwargs, axes, stack)

    def to_dict(self) -> dict[str, Any]:
        return {
            "class": self.class_path,
            "weight_decay_mode": self.weight_decay_mode,
            "kwargs": dict(self.kwargs),
            "axes": dict(self.axes),
            "stack": self.stack,
        }


def _keywords(mapping: Any, key: str, values: bool = True) -> dict[str, Any]:
    """``mapping`` checked to be a mapping whose keys (and, if ``values``, values) are Python identifiers."""
    if not isinstance(mapping, dict):
        raise ValueError(f"optimizer.{key}: must be a mapping, got {mapping!r}")
    for name, value in mapping.items():
        if not isinstance(name, str) or not _KEYWORD.fullmatch(name):
            raise ValueError(f"optimizer.{key}: {name!r} is not a keyword argument's name")
        if values and (not isinstance(value, str) or not _KEYWORD.fullmatch(value)):
            raise ValueError(f"optimizer.{key}.{name}: must name a keyword argument of the class, got {value!r}")
    return dict(mapping)
