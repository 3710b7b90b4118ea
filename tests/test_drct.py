"""DRCT family: detection, strict loading, exactness against the official code, padding, precision.

References: the oracle's golden outputs of the official code (DRCT_x4, DRCT_L_x2) and spandrel's
DRCT, which reproduces the official output exactly, for every other config. CPU time is kept low:
few full-size forwards, small inputs, half precision on small crops (CPU fp16 matmuls are slow).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import json
from unittest import mock

import pytest
import spandrel
import torch
from model_helpers import golden_error, max_abs, run, spandrel_reference, with_recipe_weights
from safetensors.torch import save_file
from spandrel.architectures.DRCT import DRCT as ReferenceDRCT

from srt.arch import REGISTRY, load_model, load_state_dict
from srt.arch.common.windows import shifted_regions
from srt.arch.drct import DRCT, DRCTArch, DRCTConfig, read_config
from srt.arch.errors import ConfigError

OFFICIAL = ["DRCT_x2", "DRCT_x3", "DRCT_x4", "DRCT_L_x2", "DRCT_L_x3", "DRCT_L_x4"]
TOL = 1e-4
# PSNR vs fp32 floors at the README's figures (bf16 ~45.6, fp16 ~63 dB) minus ~2.5 dB
MIN_HALF_PSNR = {torch.bfloat16: 43.0, torch.float16: 60.0}


# ---- helpers --------------------------------------------------------------------------------------


def official_pad(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """The official test pipeline's padding (``DRCTModel.pre_process``): reflect, bottom/right."""
    h, w = x.shape[-2:]
    return torch.nn.functional.pad(x, (0, -w % multiple, 0, -h % multiple), mode="reflect")


@contextlib.contextmanager
def skipped_random_init():
    """Build reference models without their random initialisation (the recipe overwrites it)."""
    spandrel_arch = importlib.import_module("spandrel.architectures.DRCT.__arch.drct_arch")
    keep = lambda tensor, *args, **kwargs: tensor  # noqa: E731
    with (
        mock.patch.object(spandrel_arch, "trunc_normal_", keep),
        mock.patch.object(torch.nn.init, "kaiming_uniform_", keep),
        mock.patch.object(torch.nn.init, "uniform_", keep),
    ):
        yield


# ---- detection and loading --------------------------------------------------------------------------


@pytest.mark.parametrize("variant", OFFICIAL)
def test_official_configs_load_strictly(oracle, state_dict, variant):
    manifest = oracle.load_manifest(variant)
    desc = spandrel.ModelLoader(registry=REGISTRY).load_from_state_dict(dict(state_dict(variant)))
    assert isinstance(desc.model, DRCT) and desc.architecture.id == "DRCT"
    info = desc.srt_info
    assert info.variant == ("DRCT-L" if "_L_" in variant else "DRCT")
    assert desc.scale == info.scale == manifest["scale"]
    assert info.params == manifest["total_params"]
    assert desc.supports_half and desc.supports_bfloat16
    # every learned key and shape of the official model, nothing else
    learned = {e["key"]: tuple(e["shape"]) for e in manifest["keys"] if not e["buffer"]}
    assert {k: tuple(v.shape) for k, v in desc.model.state_dict().items()} == learned


def test_checkpoint_files(oracle, state_dict, tmp_path):
    sd = dict(state_dict("DRCT_x2"))
    # BasicSR .pth: params_ema wins over params
    decoy = {k: torch.zeros_like(v) for k, v in sd.items()}
    torch.save({"params": decoy, "params_ema": sd}, tmp_path / "DRCT_x2.pth")
    desc = load_model(tmp_path / "DRCT_x2.pth")
    assert torch.equal(desc.model.conv_first.weight, sd["conv_first.weight"])
    # traiNNer-redux safetensors with its hyperparameters as metadata
    meta = {"metadata": json.dumps({"scale": 2, "img_size": 64, "img_range": 1.0, "window_size": 16})}
    save_file({k: v.contiguous() for k, v in sd.items()}, tmp_path / "DRCT_x2.safetensors", metadata=meta)
    info = load_model(tmp_path / "DRCT_x2.safetensors").srt_info
    assert info.variant == "DRCT" and info.scale == 2 and "img_range" not in info.inferred


@pytest.mark.slow
def test_xl_matches_spandrel(oracle, crop):
    """DRCT-XL has no oracle manifest: build it as spandrel does (traiNNer-redux's drct_xl config)."""
    with skipped_random_init():
        ref = ReferenceDRCT(
            img_size=64,
            embed_dim=180,
            depths=(6,) * 14,
            num_heads=(6,) * 14,
            window_size=16,
            mlp_ratio=2.0,
            upscale=4,
            upsampler="pixelshuffle",
            resi_connection="1conv",
        )
        ours_xl = DRCT(DRCTConfig(num_heads=(6,) * 14, scale=4))
    sd = with_recipe_weights(ref, oracle)
    ref.load_state_dict(sd)
    # our XL config has exactly the learned keys and shapes of the reference
    assert {k: v.shape for k, v in ours_xl.state_dict().items()} == {
        k: sd[k].shape for k, _ in ref.named_parameters()
    }
    desc = spandrel.ModelLoader(registry=REGISTRY).load_from_state_dict(sd)
    assert desc.srt_info.variant == "DRCT-XL" and desc.model.config.num_groups == 14
    x = crop("rocket", 100, 200, 32, 32)
    assert max_abs(run(desc.model, x), run(ref.eval(), x)) < TOL


