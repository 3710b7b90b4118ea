"""HAT family: detection (exclusive of SwinIR, DRCT and the other Swin-like families), strict
loading of every config in spandrel's own tests, exactness against spandrel (the official code)
and a fixed golden, inputs of any size (the 256x484 report), geometry caching, metadata, and half
precision.

References: spandrel's HAT on the same weights (tests/hat_variants.py) and
tests/assets/hat_golden_x2.safetensors (spandrel's outputs, tests/assets/hat_make_golden.py).
Parity runs on the oracle's recipe weights (N(0, 1/fan_in), bias tables 0.1 N(0, 1)): attention
logits of order one, so a wrong window, index or mask shows far above the tolerance. CPU time is
kept low: each reference is built once, full-size configs run on one or four windows.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib
import json
import os
from unittest import mock

import pytest
import spandrel
import torch
from hat_variants import VARIANTS, spandrel_module, spandrel_pad
from model_helpers import load_oracle, max_abs, photo_crop, run
from safetensors.torch import load_file, save_file
from spandrel import MAIN_REGISTRY
from spandrel.architectures.HAT import HAT as ReferenceHAT

from srt.arch import OUR_ARCHITECTURES, REGISTRY, load_model, load_state_dict
from srt.arch.errors import ConfigError, InputSizeError
from srt.arch.hat import HAT, HATArch, read_config
from srt.arch.hat.ocab import overlap_position_index

TOL = 1e-4
MIN_HALF_PSNR = 40.0
GOLDEN = os.path.join(os.path.dirname(__file__), "assets", "hat_golden_x2.safetensors")
VARIANT_NAMES = {"HAT_S": "HAT-S", "HAT": "HAT", "HAT_L": "HAT-L"}


@contextlib.contextmanager
def skipped_random_init():
    """Build models without their random initialisation (for tests that only load weights)."""
    spandrel_arch = importlib.import_module("spandrel.architectures.HAT.__arch.HAT")
    keep = lambda tensor, *args, **kwargs: tensor  # noqa: E731
    with (
        mock.patch.object(spandrel_arch, "trunc_normal_", keep),
        mock.patch.object(torch.nn.init, "kaiming_uniform_", keep),
        mock.patch.object(torch.nn.init, "uniform_", keep),
    ):
        yield


oracle = functools.cache(load_oracle)


@functools.cache
def recipe(key: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The oracle recipe's tensor for ``key`` (one draw per key: releases share their bodies)."""
    return oracle().recipe_tensor(key, shape)


def reference(name: str | None, **changes) -> tuple[torch.nn.Module, dict]:
    """spandrel's module of variant ``name`` (or spandrel's defaults), with ``changes`` to its
    kwargs, on the oracle recipe's weights (every parameter random, so none can be silently
    ignored), and its state dict."""
    with skipped_random_init():  # every parameter is overwritten
        ref = ReferenceHAT(**{**(VARIANTS[name] if name else {}), **changes}).eval()
    params = {k for k, _ in ref.named_parameters()}
    sd = {k: recipe(k, tuple(v.shape)) if k in params else v for k, v in ref.state_dict().items()}
    ref.load_state_dict(sd)
    return ref, sd


def ours_for(sd: dict) -> HAT:
    with skipped_random_init():
        return load_state_dict(dict(sd)).model.eval()


@functools.cache
def small(name: str) -> tuple[torch.nn.Module, HAT, dict]:
    """Reference, ours and the state dict of a small config (built once per module)."""
    ref, sd = reference(name)
    return ref, ours_for(sd), sd


# ---- official releases ------------------------------------------------------------------------------

# x4 on four windows (every shifted-window kind) and an odd size padded to them; x2/x3 on one window
# and an odd size padded to one.
SIZES = {2: [(16, 16), (11, 13)], 3: [(16, 16), (9, 14)], 4: [(32, 32), (20, 27)]}


@pytest.mark.slow
@pytest.mark.parametrize("release", list(VARIANT_NAMES))
def test_official_releases_match_spandrel(release):
    """Each release at x2, x3 and x4: detected, named, loaded strictly and exact at every size."""
    for scale in (2, 3, 4):
        name = f"{release}_x{scale}"
        ref, sd = reference(name)
        with skipped_random_init():
            desc = spandrel.ModelLoader(registry=REGISTRY).load_from_state_dict(dict(sd))
        model = desc.model.eval()
        assert isinstance(model, HAT) and desc.architecture.id == "HAT", name
        assert (desc.srt_info.variant, desc.scale) == (VARIANT_NAMES[release], scale), name
        assert desc.srt_info.params == sum(p.numel() for p in ref.parameters())
        assert desc.supports_half and desc.supports_bfloat16
        learned = {k: v.shape for k, v in sd.items() if not k.startswith("relative_position_index")}
        assert {k: v.shape for k, v in model.state_dict().items()} == learned
        for h, w in SIZES[scale]:
            x = photo_crop("astronaut", 120, 190, h, w)
            assert max_abs(run(model, x), run(ref, x)) <= TOL, (name, h, w)
        del ref, sd, desc, model
    recipe.cache_clear()  # the release's body was drawn once for its three scales


