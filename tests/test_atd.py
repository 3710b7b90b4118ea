"""ATD / ATD-light: detection, strict loading, parity with the official code (half precision:
test_atd_precision.py).

ATD groups tokens by an argmax whose top two scores are often within one float32 ulp, then
sorts them with an unstable sort: any rounding difference upstream regroups tokens. So parity is
checked bit-for-bit in spirit (<= 1e-4) against spandrel in the same process (same kernels), and
against the golden files under the CPU kernel level they were made with (AVX2, see
``test_matches_golden``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import atd_weights
import pytest
import spandrel
import torch
from atd_support import categories
from model_helpers import run, spandrel_reference

from srt.arch import REGISTRY, load_model, load_state_dict
from srt.arch.atd import ATD, ATDArch

VARIANTS = ["ATD_x2", "ATD_x3", "ATD_x4", "ATD_light_x2", "ATD_light_x3", "ATD_light_x4"]
TOL = 1e-4


# ----------------------------------------------------------------------------- detection


@pytest.mark.parametrize("variant", VARIANTS)
def test_official_variants_load_strictly(variant, oracle, weights):
    man = oracle.load_manifest(variant)
    desc = spandrel.ModelLoader(registry=REGISTRY).load_from_state_dict(weights(variant))
    assert isinstance(desc.model, ATD) and isinstance(desc.architecture, ATDArch)
    learned = {e["key"]: tuple(e["shape"]) for e in man["keys"] if not e["buffer"]}
    ours = {k: tuple(v.shape) for k, v in desc.model.state_dict().items()}
    assert ours == learned
    info = desc.srt_info
    light = "light" in variant
    assert info.variant == ("ATD-light" if light else "ATD")
    assert desc.scale == info.scale == man["scale"]
    assert info.params == man["total_params"]
    cfg = man["constructor_config"]
    for key in ("embed_dim", "window_size", "num_tokens", "reducted_dim", "convffn_kernel_size", "upsampler"):
        assert getattr(info.config, key) == cfg[key], key
    assert list(info.config.depths) == cfg["depths"] and list(info.config.num_heads) == cfg["num_heads"]
    assert info.config.mlp_ratio == cfg["mlp_ratio"]
    assert info.config.category_size == cfg["category_size"] == (128 if light else 256)
    assert "category_size" in info.inferred
    assert desc.supports_half and desc.supports_bfloat16


def test_detector_names_missing_keys(weights):
    sd = weights("ATD_light_x2")
    del sd["layers.0.residual_group.td"]
    assert ATDArch().missing(sd) == ["layers.0.residual_group.td"]


def test_official_pth_and_traiNNer_safetensors(tmp_path, weights):
    from safetensors.torch import save_file

    sd = weights("ATD_light_x2")
    other = {k: v + 1 if v.is_floating_point() else v for k, v in sd.items()}
    torch.save({"params": other, "params_ema": sd}, tmp_path / "atd_light.pth")
    desc = load_model(tmp_path / "atd_light.pth")
    assert torch.equal(desc.model.conv_first.weight, sd["conv_first.weight"])  # params_ema wins

    meta = {"metadata": json.dumps({"category_size": 64, "img_range": 255.0, "upscale": 2})}
    save_file({k: v.contiguous() for k, v in sd.items()}, tmp_path / "atd_light.safetensors", metadata=meta)
    desc = load_model(tmp_path / "atd_light.safetensors")
    info = desc.srt_info
    assert info.config.category_size == 64 and info.config.img_range == 255.0
    assert "category_size" not in info.inferred and "img_range" not in info.inferred


# ----------------------------------------------------------------------------- parity


GOLDEN_SCRIPT = r"""
import json, sys, numpy as np, torch
from spandrel import MAIN_REGISTRY
sys.path.insert(0, sys.argv[1])  # tests/
from model_helpers import load_oracle, register_pack
register_pack()
torch.set_num_threads(2)
W = load_oracle()
from srt.arch import load_state_dict
out = {"capability": torch.backends.cpu.get_cpu_capability()}
for variant in sys.argv[2:]:
    sd = W.make_state_dict(variant)
    ours = load_state_dict(dict(sd)).model.eval()
    official = MAIN_REGISTRY.load(dict(sd)).model.eval()  # spandrel: the official code's arithmetic
    g = W.load_golden(variant)
    for crop in ("64x64", "50x70"):
        x = torch.from_numpy(g["in_" + crop])
        with torch.inference_mode():
            y, ref = ours(x).numpy(), official(x).numpy()
        out[variant + " " + crop] = {
            "ours": float(np.abs(y - g["out_" + crop]).max()),
            "official": float(np.abs(ref - g["out_" + crop]).max()),
            "ours_vs_official": float(np.abs(y - ref).max()),
        }