# Tiny configs through spandrel's DRCT: every detected hyperparameter and the output must match.
GRID = [
    # embed, heads, window, gc, mlp, scale, in_ch, resi, qkv_bias, patch_norm, img_size, input hw
    (24, (4, 4), 4, 8, 2.0, 2, 3, "1conv", True, True, 16, (16, 24)),
    (36, (6,), 4, 16, 1.5, 3, 3, "identity", True, True, 16, (12, 20)),
    (30, (3, 3, 3), 8, 6, 2.0, 4, 1, "1conv", False, False, 32, (8, 16)),
    (24, (4,), 8, 8, 1.0, 1, 3, "1conv", True, True, 8, (16, 16)),  # trained on one window: no shift
]


@pytest.mark.parametrize("case", GRID, ids=[f"cfg{i}" for i in range(len(GRID))])
def test_config_grid_round_trip(oracle, case):
    embed, heads, window, gc, mlp, scale, in_ch, resi, qkv_bias, patch_norm, img_size, hw = case
    ref = ReferenceDRCT(
        img_size=img_size,
        in_chans=in_ch,
        embed_dim=embed,
        depths=(6,) * len(heads),
        num_heads=heads,
        window_size=window,
        mlp_ratio=mlp,
        qkv_bias=qkv_bias,
        patch_norm=patch_norm,
        upscale=scale,
        upsampler="pixelshuffle",
        resi_connection=resi,
        gc=gc,
    )
    sd = with_recipe_weights(ref, oracle)
    ref.load_state_dict(sd)
    cfg, _ = read_config(sd)
    expected = DRCTConfig(
        in_chans=in_ch,
        embed_dim=embed,
        num_heads=heads,
        window_size=window,
        mlp_ratio=mlp,
        gc=gc,
        scale=scale,
        qkv_bias=qkv_bias,
        patch_norm=patch_norm,
        resi_connection=resi,
        shift=img_size > window,
    )
    assert cfg == expected
    desc = spandrel.ModelLoader(registry=REGISTRY).load_from_state_dict(sd)
    assert desc.srt_info.variant == "DRCT (custom)"
    x = torch.rand(1, in_ch, *hw, generator=torch.Generator().manual_seed(0))
    assert max_abs(run(desc.model, x), run(ref.eval(), x)) < TOL


def test_detection_names_missing_keys_and_rejects_unsupported(state_dict):
    arch = DRCTArch()
    sd = dict(state_dict("DRCT_x2"))
    assert arch.missing(sd) == []
    partial = {k: v for k, v in sd.items() if "adjust" not in k}
    assert "layers.0.adjust1.weight" in arch.missing(partial)
    with pytest.raises(ConfigError, match="pixel-shuffle"):
        read_config({k: v for k, v in sd.items() if not k.startswith("conv_last")})
    with pytest.raises(ConfigError, match="absolute position"):
        read_config({**sd, "absolute_pos_embed": torch.zeros(1, 4096, 180)})


# ---- geometry -----------------------------------------------------------------------------------------


def test_shift_masks_equal_saved_official_masks(state_dict, ours):
    """Our four window kinds reproduce the official mask saved for the 64x64 training size."""
    saved = state_dict("DRCT_x4")["layers.0.swin2.attn_mask"]  # (16 windows, 256, 256)
    model = ours("DRCT_x4")
    _, kinds, _ = model.window_geometry(torch.zeros(1, 180, 64, 64))
    grid = 64 // 16
    for i in range(grid):
        for j in range(grid):
            kind = 2 * (i == grid - 1) + (j == grid - 1)
            assert torch.equal(kinds[kind, 0], saved[i * grid + j])


def test_shifted_regions_tile_the_grid():
    for h, w in [(16, 16), (16, 48), (64, 32), (80, 64)]:
        seen = torch.zeros(h, w, dtype=torch.int64)
        for rows, cols, _ in shifted_regions(h, w, 16):
            seen[rows, cols] += 1
        assert bool((seen == 1).all())