def test_golden_asset():
    """Ours equals spandrel's outputs stored in the asset (a window multiple and an odd size)."""
    tensors = load_file(GOLDEN)
    sd = {k: v for k, v in tensors.items() if not k.startswith("golden.")}
    config, _ = read_config(sd)
    spec = VARIANTS["golden_x2"]
    assert (config.embed_dim, config.depths, config.num_heads, config.window_size, config.num_feat) == (
        spec["embed_dim"], spec["depths"], spec["num_heads"], spec["window_size"], spec["num_feat"],
    )  # fmt: skip
    model = load_state_dict(sd).model.eval()
    for size in ("16x24", "13x19"):
        out = run(model, tensors[f"golden.in_{size}"])
        assert max_abs(out, tensors[f"golden.out_{size}"]) <= TOL, size


# ---- every config of spandrel's tests/test_HAT.py::test_load -------------------------------------------

SPANDREL_TEST_LOAD = [
    {}, {"in_chans": 1}, {"in_chans": 4}, {"embed_dim": 64},
    {"depths": (1, 2, 3, 2, 1), "num_heads": (5, 4, 3, 5, 6)}, {"window_size": 13}, {"compress_ratio": 2},
    {"squeeze_factor": 15}, {"overlap_ratio": 0.75}, {"mlp_ratio": 3}, {"qkv_bias": False}, {"ape": True},
    {"patch_norm": False}, {"resi_connection": "1conv"}, {"resi_connection": "identity"},
    *({"upsampler": "pixelshuffle", "upscale": s} for s in (1, 2, 3, 4, 8)),
    {"upsampler": "pixelshuffle", "num_feat": 32},
]  # fmt: skip


# Their heads do not divide the width: spandrel builds them, but no code can run them (the official
# attention reshape fails), so ours refuses them at load with the reason instead of failing later.
HEADLESS = [{"embed_dim": 64}, {"depths": (1, 2, 3, 2, 1), "num_heads": (5, 4, 3, 5, 6)}]


@pytest.mark.parametrize(
    "kwargs", SPANDREL_TEST_LOAD, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items())
)
def test_spandrel_test_load_configs(kwargs):
    """Built by spandrel's class, detected and strictly loaded by ours with every setting read back."""
    with skipped_random_init():
        ref = ReferenceHAT(**kwargs)
        sd = ref.state_dict()
        assert HATArch().detect(sd)
        if kwargs in HEADLESS:
            with pytest.raises(ConfigError, match="do not divide"):
                load_state_dict(sd)
            with pytest.raises(RuntimeError):
                run(ref.eval(), torch.zeros(1, 3, 7, 7))
            return
        desc = spandrel.ModelLoader(registry=REGISTRY).load_from_state_dict(sd)
    assert isinstance(desc.model, HAT)
    c, hp = desc.model.config, ref.hyperparameters
    read = dict(
        in_chans=c.in_chans, embed_dim=c.embed_dim, depths=tuple(c.depths), num_heads=tuple(c.num_heads),
        window_size=c.window_size, compress_ratio=c.compress_ratio, overlap_ratio=c.overlap_ratio,
        mlp_ratio=c.mlp_ratio, qkv_bias=c.qkv_bias, ape=c.ape, patch_norm=c.patch_norm,
        resi_connection=c.resi_connection, upscale=c.scale, num_feat=c.num_feat,
    )  # fmt: skip
    assert read == {k: tuple(hp[k]) if k in ("depths", "num_heads") else hp[k] for k in read}
    # several squeeze factors give one width: the width is what must agree
    assert c.squeeze_channels == c.embed_dim // hp["squeeze_factor"]
    assert desc.model.state_dict().keys() == {k for k, _ in ref.named_parameters()}