print(json.dumps(out))
"""


def test_matches_golden():
    """Official outputs (oracle golden files), within 1e-4 -- where this CPU reproduces them.

    The golden files were made on a CPU running torch's AVX2 kernels. Vectorised kernels
    (softmax, exp, norms) round differently on AVX512, which regroups a few tokens: there even
    the official code (and spandrel) miss ATD-light's 64x64 golden by 0.06. We therefore run
    under ``ATEN_CPU_CAPABILITY=avx2`` in a subprocess (the level is fixed at torch start-up).
    """
    tests = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, ATEN_CPU_CAPABILITY="avx2")
    res = subprocess.run(
        [sys.executable, "-c", GOLDEN_SCRIPT, tests, "ATD_x4", "ATD_light_x2"],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    if out.pop("capability") != "AVX2":
        pytest.skip("this CPU cannot run torch's AVX2 kernels, the level the golden files were made with")
    print("max abs (vs golden: ours, official code; ours vs official code):", out)
    assert len(out) == 4
    for case, err in out.items():
        if err["official"] <= TOL:  # this machine reproduces the golden machine's arithmetic
            assert err["ours"] <= TOL, (case, err)
        else:
            # ATD's oracle weights are chaotic (a 1e-5 input change costs 20+ dB, see below): on a
            # CPU whose kernels round differently even the official code misses its own golden
            # file. Ours must then still agree with the official code's arithmetic here.
            assert err["ours_vs_official"] <= 1e-5, (case, err)


@pytest.mark.parametrize(
    "variant, crop_args",
    [
        ("ATD_light_x2", ("coffee", 100, 200, 40, 40)),
        ("ATD_light_x3", ("chelsea", 60, 120, 33, 20)),
        ("ATD_light_x4", ("astronaut", 300, 300, 30, 45)),
        ("ATD_x2", ("coffee", 200, 300, 20, 30)),
        ("ATD_x3", ("chelsea", 20, 40, 17, 28)),
    ],
)
def test_matches_spandrel_on_real_crops(variant, crop_args, weights, crop):
    """Same weights, same input, same process: equal to the official code (spandrel) within 1e-4."""
    x = crop(*crop_args)
    ours = load_state_dict(weights(variant)).model.eval()
    ref = spandrel_reference(weights(variant))
    y = run(ours, x)
    diff = (y - run(ref, x)).abs().max().item()
    print(f"{variant} {crop_args}: max abs vs spandrel {diff:.2e}")
    assert y.shape == (1, 3, x.shape[2] * ours.scale, x.shape[3] * ours.scale)
    assert diff <= TOL
    if variant == "ATD_light_x2":
        assert torch.equal(y, run(ours, x))  # deterministic grouping


def test_sort_ties_follow_the_official_unstable_order(weights, crop):
    """The stable order is a different model output (0.3 max abs on golden); we keep the official one."""
    x = crop("astronaut", 96, 192, 48, 48)
    model = load_state_dict(weights("ATD_light_x2")).model.eval()
    with categories() as rec:
        run(model, x)
    cats, orders = zip(*rec, strict=True)
    assert all(
        torch.equal(o, torch.sort(c, dim=-1, stable=False).indices) for c, o in zip(cats, orders, strict=True)
    )
    assert any(
        not torch.equal(o, torch.sort(c, dim=-1, stable=True).indices)
        for c, o in zip(cats, orders, strict=True)
    )


def test_neosr_no_norm(weights, crop):
    sd = weights("ATD_light_x2")
    sd["no_norm"] = torch.zeros(1)
    desc = load_state_dict(sd)
    assert "no_norm" in desc.model.state_dict() and not desc.model.normalize
    assert any("no_norm" in n for n in desc.srt_info.notes)
    x = crop("coffee", 10, 10, 24, 24)
    ref = spandrel_reference(sd)
    y = run(desc.model.eval(), x)
    assert (y - run(ref, x)).abs().max().item() <= TOL
    assert (y - run(load_state_dict(weights("ATD_light_x2")).model.eval(), x)).abs().max() > 1e-3


# ----------------------------------------------------------------------------- config grid

SMALL = dict(embed_dim=24, depths=(2, 3), num_heads=(2, 3), window_size=8, num_tokens=16, reducted_dim=4)
GRID = [
    dict(upsampler="pixelshuffle", upscale=2),
    dict(upsampler="pixelshuffle", upscale=3, resi_connection="3conv", mlp_ratio=1.5),
    dict(upsampler="pixelshuffledirect", upscale=4, convffn_kernel_size=3, qkv_bias=False),
    dict(upsampler="nearest+conv", upscale=4, patch_norm=False),
    dict(upsampler="", upscale=1, in_chans=1),
]


@pytest.mark.parametrize("extra", GRID, ids=lambda e: f"{e['upsampler'] or 'none'}x{e['upscale']}")
def test_config_grid_round_trip(extra, crop):
    """Random weights from spandrel's ATD of each config -> detected config -> same output."""
    from spandrel.architectures.ATD import ATD as RefATD

    torch.manual_seed(0)
    cfg = {**SMALL, "convffn_kernel_size": 5, "mlp_ratio": 2.0, **extra}
    ref = RefATD(img_size=32, category_size=32, **cfg).eval()
    desc = ATDArch().load_with_config(ref.state_dict(), {"category_size": 32})
    got = desc.srt_info.config
    for key, value in cfg.items():
        assert getattr(got, "scale" if key == "upscale" else key) == value, key
    assert desc.srt_info.variant == "ATD (custom)"
    x = crop("chelsea", 50, 50, 27, 35)[:, : cfg.get("in_chans", 3)]
    assert (run(desc.model.eval(), x) - run(ref, x)).abs().max().item() <= TOL


