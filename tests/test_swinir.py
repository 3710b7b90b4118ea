"""SwinIR family: detection (exclusive of HAT, Swin2SR and the other Swin-like families), strict
loading, exactness against spandrel (the official code) and a fixed golden, padding, geometry,
metadata, and half precision (the fp16 overflow spandrel flags off, fixed).

References: spandrel's SwinIR on the same weights for every release config and spandrel's own
test configs (tests/swinir_variants.py), and tests/assets/swinir_golden.safetensors (tiny models
with spandrel's outputs, written by tests/assets/swinir_golden.py). CPU time is kept low: every
reference model is built once, full-size configs run on crops of one or two windows, and half
precision (slow on CPUs) on the smallest crops.
"""

from __future__ import annotations

import copy
import functools
import json
import os

import pytest
import spandrel
import torch
import torch.nn.functional as F
from model_helpers import max_abs, official_init, run, with_recipe_weights
from safetensors import safe_open
from safetensors.torch import save_file
from spandrel import MAIN_REGISTRY
from spandrel.architectures.SwinIR import SwinIR as ReferenceSwinIR
from swinir_variants import OFFICIAL, VARIANTS, spandrel_module, to_release_layout

from srt.arch import OUR_ARCHITECTURES, REGISTRY, load_model, load_state_dict
from srt.arch.common.swin import shifted_windows
from srt.arch.common.windows import window_kind, window_partition
from srt.arch.errors import ConfigError
from srt.arch.swinir import SwinIR, SwinIRArch, SwinIRConfig, read_config

TOL = 1e-4
MIN_HALF_PSNR = 40.0
GOLDEN = os.path.join(os.path.dirname(__file__), "assets", "swinir_golden.safetensors")
# What each variant name must be read as: (variant, scale, in_chans, upsampler, img_range).
EXPECTED = {
    "SwinIR_M_x2": ("SwinIR-M", 2, 3, "pixelshuffle", 1.0),
    "SwinIR_M_x3": ("SwinIR-M", 3, 3, "pixelshuffle", 1.0),
    "SwinIR_M_x4": ("SwinIR-M", 4, 3, "pixelshuffle", 1.0),
    "SwinIR_M_x8": ("SwinIR-M", 8, 3, "pixelshuffle", 1.0),
    "SwinIR_S_x2": ("SwinIR-S", 2, 3, "pixelshuffledirect", 1.0),
    "SwinIR_S_x3": ("SwinIR-S", 3, 3, "pixelshuffledirect", 1.0),
    "SwinIR_S_x4": ("SwinIR-S", 4, 3, "pixelshuffledirect", 1.0),
    "SwinIR_M_real_x2": ("SwinIR-M real-world", 2, 3, "nearest+conv", 1.0),
    "SwinIR_M_real_x4": ("SwinIR-M real-world", 4, 3, "nearest+conv", 1.0),
    "SwinIR_L_real_x4": ("SwinIR-L real-world", 4, 3, "nearest+conv", 1.0),
    "SwinIR_M_noise_gray": ("SwinIR-M denoising", 1, 1, "", 1.0),
    "SwinIR_M_noise_color": ("SwinIR-M denoising", 1, 3, "", 1.0),
    "SwinIR_M_jpeg_gray": ("SwinIR-M JPEG", 1, 1, "", 255.0),
    "SwinIR_M_jpeg_color": ("SwinIR-M JPEG", 1, 3, "", 255.0),
    "DiffBIR_General": ("SwinIR (custom)", 1, 3, "nearest+conv", 1.0),
    "spandrel_default_w8": ("SwinIR (custom)", 1, 3, "", 1.0),
    "spandrel_4x6_w8": ("SwinIR (custom)", 1, 3, "", 1.0),
    "spandrel_6621_w8": ("SwinIR (custom)", 1, 3, "", 1.0),
}


# ---- helpers --------------------------------------------------------------------------------------


@functools.cache
def reference(name: str) -> tuple[torch.nn.Module, dict]:
    """spandrel's module of ``name`` with the oracle recipe's weights (biases, norms and tables all
    random, so none can be silently ignored) and its state dict in the release files' layout."""
    from model_helpers import load_oracle

    ref = spandrel_module(name)
    sd = with_recipe_weights(ref, load_oracle())
    ref.load_state_dict(sd)
    return ref, to_release_layout(sd, name)


