"""Typed readers for training metadata (traiNNer-redux hyperparameters stored in a checkpoint).

Metadata is text written by whoever made the file: every value a family reads goes through one of
these readers, which return the value in the type the config needs or raise :class:`ConfigError`
naming the key, the value found and what is expected. A missing key, or ``None`` (JSON ``null``,
how training tools write "not set"), gives ``default``. Bounds are sanity limits far above any
released config; they keep a typo from building a model that cannot run (a 10^9-token group).

    category_size = meta_int(meta, "category_size", min=1, max=4096, default=256)
    upsampler = meta_choice(meta, "upsampler", ("pixelshuffle", "pixelshuffledirect"))
    img_range = meta_img_range(meta, default=1.0)
    split_size = meta_int_list(meta, "split_size", length=2, min=1, max=256)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from ..errors import ConfigError

T = TypeVar("T")
MAX_LIST = 64  # no config has more entries (residual groups) than this
MAX_IMG_RANGE = 1000.0  # BasicSR's img_range: 1.0, or 255.0 in older configs
_SHOWN = 60  # characters of a bad value quoted in a message


def shown(value: Any) -> str:
    """``repr(value)`` cut to a readable length (a metadata value may be megabytes long)."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def bad_value(key: str, value: Any, expected: str) -> ConfigError:
    """The error for metadata ``key`` holding ``value`` where ``expected`` was needed."""
    return ConfigError(
        f"training metadata sets {key}={shown(value)}, but {key} must be {expected}. The file's "
        "metadata is damaged or was written by a tool we do not know: remove the key (or fix it) "
        "and the value is read from the weights or the official default is used."
    )


def given(meta: Mapping | None, key: str) -> bool:
    """Whether ``meta`` sets ``key`` (``None`` counts as not set)."""
    return bool(meta) and meta.get(key) is not None


def _as_int(key: str, value: Any, expected: str) -> int:
    """An integer from a JSON value: an int, or a float with no fraction (never a bool)."""
    if isinstance(value, bool):
        raise bad_value(key, value, expected)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    raise bad_value(key, value, expected)


def _bounds(min: int, max: int | None) -> str:
    return f">= {min}" if max is None else f"from {min} to {max}"


def meta_int(
    meta: Mapping | None, key: str, *, min: int = 1, max: int | None = None, default: T = None
) -> int | T:
    """``meta[key]`` as an integer in ``[min, max]``, or ``default`` when not set."""
    if not given(meta, key):
        return default
    expected = f"an integer {_bounds(min, max)}"
    value = _as_int(key, meta[key], expected)
    if value < min or (max is not None and value > max):
        raise bad_value(key, meta[key], expected)
    return value


def meta_float(
    meta: Mapping | None,
    key: str,
    *,
    min: float | None = None,
    max: float | None = None,
    min_inclusive: bool = True,
    default: T = None,
) -> float | T:
    """``meta[key]`` as a finite float within the bounds, or ``default`` when not set."""
    if not given(meta, key):
        return default
    value = meta[key]
    low = "" if min is None else f" {'>=' if min_inclusive else '>'} {min}"
    high = "" if max is None else f"{' and' if low else ''} <= {max}"
    expected = f"a finite number{low}{high}"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise bad_value(key, value, expected)
    below = min is not None and (value < min if min_inclusive else value <= min)
    if below or (max is not None and value > max):
        raise bad_value(key, value, expected)
    return float(value)


def meta_img_range(meta: Mapping | None, *, default: T = None) -> float | T:
    """BasicSR's ``img_range`` (the input multiplier every family shares), or ``default``."""
    return meta_float(meta, "img_range", min=0.0, max=MAX_IMG_RANGE, min_inclusive=False, default=default)


def meta_choice(meta: Mapping | None, key: str, choices: Sequence[T], *, default: Any = None) -> T | Any:
    """``meta[key]`` when it is one of ``choices`` (compared exactly, type included)."""
    if not given(meta, key):
        return default
    value = meta[key]
    for choice in choices:
        if type(value) is type(choice) and value == choice:
            return choice
    raise bad_value(key, value, "one of " + ", ".join(map(repr, choices)))


def meta_bool(meta: Mapping | None, key: str, *, default: T = None) -> bool | T:
    """``meta[key]`` when it is ``true`` or ``false``."""
    return meta_choice(meta, key, (True, False), default=default)


def meta_int_list(
    meta: Mapping | None,
    key: str,
    *,
    length: int | None = None,
    max_length: int = MAX_LIST,
    min: int = 1,
    max: int | None = None,
    default: T = None,
) -> tuple[int, ...] | T:
    """``meta[key]`` as a tuple of integers in ``[min, max]`` (``length`` entries when given,
    otherwise 1 to ``max_length``), or ``default`` when not set."""
    if not given(meta, key):
        return default
    value = meta[key]
    count = f"{length}" if length is not None else f"1 to {max_length}"
    expected = f"a list of {count} integers, each {_bounds(min, max)}"
    if not isinstance(value, list | tuple):
        raise bad_value(key, value, expected)
    if (length is not None and len(value) != length) or not 1 <= len(value) <= max_length:
        raise bad_value(key, value, expected)
    items = tuple(_as_int(key, v, expected) for v in value)
    if any(v < min or (max is not None and v > max) for v in items):
        raise bad_value(key, value, expected)
    return items


def first_given(meta: Mapping | None, keys: Sequence[str]) -> str | None:
    """The first of ``keys`` (aliases of one setting) that ``meta`` sets, or None."""
    return next((k for k in keys if given(meta, k)), None)
