"""ATD / ATD-light in bf16 and fp16: PSNR against fp32, token-category flips, the float32 stream.

What "PSNR vs fp32" can mean depends on the weights. The oracle recipe draws every linear from
N(0, 1/fan_in) (3.5-7x the official init's std) and leaves AC-MSA's temperature at 10: its logits have a
std of ~60, a hard argmax over partners inside groups that are themselves decided by an argmax.
That model is chaotic even in float32 (``test_oracle_weights_are_ill_conditioned``), so no
arithmetic other than the exact float32 one can land within 30 dB of it. Weights a training run
produces (the official init it starts from, and a checkpoint trained on photos) are well
conditioned, and there bf16/fp16 are held to the README's figures (bf16 52-62, fp16 66-79 dB)
minus ~3 dB, with the category flips counted; the oracle weights' arithmetic (temperature 1, the
half run's grouping) to bf16 >= 37 / fp16 >= 57 dB (measured 40-41 / 60-62).
"""

from __future__ import annotations

import atd_weights
import pytest
import torch
from atd_support import categories
from model_helpers import official_init, run

from srt.arch import load_state_dict


def official_weights(variant: str, weights) -> dict[str, torch.Tensor]:
    """``variant`` with the official training's initial weights (``model_helpers.official_init``)."""
    return official_init(load_state_dict(weights(variant)).model)


def _half_run(model_sd: dict, x: torch.Tensor, dtype: torch.dtype, oracle, pinned: bool = False) -> dict:
    """``dtype`` output, its PSNR vs fp32 and category flips per layer.

    ``pinned``: the fp32 reference reuses the half run's token grouping (isolates arithmetic).
    """
    half = load_state_dict(dict(model_sd)).model.eval().to(dtype)
    with categories() as half_cats:
        y = run(half, x.to(dtype)).float()
    model = load_state_dict(dict(model_sd)).model.eval()
    with categories(replay=[order for _, order in half_cats] if pinned else None) as ref_cats:
        y32 = run(model, x)
    flips = [(a != b).float().mean().item() for (a, _), (b, _) in zip(ref_cats, half_cats, strict=True)]
    return dict(
        y=y,
        psnr=oracle.psnr(y.numpy(), y32.numpy()),
        first_flips=flips[0],
        mean_flips=sum(flips) / len(flips),
        max_flips=max(flips),
    )


# PSNR vs fp32 floors: trained-like weights (README: bf16 52-62, fp16 66-79 dB) and the tempered,
# pinned oracle weights (measured bf16 40-41, fp16 60-62 dB), each minus ~3 dB
TRAINED_FLOOR = {torch.bfloat16: 49.0, torch.float16: 63.0}
PINNED_FLOOR = {torch.bfloat16: 37.0, torch.float16: 57.0}


def _check_half(res: dict, x: torch.Tensor, scale: int, label: str, floor: float) -> None:
    print(
        f"{label}: PSNR vs fp32 {res['psnr']:.1f} dB; tokens in another category: first layer "
        f"{res['first_flips']:.2%}, mean over layers {res['mean_flips']:.2%}, max {res['max_flips']:.2%}"
    )
    assert torch.isfinite(res["y"]).all()
    assert res["y"].shape == (1, 3, x.shape[2] * scale, x.shape[3] * scale)
    assert res["psnr"] >= floor, (label, res["psnr"], floor)


DTYPES = pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])


@DTYPES
@pytest.mark.parametrize(
    "crop_args", [("astronaut", 100, 150, 32, 32), ("chelsea", 60, 120, 40, 28)], ids=["astronaut", "chelsea"]
)
def test_half_precision_trained_checkpoint(crop_args, dtype, crop, oracle):
    """ATD-light x2 trained on photos (``tests/assets``): bf16/fp16 at the README's figures."""
    from safetensors.torch import load_file

    x = crop(*crop_args)
    res = _half_run(load_file(atd_weights.TRAINED), x, dtype, oracle)
    _check_half(res, x, 2, f"trained ATD-light x2 {crop_args[0]} {dtype}", TRAINED_FLOOR[dtype])
    assert res["mean_flips"] > 0  # the bound holds although the grouping moves


@DTYPES
@pytest.mark.parametrize(
    "variant, crop_args",
    [("ATD_light_x3", ("coffee", 150, 250, 24, 40)), ("ATD_x4", ("coffee", 150, 250, 16, 16))],
    ids=["ATD_light_x3", "ATD_x4"],
)
def test_half_precision_official_init(variant, crop_args, dtype, weights, crop, oracle):
    """Every official config at its official initialisation: bf16/fp16 at the README's figures."""
    x = crop(*crop_args)
    res = _half_run(official_weights(variant, weights), x, dtype, oracle)
    _check_half(res, x, int(variant[-1]), f"{variant} official init {dtype}", TRAINED_FLOOR[dtype])