@functools.cache
def ours(name: str) -> torch.nn.Module:
    return load_state_dict(dict(reference(name)[1])).model.eval()


def official_pad(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """The official test pipeline's padding: reflect, bottom/right."""
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % multiple, 0, -h % multiple), mode="reflect")


def image(name: str, h: int, w: int) -> torch.Tensor:
    from model_helpers import photo_crop

    return photo_crop("astronaut", 90, 140, h, w)[:, : VARIANTS[name].get("in_chans", 3)].contiguous()


def half_psnr(oracle, model: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype, ref=None) -> float:
    """PSNR (peak 1, unclamped) of ``model`` in ``dtype`` against its float32 output (``ref`` if
    already known); asserts finiteness."""
    ref = run(model, x) if ref is None else ref
    out = run(copy.deepcopy(model).to(dtype), x.to(dtype))
    assert out.dtype == dtype and bool(torch.isfinite(out).all())
    return oracle.psnr(out.float().numpy(), ref.numpy())


# ---- detection and loading --------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_is_detected_and_loads_strictly(name):
    """spandrel-built state dicts of every release (and spandrel's test configs) load through our
    registry into our model, strictly, with every hyperparameter read from the weights."""
    ref, sd = reference(name)
    desc = spandrel.ModelLoader(registry=REGISTRY).load_from_state_dict(dict(sd))
    assert isinstance(desc.model, SwinIR) and desc.architecture.id == "SwinIR"
    assert [a.id for a in OUR_ARCHITECTURES if a.detect(sd)] == ["SwinIR"]
    cfg = desc.model.config
    assert (desc.srt_info.variant, desc.scale, cfg.in_chans, cfg.upsampler, cfg.img_range) == EXPECTED[name]
    kwargs = VARIANTS[name]
    assert cfg.embed_dim == kwargs.get("embed_dim", 96)
    assert list(cfg.depths) == kwargs.get("depths", [6] * 4)
    assert list(cfg.num_heads) == kwargs.get("num_heads", [6] * 4)
    assert cfg.window_size == kwargs["window_size"] and cfg.mlp_ratio == kwargs.get("mlp_ratio", 4.0)
    assert cfg.resi_connection == kwargs.get("resi_connection", "1conv")
    assert cfg.unshuffle == kwargs.get("start_unshuffle", 1) and cfg.upscale == kwargs.get("upscale", 1)
    assert desc.supports_half and desc.supports_bfloat16
    # our learned parameters are exactly the reference's (the release layout's names)
    learned = to_release_layout({k: v for k, v in ref.named_parameters()}, name)
    assert {k: v.shape for k, v in desc.model.state_dict().items()} == {
        k: v.shape for k, v in learned.items()
    }


def _foreign_state_dicts() -> dict[str, dict]:
    """Small spandrel-built models of the families whose keys look like SwinIR's."""
    from spandrel.architectures.ATD import ATD
    from spandrel.architectures.DAT import DAT
    from spandrel.architectures.DRCT import DRCT
    from spandrel.architectures.HAT import HAT
    from spandrel.architectures.RGT import RGT
    from spandrel.architectures.Swin2SR import Swin2SR

    small = dict(embed_dim=24, depths=[2, 2], num_heads=[2, 2], window_size=8)
    models = {
        "HAT": HAT(**small, img_size=16, upscale=2, upsampler="pixelshuffle", squeeze_factor=4),
        "Swin2SR": Swin2SR(**small, img_size=16, upscale=2, upsampler="pixelshuffle"),
        "DRCT": DRCT(**small, img_size=16, upscale=2),
        "ATD": ATD(
            embed_dim=24, depths=[2], num_heads=[2], window_size=8, upscale=2, category_size=32, num_tokens=16
        ),
        "DAT": DAT(embed_dim=64, depth=[2], num_heads=[2], split_size=[4, 8], upscale=2),
        "RGT": RGT(embed_dim=64, depth=[2], num_heads=[2], split_size=[4, 8], upscale=2),
    }
    return {name: m.state_dict() for name, m in models.items()}


