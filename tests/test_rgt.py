"""RGT family: detection, strict loading, exactness against the official code, caching, precision.

References: the oracle's golden outputs of the official code (RGT_x2, RGT_S_x4) and spandrel's RGT,
which reproduces the official output exactly, for every other config and input. CPU time is kept
low: few full-size forwards, small inputs, half precision on small crops.
"""

from __future__ import annotations

import copy
import json

import pytest
import spandrel
import torch
from model_helpers import golden_error, max_abs, run, spandrel_reference, with_recipe_weights
from safetensors.torch import save_file
from spandrel.architectures.RGT import RGT as ReferenceRGT

from srt.arch import REGISTRY, load_model, load_state_dict
from srt.arch.common.rect_attention import RectWindowAttention
from srt.arch.common.rect_windows import window_groups
from srt.arch.common.state import DERIVED_BUFFER_PATTERN
from srt.arch.rgt import RGT, InputSizeError, RGTArch, RGTConfig
from srt.arch.rgt.attention import recursion_steps

OFFICIAL = ["RGT_x2", "RGT_x3", "RGT_x4", "RGT_S_x2", "RGT_S_x3", "RGT_S_x4"]
TOL = 1e-4
# PSNR vs fp32 floors at the README's figures (bf16 41-42, fp16 59-61 dB on these crops) minus ~2.5 dB
MIN_HALF_PSNR = {torch.bfloat16: 38.5, torch.float16: 57.0}
OFFICIAL_NAMES = {
    "depths": "depth",
    "num_heads": "num_heads",
    "embed_dim": "embed_dim",
    "split_size": "split_size",
    "c_ratio": "c_ratio",
    "resi_connection": "resi_connection",
    "img_range": "img_range",
}


# ---- helpers ----------------------------------------------------------------------------------------


def without_derived(sd: dict, keep: str = "") -> dict:
    """``sd`` without saved derived buffers (except those whose name contains ``keep``)."""
    return {k: v for k, v in sd.items() if not DERIVED_BUFFER_PATTERN.search(k) or (keep and keep in k)}


# ---- detection and loading ----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", OFFICIAL)
def test_official_configs_load_strictly(oracle, state_dict, variant):
    manifest = oracle.load_manifest(variant)
    official = manifest["constructor_config"]
    desc = spandrel.ModelLoader(registry=REGISTRY).load_from_state_dict(dict(state_dict(variant)))
    assert isinstance(desc.model, RGT) and desc.architecture.id == "RGT"
    info = desc.srt_info
    assert info.variant == ("RGT-S" if "_S_" in variant else "RGT")
    # our config vocabulary -> the official constructor's argument names
    for ours, theirs in OFFICIAL_NAMES.items():
        value = official[theirs]
        assert getattr(info.config, ours) == (tuple(value) if isinstance(value, list) else value), ours
    assert info.config.mlp_ratio == official["mlp_ratio"]
    assert desc.scale == info.scale == info.config.scale == official["upscale"]
    # split_size is read from the saved shift mask; only img_range is a default
    assert set(info.inferred) == {"img_range"}
    assert info.params == manifest["total_params"]
    assert desc.supports_half and desc.supports_bfloat16
    assert desc.size_requirements.minimum == 16
    learned = {e["key"]: tuple(e["shape"]) for e in manifest["keys"] if not e["buffer"]}
    assert {k: tuple(v.shape) for k, v in desc.model.state_dict().items()} == learned


@pytest.mark.parametrize("variant", OFFICIAL)
def test_checkpoint_files(state_dict, tmp_path, variant):
    """BasicSR ``{'params': sd}`` .pth, bare .safetensors and ``module.``-prefixed dicts load strictly."""
    sd = dict(state_dict(variant))
    torch.save({"params": sd}, tmp_path / "basicsr.pth")
    save_file({k: v.contiguous() for k, v in sd.items()}, tmp_path / "bare.safetensors")
    torch.save({"module." + k: v for k, v in sd.items()}, tmp_path / "ddp.pth")
    for name in ("basicsr.pth", "bare.safetensors", "ddp.pth"):
        desc = load_model(tmp_path / name)
        assert isinstance(desc.model, RGT) and desc.srt_info.config.split_size == (8, 32)
        assert torch.equal(desc.model.conv_last.weight, sd["conv_last.weight"])


