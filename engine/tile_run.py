"""The tile loop of one run: model calls, blending, NaN/inf recovery and out-of-memory back-off.

No host synchronisation inside the loop on an accelerator: the frame is copied to the device once,
the blend weights of all its tiles in one transfer, every tile's finiteness is kept as a flag on
the device (a non-finite tile contributes zero), and the flags are read once per frame. Only the
first :data:`PROBE_TILES` half-precision tiles of a run are checked one by one, so a checkpoint
that overflows a format is noticed before a whole frame runs in it. Tiles that were not finite
are then computed again in fp32 and added in, all of a frame's under one fp32 placement (the
weights are converted there and back once per frame, not once per tile); when most of them
overflow (at least :data:`SWITCH_AFTER_NONFINITE`, and at least half of the tiles tried in half
precision) the rest of the run switches to fp32.
"""

from __future__ import annotations

from collections import deque

import torch
from torch import Tensor

from .channels import ChannelPlan, image_output, model_input
from .compiled import CompiledRun, can_compile, mark_failed
from .host import Host, Report, Settings
from .memory import is_oom
from .placement import Placement, model_call
from .tiling import SizeRule, Tile, count_tiles, pad_frame, plan_tiles, split_tile, tile_shape, weights_to

MIN_TILE = 32  # the out-of-memory back-off stops halving here
SWITCH_AFTER_NONFINITE = 2
PROBE_TILES = 2


class NonFiniteOutputError(RuntimeError):
    """The model produced NaN/inf even in fp32: the checkpoint itself is broken."""


def model_name(desc) -> str:
    info = getattr(desc, "srt_info", None)
    if info is not None:
        return f"{info.variant} x{info.scale}"
    return f"{desc.architecture.name} x{desc.scale}"