def test_absolute_position_embedding_goes_to_spandrel(weights):
    """ape=True: ours refuses it, spandrel builds it (at 64 px), so spandrel's implementation loads
    it; a size spandrel cannot build either keeps our refusal."""
    from srt.arch.errors import ConfigError

    sd = weights("ATD_light_x2")
    sd["absolute_pos_embed"] = torch.zeros(1, 64 * 64, 48)
    desc = load_state_dict(sd)
    assert getattr(desc, "srt_info", None) is None and "ape=True" in desc.srt_fallback
    sd["absolute_pos_embed"] = torch.zeros(1, 100, 48)
    with pytest.raises(ConfigError, match="ape"):
        load_state_dict(sd)


def test_sdpa_path_matches_exact_path(weights, crop):
    """``exact_fp32=False`` (SDPA, shift masks only on border windows) computes the same model.

    Grouping pinned and AC-MSA temperature 1, so only rounding can differ.
    """
    sd = {
        k: torch.zeros_like(v) if k.endswith("logit_scale") else v for k, v in weights("ATD_light_x2").items()
    }
    x = crop("coffee", 30, 60, 40, 36)
    exact = load_state_dict(dict(sd)).model.eval()
    fast = load_state_dict(dict(sd)).model.eval()
    fast.exact_fp32 = False
    with categories() as rec:
        y = run(fast, x)
    with categories(replay=[order for _, order in rec]):
        assert (y - run(exact, x)).abs().max().item() <= 1e-3


def test_inputs_smaller_than_the_window(weights, crop):
    """The official mirror padding needs H, W >= the padding; ours repeats the mirror."""
    model = load_state_dict(weights("ATD_light_x2")).model.eval()
    y = run(model, crop("astronaut", 10, 10, 5, 7))
    assert y.shape == (1, 3, 10, 14) and torch.isfinite(y).all()


def test_trained_asset_is_an_official_checkpoint(crop):
    """The trained test checkpoint has the official key layout: spandrel (the official code's exact
    stand-in) loads it strictly and computes the same image."""
    from safetensors.torch import load_file

    sd = load_file(atd_weights.TRAINED)
    ref = spandrel_reference(sd)
    ours = load_state_dict(dict(sd)).model.eval()
    x = crop("chelsea", 60, 120, 40, 28)
    assert (run(ours, x) - run(ref, x)).abs().max().item() <= TOL