def test_training_metadata_wins(state_dict, tmp_path):
    """traiNNer-redux metadata settles what weights cannot tell (split order, img_range)."""
    sd = without_derived(dict(state_dict("RGT_S_x2")))
    meta = {"split_size": [8, 32], "img_range": 1.0, "num_heads": [6] * 6, "c_ratio": 0.5, "upscale": 2}
    save_file(sd, tmp_path / "trainner.safetensors", metadata={"metadata": json.dumps(meta)})
    info = load_model(tmp_path / "trainner.safetensors").srt_info
    assert info.inferred == {} and info.variant == "RGT-S" and info.config.split_size == (8, 32)


def test_derived_buffers_are_optional(state_dict):
    """Without saved masks the window order is a guess (smaller first); without tables, the official one."""
    sd = dict(state_dict("RGT_S_x2"))
    info = load_state_dict(without_derived(sd, keep="attns.")).srt_info  # tables kept, masks dropped
    assert info.config.split_size == (8, 32) and "split_size" in info.inferred
    info = load_state_dict(without_derived(sd)).srt_info
    assert info.config.split_size == (8, 32) and "official" in info.inferred["split_size"]


def test_detection_names_missing_keys(state_dict):
    sd = dict(state_dict("RGT_S_x2"))
    del sd["norm.weight"]
    arch = RGTArch()
    assert not arch.detect(sd) and arch.missing(sd) == ["norm.weight"]


# Tiny configs through spandrel's RGT with recipe weights: detection and output must match.
GRID = [
    # embed, depth, heads, split, mlp, c_ratio, scale, in_ch, resi, input hw
    (48, (2, 3), (2, 4), (4, 8), 2.0, 0.5, 2, 3, "1conv", (20, 36)),
    (48, (3, 1), (4, 2), (8, 4), 1.5, 0.25, 3, 3, "3conv", (17, 16)),  # larger side first: read from mask
    (32, (4,), (2,), (8, 8), 1.0, 0.5, 1, 1, "1conv", (24, 19)),
    (64, (2, 2), (4, 4), (4, 16), 2.0, 0.5, 4, 3, "1conv", (16, 40)),
]


@pytest.mark.parametrize("case", GRID, ids=[f"grid{i}" for i in range(len(GRID))])
def test_config_grid_round_trip(oracle, case):
    embed, depth, heads, split, mlp, c_ratio, scale, in_ch, resi, hw = case
    ref = ReferenceRGT(
        in_chans=in_ch, embed_dim=embed, depth=list(depth), num_heads=list(heads), mlp_ratio=mlp,
        split_size=list(split), c_ratio=c_ratio, upscale=scale, resi_connection=resi, img_size=32,
    )  # fmt: skip
    sd = with_recipe_weights(ref, oracle)
    ref.load_state_dict(sd)
    desc = spandrel.ModelLoader(registry=REGISTRY).load_from_state_dict(sd)
    config = desc.srt_info.config
    assert desc.srt_info.variant == "RGT (custom)"
    assert (config.embed_dim, config.depths, config.num_heads) == (embed, depth, heads)
    assert (config.split_size, config.scale, config.in_chans) == (split, scale, in_ch)
    assert (config.resi_connection, config.mlp_ratio, config.c_ratio) == (resi, mlp, c_ratio)
    x = torch.rand(2, in_ch, *hw, generator=torch.Generator().manual_seed(0))
    out = run(desc.model, x)
    assert out.shape == (2, in_ch, hw[0] * scale, hw[1] * scale)
    assert max_abs(out, run(ref.eval(), x)) < TOL