@DTYPES
@pytest.mark.parametrize(
    "variant, crop_args",
    [("ATD_light_x2", ("astronaut", 100, 150, 32, 32)), ("ATD_x4", ("coffee", 150, 250, 16, 16))],
    ids=["ATD_light_x2", "ATD_x4"],
)
def test_half_precision_arithmetic_on_oracle_weights(variant, crop_args, dtype, weights, crop, oracle):
    """On the oracle weights half precision runs and is finite; its arithmetic is checked with
    AC-MSA's temperature at 1 and the fp32 reference using the half run's grouping."""
    sd = weights(variant)
    x = crop(*crop_args)
    raw = _half_run(sd, x, dtype, oracle)
    assert torch.isfinite(raw["y"]).all()
    print(
        f"{variant} {dtype} oracle weights as they are: PSNR {raw['psnr']:.1f} dB, flips mean {raw['mean_flips']:.2%}"
    )
    tempered = {k: torch.zeros_like(v) if k.endswith("logit_scale") else v for k, v in sd.items()}
    _check_half(
        _half_run(tempered, x, dtype, oracle, pinned=True),
        x,
        int(variant[-1]),
        f"{variant} tempered, pinned",
        PINNED_FLOOR[dtype],
    )


def test_oracle_weights_are_ill_conditioned(weights, crop, oracle):
    """Why the oracle weights cannot carry a half-vs-fp32 PSNR bound: in float32, a 1e-5 change
    of the input (1/400 of an 8-bit level) moves ATD-light's output below 30 dB; the same input
    change leaves the officially initialised and the trained model near-identical."""
    from safetensors.torch import load_file

    x = crop("astronaut", 100, 150, 32, 32)
    nudged = x + 1e-5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))

    psnr = {}
    for name, sd in (
        ("oracle", weights("ATD_light_x2")),
        ("official init", official_weights("ATD_light_x2", weights)),
        ("trained", load_file(atd_weights.TRAINED)),
    ):
        model = load_state_dict(dict(sd)).model.eval()
        psnr[name] = oracle.psnr(run(model, nudged).numpy(), run(model, x).numpy())
    print("fp32 output PSNR after a 1e-5 input change:", {k: round(v, 1) for k, v in psnr.items()})
    assert psnr["oracle"] < 30.0
    assert psnr["official init"] > 45.0 and psnr["trained"] > 45.0


def test_half_weights_carry_a_float32_residual_stream(crop):
    """Under bf16 weights the residual stream between groups stays float32 (as under autocast
    training) while the attentions run in bf16; ``fp32_stream=False`` carries it in bf16."""
    from safetensors.torch import load_file

    model = load_state_dict(load_file(atd_weights.TRAINED)).model.eval().to(torch.bfloat16)
    seen: dict[str, list[torch.dtype]] = {"stream": [], "branch": []}
    model.layers[0].register_forward_hook(lambda m, a, out: seen["stream"].append(out.dtype))
    model.layers[0].residual_group.layers[0].attn_aca.register_forward_hook(
        lambda m, a, out: seen["branch"].append(out.dtype)
    )
    x = crop("astronaut", 100, 150, 16, 16).to(torch.bfloat16)
    y = run(model, x)
    model.fp32_stream = False
    run(model, x)
    assert y.dtype == torch.bfloat16
    assert seen == {"stream": [torch.float32, torch.bfloat16], "branch": [torch.bfloat16, torch.bfloat16]}


def test_fp16_with_a_stream_beyond_fp16_range(crop, oracle):
    """The trained ATD-light with its stream pushed far past fp16's 65504 (first norm x3e4): fp16
    stays finite and close to fp32 (scaled group convs and dictionary blend, float32 dictionary)."""
    from safetensors.torch import load_file

    sd = load_file(atd_weights.TRAINED)
    for key in ("patch_embed.norm.weight", "patch_embed.norm.bias"):
        sd[key] = sd[key] * 3e4
    model = load_state_dict(dict(sd)).model.eval()
    peak: list[float] = []
    for group in model.layers:
        group.register_forward_hook(lambda m, a, out: peak.append(out.abs().max().item()))
    x = crop("astronaut", 100, 150, 32, 32)
    run(model, x)
    assert max(peak) > 65504
    _check_half(
        _half_run(sd, x, torch.float16, oracle),
        x,
        2,
        f"stressed ATD-light x2 (stream peak {max(peak):.0f})",
        TRAINED_FLOOR[torch.float16],
    )
