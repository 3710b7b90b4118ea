"""Image-quality metrics the way super-resolution papers report them.

PSNR and SSIM are measured on 8-bit-quantised pixels (``round(255 * x)``), either on RGB or on
the ITU-R BT.601 luma ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` (RGB in [0, 1], so Y lies in
[16, 235]; Y is kept as a float, the BasicSR convention RGT, DRCT and ATD are evaluated with),
after an optional border crop. Both use a peak of 255:

* PSNR = ``10 log10(255^2 / MSE)`` per image, i.e. scikit-image's
  ``peak_signal_noise_ratio(data_range=255)``; identical images give ``inf``.
* SSIM is Wang et al. 2004: an 11x11 Gaussian window (sigma 1.5), population statistics,
  K1 = 0.01, K2 = 0.03, the mean taken over the pixels the window fully covers and then over
  channels -- scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=255)``.

Images are ComfyUI IMAGE batches, ``(B, H, W, C)`` float tensors in [0, 1]. Everything is
computed in float64 (on the CPU when the images live on a device without float64), one frame at a
time: a float64 copy of a whole video batch would not fit (300 4K frames are 60 GB).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

Channels = Literal["y", "rgb"]
CHANNELS: tuple[Channels, ...] = ("y", "rgb")

PEAK = 255.0
Y_WEIGHTS = (65.481, 128.553, 24.966)
Y_OFFSET = 16.0
SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # scipy's gaussian_filter radius int(3.5 * sigma + 0.5): an 11x11 window
SSIM_K1, SSIM_K2 = 0.01, 0.03


class MetricInputError(ValueError):
    """Images handed to a metric disagree in shape or leave no pixels to measure."""


@dataclass(frozen=True)
class Scores:
    """Per-image PSNR (dB) and SSIM of one batch measured against another.

    Args:
        psnr: one value per image; ``inf`` where the images are identical.
        ssim: one value per image; ``nan`` where the image is smaller than the SSIM window.
    """

    psnr: tuple[float, ...]
    ssim: tuple[float, ...]

    @property
    def mean_psnr(self) -> float:
        """Mean PSNR over the batch (papers average per-image PSNR)."""
        return math.fsum(self.psnr) / len(self.psnr)

    @property
    def mean_ssim(self) -> float:
        """Mean SSIM over the batch."""
        return math.fsum(self.ssim) / len(self.ssim)


def compute_device(images: torch.Tensor) -> torch.device:
    """The device metrics run on: the images' own, unless it has no float64 (MPS)."""
    return torch.device("cpu") if images.device.type == "mps" else images.device


def quantize_8bit(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats -> float64 holding the 8-bit values {0, ..., 255} an image file would store.

    Args:
        images: (B, H, W, C) in [0, 1]; NaN counts as 0 and values are clamped first.
    """
    pixels = torch.nan_to_num(images.to(compute_device(images), torch.float64), nan=0.0)
    return torch.round(pixels.clamp(0.0, 1.0) * PEAK)


def rgb_to_y(pixels: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of RGB pixels in [0, 255] -> (..., 1) Y in [16, 235], not rounded.

    Args:
        pixels: (..., 3) RGB values on the 0-255 scale.
    """
    weights = pixels.new_tensor(Y_WEIGHTS) / PEAK
    return (pixels @ weights).unsqueeze(-1) + Y_OFFSET


def crop_border(images: torch.Tensor, border: int) -> torch.Tensor:
    """Drop ``border`` pixels on every side of (B, H, W, C) images (papers crop the scale).

    Raises:
        MetricInputError: the crop would leave no pixels.
    """
    if border <= 0:
        return images
    height, width = images.shape[1:3]
    if 2 * border >= min(height, width):
        limit = (min(height, width) - 1) // 2
        raise MetricInputError(
            f"border crop {border} leaves no pixels of a {width}x{height} image: use at most {limit}"
        )
    return images[:, border : height - border, border : width - border]


def psnr(test: torch.Tensor, target: torch.Tensor, peak: float = PEAK) -> torch.Tensor:
    """Per-image PSNR in dB of (B, ...) images -> (B,): inf where equal, nan where ``test`` has NaN.

    ``peak``: the value range, 255 for pixels on the 0-255 scale (the default), 1 for [0, 1] floats.
    """
    mse = (test - target).square().flatten(1).mean(dim=1)
    return 10.0 * torch.log10(peak**2 / mse)


def gaussian_window(device: torch.device) -> torch.Tensor:
    """The normalised 1-D Gaussian (sigma 1.5, 11 taps) that SSIM's window is separable into."""
    taps = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=torch.float64, device=device)
    weights = torch.exp(-0.5 * (taps / SSIM_SIGMA) ** 2)
    return weights / weights.sum()