def test_odd_head_count_needs_metadata(oracle):
    """Each L-SA branch has heads // 2: 3 heads look like 2 unless the training config says so."""
    ref = ReferenceRGT(embed_dim=48, depth=[2], num_heads=[3], split_size=[4, 8], upscale=2, img_size=32)
    sd = with_recipe_weights(ref, oracle)
    ref.load_state_dict(sd)
    assert RGTArch().load_with_config(sd, None).srt_info.config.num_heads == (2,)
    desc = RGTArch().load_with_config(sd, {"num_heads": [3], "split_size": [4, 8]})
    assert desc.srt_info.config.num_heads == (3,) and "split_size" not in desc.srt_info.inferred
    x = torch.rand(1, 3, 20, 24)
    assert max_abs(run(desc.model.eval(), x), run(ref.eval(), x)) < TOL


# ---- geometry ------------------------------------------------------------------------------------------


def test_shifted_window_pieces_tile_the_grid():
    for h, w, window in [(32, 32, (8, 32)), (32, 64, (32, 8)), (64, 96, (8, 32)), (16, 24, (8, 8))]:
        for shift in [(0, 0), (window[0] // 2, window[1] // 2)]:
            seen = torch.zeros(h, w, dtype=torch.int64)
            for (wh, ww), regions in window_groups(h, w, window, shift):
                for (r0, r1), (c0, c1) in regions:
                    assert (r1 - r0) % wh == 0 and (c1 - c0) % ww == 0
                    seen[r0:r1, c0:c1] += 1
            assert bool((seen == 1).all())


def test_recursion_steps_match_reference_rule():
    import math

    for h, w in [(16, 16), (50, 70), (255, 300), (256, 1024), (4096, 20)]:
        expected = max(2, int(math.log(h // 16, 4)), int(math.log(w // 16, 4)))
        assert recursion_steps(h, w) == expected


def test_position_biases_built_once_per_device_and_dtype(oracle, monkeypatch):
    model = RGT(RGTConfig(embed_dim=48, depths=(3, 2), num_heads=(2, 2), split_size=(4, 8), scale=2)).eval()
    model.load_state_dict(with_recipe_weights(model, oracle))
    builds = []
    original = RectWindowAttention._build_bias
    monkeypatch.setattr(
        RectWindowAttention, "_build_bias", lambda self, *a: builds.append(a) or original(self, *a)
    )
    run(model, torch.rand(1, 3, 20, 28))
    first = len(builds)  # 3 L-SA blocks x 2 branches: 1 window shape unshifted, 4 pieces shifted
    assert first == 2 * (1 + 4 + 4)
    for hw in [(20, 28), (40, 17), (64, 64)]:
        run(model, torch.rand(1, 3, *hw))
    assert len(builds) == first  # piece shapes do not depend on the input size
    assert all(b[2] == torch.float32 for b in builds)
    run(model.to(torch.bfloat16), torch.rand(1, 3, 16, 16, dtype=torch.bfloat16))
    assert len(builds) == 2 * first and builds[-1][2] == torch.bfloat16
    model.float().load_state_dict(model.state_dict())  # new weights invalidate the cache
    run(model, torch.rand(1, 3, 16, 16))
    assert len(builds) == 3 * first


def test_small_inputs_are_refused_by_the_model_and_padded_by_the_descriptor(state_dict, oracle):
    model = RGT(RGTConfig(embed_dim=32, depths=(2,), num_heads=(2,), split_size=(4, 8), scale=2)).eval()
    with pytest.raises(InputSizeError, match="at least 16"):
        run(model, torch.rand(1, 3, 12, 40))
    sd = with_recipe_weights(model, oracle)
    desc = spandrel.ModelLoader(registry=REGISTRY).load_from_state_dict(sd).eval()
    with torch.inference_mode():
        assert desc(torch.rand(1, 3, 12, 9)).shape == (1, 3, 24, 18)


# ---- exactness -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["RGT_x2", "RGT_S_x4"])
@pytest.mark.parametrize("size", ["64x64", "50x70"])
def test_golden_official_outputs(oracle, ours, variant, size):
    assert golden_error(oracle, ours(variant), variant, size) < TOL


@pytest.mark.parametrize(
    ("variant", "photo", "box"),
    [("RGT_S_x3", "coffee", (150, 220, 37, 53)), ("RGT_x4", "chelsea", (60, 180, 24, 40))],
)
def test_matches_spandrel_on_other_crops(state_dict, ours, crop, variant, photo, box):
    x = crop(photo, *box)
    assert max_abs(run(ours(variant), x), run(spandrel_reference(state_dict(variant)), x)) < TOL


# ---- half precision -------------------------------------------------------------------------------------


def half_psnr(oracle, model: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype) -> float:
    """PSNR (peak 1, raw unclamped outputs) of ``model`` in ``dtype`` against itself in fp32."""
    ref = run(model, x)
    out = run(copy.deepcopy(model).to(dtype), x.to(dtype))
    assert out.dtype == dtype and bool(torch.isfinite(out).all())
    return oracle.psnr(out.float().numpy(), ref.numpy())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_half_precision_official_small_crop(oracle, ours, crop, dtype):
    """RGT-S x2 on a 24x40 photo crop (not the training size, not a window multiple)."""
    assert (
        half_psnr(oracle, ours("RGT_S_x2"), crop("astronaut", 200, 150, 24, 40), dtype)
        >= MIN_HALF_PSNR[dtype]
    )


def test_bf16_official_40x56(oracle, ours, crop):
    assert (
        half_psnr(oracle, ours("RGT_S_x2"), crop("coffee", 100, 200, 40, 56), torch.bfloat16)
        >= MIN_HALF_PSNR[torch.bfloat16]
    )


def test_fp16_reduced_depth_40x56(oracle, state_dict, crop):
    """fp16 at 40x56: CPU fp16 convs are ~100x slower, so the first two groups of RGT-S x2 only."""
    sd = {k: v for k, v in state_dict("RGT_S_x2").items() if not k.startswith("layers.") or k[7] in "01"}
    model = load_state_dict(sd).model.eval()
    assert len(model.layers) == 2
    assert (
        half_psnr(oracle, model, crop("coffee", 100, 200, 40, 56), torch.float16)
        >= MIN_HALF_PSNR[torch.float16]
    )


def test_float32_stream_makes_bf16_closer(oracle, ours, crop):
    """The residual stream in float32 under bf16 weights (as autocast training runs it) is worth
    3-4 dB over carrying it in bf16, where every residual add rounds it to 8 bits."""
    model, x = ours("RGT_S_x2"), crop("astronaut", 200, 150, 24, 40)
    bf16_stream = copy.deepcopy(model)
    bf16_stream.fp32_stream = False
    psnr = {
        flag: half_psnr(oracle, m, x, torch.bfloat16) for flag, m in ((True, model), (False, bf16_stream))
    }
    print(f"RGT-S x2 bf16 PSNR vs fp32: stream fp32 {psnr[True]:.1f} dB, stream bf16 {psnr[False]:.1f} dB")
    assert psnr[True] >= psnr[False] + 2.0


def test_fp16_with_a_stream_beyond_fp16_range(oracle, state_dict, crop):
    """SwinIR-style streams grow past fp16's 65504 in some trained checkpoints (the cause of black
    fp16 images elsewhere). Stressed here by scaling the first norm: the stream peaks far above
    65504, and fp16 still gives a finite image close to fp32 (power-of-two scaled group convs)."""
    sd = dict(state_dict("RGT_S_x2"))
    for key in ("before_RG.1.weight", "before_RG.1.bias"):
        sd[key] = sd[key] * 1e4
    model = load_state_dict(sd).model.eval()
    peak: list[float] = []
    model.layers[0].register_forward_hook(lambda m, a, out: peak.append(out.abs().max().item()))
    psnr = half_psnr(oracle, model, crop("astronaut", 200, 150, 24, 40), torch.float16)  # fp32 runs first
    print(f"stressed RGT-S x2: stream peak {peak[0]:.0f}, fp16 PSNR vs fp32 {psnr:.1f} dB")
    assert peak[0] > 65504
    assert psnr >= MIN_HALF_PSNR[torch.float16]
