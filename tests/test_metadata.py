"""The typed metadata readers (arch/common/metadata.py): right values pass, wrong ones name the key."""

from __future__ import annotations

import math

import pytest

from srt.arch.common.metadata import (
    first_given,
    meta_bool,
    meta_choice,
    meta_float,
    meta_int,
    meta_int_list,
)
from srt.arch.errors import ConfigError, ModelLoadError

# Values no reader accepts, whatever its bounds.
JUNK = ["abc", "", [], {}, {"a": 1}, math.nan, math.inf, -math.inf, object()]


def _fails(read, value, key="k"):
    with pytest.raises(ConfigError) as err:
        read({key: value})
    assert isinstance(err.value, ModelLoadError)
    text = str(err.value)
    assert f"{key}=" in text and "must be" in text
    return text


def test_meta_int():
    assert meta_int({"k": 4}, "k") == 4 and meta_int({"k": 4.0}, "k") == 4
    assert meta_int({}, "k", default=7) == 7 and meta_int({"k": None}, "k", default=7) == 7
    assert meta_int(None, "k") is None
    read = lambda m: meta_int(m, "k", min=1, max=100)  # noqa: E731
    for bad in [*JUNK, 0, -1, 101, 10**9, 1e9, 2.5, True, False, "4", [4]]:
        text = _fails(read, bad)
        assert "an integer from 1 to 100" in text


def test_meta_float():
    read = lambda m: meta_float(m, "k", min=0.0, max=10.0, min_inclusive=False)  # noqa: E731
    assert read({"k": 2}) == 2.0 and isinstance(read({"k": 2}), float) and read({"k": 10.0}) == 10.0
    for bad in [*JUNK, 0, 0.0, -1.0, 10.5, 1e9, True, "1.0"]:
        assert "a finite number > 0.0 and <= 10.0" in _fails(read, bad)
    assert meta_float({"k": 0.0}, "k", min=0.0) == 0.0


def test_meta_choice_and_bool():
    read = lambda m: meta_choice(m, "k", ("1conv", "3conv"))  # noqa: E731
    assert read({"k": "3conv"}) == "3conv" and read({}) is None
    for bad in [*JUNK, "2conv", 1, True]:
        assert "one of '1conv', '3conv'" in _fails(read, bad)
    assert meta_bool({"k": False}, "k") is False and meta_bool({}, "k", default=True) is True
    for bad in [*JUNK, 1, 0, "true"]:
        _fails(lambda m: meta_bool(m, "k"), bad)


def test_meta_int_list():
    read = lambda m: meta_int_list(m, "k", length=2, min=1, max=256)  # noqa: E731
    assert read({"k": [8, 32]}) == (8, 32) and read({"k": (8.0, 32)}) == (8, 32)
    for bad in [*JUNK, 8, [8], [8, 32, 8], [0, 8], [8, 257], [8, "a"], [8, None], [8, True], [[8], 8]]:
        assert "a list of 2 integers, each from 1 to 256" in _fails(read, bad)
    free = lambda m: meta_int_list(m, "k")  # noqa: E731
    assert free({"k": [6] * 64}) == (6,) * 64
    for bad in [[6] * 65, [6] * 10**6, []]:
        assert "a list of 1 to 64 integers" in _fails(free, bad)


def test_messages_stay_short_and_aliases():
    text = _fails(lambda m: meta_int(m, "k"), "x" * 100_000)
    assert len(text) < 400 and "..." in text
    assert first_given({"h": None, "h_test": 8}, ("h", "h_test")) == "h_test"
    assert first_given({}, ("h",)) is None and first_given(None, ("h",)) is None
