"""Image channels vs model channels, alpha, masks and the final resize.

ComfyUI IMAGEs are ``(B, H, W, C)``: usually RGB, sometimes grey (1), grey+alpha (2) or RGBA (4).
The colour part goes through the model (grey repeated to RGB for RGB models, RGB turned into
BT.601 luma for grey models) and comes back with the image's own channel count; alpha never goes
through an RGB model: it is resized to the output like a mask and put back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601


class ChannelError(ValueError):
    """The image's channels cannot be fed to the model."""


@dataclass(frozen=True)
class ChannelPlan:
    """How a frame's channels map to the model's input and back.

    Args:
        color: colour channels in the image (1 or 3).
        alpha: whether the image's last channel is alpha.
        model_in, model_out: the model's input/output channels.
    """

    color: int
    alpha: bool
    model_in: int
    model_out: int

    @property
    def alpha_through_model(self) -> bool:
        """RGBA models get the alpha channel as input and produce it."""
        return self.model_in == 4 and self.model_out == 4


def plan_channels(image_channels: int, model_in: int, model_out: int) -> ChannelPlan:
    """Check that an image with ``image_channels`` can go through a ``model_in -> model_out`` model."""
    if image_channels not in (1, 2, 3, 4):
        raise ChannelError(
            f"the image has {image_channels} channels; expected 1 (grey), 2 (grey+alpha), 3 (RGB) or "
            "4 (RGBA). Convert it to RGB first."
        )
    if model_in not in (1, 3, 4) or model_out not in (1, 3, 4) or (model_in == 4) != (model_out == 4):
        raise ChannelError(
            f"this model maps {model_in} to {model_out} channels; only grey (1), RGB (3) and RGBA (4) "
            "image models can upscale an IMAGE."
        )
    return ChannelPlan(
        color=1 if image_channels <= 2 else 3,
        alpha=image_channels in (2, 4),
        model_in=model_in,
        model_out=model_out,
    )


def _luma(x: Tensor) -> Tensor:
    w = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return (x * w).sum(dim=-3, keepdim=True)


def _match(x: Tensor, channels: int) -> Tensor:
    """``(..., C, H, W)`` grey <-> RGB."""
    if x.shape[-3] == channels:
        return x
    if channels == 3:
        return x.expand(*x.shape[:-3], 3, *x.shape[-2:])
    return _luma(x)


def model_input(frame: Tensor, plan: ChannelPlan) -> Tensor:
    """The model's input channels of a ``(C, H, W)`` frame (a view when nothing changes)."""
    color = _match(frame[: plan.color], 3 if plan.model_in == 4 else plan.model_in)
    if plan.model_in != 4:
        return color
    alpha = frame[-1:] if plan.alpha else torch.ones_like(frame[:1])
    return torch.cat([color, alpha], dim=0)


def image_output(y: Tensor, plan: ChannelPlan) -> Tensor:
    """A model output tile ``(1, model_out, h, w)`` as the image's channels (alpha included when the
    model produced it)."""
    if plan.alpha_through_model:
        color = _match(y[:, :3], plan.color)
        return torch.cat([color, y[:, 3:]], dim=1) if plan.alpha else color
    return _match(y, plan.color)


def resize_planes(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize ``(N, C, H, W)`` to ``size`` with an antialiased bicubic filter, clamped to [0, 1]."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True).clamp_(0.0, 1.0)


def mask_frames(mask: Tensor) -> Tensor:
    """A ComfyUI MASK (``(H, W)``, ``(B, H, W)`` or ``(B, 1, H, W)``) as ``(B, H, W)``."""
    if mask.ndim == 2:
        return mask[None]
    if mask.ndim == 4 and mask.shape[1] == 1:
        return mask[:, 0]
    if mask.ndim != 3:
        raise ChannelError(f"the mask has shape {tuple(mask.shape)}; expected (B, H, W) or (H, W).")
    return mask


def resize_mask(mask: Tensor, size: tuple[int, int], device: torch.device) -> Tensor:
    """Resize a MASK to ``size`` frame by frame (bounded memory) on ``device``; ``(B, H, W)`` float32."""
    frames = mask_frames(mask)
    out = torch.empty((frames.shape[0], *size), dtype=torch.float32, device=device)
    for i, m in enumerate(frames):
        out[i] = resize_planes(m[None, None].to(device, torch.float32), size)[0, 0]
    return out
