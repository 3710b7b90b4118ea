"""PSNR / SSIM against scikit-image on real photos and synthetic degradations.

The reference path is independent of ours: images go to uint8 with numpy, Y is computed with
numpy from the BT.601 formula, and scikit-image measures them (``peak_signal_noise_ratio``,
``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``).
Tolerances are the issue's: 0.01 dB and 1e-4.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from srt.engine.metrics import (
    MetricInputError,
    crop_border,
    measure,
    quantize_8bit,
    rgb_to_y,
)

PSNR_TOL = 0.01
SSIM_TOL = 1e-4
PHOTOS = {"astronaut": (30, 150), "coffee": (100, 200), "chelsea": (60, 120)}
SIZE = 96


def photo(name: str, crop) -> np.ndarray:
    """A SIZE x SIZE uint8 RGB crop of a scikit-image photo."""
    top, left = PHOTOS[name]
    nchw = crop(name, top, left, SIZE, SIZE)
    return np.round(nchw[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def degrade(img: np.ndarray, kind: str) -> np.ndarray:
    """Synthetic degradations an SR comparison meets: blur, noise, JPEG, bicubic down-up."""
    pil = Image.fromarray(img)
    if kind == "blur":
        return np.asarray(pil.filter(ImageFilter.GaussianBlur(1.5)))
    if kind == "noise":
        noisy = img.astype(np.float64) + np.random.default_rng(0).normal(0.0, 8.0, img.shape)
        return np.clip(np.round(noisy), 0, 255).astype(np.uint8)
    if kind == "jpeg":
        buffer = io.BytesIO()
        pil.save(buffer, "JPEG", quality=30)
        return np.asarray(Image.open(buffer).convert("RGB"))
    if kind == "bicubic":
        small = pil.resize((SIZE // 4, SIZE // 4), Image.BICUBIC)
        return np.asarray(small.resize((SIZE, SIZE), Image.BICUBIC))
    raise ValueError(kind)


def as_image_batch(*images: np.ndarray) -> torch.Tensor:
    """uint8 HWC arrays -> a ComfyUI IMAGE batch (B, H, W, 3) float32 in [0, 1]."""
    return torch.from_numpy(np.stack(images).astype(np.float32) / 255.0)


def luma(img: np.ndarray) -> np.ndarray:
    """BT.601 Y of uint8 RGB with numpy: 16 + (65.481 R + 128.553 G + 24.966 B) / 255."""
    rgb = img.astype(np.float64)
    return 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0


def skimage_scores(test: np.ndarray, target: np.ndarray, channels: str, border: int) -> tuple[float, float]:
    """PSNR and SSIM as scikit-image computes them on the paper's pixels."""
    if channels == "y":
        test, target, axis = luma(test), luma(target), None
    else:
        axis = -1
    if border:
        test, target = test[border:-border, border:-border], target[border:-border, border:-border]
    psnr = peak_signal_noise_ratio(target, test, data_range=255)
    ssim = structural_similarity(
        target,
        test,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
        channel_axis=axis,
    )
    return float(psnr), float(ssim)


@pytest.mark.parametrize("border", [0, 4])
@pytest.mark.parametrize("channels", ["y", "rgb"])
@pytest.mark.parametrize("kind", ["blur", "noise", "jpeg", "bicubic"])
@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_matches_skimage_on_degraded_photos(crop, name, kind, channels, border):
    clean = photo(name, crop)
    worse = degrade(clean, kind)
    scores = measure(as_image_batch(worse), as_image_batch(clean), channels, border)
    psnr, ssim = skimage_scores(worse, clean, channels, border)
    assert abs(scores.psnr[0] - psnr) < PSNR_TOL
    assert abs(scores.ssim[0] - ssim) < SSIM_TOL


