"""DAT family: detection (exclusive of the other families), strict loading, exactness against spandrel
(the official code) and a fixed golden, metadata, geometry and half precision.

References: spandrel's DAT on the same weights for every release and scale and every config of
spandrel's own ``test_load`` (tests/dat_variants.py), and tests/assets/dat_golden.safetensors (tiny
models with spandrel's outputs, written by tests/assets/dat_golden.py). Weights are the official
initialisation with BatchNorm statistics, norms, biases and temperatures drawn at random
(``perturbed``), so a mix-up of any of them shows. CPU time is kept low: every reference model is
built once, full-size configs run on one-window crops, half precision on the smallest crops.
"""

from __future__ import annotations

import copy
import functools
import json
import os

import pytest
import spandrel
import torch
from dat_variants import RELEASE_NAMES, VARIANTS, make_state_dict, perturbed, spandrel_module
from model_helpers import max_abs, photo_crop, run
from safetensors import safe_open
from safetensors.torch import save_file
from spandrel.architectures.DAT import DAT as ReferenceDAT

from srt.arch import OUR_ARCHITECTURES, REGISTRY, load_model, load_state_dict
from srt.arch.common.rect_attention import RectWindowAttention
from srt.arch.common.state import DERIVED_BUFFER_PATTERN
from srt.arch.dat import DAT, DATArch
from srt.arch.dat.attention import ChannelAttention
from srt.arch.errors import ConfigError, UnsupportedArchitectureError

TOL = 1e-4
MIN_HALF_PSNR = 40.0
GOLDEN = os.path.join(os.path.dirname(__file__), "assets", "dat_golden.safetensors")
# spandrel's tests/test_DAT.py test_load, verbatim (spandrel's defaults: embed 180, 4 groups of 2
# blocks, 2 heads, windows 2 x 4, expansion 4, x2 pixel shuffle).
SPANDREL_TEST_LOAD = [
    {}, dict(embed_dim=60), dict(in_chans=1), dict(in_chans=4),
    dict(depth=[2, 3], num_heads=[2, 5]), dict(depth=[2, 3, 4, 2], num_heads=[2, 3, 2, 2]),
    dict(depth=[2, 3, 4, 2, 5], num_heads=[2, 3, 2, 2, 3]),
    *(dict(upsampler=u, upscale=s) for u in ("pixelshuffle", "pixelshuffledirect") for s in (1, 2, 3, 4, 8)),
    dict(resi_connection="3conv"), dict(qkv_bias=False), dict(split_size=[4, 4]), dict(split_size=[2, 8]),
]  # fmt: skip


def build_reference(name: str) -> tuple[torch.nn.Module, dict]:
    """spandrel's module for a variant and its (perturbed) state dict."""
    module = spandrel_module(name)
    sd = perturbed(dict(module.state_dict()))
    module.load_state_dict(sd)
    return module, sd


reference = functools.cache(build_reference)  # the small ones, shared by several tests


def ours(sd: dict, metadata: dict | None = None) -> DAT:
    desc = load_state_dict(dict(sd), {"metadata": json.dumps(metadata)} if metadata else None)
    assert isinstance(desc.model, DAT)
    return desc.model.eval()


def crop(name: str, h: int, w: int, channels: int = 3) -> torch.Tensor:
    x = photo_crop(name, 100, 140, h, w)
    return torch.cat([x, x.mean(1, keepdim=True)], 1)[:, :channels].contiguous()


# ---- detection and loading ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_is_detected_loads_strictly_and_matches_spandrel(name):
    """Every release and scale at full size on photo crops: one window square (no padding) and
    12 x 20 (padded, shifted windows cut at the border); the small configs too."""
    kwargs = VARIANTS[name]
    module, sd = build_reference(name)
    assert [a.id for a in OUR_ARCHITECTURES if a.detect(sd)] == ["DAT"]
    desc = spandrel.ModelLoader(registry=REGISTRY).load_from_state_dict(dict(sd))
    config, info = desc.model.config, desc.srt_info
    assert isinstance(desc.model, DAT) and desc.architecture.id == "DAT"
    assert info.variant == RELEASE_NAMES.get(name.rsplit("_x", 1)[0], "DAT (custom)")
    assert (config.embed_dim, config.depths, config.num_heads) == (
        kwargs["embed_dim"], tuple(kwargs["depth"]), tuple(kwargs["num_heads"])
    )  # fmt: skip
    assert (config.split_size, config.mlp_ratio) == (tuple(kwargs["split_size"]), kwargs["expansion_factor"])
    assert (config.scale, config.in_chans) == (kwargs["upscale"], kwargs.get("in_chans", 3))
    assert config.upsampler == kwargs.get("upsampler", "pixelshuffle")
    assert config.resi_connection == kwargs.get("resi_connection", "1conv")
    assert config.qkv_bias == kwargs.get("qkv_bias", True)
    assert set(info.inferred) == {"img_range"}  # the window order is read from the saved tables
    assert desc.supports_half and desc.supports_bfloat16 and desc.size_requirements.minimum == 0
    assert desc.model.preferred_tile_multiple() == max(kwargs["split_size"])
    learned = {k: tuple(v.shape) for k, v in sd.items() if not DERIVED_BUFFER_PATTERN.search(k)}
    assert {k: tuple(v.shape) for k, v in desc.model.state_dict().items()} == learned
    side, channels = max(kwargs["split_size"]), kwargs.get("in_chans", 3)
    for x in (crop("astronaut", side, side, channels), crop("coffee", 12, 20, channels)):
        assert max_abs(run(desc.model.eval(), x), run(module, x)) < TOL


