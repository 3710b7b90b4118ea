"""The "Super Resolution Upscale (tiled)" node: a thin adapter from ComfyUI to :func:`..engine.runner.upscale`.

The engine plans the run (:func:`..engine.plan.plan`); the node shows that plan, and ComfyUI's model
management puts the weights on the device with room for one planned tile
(:class:`.residency.ComfyPlacement`), in float32 again if another node converted the shared model
in place (:func:`.residency.restore_float32`). ComfyUI also supplies the devices, the IMAGE dtype, the
out-of-memory exception type, the interrupt check and the progress bar (one step per tile).
"""

from __future__ import annotations

import logging
import time

import comfy.model_management as mm
import comfy.utils
import torch
from comfy_api.latest import io

from ..engine.plan import Plan, plan
from ..engine.precision import PRECISIONS
from ..engine.runner import Host, Settings, upscale
from . import host_compat
from .load_model import file_module
from .residency import ComfyPlacement, restore_float32

log = logging.getLogger(__name__)

DEFAULT_OVERLAP = 32
SEARCH_ALIASES = [
    "upscale",
    "upscale image (tiled)",  # its earlier name
    "upscale image using model",
    "tiled upscale",
    "tile",
    "super resolution",
    "SR",
    "RGT",
    "DRCT",
    "ATD",
    "HAT",
    "DAT",
    "SwinIR",
    "upscale video frames",
    "batch upscale",
]


def comfy_host(device: torch.device, pbar: comfy.utils.ProgressBar) -> Host:
    """The engine's view of ComfyUI."""
    return Host(
        device=device,
        offload_device=mm.unet_offload_device(),
        output_device=mm.intermediate_device(),
        output_dtype=host_compat.intermediate_dtype(),
        free_memory=lambda dev: int(mm.get_free_memory(dev)),
        empty_cache=mm.soft_empty_cache,
        progress=lambda done, total: pbar.update_absolute(done, total),
        check_interrupt=mm.throw_exception_if_processing_interrupted,
        oom_exceptions=host_compat.oom_exceptions(),  # a catch-all Exception only counts when it reads like OOM
        warn=lambda msg: log.warning("[SR Transformers] %s", msg),
        placement=ComfyPlacement,
    )


def summary(r, run_plan: Plan, seconds: float) -> str:
    """One log line: frames, sizes, dtype, tiles, time."""
    dtype = str(r.dtype).removeprefix("torch.")
    backoffs = f" ({r.oom_backoffs} out-of-memory back-offs)" if r.oom_backoffs else ""
    if r.compile.tiles:
        # the first compiled tile of each shape minus a steady one (engine/compiled.py)
        backoffs += f" (torch.compile: about {r.compile_seconds:.1f} s of that; {r.compile.describe()})"
    if r.fp32_from_tile:
        dtype += f" (float32 from tile {r.fp32_from_tile}: NaN/inf in {dtype})"
    elif r.nonfinite_tiles:
        dtype += f" ({r.nonfinite_tiles} tiles redone in float32: NaN/inf)"
    out_h, out_w = run_plan.output_size
    return (
        f"{run_plan.frames} frame(s) -> {out_w}x{out_h} in {dtype}, tiles {r.tile[1]}x{r.tile[0]} "
        f"overlap {r.overlap}: {r.tiles_run} tiles in {seconds:.2f} s{backoffs}"
    )


class UpscaleTiledNode(io.ComfyNode):
    """Upscale an IMAGE batch with any UPSCALE_MODEL, tile by tile."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SRT_UpscaleTiled",
            display_name="Super Resolution Upscale (tiled)",
            category="image/upscaling",
            description=(
                "Upscales images with an upscale model in equal, overlapping tiles blended without seams. "
                "Picks the tile size from free memory (halving it on out-of-memory), runs in bf16/fp16 "
                "where the model allows (a tile that overflows is redone in fp32), processes batches "
                "frame by frame, and can resize the result to another scale and carry a mask (alpha)."
            ),
            inputs=[
                io.UpscaleModel.Input(
                    "upscale_model",
                    tooltip="Model from Super Resolution Model Loader (or Load Upscale Model).",
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
                io.Boolean.Input(
                    "compile",
                    default=False,
                    optional=True,
                    tooltip=(
                        "Compile the model with torch.compile (GPU). The first run per model, tile size and "
                        "precision takes longer (the log says how long); later runs are faster. Falls back "
                        "to the normal path if the model cannot be compiled."
                    ),
                ),
            ],
            outputs=[
                io.Image.Output(
                    tooltip="The upscaled images in [0, 1], in ComfyUI's IMAGE dtype (float32; float16 with --fp16-intermediates)."
                ),
                io.Mask.Output(
                    tooltip=(
                        "The mask input resized to the output (or 1 - alpha of an RGBA image); an empty "
                        "mask when neither was given."
                    ),
                ),
            ],
            **host_compat.schema_extras(search_aliases=SEARCH_ALIASES),
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
        compile: bool = False,
    ) -> io.NodeOutput:
        restored = restore_float32(upscale_model, lambda: file_module(upscale_model))
        if restored:  # another node converted the shared model in place: runs start from float32
            log.warning("[SR Transformers] %s", restored)
        if precision == "auto" and host_compat.force_fp32():
            precision = "fp32"
        device = mm.get_torch_device()
        settings = Settings(
            tile=tile_size,
            overlap=overlap,
            precision=precision,
            output_scale=output_scale or 0.0,
            compile=bool(compile),
        )
        run_plan = plan(upscale_model, image.shape, settings, device)
        log.info("[SR Transformers] plan: %s", run_plan.describe())
        pbar = comfy.utils.ProgressBar(run_plan.total_tiles)
        start = time.perf_counter()
        result = upscale(
            upscale_model, image, settings, comfy_host(device, pbar), mask=mask, run_plan=run_plan
        )
        out_mask = result.mask
        if out_mask is None:
            out_h, out_w = run_plan.output_size
            out_mask = torch.zeros((1, out_h, out_w), dtype=torch.float32, device=mm.intermediate_device())
        log.info("[SR Transformers] %s", summary(result.report, run_plan, time.perf_counter() - start))
        return io.NodeOutput(result.image, out_mask)