class TileRun:
    """One call of :func:`.runner.upscale`: the placed model, the current tile size and counters."""

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
        self.half_checked = 0  # of those, how many have had their flag read
        self.compiled = CompiledRun(
            host.compile_backend, host.device, host.warn, lambda e: is_oom(e, host.oom_exceptions)
        )
        self.report.compile = self.compiled.stats

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

    def compute(self, frame: Tensor, t: Tile, module, dtype) -> tuple[Tensor, Tensor]:
        """Tile ``t``'s output in float32 with NaN/inf tiles zeroed, and its finiteness flag (on the device)."""
        x = frame[:, t.y : t.y + t.h, t.x : t.x + t.w].to(dtype)[None].contiguous()
        y = self.model_call(module, x, t.h, t.w)
        ok = torch.isfinite(y).all()
        return torch.where(ok, y, 0.0).float(), ok

    def run_model(self, frame: Tensor, t: Tile) -> tuple[Tensor, Tensor]:
        """:meth:`compute` with the run's module, compiled when asked (eager if that fails)."""
        if not (self.settings.compile and can_compile(self.module)):
            return self.compute(frame, t, self.module, self.dtype)
        try:
            out = self.compiled.call(
                self.module, (t.h, t.w, self.dtype), lambda fn: self.compute(frame, t, fn, self.dtype)
            )
            self.report.compile_seconds = self.compiled.seconds()
            return out
        except Exception as e:
            if is_oom(e, self.host.oom_exceptions):
                raise
            self.host.warn(
                f"{model_name(self.desc)}: torch.compile failed ({type(e).__name__}: {e}); running uncompiled."
            )
            mark_failed(self.module)
            return self.compute(frame, t, self.module, self.dtype)

    def settle(self, frame: Tensor, acc: Tensor, pending: list) -> None:
        """Read the pending tiles' flags (one host sync) and redo the non-finite ones in fp32."""
        if not pending:
            return
        flags = torch.stack([ok for _, ok, _, _ in pending]).tolist()
        items = list(pending)
        pending.clear()
        bad = []
        for (t, _, dtype, index), good in zip(items, flags, strict=True):
            self.half_checked += dtype != torch.float32
            if not good:
                if dtype == torch.float32:
                    raise self.broken(t)
                self.count_nonfinite(dtype, index)
                bad.append(t)
        if bad:
            self.redo_in_fp32(frame, acc, bad)

    def broken(self, t: Tile) -> NonFiniteOutputError:
        return NonFiniteOutputError(
            f"{model_name(self.desc)}: the model produced NaN/inf even in fp32 (tile at y={t.y}, "
            f"x={t.x}). The checkpoint is probably broken or not meant for this kind of input."
        )

    def count_nonfinite(self, dtype: torch.dtype, index: int) -> None:
        """The ``index``-th tile of the run came out NaN/inf in ``dtype``: warn once, and switch the
        rest of the run to fp32 when most half-precision tiles overflow."""
        self.report.nonfinite_tiles += 1
        name, half = model_name(self.desc), str(dtype).removeprefix("torch.")
        bad = self.report.nonfinite_tiles
        if self.dtype != torch.float32 and bad >= SWITCH_AFTER_NONFINITE and 2 * bad >= self.half_tiles:
            self.host.warn(
                f"{name}: {bad} of {self.half_tiles} tiles came out with NaN/inf in {half}; running "
                "the rest in fp32 (this checkpoint overflows it: choose precision fp32 or bf16)."
            )
            self.dtype = torch.float32
            self.report.fp32_from_tile = index
        elif bad == 1:
            self.host.warn(
                f"{name}: a tile came out with NaN/inf in {half}; recomputing such tiles in fp32 "
                "(choose precision fp32 to avoid the retries)."
            )

    def redo_in_fp32(self, frame: Tensor, acc: Tensor, tiles: list[Tile]) -> None:
        """Compute ``tiles`` again in fp32 and add them in, all under one fp32 placement (one
        conversion of the weights there and back, not one per tile); one host sync for their flags."""
        fp32 = self.placement.module(torch.float32)
        flags = []
        try:
            for t in tiles:
                y, ok = self.compute(frame, t, fp32, torch.float32)
                self.accumulate(acc, y, t)  # NaN/inf zeroed: harmless if the check below fails
                flags.append(ok)
                del y
        finally:
            del fp32
            self.module = self.placement.module(self.dtype)
            self.compiled.placed()
        for t, good in zip(tiles, torch.stack(flags).tolist(), strict=True):
            if not good:
                raise self.broken(t)

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
        padded = pad_frame(model_input(frame, self.plan), max(h, th), max(w, tw)).to(self.host.device)
        tiles = plan_tiles(padded.shape[1], padded.shape[2], th, tw, self.overlap(), self.scale)
        queue = deque(weights_to(tiles, acc.device))  # blend weights where the blend runs
        self.report.tile, self.report.overlap = (th, tw), self.overlap()
        pending: list[tuple[Tile, Tensor, torch.dtype, int]] = []
        while queue:
            t = queue.popleft()
            th, tw = tile_shape(h, w, self.tile, self.rule)
            if t.h > th or t.w > tw:  # tile shrank after an OOM: do this box in smaller tiles
                parts = split_tile(t, th, tw, self.overlap(), self.scale)  # weights stay on acc's device
                queue.extendleft(reversed(parts))
                self.report.tile = (th, tw)
                continue
            if self.host.check_interrupt is not None:
                self.host.check_interrupt()
            failed = False
            try:
                y, ok = self.run_model(padded, t)
            except Exception as e:
                if not is_oom(e, self.host.oom_exceptions) or not self.shrink():
                    raise
                failed = True  # retry outside the except block so the failed tensors can be freed
            if failed:
                self.host.empty_cache()
                queue.appendleft(t)
                continue
            self.accumulate(acc, y, t)
            del y
            self.done += 1
            self.report.tiles_run += 1
            pending.append((t, ok, self.dtype, self.report.tiles_run))
            if self.dtype != torch.float32:
                self.half_tiles += 1
                if self.half_checked + len(pending) <= PROBE_TILES:
                    self.settle(padded, acc, pending)
            if self.host.progress is not None:
                per_frame = count_tiles(h, w, th, tw, self.overlap())
                self.host.progress(self.done, self.done + len(queue) + frames_left * per_frame)
        self.settle(padded, acc, pending)

    def accumulate(self, acc: Tensor, y: Tensor, t: Tile) -> None:
        """``acc[box] += weight * y``, clipped to the frame (padding dropped)."""
        s = self.scale
        y0, x0 = t.y * s, t.x * s
        rows, cols = min(t.h * s, acc.shape[1] - y0), min(t.w * s, acc.shape[2] - x0)
        weighted = image_output(y, self.plan)[0, :, :rows, :cols].to(acc.device)
        acc[:, y0 : y0 + rows, x0 : x0 + cols] += weighted * (t.wy[:rows, None] * t.wx[None, :cols])