# Configs both implementations run (the official OCAB needs an even overlap, see below), each
# setting of the list above exercised on recipe weights at an odd size.
PARITY_GRID = [
    dict(in_chans=1, window_size=8, upscale=2),
    dict(in_chans=4, window_size=8, patch_norm=False, upscale=3),
    dict(window_size=8, depths=(1, 2), num_heads=(3, 2), resi_connection="identity", upscale=1),
    dict(window_size=8, overlap_ratio=0.75, qkv_bias=False, mlp_ratio=3.0, upscale=8),
    dict(window_size=13, compress_ratio=2, squeeze_factor=15, num_feat=32, upscale=4),
]


@pytest.mark.parametrize("kwargs", PARITY_GRID, ids=lambda k: f"w{k['window_size']}x{k['upscale']}")
def test_parity_grid(kwargs):
    base = dict(embed_dim=30, depths=(2,), num_heads=(3,), compress_ratio=3, squeeze_factor=10, mlp_ratio=2.0)
    ref, sd = reference(None, **{**base, **kwargs})
    model = ours_for(sd)
    x = torch.rand(1, ref.hyperparameters["in_chans"], 19, 11, generator=torch.Generator().manual_seed(0))
    assert max_abs(run(model, x), run(ref, x)) <= TOL


def test_odd_overlap_runs_where_the_official_code_cannot():
    """With an odd overlap (HAT()'s own default: window 7, ratio 0.5 -> 3 px) the official unfold
    yields fewer key windows than query windows and fails; ours widens the windows one pixel more
    after than before and runs."""
    ref, sd = reference(None, embed_dim=24, depths=(2,), num_heads=(2,), window_size=7, squeeze_factor=6)
    x = torch.rand(1, 3, 14, 14, generator=torch.Generator().manual_seed(0))
    with pytest.raises(RuntimeError):
        run(ref, x)
    out = run(ours_for(sd), x)
    assert out.shape == x.shape and bool(torch.isfinite(out).all())


# ---- detection ----------------------------------------------------------------------------------------


def foreign_state_dicts() -> dict[str, dict]:
    """Small spandrel-built models of the families whose keys look most like HAT's."""
    from spandrel.architectures.ATD import ATD
    from spandrel.architectures.DAT import DAT
    from spandrel.architectures.DRCT import DRCT
    from spandrel.architectures.RGT import RGT
    from spandrel.architectures.Swin2SR import Swin2SR
    from spandrel.architectures.SwinIR import SwinIR

    swin = dict(embed_dim=24, depths=(2,), num_heads=(2,), window_size=8, upscale=2)
    with skipped_random_init():
        models = {
            "SwinIR": SwinIR(**swin, upsampler="pixelshuffle"),
            "Swin2SR": Swin2SR(**swin, upsampler="pixelshuffle"),
            "DRCT": DRCT(**swin, upsampler="pixelshuffle"),
            "ATD": ATD(**swin, category_size=32, num_tokens=16, reducted_dim=4),
            "DAT": DAT(embed_dim=24, depth=(2,), num_heads=(2,), split_size=(4, 8), upscale=2),
            "RGT": RGT(embed_dim=24, depth=(2,), num_heads=(2,), split_size=(4, 8), upscale=2),
        }
    return {name: m.state_dict() for name, m in models.items()}


def detected(registry: spandrel.ArchRegistry, sd: dict) -> str | None:
    """The id of the architecture ``registry`` picks for ``sd`` (in its detection order)."""
    return next((s.architecture.id for s in registry.architectures("detection") if s.detect(sd)), None)


def test_detection_is_exclusive():
    hat_sd = dict(small("golden_x2")[2])  # as spandrel saves it, index buffers included
    assert [a.id for a in OUR_ARCHITECTURES if a.detect(hat_sd)] == ["HAT"]
    assert detected(REGISTRY, hat_sd) == detected(MAIN_REGISTRY, hat_sd) == "HAT"
    learned_only = {k: v for k, v in hat_sd.items() if not k.startswith("relative_position_index")}
    assert detected(REGISTRY, learned_only) == "HAT"  # the buffers are derived: not required
    for family, sd in foreign_state_dicts().items():
        assert not HATArch().detect(sd), family
        assert detected(MAIN_REGISTRY, sd) == family  # spandrel agrees on what it is
        # the loader asks ours first, then spandrel: whichever answers must name the same family
        assert (detected(REGISTRY, sd) or detected(MAIN_REGISTRY, sd)) == family