def _window_mean(maps: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Gaussian-weighted local means of (N, 1, H, W) maps where the window fits ('valid')."""
    maps = F.conv2d(maps, window.view(1, 1, -1, 1))
    return F.conv2d(maps, window.view(1, 1, 1, -1))


def _ssim_channel(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of two (H, W) float64 planes on the 0-255 scale."""
    c1, c2 = (SSIM_K1 * PEAK) ** 2, (SSIM_K2 * PEAK) ** 2
    planes = torch.stack([x, y, x * x, y * y, x * y]).unsqueeze(1)
    mean_x, mean_y, mean_xx, mean_yy, mean_xy = _window_mean(planes, window)
    var_x = mean_xx - mean_x * mean_x
    var_y = mean_yy - mean_y * mean_y
    cov_xy = mean_xy - mean_x * mean_y
    luminance = (2 * mean_x * mean_y + c1) / (mean_x * mean_x + mean_y * mean_y + c1)
    structure = (2 * cov_xy + c2) / (var_x + var_y + c2)
    return (luminance * structure).mean()


def ssim(test: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM of (B, H, W, C) pixels on the 0-255 scale -> (B,), mean over channels.

    One plane at a time keeps memory bounded for large frames. Images smaller than the 11x11
    window give NaN (scikit-image refuses them).
    """
    batch, height, width, channels = test.shape
    if min(height, width) < 2 * SSIM_RADIUS + 1:
        return torch.full((batch,), math.nan, dtype=torch.float64)
    window = gaussian_window(test.device)
    values = [
        torch.stack([_ssim_channel(x[..., c], y[..., c], window) for c in range(channels)]).mean()
        for x, y in zip(test, target, strict=True)
    ]
    return torch.stack(values)


def prepare(images: torch.Tensor, channels: Channels, border: int) -> torch.Tensor:
    """IMAGE batch in [0, 1] -> the 0-255 pixels a metric sees: quantised, Y or RGB, cropped."""
    pixels = quantize_8bit(images)
    if channels == "y":
        pixels = rgb_to_y(pixels)
    elif channels != "rgb":
        raise MetricInputError(f"channels must be one of {CHANNELS}, got {channels!r}")
    return crop_border(pixels, border)


def measure(test: torch.Tensor, target: torch.Tensor, channels: Channels = "y", border: int = 0) -> Scores:
    """PSNR and SSIM of each image of ``test`` against the same-index image of ``target``.

    Args:
        test: (B, H, W, 3) IMAGE batch in [0, 1], the image being judged.
        target: (B, H, W, 3) IMAGE batch in [0, 1], the ground truth.
        channels: ``"y"`` (BT.601 luma, as SR papers report) or ``"rgb"``.
        border: pixels cropped from every side before measuring (papers use the scale).

    Raises:
        MetricInputError: shapes differ, the images are not RGB, or the crop leaves nothing.
    """
    if test.shape != target.shape or test.ndim != 4 or test.shape[-1] != 3:
        raise MetricInputError(
            f"metrics need two RGB batches of the same shape (B, H, W, 3); got {tuple(test.shape)} "
            f"and {tuple(target.shape)}: align them first (engine.comparison.align_inputs)"
        )
    psnrs, ssims = [], []
    for i in range(test.shape[0]):  # one frame in float64 at a time
        x = prepare(test[i : i + 1], channels, border)
        y = prepare(target[i : i + 1].to(test.device), channels, border)
        psnrs += psnr(x, y).tolist()
        ssims += ssim(x, y).tolist()
    return Scores(psnr=tuple(psnrs), ssim=tuple(ssims))
