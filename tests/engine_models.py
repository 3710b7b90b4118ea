"""Tiny models wrapped in spandrel descriptors for the engine tests.

* :func:`per_pixel` -- each output pixel depends on its input pixel only, so any correct tiling
  reproduces the untiled output exactly (to fp32 rounding).
* :func:`compact` -- spandrel's Compact (SRVGGNet) with random weights: a real convolutional
  network with a receptive field of ``num_conv + 2`` pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from spandrel import Architecture, ImageModelDescriptor, SizeRequirements
from spandrel.util import KeyCondition
from torch import nn


class _TestArch(Architecture[nn.Module]):
    def __init__(self, arch_id: str = "TestPerPixel") -> None:
        super().__init__(id=arch_id, detect=KeyCondition.has_all("never.present"))

    def load(self, state_dict):  # never detected
        raise NotImplementedError


class PerPixel(nn.Module):
    """``nearest_upsample(sigmoid(1x1 conv(x)))``: no spatial context at all."""

    def __init__(self, scale: int = 2, in_ch: int = 3, out_ch: int = 3) -> None:
        super().__init__()
        self.scale = scale
        self.conv = nn.Conv2d(in_ch, out_ch, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.linspace(-1.5, 1.5, out_ch * in_ch).view(out_ch, in_ch, 1, 1))
            self.conv.bias.copy_(torch.linspace(-0.2, 0.2, out_ch))
        self.calls: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
        y = torch.sigmoid(self.conv(x))
        return F.interpolate(y, scale_factor=self.scale, mode="nearest")


def wrap(
    model: nn.Module,
    scale: int,
    *,
    in_ch: int = 3,
    out_ch: int = 3,
    multiple_of: int = 1,
    minimum: int = 0,
    square: bool = False,
    half: bool = True,
    bf16: bool = True,
    arch_id: str = "TestPerPixel",
) -> ImageModelDescriptor:
    """An ``ImageModelDescriptor`` around ``model`` (eval mode)."""
    return ImageModelDescriptor(
        model.eval(),
        model.state_dict(),
        architecture=_TestArch(arch_id),
        purpose="SR",
        tags=[],
        supports_half=half,
        supports_bfloat16=bf16,
        scale=scale,
        input_channels=in_ch,
        output_channels=out_ch,
        size_requirements=SizeRequirements(minimum=minimum, multiple_of=multiple_of, square=square),
    )


def per_pixel(scale: int = 2, **kw) -> ImageModelDescriptor:
    in_ch, out_ch = kw.pop("in_ch", 3), kw.pop("out_ch", 3)
    return wrap(PerPixel(scale, in_ch, out_ch), scale, in_ch=in_ch, out_ch=out_ch, **kw)


def compact(
    scale: int = 2, num_conv: int = 4, seed: int = 0, std: float | None = None
) -> ImageModelDescriptor:
    """spandrel Compact x``scale`` (16 features) with random weights, loaded through spandrel.

    ``std``: draw every weight from N(0, std) (large values exaggerate edge effects); default:
    PyTorch's initialisation.
    """
    from spandrel.architectures.Compact import Compact, CompactArch

    torch.manual_seed(seed)
    net = Compact(num_in_ch=3, num_out_ch=3, num_feat=16, num_conv=num_conv, upscale=scale, act_type="prelu")
    if std is not None:
        for p in net.parameters():
            p.data.normal_(0.0, std)
    return CompactArch().load(net.state_dict()).eval()


def untiled(desc: ImageModelDescriptor, image: torch.Tensor) -> torch.Tensor:
    """Reference: the whole (B, H, W, C) batch through the model in one call per frame."""
    frames = [desc(f[None].permute(0, 3, 1, 2).contiguous()) for f in image]
    return torch.cat(frames).permute(0, 2, 3, 1)