def test_detection_names_missing_keys_and_rejects_damage():
    sd = {k: v for k, v in load_file(GOLDEN).items() if not k.startswith("golden.")}
    no_conv = {k: v for k, v in sd.items() if "conv_block" not in k}
    assert "layers.0.residual_group.blocks.0.conv_block.cab.0.weight" in HATArch().missing(no_conv)
    no_overlap = {k: v for k, v in sd.items() if "overlap_attn" not in k}  # SwinIR-like
    assert not HATArch().detect(no_overlap)
    with pytest.raises(ConfigError, match="pixel-shuffle"):
        read_config({k: v for k, v in sd.items() if not k.startswith("conv_last")})
    table = "layers.0.residual_group.overlap_attn.relative_position_bias_table"
    with pytest.raises(ConfigError, match="fit no window"):
        read_config({**sd, table: torch.zeros(16, 2)})


# ---- metadata -------------------------------------------------------------------------------------------


def _with_metadata(tmp_path, sd: dict, hyperparameters: dict):
    path = tmp_path / "hat.safetensors"
    meta = {"metadata": json.dumps(hyperparameters, default=lambda v: None)}
    save_file({k: v.contiguous() for k, v in sd.items()}, path, metadata=meta)
    return load_model(path)


def test_trainner_metadata_settles_what_weights_cannot(tmp_path):
    """conv_scale, img_range and the training size (no shifted windows at img_size <= window)."""
    ref, sd = reference("golden_x2", conv_scale=0.3, img_range=2.0, img_size=8)
    desc = _with_metadata(tmp_path, sd, ref.hyperparameters)  # what traiNNer-redux writes
    c = desc.model.config
    assert (c.conv_scale, c.img_range, c.shift) == (0.3, 2.0, False) and desc.srt_info.inferred == {}
    x = photo_crop("coffee", 100, 100, 16, 24)
    assert max_abs(run(desc.model, x), run(ref, x)) <= TOL
    assert max_abs(run(load_state_dict(sd).model.eval(), x), run(ref, x)) > 100 * TOL  # defaults differ


BAD_METADATA = [
    {"conv_scale": "0.01"}, {"img_range": -1}, {"window_size": 16}, {"overlap_ratio": 0.25},
    {"compress_ratio": 5}, {"squeeze_factor": 0}, {"upsampler": "nearest+conv"}, {"img_size": 4},
    {"qk_scale": [1]}, {"upscale": 3}, {"resi_connection": "3conv"}, {"ape": True}, {"patch_size": 0},
]  # fmt: skip


@pytest.mark.parametrize("meta", BAD_METADATA, ids=lambda m: next(iter(m)))
def test_bad_metadata_names_the_key(tmp_path, meta):
    sd = {k: v for k, v in load_file(GOLDEN).items() if not k.startswith("golden.")}
    key = next(iter(meta))
    with pytest.raises(ConfigError, match=key):
        _with_metadata(tmp_path, sd, meta)


# ---- any input size -------------------------------------------------------------------------------------


def test_256x484_matches_spandrel():
    """The size of the report; spandrel's own module runs it (484 = 30 windows + 4 reflected pixels)."""
    ref, model, _ = small("min_w16_x2")
    x = photo_crop("astronaut", 0, 10, 256, 484)
    assert max_abs(run(model, x), run(ref, x)) <= TOL


@pytest.mark.parametrize("hw", [(4, 256), (256, 4), (1, 1), (3, 5), (9, 13)])
def test_inputs_too_small_to_reflect(hw):
    """Where spandrel's module fails ("padding size should be less than the corresponding input
    dimension": reflecting 12 rows of a 4-row input): the 4-px strip ComfyUI's old tiler cut from a
    484-px side (tiles at 0 and 480), and inputs smaller than a window. Ours equals spandrel's module
    on the input padded as spandrel's call API pads it (reflect as far as possible, then the edge),
    and the call API itself."""
    ref, model, sd = small("min_w16_x2")
    x = photo_crop("chelsea", 20, 60, *hw)
    h, w = hw
    expected = run(ref, spandrel_pad(x, 16))[..., : 2 * h, : 2 * w]
    out = run(model, x)
    assert out.shape == (1, 3, 2 * h, 2 * w) and max_abs(out, expected) <= TOL
    with torch.inference_mode():
        assert max_abs(out.clamp(0, 1), MAIN_REGISTRY.load(dict(sd))(x)) <= TOL  # the call API clamps


