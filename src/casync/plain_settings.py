"""Constructor settings read from a file, checked to be plain data before any code sees them.

A checkpoint, a cache's meta.json or an avatar folder is a file people download and share. The
settings it carries become constructor arguments only through `plain_settings`: every key must be
one of the constructor's arguments, and every value a plain value of the annotated type (str,
int, float, bool, None, or a tuple of those); never a nested mapping, never something that names
code to run.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Mapping

MAX_STRING = 4096  # a path or a hub id; nothing longer is a setting
SCALARS = (str, int, float, bool, type(None))


class SettingsError(ValueError):
    """Settings read from a file that are not plain constructor arguments."""


def plain_settings(cls: type, config: Mapping, where: str, prefix: str = "") -> dict:
    """`config` as keyword arguments of `cls`, each value checked against the annotation of
    `cls.__init__`; SettingsError naming `where` and `prefix` + the key otherwise."""
    if not isinstance(config, Mapping):
        raise SettingsError(
            f"{where}: {prefix or 'the config'} is a {type(config).__name__}, not a mapping"
        )
    hints = {k: v for k, v in typing.get_type_hints(cls.__init__).items() if k != "return"}
    settings = {}
    for key, value in config.items():
        if not isinstance(key, str) or key not in hints:
            raise SettingsError(
                f"{where}: {prefix}{key} is not a setting of {cls.__name__} (its settings: "
                f"{', '.join(hints)})"
            )
        settings[key] = checked_value(value, hints[key], f"{where}: {prefix}{key}")
    return settings


def checked_value(value: object, annotation: object, where: str) -> object:
    """`value` if it is a plain instance of `annotation` (tuples come back as tuples)."""
    members = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    for member in members:
        if typing.get_origin(member) is tuple and isinstance(value, (list, tuple)):
            items = typing.get_args(member)
            item_type = items[0] if len(items) == 2 and items[1] is Ellipsis else None
            if item_type in SCALARS and all(_is_plain(v, item_type) for v in value):
                return tuple(value)
        elif member in SCALARS and _is_plain(value, member):
            return value
    names = [_name(m) for m in members]
    shown = repr(value) if len(repr(value)) <= 80 else f"{repr(value)[:77]}..."
    raise SettingsError(f"{where}={shown}: must be a plain {' or '.join(names)}")


def _is_plain(value: object, wanted: type) -> bool:
    if wanted is type(None):
        return value is None
    if isinstance(value, bool) or wanted is bool:  # a bool is an int to Python, never to a config
        return isinstance(value, bool) and wanted is bool
    if wanted is float:
        return type(value) in (int, float) and math.isfinite(value)
    if wanted is str:
        return type(value) is str and len(value) <= MAX_STRING and "\x00" not in value
    return type(value) is wanted


def _name(annotation: object) -> str:
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _is_union(annotation: object) -> bool:
    return isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union
