"""The optimizer's switches: one table, the single place a switch is declared.

Each :class:`Switch` has a name, the values it takes, its default in each base optimizer
(``AdamW``, ``Adafactor``, ``SGD``: one column each, in the order of :data:`BASES`) and a
one-line meaning. The optimizer's defaults and checks, its bases, run specs and the config
check read this table, and the optimizer blocks of both JSON schemas are generated from it
(:mod:`optbench.spec.schema`). Adding a switch touches the
table, the piece that implements it (``optim/transforms.py``, wired in ``optim/optimizer.py``)
and its test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from optbench.spec.decay_modes import DECAY_MODES, MEANING
from optbench.spec.values import is_finite_number

#: The base optimizers: each is a column of defaults in :data:`SWITCHES`, in this order.
BASES = ("AdamW", "Adafactor", "SGD")

#: Switches added after record schema version 2: optional in a record's optimizer block, so that older
#: records stay valid. Absent, a switch holds its default, the same in every base.
ADDED_SINCE_V2 = ("factored_axes",)

#: Keys of the optimizer block that were renamed, and the new name each one points to.
RENAMED = {
    "preset": "base",
    "decay": "weight_decay_mode",
    "normalized_decay": "normalized_weight_decay, a key beside optimizer (not inside it)",
}


@dataclass(frozen=True)
class Switch:
    """One switch: its values (``type``, then ``choices`` or a range) and its default in each base.

    ``defaults`` holds one default per base, in the order of :data:`BASES`. The range uses
    JSON Schema's words; numbers must also be finite. ``nullable``: ``None`` turns the switch off.
    """

    name: str
    type: type  # bool, float or str
    defaults: tuple[Any, ...]  # one per base, in the order of BASES
    meaning: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None
    nullable: bool = False

    def __post_init__(self):
        if len(self.defaults) != len(BASES):
            raise ValueError(f"{self.name}: needs one default per base ({', '.join(BASES)}), got {self.defaults!r}")
        for default in self.defaults:
            self.check(default)

    def default(self, base: str) -> Any:
        return self.defaults[BASES.index(base)]

    @property
    def allowed(self) -> str:
        """The values it takes, in words."""
        if self.type is bool:
            return "True or False"
        if self.type is str:
            return "one of " + ", ".join(self.choices)
        bounds = [
            f"{op} {bound:g}"
            for op, bound in ((">=", self.minimum), (">", self.exclusive_minimum), ("<", self.exclusive_maximum))
            if bound is not None
        ]
        number = "a finite number " + " and ".join(bounds)
        return f"None or {number}" if self.nullable else number

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if self.type is bool:
            return isinstance(value, bool)
        if self.type is str:
            return value in self.choices
        if not is_finite_number(value):
            return False
        return (
            (self.minimum is None or value >= self.minimum)
            and (self.exclusive_minimum is None or value > self.exclusive_minimum)
            and (self.exclusive_maximum is None or value < self.exclusive_maximum)
        )

    def check(self, value: Any) -> None:
        """ValueError naming the switch unless it accepts ``value``."""
        if not self.accepts(value):
            raise ValueError(f"{self.name}: must be {self.allowed}, got {value!r}")


#: Every switch, by name, in the order of a record's optimizer block. Defaults: AdamW, Adafactor, SGD.
SWITCHES: dict[str, Switch] = {
    s.name: s
    for s in (
        Switch(
            "weight_decay_mode",
            str,
            ("decoupled", "decoupled", "l2"),
            MEANING,
            choices=tuple(DECAY_MODES),
        ),
        Switch(
            "beta1",
            float,
            (0.9, 0.0, 0.9),
            "first-moment decay (SGD's momentum mu); 0 keeps no first moment",
            minimum=0.0,
            exclusive_maximum=1.0,
        ),
        Switch(
            "second_moment",
            bool,
            (True, True, False),
            "divide by sqrt(V_hat) + eps; False: keep no V, U is the first moment (or G) itself",
        ),
        Switch(
            "beta2",
            float,
            (0.999, 0.999, 0.999),
            "constant second-moment decay, bias-corrected; unused with beta2_decay",
            minimum=0.0,
            exclusive_maximum=1.0,
        ),
        Switch(
            "beta2_decay",
            float,
            (None, 0.8, None),
            "c in beta2_t = 1 - t^-c, no bias correction; None: constant beta2",
            exclusive_minimum=0.0,
            nullable=True,
        ),
        Switch("eps", float, (1e-8, 0.0, 1e-8), "added to sqrt(V_hat)", minimum=0.0),
        Switch("eps1", float, (0.0, 1e-30, 0.0), "added to G^2 inside the second moment", minimum=0.0),
        Switch("eps2", float, (1e-3, 1e-3, 1e-3), "floor on RMS(X) in the relative step", minimum=0.0),
        Switch(
            "factored",
            bool,
            (False, True, False),
            "second moment as row and column averages for tensors with ndim >= 2",
        ),
        Switch(
            "factored_axes",
            str,
            ("both", "both", "both"),
            "with factored: V_hat = R C / mean(R) (both), R alone (rows) or C alone (columns)",
            choices=("both", "rows", "columns"),
        ),
        Switch(
            "momentum",
            str,
            ("gradient", "update", "heavy_ball"),
            "what the first moment averages: G (gradient, Adam), the scaled update (update, Adafactor), "
            "or G in torch's buffer beta1 buf + G, no bias correction (heavy_ball, SGD)",
            choices=("gradient", "update", "heavy_ball"),
        ),
        Switch(
            "clip_threshold",
            float,
            (None, 1.0, None),
            "d in U / max(1, RMS(U) / d); None: no clipping",
            exclusive_minimum=0.0,
            nullable=True,
        ),
        Switch(
            "relative_step",
            bool,
            (False, True, False),
            "step size max(eps2, RMS(X)) min(lr_t, 1/sqrt(t)) instead of lr_t",
        ),
    )
}


def defaults(base: str) -> dict[str, Any]:
    """Every switch's default in ``base``; ValueError naming an unknown base."""
    if base not in BASES:
        raise ValueError(f"base: unknown base optimizer {base!r}; allowed: {', '.join(BASES)}")
    return {name: s.default(base) for name, s in SWITCHES.items()}


def resolve(base: str, switches: Mapping[str, Any]) -> dict[str, Any]:
    """Every switch: ``base``'s defaults with ``switches`` set; ValueError naming a bad base, switch or value."""
    values = defaults(base)
    for name, value in switches.items():
        if name not in SWITCHES:
            raise ValueError(f"{name}: unknown optimizer switch; allowed: {', '.join(SWITCHES)}")
        SWITCHES[name].check(value)
        values[name] = value
    return values


def check_renamed(optimizer: Mapping[str, Any], where: str) -> None:
    """ValueError naming the new key if the optimizer block at ``where`` uses a renamed one."""
    for old, new in RENAMED.items():
        if old in optimizer:
            raise ValueError(f"{where}.{old}: renamed to {new}")
