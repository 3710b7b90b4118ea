"""Channels (grey, grey+alpha, RGBA), masks and the optional output scale."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from engine_models import per_pixel, untiled

from srt.engine.channels import LUMA, ChannelError, resize_planes
from srt.engine.runner import Host, Settings, upscale


def run(desc, image, mask=None, **kw):
    return upscale(desc, image, Settings(**kw), Host(), mask=mask)


def _resize(planes: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(planes, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)


def test_rgba_alpha_skips_the_model_and_comes_back_as_alpha_and_mask():
    desc = per_pixel(2)
    image = torch.rand(2, 20, 30, 4)
    result = run(desc, image, tile=16, overlap=4)
    assert result.image.shape == (2, 40, 60, 4)
    torch.testing.assert_close(result.image[..., :3], untiled(desc, image[..., :3]), atol=1e-6, rtol=0)
    alpha = _resize(image[..., 3][:, None], (40, 60))[:, 0]
    torch.testing.assert_close(result.image[..., 3], alpha, atol=1e-6, rtol=0)
    torch.testing.assert_close(result.mask, 1 - alpha, atol=1e-6, rtol=0)  # ComfyUI MASK = 1 - alpha


def test_grey_image_goes_through_an_rgb_model_and_stays_grey():
    desc = per_pixel(2)
    grey = torch.rand(1, 16, 16, 1)
    result = run(desc, grey)
    assert result.image.shape == (1, 32, 32, 1)
    rgb = untiled(desc, grey.expand(-1, -1, -1, 3))
    luma = (rgb * torch.tensor(LUMA)).sum(-1, keepdim=True)
    torch.testing.assert_close(result.image, luma, atol=1e-6, rtol=0)
    grey_alpha = run(desc, torch.rand(1, 16, 16, 2))
    assert grey_alpha.image.shape == (1, 32, 32, 2) and grey_alpha.mask.shape == (1, 32, 32)


def test_grey_model_on_an_rgb_image():
    desc = per_pixel(2, in_ch=1, out_ch=1)
    image = torch.rand(1, 12, 12, 3)
    result = run(desc, image)
    assert result.image.shape == (1, 24, 24, 3)
    assert torch.equal(result.image[..., 0], result.image[..., 1]), "grey output repeated to RGB"


def test_impossible_channels_are_explained():
    with pytest.raises(ChannelError, match="5 channels"):
        run(per_pixel(2), torch.rand(1, 8, 8, 5))
    with pytest.raises(ChannelError, match="maps 3 to 4 channels"):
        run(per_pixel(2, out_ch=4), torch.rand(1, 8, 8, 3))


def test_mask_is_resized_to_the_output():
    desc = per_pixel(2)
    mask = torch.zeros(1, 20, 30)
    mask[:, 5:15, 10:20] = 1
    result = run(desc, torch.rand(3, 20, 30, 3), mask=mask, output_scale=1.5)
    assert result.mask.shape == (1, 30, 45) and result.mask.dtype == torch.float32
    assert result.mask.min() >= 0 and result.mask.max() <= 1
    torch.testing.assert_close(result.mask, _resize(mask[:, None], (30, 45))[:, 0], atol=1e-6, rtol=0)
    assert run(desc, torch.rand(1, 8, 8, 3)).mask is None


@pytest.mark.parametrize(
    ("output_scale", "size"), [(1.5, (30, 45)), (3.0, (60, 90)), (0.5, (10, 15)), (2.0, (40, 60))]
)
def test_output_scale_resizes_the_model_output_with_antialiasing(output_scale, size):
    desc = per_pixel(2)
    image = torch.rand(2, 20, 30, 3)
    result = run(desc, image, tile=16, overlap=4, output_scale=output_scale)
    assert result.image.shape == (2, *size, 3)
    model_out = untiled(desc, image).permute(0, 3, 1, 2)
    expected = resize_planes(model_out, size).permute(0, 2, 3, 1)
    torch.testing.assert_close(result.image, expected, atol=1e-5, rtol=0)