def test_batch_gives_per_image_scores(crop):
    """A batch of three photos, each with its own degradation, is scored image by image."""
    clean = [photo(name, crop) for name in sorted(PHOTOS)]
    worse = [degrade(img, kind) for img, kind in zip(clean, ["blur", "noise", "jpeg"], strict=True)]
    scores = measure(as_image_batch(*worse), as_image_batch(*clean), "y", 2)
    for i, (w, c) in enumerate(zip(worse, clean, strict=True)):
        psnr, ssim = skimage_scores(w, c, "y", 2)
        assert abs(scores.psnr[i] - psnr) < PSNR_TOL
        assert abs(scores.ssim[i] - ssim) < SSIM_TOL
    assert scores.mean_psnr == pytest.approx(sum(scores.psnr) / 3)
    assert scores.mean_ssim == pytest.approx(sum(scores.ssim) / 3)


def test_float_outputs_are_quantised_like_saved_images(crop):
    """A model's float output is measured as the 8-bit image it would be saved as (rounded)."""
    clean = photo("coffee", crop)
    generator = torch.Generator().manual_seed(1)
    output = (as_image_batch(clean) + 0.03 * torch.randn(1, SIZE, SIZE, 3, generator=generator)).clamp(0, 1)
    saved = np.clip(np.round(output[0].numpy().astype(np.float64) * 255), 0, 255).astype(np.uint8)
    scores = measure(output, as_image_batch(clean), "rgb")
    psnr, ssim = skimage_scores(saved, clean, "rgb", 0)
    assert abs(scores.psnr[0] - psnr) < PSNR_TOL
    assert abs(scores.ssim[0] - ssim) < SSIM_TOL


def test_identical_images_give_inf_and_one(crop):
    batch = as_image_batch(photo("chelsea", crop))
    scores = measure(batch, batch.clone(), "y", 4)
    assert math.isinf(scores.psnr[0]) and scores.psnr[0] > 0
    assert scores.ssim[0] == pytest.approx(1.0, abs=1e-12)


def test_psnr_of_any_peak_per_image():
    """The one PSNR (benchmarks call it with peak 1): 10 log10(peak^2 / mse) per image."""
    from srt.engine.metrics import psnr

    target = torch.zeros(2, 3, 4, 4)
    test = torch.stack([torch.full((3, 4, 4), 0.01), torch.zeros(3, 4, 4)])
    scores = psnr(test, target, peak=1.0)
    assert scores[0].item() == pytest.approx(40.0, abs=1e-4) and math.isinf(scores[1].item())
    assert psnr(test * 255, target)[0].item() == pytest.approx(40.0, abs=1e-4)  # 0-255 by default


def test_ssim_is_nan_below_the_window_but_psnr_is_measured():
    a, b = torch.zeros(1, 8, 20, 3), torch.full((1, 8, 20, 3), 0.5)
    scores = measure(a, b, "rgb")
    assert math.isnan(scores.ssim[0])
    assert math.isfinite(scores.psnr[0])


def test_luma_range_and_quantisation():
    white, black = torch.ones(1, 1, 1, 3), torch.zeros(1, 1, 1, 3)
    assert rgb_to_y(quantize_8bit(white)).item() == pytest.approx(235.0)
    assert rgb_to_y(quantize_8bit(black)).item() == pytest.approx(16.0)
    values = torch.tensor([-0.2, 0.0, 0.3 / 255, 0.6 / 255, 1.0, 1.5, float("nan")]).view(1, 1, -1, 1)
    assert quantize_8bit(values).flatten().tolist() == [0.0, 0.0, 0.0, 1.0, 255.0, 255.0, 0.0]


def test_border_crop_and_its_errors():
    images = torch.rand(2, 20, 30, 3)
    assert crop_border(images, 3).shape == (2, 14, 24, 3)
    assert crop_border(images, 0) is images
    with pytest.raises(MetricInputError, match="use at most 9"):
        crop_border(images, 10)


def test_mismatched_shapes_are_refused_with_the_fix():
    with pytest.raises(MetricInputError, match="align_inputs"):
        measure(torch.rand(1, 16, 16, 3), torch.rand(1, 16, 18, 3))
    with pytest.raises(MetricInputError, match="channels"):
        measure(torch.rand(1, 16, 16, 3), torch.rand(1, 16, 16, 3), channels="lab")  # type: ignore[arg-type]
