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

import math
from collections import deque

import torch
from torch import Tensor

from .channels import ChannelPlan, image_output, model_input, plan_channels, resize_mask, resize_planes
from .host import Host, Report, Result, Settings
from .memory import auto_tile_size, is_oom, preferred_multiple
from .placement import LocalPlacement, Placement, model_call
from .plan import Plan, output_size, plan
from .tiling import SizeRule, Tile, count_tiles, pad_frame, plan_tiles, split_tile, tile_shape

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

MIN_TILE = 32  # the out-of-memory back-off stops halving here
# A half-precision run switches to fp32 for good once this many tiles, and at least half of the
# tiles tried in half precision, came out NaN/inf: the checkpoint overflows the format (e.g. a
# residual stream beyond fp16's 65504), so redoing tile by tile would only run everything twice.
SWITCH_AFTER_NONFINITE = 2


class NonFiniteOutputError(RuntimeError):
    """The model produced NaN/inf even in fp32: the checkpoint itself is broken."""


class _Run:
    """One call of :func:`upscale`: the placed model, the current tile size and counters."""

    def __init__(self, desc, host: Host, settings: Settings, plan: ChannelPlan, placement: Placement, dtype):
        self.desc, self.host, self.settings, self.plan, self.placement = desc, host, settings, plan, placement
        self.call = model_call(desc)
        self.dtype = dtype
        self.module = placement.module(dtype)
        self.rule = SizeRule.of(getattr(desc, "size_requirements", None))
        self.scale = int(desc.scale)
        self.report = Report(dtype=dtype)
        self.tile = 0
        self.done = 0
        self.half_tiles = 0  # tiles tried in a half precision

    def overlap(self) -> int:
        return max(0, min(self.settings.overlap, self.tile // 2))

    def model_call(self, module, x: Tensor, h: int, w: int) -> Tensor:
        with torch.inference_mode():
            y = self.call(module, x)
        expected = (1, self.plan.model_out, h * self.scale, w * self.scale)
        if tuple(y.shape) != expected:
            raise RuntimeError(
                f"the model returned a {tuple(y.shape)} tile for a {tuple(x.shape)} input; expected "
                f"{expected} (scale {self.scale}). The model does not fit spandrel's image-to-image contract."
            )
        return y

    def run_tile(self, frame: Tensor, t: Tile) -> Tensor:
        """The model's output for tile ``t``, finite, float32, on the device (recomputed in fp32 if not)."""
        src = frame[:, t.y : t.y + t.h, t.x : t.x + t.w]
        x = src.to(self.host.device, self.dtype).contiguous()[None]
        y = self.model_call(self.module, x, t.h, t.w)
        if self.dtype != torch.float32:
            self.half_tiles += 1
        if torch.isfinite(y).all():
            return y.float()
        self.report.nonfinite_tiles += 1
        if self.dtype != torch.float32:
            del y
            name, half = _name(self.desc), str(self.dtype).removeprefix("torch.")
            bad = self.report.nonfinite_tiles
            if bad >= SWITCH_AFTER_NONFINITE and 2 * bad >= self.half_tiles:
                self.host.warn(
                    f"{name}: {bad} of {self.half_tiles} tiles came out with NaN/inf in {half}; running "
                    "the rest in fp32 (this checkpoint overflows it: choose precision fp32 or bf16)."
                )
                self.dtype = torch.float32
                self.report.fp32_from_tile = self.report.tiles_run + 1
            elif bad == 1:
                self.host.warn(
                    f"{name}: a tile came out with NaN/inf in {half}; recomputing such tiles in fp32 "
                    "(choose precision fp32 to avoid the retries)."
                )
            fp32 = self.placement.module(torch.float32)
            try:
                y = self.model_call(
                    fp32, src.to(self.host.device, torch.float32).contiguous()[None], t.h, t.w
                )
            finally:
                del fp32
                self.module = self.placement.module(self.dtype)
            if torch.isfinite(y).all():
                return y
        raise NonFiniteOutputError(
            f"{_name(self.desc)}: the model produced NaN/inf even in fp32 (tile at y={t.y}, x={t.x}). "
            "The checkpoint is probably broken or not meant for this kind of input."
        )

    def shrink(self) -> bool:
        """Halve the tile after an out-of-memory error; False when it cannot get smaller."""
        smaller = self.rule.align_down(self.tile // 2)
        if smaller >= self.tile or smaller < max(MIN_TILE, self.rule.align_up(1)):
            return False
        self.host.warn(f"out of memory with {self.tile} px tiles: continuing with {smaller} px tiles")
        self.tile = smaller
        self.report.oom_backoffs += 1
        return True

    def frame(self, frame: Tensor, acc: Tensor, frames_left: int) -> None:
        """Blend all tiles of one ``(C, H, W)`` frame into ``acc`` (``(C_img, H*s, W*s)``, zeroed)."""
        _, h, w = frame.shape
        th, tw = tile_shape(h, w, self.tile, self.rule)
        padded = pad_frame(model_input(frame, self.plan), max(h, th), max(w, tw))
        queue = deque(plan_tiles(padded.shape[1], padded.shape[2], th, tw, self.overlap(), self.scale))
        self.report.tile, self.report.overlap = (th, tw), self.overlap()
        while queue:
            t = queue.popleft()
            th, tw = tile_shape(h, w, self.tile, self.rule)
            if t.h > th or t.w > tw:  # tile shrank after an OOM: do this box in smaller tiles
                queue.extendleft(reversed(split_tile(t, th, tw, self.overlap(), self.scale)))
                self.report.tile = (th, tw)
                continue
            if self.host.check_interrupt is not None:
                self.host.check_interrupt()
            failed = False
            try:
                y = self.run_tile(padded, t)
            except Exception as e:
                if not is_oom(e, self.host.oom_exceptions) or not self.shrink():
                    raise
                failed = True  # retry outside the except block so the failed tensors can be freed
            if failed:
                self.host.empty_cache()
                queue.appendleft(t)
                continue
            self.accumulate(acc, y, t)
            self.done += 1
            self.report.tiles_run += 1
            if self.host.progress is not None:
                per_frame = count_tiles(h, w, th, tw, self.overlap())
                self.host.progress(self.done, self.done + len(queue) + frames_left * per_frame)

    def accumulate(self, acc: Tensor, y: Tensor, t: Tile) -> None:
        """``acc[box] += weight * y``, clipped to the frame (padding dropped)."""
        s = self.scale
        y0, x0 = t.y * s, t.x * s
        rows, cols = min(t.h * s, acc.shape[1] - y0), min(t.w * s, acc.shape[2] - x0)
        dev = y.device
        weighted = image_output(y, self.plan)[0, :, :rows, :cols]
        weighted = weighted * (t.wy[:rows].to(dev)[:, None] * t.wx[:cols].to(dev)[None, :])
        acc[:, y0 : y0 + rows, x0 : x0 + cols] += weighted.to(acc.device)


def _name(desc) -> str:
    info = getattr(desc, "srt_info", None)
    if info is not None:
        return f"{info.variant} x{info.scale}"
    return f"{desc.architecture.name} x{desc.scale}"


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
        host.warn(f"{_name(desc)}: {run_plan.note}")
    scale = int(desc.scale)
    out_h, out_w = run_plan.output_size
    out = torch.zeros((b, out_h, out_w, c), dtype=host.output_dtype, device=host.output_device)
    if desc.model.training:
        desc.model.eval()
    if host.placement is not None:
        placement = host.placement(desc, run_plan.memory_required)
    else:
        placement = LocalPlacement(desc.model, host.device, host.offload_device)
    try:
        run = _Run(desc, host, settings, channels, placement, run_plan.dtype)
        run.report.notes += [run_plan.note] if run_plan.note else []
        run.tile = _initial_tile(run, run_plan, host, (h, w))
        resized = (out_h, out_w) != (h * scale, w * scale)
        in_place = not resized and host.output_dtype == torch.float32  # blend straight into the output
        color = channels.color + (1 if channels.alpha_through_model and channels.alpha else 0)
        for i in range(b):
            frame = image[i].permute(2, 0, 1)
            target = out[i].permute(2, 0, 1)
            if in_place:
                acc = target[:color]
            else:
                acc = torch.zeros((color, h * scale, w * scale), device=host.output_device)
            run.frame(frame, acc, b - 1 - i)
            if resized:
                acc = resize_planes(acc[None], (out_h, out_w))[0]
            if not in_place:
                target[:color] = acc.clamp_(0.0, 1.0)
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


def _initial_tile(run: _Run, run_plan: Plan, host: Host, frame: tuple[int, int]) -> int:
    """The planned tile, or the auto size from the free device memory."""
    rule = run.rule
    if not run_plan.auto_tile:
        return run_plan.nominal_tile
    free = host.free_memory(host.device) if host.free_memory is not None else None
    if free is None:
        return max(rule.align_up(frame[0]), rule.align_up(frame[1]), rule.align_up(1))
    # auto tiles are also multiples of the model's window: no internal padding per tile
    auto_rule = SizeRule(rule.minimum, math.lcm(rule.multiple_of, preferred_multiple(run.desc)), rule.square)
    # free memory is measured with the weights already in place (on the device, or in RAM)
    return auto_tile_size(run.desc, max(free, 0), run.dtype, auto_rule, frame)
