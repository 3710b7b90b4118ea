"""Upscale an IMAGE batch with a spandrel descriptor: tiled, blended, precision- and memory-aware.

The host (ComfyUI, a test, a script) is described by :class:`.host.Host`: devices, free memory,
cache emptying, progress, interrupt and out-of-memory exception types come in from outside, so
this module never imports ComfyUI. When even the smallest tile does not fit, the host's own
out-of-memory exception propagates.

Per frame (a batch is processed frame by frame, so memory is bounded by one frame's working set
plus the output): pad the frame if it is smaller than a tile, run every tile on the device, blend
the weighted tile outputs into the frame's output on the output device, resize when an output
scale is asked for, clamp to [0, 1].
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import Tensor

from .channels import plan_channels, resize_mask, resize_planes
from .host import Host, Report, Result, Settings
from .memory import auto_tile_size, preferred_multiple
from .placement import LocalPlacement
from .plan import Plan, output_size, plan
from .precision import ieee_fp32
from .tile_run import NonFiniteOutputError, TileRun, model_name
from .tiling import SizeRule

# Share of the free device memory a frame's float32 output may take to be blended on the device
# (one copy to the output device per frame instead of one per tile).
DEVICE_BLEND_FRACTION = 0.2

__all__ = [
    "Host",
    "NonFiniteOutputError",
    "Plan",
    "Report",
    "Result",
    "Settings",
    "output_size",
    "plan",
    "upscale",
]


def upscale(
    desc,
    image: Tensor,
    settings: Settings,
    host: Host,
    mask: Tensor | None = None,
    run_plan: Plan | None = None,
) -> Result:
    """Upscale a ``(B, H, W, C)`` IMAGE batch with spandrel descriptor ``desc``.

    Args:
        desc: an ``ImageModelDescriptor`` (ours or spandrel's).
        image: float IMAGE batch in [0, 1], channels last.
        settings: tile size (0 = auto), overlap, precision, output scale.
        host: devices and host callbacks.
        mask: optional MASK, resized to the output and returned.
        run_plan: the :func:`.plan.plan` for exactly these arguments (computed when not given).
    """
    if image.ndim != 4:
        raise ValueError(f"image has shape {tuple(image.shape)}; expected an IMAGE batch (B, H, W, C).")
    b, h, w, c = image.shape
    channels = plan_channels(c, int(desc.input_channels), int(desc.output_channels))
    if run_plan is None:
        run_plan = plan(desc, image.shape, settings, host.device, host.bf16_ok)
    if run_plan.note:
        host.warn(f"{model_name(desc)}: {run_plan.note}")
    scale = int(desc.scale)
    out_h, out_w = run_plan.output_size
    out = torch.zeros((b, out_h, out_w, c), dtype=host.output_dtype, device=host.output_device)
    if desc.model.training:
        desc.model.eval()
    if host.placement is not None:
        placement = host.placement(desc, run_plan.memory_required)
    else:
        placement = LocalPlacement(desc.model, host.device, host.offload_device)
    # fp32 means IEEE float32 (no TF32) for the run; half-precision runs keep the caller's settings
    arithmetic = ieee_fp32() if run_plan.dtype == torch.float32 else contextlib.nullcontext()
    with arithmetic:
        try:
            run = TileRun(desc, host, settings, channels, placement, run_plan.dtype)
            run.report.notes += [run_plan.note] if run_plan.note else []
            color = channels.color + (1 if channels.alpha_through_model and channels.alpha else 0)
            blend_device, free = _blend_device(host, color * h * scale * w * scale * 4)
            run.report.blend_device = blend_device
            run.tile = _initial_tile(run, run_plan, free, (h, w))
            resized = (out_h, out_w) != (h * scale, w * scale)
            # blend straight into the output when it is float32 at the model's scale on the same device
            in_place = (
                not resized and host.output_dtype == torch.float32 and blend_device == host.output_device
            )
            for i in range(b):
                frame = image[i].permute(2, 0, 1)
                target = out[i].permute(2, 0, 1)
                if in_place:
                    acc = target[:color]
                else:
                    acc = torch.zeros((color, h * scale, w * scale), device=blend_device)
                run.frame(frame, acc, b - 1 - i)
                if resized:
                    acc = resize_planes(acc[None], (out_h, out_w))[0]
                if not in_place:
                    target[:color] = acc.clamp_(0.0, 1.0).to(host.output_device)
                del acc
                if channels.alpha and not channels.alpha_through_model:  # alpha skips the model: resize it
                    target[-1] = resize_planes(
                        frame[-1:][None].to(host.output_device, torch.float32), (out_h, out_w)
                    )[0, 0]
                target.clamp_(0.0, 1.0)
        finally:
            placement.done()
            if host.device != host.offload_device:
                host.empty_cache()  # hand the freed tile memory back
    if mask is not None:
        out_mask = resize_mask(mask, (out_h, out_w), host.output_device)
    elif channels.alpha:
        out_mask = 1.0 - out[..., -1].float()
    else:
        out_mask = None
    return Result(out, out_mask, run.report)


def _blend_device(host: Host, frame_bytes: int) -> tuple[torch.device, int | None]:
    """Where a frame's tiles are blended, and the device memory left free for tiles.

    On an accelerator with room for the frame's float32 output, on the device: no copy to the
    output device per tile (each would wait for the GPU), one per frame.
    """
    free = host.free_memory(host.device) if host.free_memory is not None else None
    output = torch.device(host.output_device)
    if host.device.type == "cpu" or torch.device(host.device) == output or free is None:
        return output, free
    if frame_bytes <= DEVICE_BLEND_FRACTION * free:
        return torch.device(host.device), free - frame_bytes
    return output, free


def _initial_tile(run: TileRun, run_plan: Plan, free: int | None, frame: tuple[int, int]) -> int:
    """The planned tile, or the auto size from the free device memory."""
    rule = run.rule
    if not run_plan.auto_tile:
        return run_plan.nominal_tile
    if free is None:
        return max(rule.align_up(frame[0]), rule.align_up(frame[1]), rule.align_up(1))
    # auto tiles are also multiples of the model's window: no internal padding per tile
    auto_rule = SizeRule(rule.minimum, math.lcm(rule.multiple_of, preferred_multiple(run.desc)), rule.square)
    # free memory is measured with the weights already in place (on the device, or in RAM)
    return auto_tile_size(run.desc, max(free, 0), run.dtype, auto_rule, frame)
