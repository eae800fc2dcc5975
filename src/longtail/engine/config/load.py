"""Loading and saving: a file (and what it extends) plus overrides, validated into a :class:`Config`."""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from longtail.engine.checkpoint import atomic_write_text
from longtail.engine.config.checks import _check_cross
from longtail.engine.config.coerce import _build
from longtail.engine.config.files import (
    EXTENDS_KEYS,
    ConfigFiles,
    bundled_config_names,
    bundled_config_path,
)
from longtail.engine.config.schema import Config, ConfigError, TrainConfig, section_schemas
from longtail.engine.datasets.formats import DATA_FORMATS

__all__ = ["config_from_dict", "config_to_dict", "load_config", "save_config"]


def config_from_dict(raw: Mapping[str, Any] | None) -> Config:
    """Validate a mapping (e.g. from YAML) and build a :class:`Config`.

    Raises:
        ConfigError: unknown key, wrong type or out-of-range value; the message names the key.
    """
    for key in EXTENDS_KEYS:
        if raw is not None and key in raw:
            raise ConfigError(
                f"config key '{key}': only read from a config file (load_config), where it names "
                f"files relative to that file; got {raw[key]!r} in a mapping"
            )
    cfg: Config = _build(Config, {} if raw is None else raw, "")
    _check_cross(cfg)
    return cfg


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The configuration as plain Python types (the inverse of :func:`config_from_dict`)."""
    out = dataclasses.asdict(cfg)
    sections = out.pop("sections")
    for key in section_schemas():
        # absent unless set: the dicts (and run fingerprints) of the other tasks stay as they were
        if sections.get(key) is not None:
            out[key] = sections[key]
    if not out.get("tune"):
        out.pop("tune", None)  # absent unless set (longtail tune's spaces), as the sections
    data = out["data"]
    if data.get("validation_fraction") is None:
        data.pop("validation_fraction", None)  # likewise: older run folders still resume
    # keys added later, absent at their defaults, so that the fingerprints of older runs hold
    for key, default in _LATER_DEFAULTS.items():
        if data.get(key) == default:
            data.pop(key, None)
    # the feature scaling shapes what vector formats train on (its default `auto` may differ from
    # the earlier fixed standardisation on sparse data): kept for them, dropped where unused
    fmt = DATA_FORMATS.get(str(data.get("dataset")))
    if fmt is None or "feature_scaling" not in fmt.used_keys:
        data.pop("feature_scaling", None)
    return out


#: ``data`` keys added after run folders existed, with the defaults that keep earlier behaviour.
_LATER_DEFAULTS: dict[str, Any] = {
    "min_label_positives": 0,
    "sklearn_reference": False,
    "tag_separator": ";",
    "path_column": "path",
    "validation_seed": None,
}


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for p in parts[:-1]:
        child = node.get(p)
        if child is None:
            child = {}
            node[p] = child
        if not isinstance(child, dict):
            raise ConfigError(f"config key '{key}': '{p}' is not a section")
        node = child
    node[parts[-1]] = value


def _fit_warmup(raw: dict[str, Any], file_epochs: Any, notices: list[str]) -> None:
    """Lower a file's ``train.warmup_epochs`` that an overridden ``train.epochs`` leaves no room for.

    The warm-up keeps its share of the epochs (rounded down), and stays below ``train.epochs``.
    """
    train = raw.get("train")
    if not isinstance(train, dict):
        return
    values: tuple[Any, ...] = (train.get("epochs"), train.get("warmup_epochs"), file_epochs)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        return  # absent or invalid: validation names the key
    epochs, warmup, before = (int(v) for v in values)
    if warmup < epochs:
        return
    fitted = min(epochs - 1, warmup * epochs // before)
    train["warmup_epochs"] = fitted
    notices.append(
        f"train.warmup_epochs lowered from {warmup} to {fitted}: it must be below train.epochs, "
        f"now {epochs} (set train.warmup_epochs to choose another value)"
    )


def _not_found(path: Path) -> str:
    """``config file not found: PATH``; for a bare name, the bundled configs and the closest one;
    for a path, the closest YAML file of its folder."""
    if len(path.parts) == 1 and path.suffix in ("", ".yaml", ".yml"):
        names = bundled_config_names()
        close = difflib.get_close_matches(path.stem, names, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        return f"config file not found: {path} (bundled configs: {', '.join(names)}){hint}"
    folder = path.parent
    if not folder.is_dir():
        return f"config file not found: {path} (no folder {folder})"
    files = sorted(q.name for q in folder.iterdir() if q.suffix in (".yaml", ".yml"))
    close = difflib.get_close_matches(path.name, files, n=1)
    hint = f"; did you mean {folder / close[0]}?" if close else ""
    return f"config file not found: {path}{hint}"


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    notices: list[str] | None = None,
) -> Config:
    """Load and validate a YAML config; ``None`` loads the bundled ``digits_lt`` config.

    The file may extend others (``extends:``, see :mod:`longtail.engine.config.files`); they are
    merged first, the overrides applied to the result. An error about a key of a config of several
    files also names the file that set the key.

    Args:
        path: a YAML file, or the name of a bundled config (see :func:`bundled_config_names`).
        overrides: dotted keys applied on top of the file, e.g. ``{"train.epochs": 2}``.
        notices: if given (the command line does), an overridden ``train.epochs`` that is not above
            the file's ``train.warmup_epochs`` (not overridden) lowers the warm-up, keeping its
            share of the epochs, instead of being an error; a one-line note is appended here.

    Raises:
        ConfigError: an empty file, a file that is not YAML text or not a mapping, a base that is
            missing or extends back (a cycle), an unknown key, a wrong type or an out-of-range
            value (the message names the file or the key).
        FileNotFoundError: ``path`` does not exist and is not a bundled name.
    """
    try:
        import yaml  # noqa: F401  (optional dependency: a clear message if it is missing)
    except ImportError as exc:  # pragma: no cover
        raise ImportError("loading configs needs PyYAML: pip install 'longtail[cli]'") from exc
    if path is None:
        p = bundled_config_path("digits_lt")
    else:
        p = Path(path)
        if p.is_dir():
            raise ConfigError(f"config {p} is a folder, not a YAML file")
        if not p.is_file():
            if p.suffix == "" and str(p.stem) in bundled_config_names():
                p = bundled_config_path(str(p))
            else:
                raise FileNotFoundError(_not_found(p))
    files = ConfigFiles.read(p)
    raw = files.raw
    train = raw.get("train")
    file_epochs = train.get("epochs", TrainConfig().epochs) if isinstance(train, dict) else None
    overrides = dict(overrides or {})
    for k, v in overrides.items():
        _set_dotted(raw, k, v)
        files.forget(k)
    if (
        notices is not None
        and "train.epochs" in overrides
        and "train.warmup_epochs" not in overrides
    ):
        _fit_warmup(raw, file_epochs, notices)
    try:
        return config_from_dict(raw)
    except ConfigError as exc:
        message = files.with_file(str(exc))
        if message == str(exc):
            raise
        raise ConfigError(message) from None


def save_config(cfg: Config, path: str | os.PathLike[str]) -> None:
    """Write the resolved configuration as YAML, atomically: one self-contained file (the merged
    result of ``extends``, overrides and defaults), so a run folder never depends on a base file."""
    import yaml  # optional dependency (longtail[cli]), as in load_config

    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
