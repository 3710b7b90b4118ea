"""Every hyperparameter a family reads from training metadata is validated (issue 18, section 4).

For each key each family's ``read_config`` reads, junk values (0, -1, 1e9, "abc", None, [], {},
nan, True, a 100 000-entry list ...) give a :class:`ConfigError` (a ``ModelLoadError``) that names
the key, never a ZeroDivisionError/TypeError/ValueError; ``None`` means "not set"; valid values
still build the model.
"""

from __future__ import annotations

import json
import math
import re
from functools import cache

import pytest
import torch
from safetensors.torch import save_file

from srt.arch.atd import ATD, ATDArch, ATDConfig
from srt.arch.drct import DRCT, DRCTArch, DRCTConfig
from srt.arch.errors import ConfigError, ModelLoadError
from srt.arch.loader import load_model
from srt.arch.rgt import RGT, RGTArch, RGTConfig
from srt.arch.rgt_nhs2828 import NHS2828RGT, NHS2828Config, NHS2828RGTArch

TINY_ATD = dict(
    embed_dim=12,
    depths=(1,),
    num_heads=(2,),
    window_size=4,
    category_size=16,
    num_tokens=8,
    reducted_dim=4,
    scale=2,
)
# family -> (architecture, tiny model, {metadata key: a valid value, config field it sets or None})
FAMILIES = {
    "RGT": (
        RGTArch(),
        lambda: RGT(RGTConfig(embed_dim=64, depths=(2,), num_heads=(2,), split_size=(4, 8), scale=2)),
        {
            "c_ratio": (0.5, "c_ratio"),
            "num_heads": ([2], None),
            "split_size": ([4, 8], "split_size"),
            "img_range": (255.0, "img_range"),
            "qk_scale": (None, None),  # any value but null is refused
        },
    ),
    "RGT_nhs2828": (
        NHS2828RGTArch(),
        lambda: NHS2828RGT(
            NHS2828Config(embed_dim=12, depths=(1,), num_heads=(2,), pos_dim=2, mlp_ratio=1.0)
        ),
        {
            "s_r": (2, "stride_r"),
            "stride_r": (2, "stride_r"),
            "h": (8, "recursion_size"),
            "h_test": (8, "recursion_size"),
            "recursion_size": (8, "recursion_size"),
        },
    ),
    "DRCT": (
        DRCTArch(),
        lambda: DRCT(DRCTConfig(embed_dim=12, num_heads=(2,), window_size=4, gc=4, scale=2)),
        {"img_size": (64, None), "img_range": (255.0, "img_range")},
    ),
    "ATD": (
        ATDArch(),
        lambda: ATD(ATDConfig(**TINY_ATD)),
        {"category_size": (32, "category_size"), "img_range": (255.0, "img_range")},
    ),
}

# Wrong for every key, whatever its type and bounds.
JUNK = [0, -1, 1e9, 10**9, 10**30, -0.5, "abc", "", [], {}, {"x": 1}, math.nan, math.inf, True, False]
JUNK += [[1] * 100_000, "9" * 100_000, [None], [[4, 8]], ["abc", 8], [math.nan, 8]]
# Wrong for one key only (right type, out of range or wrong length).
EXTRA = {
    "c_ratio": [1.5, 2],
    "num_heads": [[0], [2, 2], [10**6], 2],
    "split_size": [[4], [4, 8, 8], [0, 8], [4, 10**6], [4, 8.5], 8],
    "img_range": [1e4, 0.0],
    "s_r": [1, 17],
    "stride_r": [1, 17],
    "h": [129],
    "category_size": [4097, 32.5],
    "img_size": [10**6, 64.5],
}
CASES = [(family, key) for family, (_, _, keys) in FAMILIES.items() for key in keys]


@cache
def _state_dict(family: str) -> dict:
    torch.manual_seed(0)
    return FAMILIES[family][1]().state_dict()


@pytest.mark.parametrize(("family", "key"), CASES, ids=[f"{f}-{k}" for f, k in CASES])
def test_bad_metadata_value_names_the_key(family, key):
    arch = FAMILIES[family][0]
    sd = _state_dict(family)
    for value in JUNK + EXTRA.get(key, []):
        with pytest.raises(ConfigError) as err:
            arch.read_config(sd, {key: value})
        message = str(err.value)
        assert isinstance(err.value, ModelLoadError)
        assert re.search(rf"\b{key}=", message), (family, key, value, message)
        assert len(message) < 500, f"{family} {key}: message of {len(message)} characters"


@pytest.mark.parametrize(("family", "key"), CASES, ids=[f"{f}-{k}" for f, k in CASES])
def test_valid_or_null_metadata_still_loads(family, key):
    arch, _, keys = FAMILIES[family]
    sd = _state_dict(family)
    value, field = keys[key]
    default = arch.read_config(sd, None)[0]
    for meta in ({key: value}, {key: None}):
        desc = arch.load_with_config(dict(sd), meta)  # strict weight load: the model fits its file
        config = desc.srt_info.config
        if field is not None and meta[key] is not None:
            got = getattr(config, field)
            assert got == (tuple(value) if isinstance(value, list) else value)
            assert key == "c_ratio" or got != getattr(default, field)  # c_ratio: the shapes agree
        if meta[key] is None:
            assert config == default  # null means "not set"


def test_all_keys_together_still_load():
    for family, (arch, _, keys) in FAMILIES.items():
        meta = {k: v for k, (v, _) in keys.items()}
        assert arch.load_with_config(dict(_state_dict(family)), meta).srt_info.family == family


def test_bad_metadata_in_a_file_names_file_and_key(tmp_path):
    """The issue's case: ATD category_size=0 in traiNNer-redux metadata (ZeroDivisionError before)."""
    sd = {k: v.contiguous() for k, v in _state_dict("ATD").items()}
    path = tmp_path / "atd_zero.safetensors"
    save_file(sd, str(path), metadata={"metadata": json.dumps({"category_size": 0})})
    with pytest.raises(ConfigError, match=r"atd_zero\.safetensors: .*category_size=0.*from 1 to 4096"):
        load_model(path)