def test_detection_rejects_look_alikes_and_spandrel_loads_them():
    """HAT state dicts hold every key SwinIR requires, Swin2SR's blocks all but the bias table:
    neither may become a SwinIR, and both still load (as themselves)."""
    arch = SwinIRArch()
    foreign = _foreign_state_dicts()
    for family, sd in foreign.items():
        assert not arch.detect(sd), family
        assert not spandrel.ModelLoader(registry=REGISTRY).registry.get("SwinIR").detect(sd), family
    assert arch.missing(foreign["HAT"]) == [], "HAT has all of SwinIR's required keys"
    for family in ("HAT", "Swin2SR"):
        desc = load_state_dict(dict(foreign[family]))
        assert desc.architecture.id == family and not isinstance(desc.model, SwinIR)


def test_detection_names_missing_keys():
    sd = dict(reference("SwinIR_S_x2")[1])
    arch = SwinIRArch()
    assert arch.missing(sd) == []
    del sd["layers.0.residual_group.blocks.0.attn.qkv.weight"], sd["conv_first.weight"]
    assert arch.missing(sd) == ["conv_first.weight", "layers.0.residual_group.blocks.0.attn.qkv.weight"]
    assert not arch.detect(sd)


def test_checkpoint_files(tmp_path):
    sd = dict(reference("SwinIR_S_x2")[1])
    # BasicSR .pth: params_ema wins over params (the official releases hold "params")
    decoy = {k: torch.zeros_like(v) for k, v in sd.items()}
    torch.save({"params": decoy, "params_ema": sd}, tmp_path / "swinir.pth")
    desc = load_model(tmp_path / "swinir.pth")
    assert torch.equal(desc.model.conv_first.weight, sd["conv_first.weight"])
    # traiNNer-redux safetensors (swinir_s) with its hyperparameters as metadata
    meta = dict(upscale=2, img_size=64, window_size=8, img_range=1.0, upsampler="pixelshuffledirect")
    save_file(
        {k: v.contiguous() for k, v in sd.items()},
        tmp_path / "s.safetensors",
        metadata={"metadata": json.dumps(meta)},
    )
    info = load_model(tmp_path / "s.safetensors").srt_info
    assert info.variant == "SwinIR-S" and info.scale == 2 and info.inferred == {}


BAD_METADATA = [
    ("img_range", "255"),
    ("img_range", 0),
    ("img_size", -64),
    ("window_size", 7),
    ("upscale", 4),
    ("upsampler", "pixelshuffle"),
    ("start_unshuffle", 2),
    ("ape", True),
    ("qk_scale", 0.5),
]


@pytest.mark.parametrize(("key", "value"), BAD_METADATA, ids=[f"{k}={v!r}" for k, v in BAD_METADATA])
def test_bad_metadata_names_the_key(key, value):
    sd = reference("SwinIR_S_x2")[1]
    with pytest.raises(ConfigError, match=key):
        read_config(sd, {key: value})


def test_metadata_settles_img_range_and_shift():
    sd = reference("SwinIR_M_jpeg_gray")[1]
    cfg, inferred = read_config(sd)
    assert cfg.img_range == 255.0 and "img_range" in inferred and cfg.shift
    cfg, inferred = read_config(sd, {"img_range": 1.0, "img_size": 7})
    assert cfg.img_range == 1.0 and not cfg.shift and inferred == {}


def test_unsupported_checkpoints_are_refused():
    sd = dict(reference("SwinIR_S_x2")[1])
    with pytest.raises(ConfigError, match="absolute position"):
        read_config({**sd, "absolute_pos_embed": torch.zeros(1, 4096, 60)})
    with pytest.raises(ConfigError, match="no reconstruction"):
        read_config({k: v for k, v in sd.items() if not k.startswith("upsample.")})


# ---- exactness ------------------------------------------------------------------------------------------


def _sizes(name: str) -> list[tuple[int, int]]:
    """A window multiple and an odd size (padded by the model), each 2 x 2 windows after padding,
    so every kind of shifted window (interior, last column, last row, corner) is attended."""
    multiple = VARIANTS[name]["window_size"] * VARIANTS[name].get("start_unshuffle", 1)
    return [(2 * multiple, 2 * multiple), (2 * multiple - 3, 2 * multiple - 5)]


