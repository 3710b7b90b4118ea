"""The image side of the models: the RGB mean they subtract and the padding to whole windows."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

# DIV2K's RGB mean, which RGT, DRCT and ATD subtract from RGB inputs (and add back at the end).
RGB_MEAN = (0.4488, 0.4371, 0.4040)

PadMode = Literal["reflect", "symmetric"]


def image_mean(in_chans: int) -> Tensor:
    """The mean subtracted from inputs, ``(1, C, 1, 1)``: :data:`RGB_MEAN` for RGB, zeros otherwise."""
    mean = torch.tensor(RGB_MEAN) if in_chans == 3 else torch.zeros(in_chans)
    return mean.view(1, -1, 1, 1)


def pad_bottom_right(x: Tensor, bottom: int, right: int, mode: PadMode, *, repeat: bool = True) -> Tensor:
    """Pad ``x`` (``..., H, W``) by ``bottom`` rows and ``right`` columns, mirroring the image.

    Args:
        mode: ``"reflect"`` mirrors without repeating the edge pixel (``F.pad``'s reflect: at most
            ``side - 1`` pixels at a time); ``"symmetric"`` appends the flipped image, edge
            included (the official ATD padding).
        repeat: when the padding is longer than one mirror image, mirror the padded image again
            (True), or replicate the edge for the rest (False: the official DRCT test pipeline's
            reflection, completed by spandrel's rule for inputs too small to reflect).
    """
    for axis, pad in ((-2, bottom), (-1, right)):

        def amounts(n: int, axis: int = axis) -> tuple[int, int, int, int]:
            return (0, 0, 0, n) if axis == -2 else (0, n, 0, 0)

        while pad > 0:
            size = x.shape[axis]
            if mode == "symmetric":
                step = min(pad, size)
                x = torch.cat([x, x.flip(axis).narrow(axis, 0, step)], axis)
            else:
                step = min(pad, size - 1)
                if step == 0:  # a single pixel cannot be reflected
                    break
                x = F.pad(x, amounts(step), mode="reflect")
            pad -= step
            if not repeat:
                break
        if pad > 0:
            x = F.pad(x, amounts(pad), mode="replicate")
    return x


def pad_to_multiple(x: Tensor, multiple: int, mode: PadMode, *, repeat: bool = True) -> Tensor:
    """Pad the bottom/right of ``x`` so both sides are multiples of ``multiple`` (see :func:`pad_bottom_right`)."""
    h, w = x.shape[-2:]
    return pad_bottom_right(x, -h % multiple, -w % multiple, mode, repeat=repeat)
