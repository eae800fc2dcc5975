"""Search spaces: what ``longtail tune`` searches for a method, and a config's ``tune:`` section.

Every :class:`~longtail.engine.methods.method.Param` that makes sense to tune declares a
:class:`~longtail.engine.methods.method.Space` next to its default (the loss components, samplers,
mixing, post-hoc steps and second stages where they are defined). :data:`TRAIN_PARAMS` does the
same for ``train.lr`` and ``train.weight_decay``, searched on request (``--tune-train``, or a
``tune.train`` entry).

A config's ``tune:`` section changes the spaces, method by method, validated key by key::

    tune:
      la-loss:
        tau: {low: 0.5, high: 3.0}          # narrow or widen (inside the parameter's valid range)
        stage2_lr_factor: [0.1, 1.0]        # [low, high]: a parameter without a declared space
      ldam-drw:
        scale: {scale: linear}              # another scale, the declared bounds
        drw_beta: false                     # not searched: its method_params value or default
      train:
        lr: {low: 0.01, high: 0.3}          # searched (with or without --tune-train)

A space is a mapping with ``low``, ``high``, ``scale`` (``linear``, ``log``, ``int``, ``choice``) and
``choices`` (any of them; the others come from the declared space), a list ``[low, high]``, or
``false`` / ``null`` (not searched). Every error is a :class:`ValueError` naming the dotted key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, get_args

from longtail.engine.methods.method import Method, Param, Space, SpaceScale

__all__ = [
    "TRAIN_PARAMS",
    "Dimension",
    "check_tune_section",
    "method_dimensions",
    "parse_space",
]

#: ``train.*`` keys ``longtail tune`` may search (``--tune-train``): the valid range of the
#: ``train`` section and the declared space; the default is the config's value.
TRAIN_PARAMS: dict[str, Param] = {
    "lr": Param(
        0.1, low=0.0, low_open=True, help="peak learning rate", space=Space(1e-3, 1.0, "log")
    ),
    "weight_decay": Param(5e-4, low=0.0, help="L2 weight decay", space=Space(1e-6, 1e-2, "log")),
}

_SCALES: tuple[str, ...] = get_args(SpaceScale)
_KEYS = ("low", "high", "scale", "choices")


@dataclass(frozen=True)
class Dimension:
    """One searched value: ``name`` (a method parameter, or ``train.lr``), its parameter (valid
    range, default, stage) and its space."""

    name: str
    param: Param
    space: Space

    @property
    def train_key(self) -> str | None:
        """The ``train`` key this dimension sets (``lr``), ``None`` for a method parameter."""
        return self.name.split(".", 1)[1] if self.name.startswith("train.") else None

    def contains(self, value: Any) -> bool:
        """Whether ``value`` lies in the space (the default may not: then it is not enqueued)."""
        s = self.space
        if s.scale == "choice":
            return value in s.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        assert s.low is not None and s.high is not None
        return bool(s.low <= value <= s.high)


def _number(key: str, value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"config key '{key}': expected a number, got {value!r}")
    return value


def check_space(key: str, param: Param, space: Space) -> Space:
    """``space`` checked against ``param`` (valid bounds, scale, choices); errors name ``key``."""
    if space.scale not in _SCALES:
        raise ValueError(
            f"config key '{key}.scale': must be one of {list(_SCALES)}, got {space.scale!r}"
        )
    if space.scale == "choice":
        if not space.choices:
            raise ValueError(f"config key '{key}.choices': give at least one value")
        choices = tuple(param.check(f"{key}.choices[{i}]", v) for i, v in enumerate(space.choices))
        return dataclasses.replace(space, low=None, high=None, choices=choices)
    d = param.default
    if isinstance(d, (bool, str)):
        raise ValueError(
            f"config key '{key}': a {'true/false' if isinstance(d, bool) else 'text'} parameter "
            "is searched over choices (give choices: [...])"
        )
    if space.low is None or space.high is None:
        raise ValueError(f"config key '{key}': give low and high (or choices)")
    low = param.check(f"{key}.low", _number(f"{key}.low", space.low))
    high = param.check(f"{key}.high", _number(f"{key}.high", space.high))
    if space.scale == "int" and not (isinstance(low, int) and isinstance(high, int)):
        raise ValueError(f"config key '{key}': scale int needs integer low and high")
    if isinstance(d, int) and space.scale != "int":
        raise ValueError(f"config key '{key}.scale': an integer parameter has scale int or choice")
    if not low < high:
        raise ValueError(f"config key '{key}.high': must be > low ({low}), got {high}")
    if space.scale == "log" and low <= 0:
        raise ValueError(f"config key '{key}.low': scale log needs low > 0, got {low}")
    return dataclasses.replace(space, low=low, high=high, choices=())


def parse_space(key: str, param: Param, raw: Any) -> Space | None:
    """The space of a ``tune:`` entry (``None``: not searched), merged with the declared one."""
    if raw is None or raw is False:
        return None
    base = param.space
    if isinstance(raw, list):
        if len(raw) != 2:
            raise ValueError(f"config key '{key}': expected [low, high], got {raw!r}")
        raw = {"low": raw[0], "high": raw[1]}
    if not isinstance(raw, Mapping):
        raise ValueError(
            f"config key '{key}': expected a mapping {{low, high, scale, choices}}, [low, high] or "
            f"false, got {raw!r}"
        )
    for k in raw:
        if k not in _KEYS:
            raise ValueError(f"config key '{key}.{k}': unknown key (known: {', '.join(_KEYS)})")
    if "choices" in raw and not isinstance(raw["choices"], list):
        raise ValueError(f"config key '{key}.choices': expected a list, got {raw['choices']!r}")
    if base is None:
        d = param.default
        base = Space(scale="int" if isinstance(d, int) and not isinstance(d, bool) else "linear")
    scale = raw.get("scale", "choice" if "choices" in raw else base.scale)
    if not isinstance(scale, str):
        raise ValueError(f"config key '{key}.scale': must be one of {list(_SCALES)}, got {scale!r}")
    space = Space(
        low=raw.get("low", base.low),
        high=raw.get("high", base.high),
        scale=scale,  # type: ignore[arg-type]  # checked below
        choices=tuple(raw.get("choices", base.choices)),
    )
    return check_space(key, param, space)


def _section_entries(section: Any, key: str) -> Mapping[str, Any]:
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise ValueError(f"config key '{key}': expected a mapping, got {section!r}")
    return section


def method_dimensions(
    method: Method,
    label: str,
    section: Mapping[str, Any] | None,
    *,
    train_defaults: Mapping[str, Any],
    tune_train: bool = False,
) -> list[Dimension]:
    """What ``longtail tune`` searches for method ``label``: its parameters with a space (the
    declared ones changed by ``section``, the config's ``tune:``), then ``train.lr`` and
    ``train.weight_decay`` when ``tune_train`` or when ``section`` names them.

    Args:
        train_defaults: the config's ``train`` values (the defaults of the ``train.*`` dimensions).

    Raises:
        ValueError: a bad ``tune:`` entry (naming its key).
    """
    section = _section_entries(section, "tune")
    given = _section_entries(section.get(label), f"tune.{label}")
    out: list[Dimension] = []
    for name, param in method.params.items():
        key = f"tune.{label}.{name}"
        space = parse_space(key, param, given[name]) if name in given else param.space
        if space is not None:
            out.append(Dimension(name, param, check_space(key, param, space)))
    train_given = _section_entries(section.get("train"), "tune.train")
    for name, param in TRAIN_PARAMS.items():
        if name not in train_given and not tune_train:
            continue
        p = dataclasses.replace(param, default=train_defaults.get(name, param.default))
        key = f"tune.train.{name}"
        space = parse_space(key, p, train_given[name]) if name in train_given else p.space
        if space is not None:
            out.append(Dimension(f"train.{name}", p, check_space(key, p, space)))
    return out


def check_tune_section(section: Mapping[str, Any], methods: Mapping[str, Method]) -> None:
    """Validate a config's ``tune:`` section against the methods of its task (the registry's and
    the config's recipes); raise :class:`ValueError` naming the first bad key."""
    for label, entries in section.items():
        where = f"tune.{label}"
        entries = _section_entries(entries, where)
        if label == "train":
            known = TRAIN_PARAMS
        elif label in methods:
            known = dict(methods[label].params)
        else:
            raise ValueError(
                f"config key '{where}': unknown method (known: train, {', '.join(methods)})"
            )
        for name, raw in entries.items():
            if name not in known:
                raise ValueError(
                    f"config key '{where}.{name}': unknown hyper-parameter "
                    f"(known: {', '.join(known) or 'none'})"
                )
            parse_space(f"{where}.{name}", known[name], raw)