@pytest.mark.parametrize("name", OFFICIAL)
def test_releases_match_spandrel_at_window_multiples_and_odd_sizes(name):
    """fp32 within 1e-4 of spandrel (the official code) on the same weights; odd sizes through our
    padding against the official reflect padding (then cropped)."""
    ref, _ = reference(name)
    model = ours(name)
    mult = model.preferred_tile_multiple()
    scale = model.scale
    for h, w in _sizes(name):
        x = image(name, h, w)
        expected = run(ref, official_pad(x, mult))[..., : h * scale, : w * scale]
        out = run(model, x)
        assert out.shape == expected.shape == (1, x.shape[1], h * scale, w * scale)
        assert max_abs(out, expected) < TOL, (name, h, w)


def test_diffbir_release_layout_matches_spandrels_loader():
    """DiffBIR's file (``conv_first.1``: PixelUnshuffle then conv) through spandrel's own loader."""
    _, sd = reference("DiffBIR_General")
    assert "conv_first.1.weight" in sd and "conv_first.weight" not in sd
    x = image("DiffBIR_General", 64, 64)
    assert max_abs(run(ours("DiffBIR_General"), x), run(MAIN_REGISTRY.load(dict(sd)).model.eval(), x)) < TOL


def test_golden_asset():
    """Tiny models with spandrel's outputs stored in tests/assets (a fixed reference)."""
    with safe_open(GOLDEN, framework="pt") as f:
        configs = json.loads(f.metadata()["configs"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    assert set(configs) == {"direct_x3", "jpeg_w7"}
    for name, config in configs.items():
        prefix = f"{name}.weights."
        sd = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        desc = load_state_dict(sd)
        assert desc.model.config.window_size == config["window_size"]
        assert desc.model.config.img_range == config["img_range"]
        out = run(desc.model.eval(), tensors[f"{name}.input"])
        assert out.shape == tensors[f"{name}.output"].shape
        assert max_abs(out, tensors[f"{name}.output"]) < TOL, name


def test_inputs_smaller_than_the_padding():
    """Reflect as far as possible, then replicate (the rule spandrel's other families use)."""
    ref, _ = reference("SwinIR_S_x2")
    tiny = image("SwinIR_S_x2", 5, 3)  # to 8x8: 4 rows and 2 columns reflected, the rest replicated
    padded = F.pad(tiny, (0, 2, 0, 3), mode="reflect")
    padded = F.pad(padded, (0, 3, 0, 0), mode="replicate")
    assert max_abs(run(ours("SwinIR_S_x2"), tiny), run(ref, padded)[..., :10, :6]) < TOL


def test_training_on_one_window_means_no_shift(oracle):
    """A model trained on 8 px inputs (window 8) has no shifted windows and saves no mask; spandrel's
    loader cannot tell (it rebuilds shifted windows), the constructor's model is the reference."""
    kwargs = dict(
        embed_dim=24,
        depths=[2],
        num_heads=[2],
        window_size=8,
        img_size=8,
        upscale=2,
        upsampler="pixelshuffledirect",
    )
    ref = ReferenceSwinIR(**kwargs).eval()
    sd = with_recipe_weights(ref, oracle)
    ref.load_state_dict(sd)
    cfg, inferred = read_config(sd)
    assert not cfg.shift and "shift" not in inferred and "no shifted windows" in " ".join(cfg.notes)
    x = image("SwinIR_S_x2", 16, 24)
    assert max_abs(run(load_state_dict(sd).model, x), run(ref, x)) < TOL


# ---- geometry -------------------------------------------------------------------------------------------


def test_shift_masks_equal_saved_official_masks():
    """Our four window kinds reproduce the mask the official model saves for its 64 px training size."""
    _, sd = reference("SwinIR_S_x2")
    saved = sd["layers.0.residual_group.blocks.1.attn_mask"]  # (64 windows, 64, 64)
    _, kinds, _ = ours("SwinIR_S_x2").window_geometry(torch.zeros(1, 60, 8, 8))
    grid = 64 // 8
    for i in range(grid):
        for j in range(grid):
            assert torch.equal(kinds[2 * (i == grid - 1) + (j == grid - 1), 0], saved[i * grid + j])


def test_geometry_cached_per_device_and_dtype(oracle):
    """Position biases and shift masks once per (device, dtype) whatever the size; the shifted
    windows' token order once per padded size."""
    model = SwinIR(SwinIRConfig(embed_dim=12, depths=(2,), num_heads=(2,), window_size=4, scale=2)).eval()
    model.load_state_dict(with_recipe_weights(model, oracle))
    for hw in [(8, 8), (12, 20), (7, 5)]:  # (7, 5) is padded to (8, 8)
        run(model, torch.rand(1, 3, *hw))
    assert len(model.geometry_cache) == 2 + 2
    run(model.to(torch.bfloat16), torch.rand(1, 3, 8, 12, dtype=torch.bfloat16))
    assert len(model.geometry_cache) == 2 + 1, "converting the model empties the cache"
    biases, masks, _ = model.window_geometry(torch.zeros(1, 12, 8, 12, dtype=torch.bfloat16))
    assert len(model.geometry_cache) == 3 and masks.dtype == biases[0][0].dtype == torch.bfloat16
    assert len(copy.deepcopy(model).geometry_cache) == 0
    model.load_state_dict(model.state_dict())
    assert len(model.geometry_cache) == 0


def test_shifted_window_order_matches_roll_and_partition():
    """One gather gives the shifted grid's windows grouped by mask kind; the scatter undoes it."""
    for h, w, ws in [(8, 8, 4), (16, 24, 8), (14, 7, 7)]:
        order = shifted_windows(h, w, ws, torch.device("cpu"))
        grid = torch.arange(h * w).view(1, h, w, 1)
        windows = window_partition(torch.roll(grid, shifts=(-(ws // 2),) * 2, dims=(1, 2)), ws, ws)
        kinds = [window_kind(r, c, h // ws, w // ws) for r in range(h // ws) for c in range(w // ws)]
        expected = torch.cat(
            [windows[i].flatten() for k in range(4) for i, kind in enumerate(kinds) if kind == k]
        )
        assert torch.equal(order.gather, expected)
        assert order.counts == tuple(kinds.count(k) for k in range(4))
        assert torch.equal(order.gather[order.scatter], torch.arange(h * w))


# ---- half precision ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OFFICIAL)
def test_half_precision_every_release(oracle, name):
    """bf16 and fp16: finite and >= 40 dB from our float32 on a one-window photo crop, with the
    official initialisation's weights (trained-like scales; CPU half-precision convs are slow)."""
    model = copy.deepcopy(ours(name))
    official_init(model)
    side = model.preferred_tile_multiple()
    x = image(name, side, side)
    ref = run(model, x)
    for dtype in (torch.bfloat16, torch.float16):
        assert half_psnr(oracle, model, x, dtype, ref) >= MIN_HALF_PSNR, dtype


def test_fp16_stream_overflow_is_prevented(oracle):
    """The reason spandrel flags SwinIR fp16 off: the residual stream overflows fp16 (black images).

    In trained SwinIR models the stream grows from group to group (every group adds its closing
    conv's output, which reads the raw stream, back into it). Scaling those convs by 32 emulates
    that: the stream peaks near 4e5 in float32, far above fp16's 65504. Carried in fp16 it
    overflows; carried in float32, with the convs reading it scaled by a power of two, the fp16
    model stays within 40 dB of float32 (and so does bf16).
    """
    model = copy.deepcopy(ours("SwinIR_S_x2"))
    official_init(model)
    sd = dict(model.state_dict())
    for i in range(4):
        for key in (f"layers.{i}.conv.weight", f"layers.{i}.conv.bias"):
            sd[key] = sd[key] * 32
    model.load_state_dict(sd)
    peaks = []
    hooks = [
        rstb.register_forward_hook(lambda m, i, o: peaks.append(float(o.abs().max())))
        for rstb in model.layers
    ]
    x = image("SwinIR_S_x2", 16, 16)
    ref = run(model, x)
    for hook in hooks:
        hook.remove()
    assert peaks[-1] > 4 * 65504, peaks
    naive = copy.deepcopy(model).half()
    naive.fp32_stream = False
    assert not bool(torch.isfinite(run(naive, x.half())).all())
    for dtype in (torch.float16, torch.bfloat16):
        assert half_psnr(oracle, model, x, dtype, ref) >= MIN_HALF_PSNR, dtype