def test_absolute_position_embedding():
    ref, sd = reference("golden_x2", ape=True, img_size=16)
    model = ours_for(sd)
    assert model.config.img_size == 16 and any("16x16" in n for n in model.config.notes)
    x = photo_crop("astronaut", 90, 200, 16, 16)
    assert max_abs(run(model, x), run(ref, x)) <= TOL
    small = x[..., :12, :10]  # padded to the embedding's 16x16
    expected = run(ref, torch.nn.functional.pad(small, (0, 6, 0, 4), mode="reflect"))[..., :24, :20]
    assert max_abs(run(model, small), expected) <= TOL
    with pytest.raises(InputSizeError, match="tile_size=16"):
        run(model, torch.zeros(1, 3, 20, 16))


# ---- geometry ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("window,ratio", [(16, 0.5), (8, 0.5), (13, 0.5), (8, 0.75)])
def test_position_indices_equal_the_official_buffers(window, ratio):
    with skipped_random_init():
        ref = ReferenceHAT(embed_dim=8, depths=(1,), num_heads=(1,), window_size=window, overlap_ratio=ratio)
    overlap_window = window + int(window * ratio)
    rows = (window + overlap_window - 1) ** 2
    official = ref.relative_position_index_OCA
    assert int(official.min()) < 0  # the official index wraps to the table's end
    assert torch.equal(overlap_position_index(window, overlap_window), official % rows)


def test_geometry_built_once_for_every_size(monkeypatch):
    model = ours_for(small("golden_x2")[2])  # a fresh model: its cache is empty
    import srt.arch.hat.model as hat_model

    calls = {"overlap": 0}
    real = hat_model.overlap_position_index

    def counted(*args, **kwargs):
        calls["overlap"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(hat_model, "overlap_position_index", counted)
    for hw in [(16, 16), (13, 19), (5, 9), (40, 24)]:
        run(model, torch.rand(1, 3, *hw))
    # biases and masks once; the shifted windows once per padded size (16x16, 16x24, 8x16, 40x24)
    assert calls["overlap"] == 1 and len(model.geometry_cache) == 2 + 4
    groups, masks, order = model.window_geometry(torch.zeros(1, 16, 8, 16))
    assert masks.shape == (4, 1, 64, 64) and groups[1][1].shape == (4, 64, 144)
    assert order.counts == (0, 0, 1, 1) and len(model.geometry_cache) == 2 + 4
    bf16 = copy.deepcopy(model).to(torch.bfloat16)
    run(bf16, torch.rand(1, 3, 8, 8, dtype=torch.bfloat16))
    groups, masks, _ = bf16.window_geometry(torch.zeros(1, 16, 8, 8, dtype=torch.bfloat16))
    assert masks.dtype == groups[0][0][0].dtype == groups[0][1].dtype == torch.bfloat16


# ---- half precision ---------------------------------------------------------------------------------------


def half_psnr(model: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype, ref=None) -> float:
    """PSNR of ``model`` cast to ``dtype`` against its float32 output (``ref`` if already known)."""
    ref = run(model, x) if ref is None else ref
    out = run(copy.deepcopy(model).to(dtype), x.to(dtype))
    assert out.dtype == dtype and bool(torch.isfinite(out).all())
    return oracle().psnr(out.float().numpy(), ref.numpy())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["HAT_S_x4", "HAT_x3", "HAT_L_x2"])
def test_half_precision_official_init(name):
    """Every release (each at one scale) on one window, with its official initialisation: bf16 and
    fp16 finite and within MIN_HALF_PSNR of our fp32."""
    model = load_state_dict(spandrel_module(name).state_dict()).model.eval()
    x = photo_crop("astronaut", 100, 150, 16, 16)
    expected = run(model, x)
    for dtype in (torch.bfloat16, torch.float16):
        assert half_psnr(model, x, dtype, expected) >= MIN_HALF_PSNR, dtype


def test_fp16_stream_overflow_is_prevented():
    """A residual stream beyond fp16's 65504 (trained models are free to grow it: LayerNorm hides
    its scale from every branch; here the patch-embedding norm is scaled to emulate that): carried
    in fp16 it overflows, in float32 with the group convs rescaled it does not."""
    sd = dict(small("min_w16_x2")[2])
    sd["patch_embed.norm.weight"] = sd["patch_embed.norm.weight"] * 20000
    sd["patch_embed.norm.bias"] = sd["patch_embed.norm.bias"] * 20000
    model = load_state_dict(sd).model.eval()
    x = photo_crop("astronaut", 200, 150, 16, 16)
    naive = copy.deepcopy(model).half()
    naive.fp32_stream = False
    assert not bool(torch.isfinite(run(naive, x.half())).all())
    assert half_psnr(model, x, torch.float16) >= MIN_HALF_PSNR
