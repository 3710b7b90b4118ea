"""The "Upscale Image (tiled)" node: a thin adapter from ComfyUI to :func:`..engine.runner.upscale`.

ComfyUI supplies the devices (``comfy.model_management``), frees memory before the run, the
out-of-memory exception type, the interrupt check, and the progress bar (one step per tile).
"""

from __future__ import annotations

import logging
import time

import comfy.model_management as mm
import comfy.utils
import torch
from comfy_api.latest import io

from ..engine.memory import model_bytes, tile_bytes
from ..engine.precision import PRECISIONS, choose_precision
from ..engine.runner import Host, Settings, output_size, upscale
from ..engine.tiling import SizeRule, count_tiles, tile_shape

log = logging.getLogger(__name__)

DEFAULT_OVERLAP = 32
PLANNING_TILE = 512  # memory freed up front when the tile size is automatic


def _force_fp32() -> bool:
    try:
        from comfy.cli_args import args
    except ImportError:
        return False
    return bool(getattr(args, "force_fp32", False))


def _host(device: torch.device, pbar: comfy.utils.ProgressBar) -> Host:
    return Host(
        device=device,
        offload_device=mm.unet_offload_device(),
        output_device=mm.intermediate_device(),
        free_memory=lambda dev: int(mm.get_free_memory(dev)),
        empty_cache=mm.soft_empty_cache,
        progress=lambda done, total: pbar.update_absolute(done, total),
        check_interrupt=mm.throw_exception_if_processing_interrupted,
        oom_exceptions=(mm.OOM_EXCEPTION,),  # a catch-all Exception only counts when it reads like OOM
        warn=lambda msg: log.warning("[SR Transformers] %s", msg),
    )


def _summary(r, shape, out: tuple[int, int], seconds: float) -> str:
    """One log line: frames, sizes, dtype, tiles, time."""
    b, h, w, _ = shape
    dtype = str(r.dtype).removeprefix("torch.")
    backoffs = f" ({r.oom_backoffs} out-of-memory back-offs)" if r.oom_backoffs else ""
    if r.fp32_from_tile:
        dtype += f" (float32 from tile {r.fp32_from_tile}: NaN/inf in {dtype})"
    elif r.nonfinite_tiles:
        dtype += f" ({r.nonfinite_tiles} tiles redone in float32: NaN/inf)"
    return (
        f"{b} frame(s) {w}x{h} -> {out[1]}x{out[0]} in {dtype}, tiles {r.tile[1]}x{r.tile[0]} "
        f"overlap {r.overlap}: {r.tiles_run} tiles in {seconds:.2f} s{backoffs}"
    )


class UpscaleTiledNode(io.ComfyNode):
    """Upscale an IMAGE batch with any UPSCALE_MODEL, tile by tile."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SRT_UpscaleTiled",
            display_name="Upscale Image (tiled)",
            category="image/upscaling",
            description=(
                "Upscales images with an upscale model in equal, overlapping tiles blended without seams. "
                "Picks the tile size from free memory (halving it on out-of-memory), runs in bf16/fp16 "
                "where the model allows (a tile that overflows is redone in fp32), processes batches "
                "frame by frame, and can resize the result to another scale and carry a mask (alpha)."
            ),
            inputs=[
                io.UpscaleModel.Input(
                    "upscale_model", tooltip="Model from Load SR Model (or Load Upscale Model)."
                ),
                io.Image.Input(
                    "image", tooltip="Images to upscale; a batch (video frames) runs frame by frame."
                ),
                io.Int.Input(
                    "tile_size",
                    default=0,
                    min=0,
                    max=4096,
                    step=8,
                    tooltip=(
                        "Tile side in input pixels; 0 = automatic from free memory (aligned to the model's "
                        "window). A size you enter is rounded down to what the model requires (DRCT: a "
                        "multiple of 16)."
                    ),
                ),
                io.Int.Input(
                    "overlap",
                    default=DEFAULT_OVERLAP,
                    min=0,
                    max=512,
                    step=4,
                    tooltip=(
                        "Minimum overlap between neighbouring tiles in input pixels (at most half a tile). "
                        "Larger hides seams better and costs more time."
                    ),
                ),
                io.Combo.Input(
                    "precision",
                    options=list(PRECISIONS),
                    default="auto",
                    tooltip=(
                        "auto: bf16 on GPUs with native bf16 (when the model allows it), else fp16 where the "
                        "model allows it, else fp32; always fp32 on CPU or with --force-fp32. Half-precision "
                        "tiles that come out NaN/inf are redone in fp32."
                    ),
                ),
                io.Float.Input(
                    "output_scale",
                    default=0.0,
                    min=0.0,
                    max=16.0,
                    step=0.05,
                    optional=True,
                    tooltip=(
                        "Final scale relative to the input; 0 = the model's own scale. Other values resize "
                        "the model's output with an antialiased bicubic filter."
                    ),
                ),
                io.Mask.Input(
                    "mask",
                    optional=True,
                    tooltip="Optional mask (e.g. the MASK output of Load Image), resized to the output size.",
                ),
            ],
            outputs=[
                io.Image.Output(tooltip="The upscaled images, float32 in [0, 1]."),
                io.Mask.Output(
                    tooltip=(
                        "The mask input resized to the output (or 1 - alpha of an RGBA image); an empty "
                        "mask when neither was given."
                    ),
                ),
            ],
        )

    @classmethod
    def execute(
        cls,
        upscale_model,
        image: torch.Tensor,
        tile_size: int,
        overlap: int,
        precision: str,
        output_scale: float = 0.0,
        mask: torch.Tensor | None = None,
    ) -> io.NodeOutput:
        if precision == "auto" and _force_fp32():
            precision = "fp32"
        device = mm.get_torch_device()
        settings = Settings(
            tile=tile_size, overlap=overlap, precision=precision, output_scale=output_scale or 0.0
        )
        b, h, w, _ = image.shape

        # free device memory for the weights and one tile before starting
        choice = choose_precision(
            precision, device, upscale_model.supports_half, upscale_model.supports_bfloat16
        )
        rule = SizeRule.of(upscale_model.size_requirements)
        th, tw = tile_shape(h, w, tile_size or PLANNING_TILE, rule)
        required = model_bytes(upscale_model.model, choice.dtype) + tile_bytes(
            upscale_model, th, tw, choice.dtype
        )
        mm.free_memory(required, device)

        pbar = comfy.utils.ProgressBar(b * count_tiles(max(h, th), max(w, tw), th, tw, min(overlap, th // 2)))
        start = time.perf_counter()
        result = upscale(upscale_model, image, settings, _host(device, pbar), mask=mask)
        out_h, out_w = output_size(h, w, int(upscale_model.scale), settings.output_scale)
        out_mask = result.mask
        if out_mask is None:
            out_mask = torch.zeros((1, out_h, out_w), dtype=torch.float32, device=mm.intermediate_device())
        log.info(
            "[SR Transformers] %s",
            _summary(result.report, image.shape, (out_h, out_w), time.perf_counter() - start),
        )
        return io.NodeOutput(result.image, out_mask)