@pytest.mark.parametrize("kwargs", SPANDREL_TEST_LOAD, ids=[json.dumps(k) for k in SPANDREL_TEST_LOAD])
def test_spandrel_test_load_configs_match(kwargs):
    """Every config of spandrel's own test_load: detected by us, and the same output at an odd size."""
    torch.manual_seed(0)
    ref = ReferenceDAT(**kwargs).eval()
    sd = perturbed(dict(ref.state_dict()))
    ref.load_state_dict(sd)
    assert [a.id for a in OUR_ARCHITECTURES if a.detect(sd)] == ["DAT"]
    model = ours(sd)
    x = crop("astronaut", 7, 13, kwargs.get("in_chans", 3))
    assert max_abs(run(model, x), run(ref, x)) < TOL


def test_detection_rejects_other_families():
    """spandrel-built look-alikes: RGT (the same windows and gated MLP), DRCT/ATD/HAT/SwinIR (Swin)."""
    from spandrel.architectures.ATD import ATD
    from spandrel.architectures.DRCT import DRCT
    from spandrel.architectures.HAT import HAT
    from spandrel.architectures.RGT import RGT
    from spandrel.architectures.SwinIR import SwinIR

    swin = dict(embed_dim=24, depths=[2], num_heads=[2], window_size=4, upscale=2)
    others = [
        RGT(embed_dim=24, depth=[2], num_heads=[2], split_size=[4, 8], upscale=2, img_size=16),
        DRCT(**swin, img_size=16),
        ATD(**swin, category_size=16, num_tokens=8, reducted_dim=4, img_size=16),
        HAT(**swin, img_size=16),
        SwinIR(**swin, img_size=16),
    ]
    for other in others:
        assert not DATArch().detect(other.state_dict()), type(other).__name__


def test_detection_names_missing_keys():
    sd = dict(reference("tiny_x2")[1])
    del sd["norm.weight"]
    assert DATArch().missing(sd) == ["norm.weight"]
    with pytest.raises(
        UnsupportedArchitectureError, match=r"closest of ours: DAT \(missing keys: norm.weight\)"
    ):
        load_state_dict(sd)


def test_checkpoint_files(tmp_path):
    """BasicSR ``{'params_ema': sd}`` .pth and traiNNer-redux .safetensors with metadata load strictly."""
    sd = reference("tiny_direct_x3")[1]
    torch.save({"params_ema": sd}, tmp_path / "official.pth")
    desc = load_model(tmp_path / "official.pth")
    assert isinstance(desc.model, DAT) and torch.equal(desc.model.upsample[0].weight, sd["upsample.0.weight"])
    meta = dict(VARIANTS["tiny_direct_x3"], img_range=255.0, qk_scale=None, unshuffle_mod=False)
    save_file(
        {k: v.contiguous() for k, v in sd.items()}, tmp_path / "t.safetensors", {"metadata": json.dumps(meta)}
    )
    info = load_model(tmp_path / "t.safetensors").srt_info
    assert info.config.img_range == 255.0 and info.inferred == {}


# ---- metadata ------------------------------------------------------------------------------------------


def test_split_size_without_window_tables():
    """Without the saved tables the windows are the metadata's, else the official 8 x 32 (recorded)."""
    module, sd = reference("tiny_odd_x4")  # windows 2 x 8
    bare = {k: v for k, v in sd.items() if not DERIVED_BUFFER_PATTERN.search(k)}
    desc = load_state_dict(dict(bare))
    assert desc.srt_info.config.split_size == (8, 32) and "official" in desc.srt_info.inferred["split_size"]
    model = ours(bare, {"split_size": [2, 8]})
    assert model.config.split_size == (2, 8)
    x = crop("coffee", 11, 19)
    assert max_abs(run(model, x), run(module, x)) < TOL


def test_metadata_qk_scale_is_used():
    """The spatial attention's temperature is a training setting: only metadata tells it."""
    torch.manual_seed(0)
    kwargs = dict(VARIANTS["tiny_x2"], qk_scale=0.07)
    ref = ReferenceDAT(**kwargs).eval()
    sd = perturbed(dict(ref.state_dict()))
    # sharper attention with a larger say than the initialisation's, so its temperature shows
    sd.update({k: v * 20 for k, v in sd.items() if k.endswith(("attn.qkv.weight", "attn.proj.weight"))})
    ref.load_state_dict(sd)
    x = crop("astronaut", 12, 17)
    expected = run(ref, x)
    assert max_abs(run(ours(sd, kwargs), x), expected) < TOL
    assert max_abs(run(ours(sd), x), expected) > 1e-2  # the default temperature differs