def test_geometry_cached_per_device_and_dtype(oracle):
    """Masks and biases are built once per (device, dtype) in the compute dtype, whatever the size;
    the shifted windows' token order once per padded size."""
    model = DRCT(DRCTConfig(embed_dim=24, num_heads=(4,), window_size=4, gc=8, scale=2)).eval()
    model.load_state_dict(with_recipe_weights(model, oracle))
    for hw in [(8, 8), (12, 20), (7, 5)]:  # (7, 5) is padded to (8, 8)
        run(model, torch.rand(1, 3, *hw))
    assert len(model.geometry_cache) == 2 + 2
    run(model.to(torch.bfloat16), torch.rand(1, 3, 8, 12, dtype=torch.bfloat16))
    assert len(model.geometry_cache) == 2 + 1, "converting the model empties the cache; bf16 entries built"
    biases, masks, _ = model.window_geometry(torch.zeros(1, 24, 8, 12, dtype=torch.bfloat16))
    assert len(model.geometry_cache) == 3
    assert masks.dtype == biases[0][0].dtype == torch.bfloat16
    # a copy starts empty, and loading weights empties the cache (biases derive from weights)
    assert len(copy.deepcopy(model).geometry_cache) == 0
    model.load_state_dict(model.state_dict())
    assert len(model.geometry_cache) == 0


# ---- exactness ------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["DRCT_x4", "DRCT_L_x2"])
@pytest.mark.parametrize("size", ["64x64", "50x70"])
def test_golden_official_outputs(oracle, ours, variant, size):
    """fp32 equals the official output; 50x70 goes through our padding (reflect to 64x80, crop)."""
    assert golden_error(oracle, ours(variant), variant, size) < TOL


def test_matches_spandrel_on_other_crop(state_dict, ours, crop):
    x = crop("chelsea", 60, 180, 64, 64)
    assert max_abs(run(ours("DRCT_x3"), x), run(spandrel_reference(state_dict("DRCT_x3")), x)) < TOL


def test_odd_sizes_match_official_padding(state_dict, ours, crop):
    model, ref = ours("DRCT_x2"), spandrel_reference(state_dict("DRCT_x2"))
    x = crop("coffee", 150, 220, 37, 53)
    expected = run(ref, official_pad(x, 16))[..., : 37 * 2, : 53 * 2]
    out = run(model, x)
    assert out.shape == expected.shape and max_abs(out, expected) < TOL
    # smaller than the reflection can pad: reflect as far as possible, then replicate (spandrel's rule)
    tiny = crop("coffee", 40, 40, 5, 9)  # to 16x16: 4 rows and 7 columns reflected, 7 rows replicated
    padded = torch.nn.functional.pad(tiny, (0, 7, 0, 4), mode="reflect")
    padded = torch.nn.functional.pad(padded, (0, 0, 0, 7), mode="replicate")
    expected = run(ref, padded)[..., :10, :18]
    assert max_abs(run(model, tiny), expected) < TOL


# ---- half precision ----------------------------------------------------------------------------------------


def half_psnr(oracle, model: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype, ref=None) -> float:
    """PSNR of ``model`` cast to ``dtype`` against its float32 output (``ref`` if already known)."""
    ref = run(model, x) if ref is None else ref
    out = run(copy.deepcopy(model).to(dtype), x.to(dtype))
    assert out.dtype == dtype and bool(torch.isfinite(out).all())
    return oracle.psnr(out.float().numpy(), ref.numpy())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_half_precision_small_crop(oracle, ours, crop, dtype):
    x = crop("astronaut", 100, 150, 32, 48)
    assert half_psnr(oracle, ours("DRCT_x4"), x, dtype) >= MIN_HALF_PSNR[dtype]


@pytest.fixture(scope="module")
def fp32_128(ours, crop):
    """DRCT_x2, a real 128x128 crop and its float32 output (shared by the half-precision runs)."""
    x = crop("coffee", 100, 200, 128, 128)
    return ours("DRCT_x2"), x, run(ours("DRCT_x2"), x)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_half_precision_128(oracle, fp32_128, dtype):
    """The full DRCT_x2 at 128x128 (fp16 on CPU is slow: this is the suite's one big fp16 run)."""
    model, x, ref = fp32_128
    assert half_psnr(oracle, model, x, dtype, ref) >= MIN_HALF_PSNR[dtype]


def test_fp16_stream_overflow_is_prevented(oracle, state_dict, crop):
    """A large residual stream overflows fp16 in the raw stream and the 1x1 adjust convs.

    LayerNorm makes DRCT's layers blind to the stream's scale, so trained models are free to let it
    grow. Scaling the patch-embedding norm by 15000 emulates that: the stream peaks near 77000 in
    fp32 (above fp16's 65504). Carried in fp16 it overflows (inf, then NaN); in float32 it does not.
    """
    sd = dict(state_dict("DRCT_x4"))
    sd["patch_embed.norm.weight"] = sd["patch_embed.norm.weight"] * 15000
    sd["patch_embed.norm.bias"] = sd["patch_embed.norm.bias"] * 15000
    model = load_state_dict(sd).model.eval()
    x = crop("astronaut", 200, 150, 16, 16)
    naive = copy.deepcopy(model).half()
    naive.fp32_stream = False
    assert not bool(torch.isfinite(run(naive, x.half())).all())
    assert half_psnr(oracle, model, x, torch.float16) >= MIN_HALF_PSNR[torch.float16]
