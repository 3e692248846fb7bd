"""Records we wrote as JSON (the server's and the worker's state, a build's manifest), read back: whether each
field still holds the type its dataclass declares. A damaged or hand-edited file then reads as no record,
instead of handing "abc" or -5 to psutil, to a signal or to the status line."""

from __future__ import annotations

import math
from dataclasses import fields
from functools import cache
from types import UnionType
from typing import get_args, get_origin, get_type_hints


def well_typed(record: object) -> bool:
    """Every field of the dataclass instance holds its declared type (see holds)."""
    hints = _hints(type(record))
    return all(holds(getattr(record, f.name), hints[f.name]) for f in fields(record))


@cache
def _hints(cls: type) -> dict[str, object]:
    return get_type_hints(cls)


def holds(value: object, kind: object) -> bool:
    """Whether a value read from JSON is of the type hint ``kind``: an int is not a bool, a float is finite,
    lists and dicts hold what they say."""
    origin, args = get_origin(kind), get_args(kind)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if origin is UnionType:
        return any(holds(value, option) for option in args)
    if origin is list:
        return isinstance(value, list) and all(holds(item, args[0]) for item in value)
    if origin is dict:
        return isinstance(value, dict) and all(holds(k, args[0]) and holds(v, args[1]) for k, v in value.items())
    return isinstance(value, kind)  # str, bool, NoneType, a bare dict, an enum