BAD_METADATA = [
    ("img_range", 0), ("img_range", "abc"), ("img_range", -1.0), ("img_range", [1.0]),
    ("qk_scale", 0.0), ("qk_scale", "0.1"), ("qk_scale", 1e9), ("qk_scale", True),
    ("split_size", [8]), ("split_size", [0, 8]), ("split_size", "8x32"), ("split_size", [8, 10**9]),
    ("num_heads", [2]), ("num_heads", "abc"), ("num_heads", [2, 0]),
    ("unshuffle_mod", "yes"), ("unshuffle_mod", True),
]  # fmt: skip


@pytest.mark.parametrize(("key", "value"), BAD_METADATA, ids=[f"{k}={v!r}" for k, v in BAD_METADATA])
def test_bad_metadata_names_the_key(key, value):
    with pytest.raises(ConfigError, match=key):
        DATArch().load_with_config(dict(reference("tiny_x2")[1]), {key: value})


# ---- exactness -----------------------------------------------------------------------------------------


def test_golden_asset():
    with safe_open(GOLDEN, "pt") as f:
        configs = json.loads(f.metadata()["configs"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    for name, config in configs.items():
        prefix = f"{name}.weights."
        sd = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        model = ours(sd, {"img_range": config.get("img_range", 1.0)})
        assert model.config.split_size == tuple(config["split_size"])
        out = run(model, tensors[f"{name}.input"])
        assert max_abs(out, tensors[f"{name}.output"]) < TOL * config.get("img_range", 1.0)


def test_any_input_size():
    """The model pads internally (no size requirement): a 3 x 5 image, far below one window."""
    module, sd = reference("DAT_light_x2")
    x = crop("astronaut", 3, 5)
    assert max_abs(run(ours(sd), x), run(module, x)) < TOL


def test_inference_only_batch_norm():
    """In train() mode the folded BatchNorms still use the saved statistics and never update them."""
    sd = reference("tiny_x2")[1]
    model = ours(sd)
    x = crop("coffee", 12, 17)
    expected = run(model, x)
    model.train()
    with torch.no_grad():
        assert torch.equal(model(x), expected)
    stats = {k: v for k, v in model.state_dict().items() if "running" in k}
    assert all(torch.equal(v, sd[k]) for k, v in stats.items())


def test_position_biases_are_built_once(monkeypatch):
    """A full DAT-light keeps every window piece's bias (the cache holds them all): later forwards,
    at any size whose padded grid has the same pieces, build none."""
    builds = []
    original = RectWindowAttention._build_bias
    monkeypatch.setattr(
        RectWindowAttention, "_build_bias", lambda self, *a: builds.append(a) or original(self, *a)
    )
    model = ours(reference("DAT_light_x2")[1])
    run(model, crop("astronaut", 40, 72))
    # 9 spatial blocks x 2 branches: 5 unshifted (one window shape), 4 shifted (4 piece shapes)
    assert len(builds) == 2 * (5 * 1 + 4 * 4)
    for h, w in ((40, 72), (72, 40), (64, 96)):
        run(model, crop("coffee", h, w))
    assert len(builds) == 2 * (5 * 1 + 4 * 4)


# ---- half precision -------------------------------------------------------------------------------------


def half_psnr(model: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype) -> float:
    """PSNR (peak 1, raw outputs) of ``model`` in ``dtype`` against itself in fp32; asserts finite."""
    ref = run(model, x)
    out = run(copy.deepcopy(model).to(dtype), x.to(dtype))
    assert out.dtype == dtype and bool(torch.isfinite(out).all())
    mse = float((out.double() - ref.double()).square().mean())
    return 10 * torch.log10(torch.tensor(1.0 / mse)).item()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("name", [f"{r}_x2" for r in RELEASE_NAMES])
def test_half_precision_every_release(name, dtype):
    """Official initialisation (trained-like scale), a 16 x 24 photo crop."""
    model = ours(make_state_dict(name))
    assert half_psnr(model, crop("astronaut", 16, 24), dtype) >= MIN_HALF_PSNR


def test_fp16_channel_attention_beyond_fp16_range():
    """Raw q.k products over a tile overflow fp16 (65504): fp16 normalises q and k first."""
    torch.manual_seed(0)
    attn = ChannelAttention(24, 2).eval()
    x = torch.randn(1, 32, 32, 24) * 200
    with torch.no_grad():
        q = attn.qkv(x)[..., :24]
    assert float(q.square().sum((1, 2)).max()) > 65504  # the raw Gram diagonal would be inf
    ref = run(attn, x)
    out = run(copy.deepcopy(attn).half(), x.half())
    assert bool(torch.isfinite(out).all())
    assert max_abs(out.float(), ref) < 1e-2 * float(ref.abs().max())
