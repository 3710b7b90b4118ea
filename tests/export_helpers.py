"""Helpers the export tests share: tiny models of every family as loaded descriptors, and their
exports done once per process."""

from __future__ import annotations

import torch
from model_helpers import official_init
from spandrel import ImageModelDescriptor
from tiny_models import TINY

from srt.arch.common.arch_base import ModelInfo
from srt.arch.registry import REGISTRY


def tiny_descriptor(name: str, seed: int = 0) -> ImageModelDescriptor:
    """A tiny model of family ``name`` (:data:`tiny_models.TINY`, the official initialisation,
    seeded) as the loader's descriptor of it: every geometry kind, exported in seconds."""
    model = TINY[name]().eval()
    official_init(model, seed)
    arch = REGISTRY.get(name).architecture
    config = model.config
    desc = ImageModelDescriptor(
        model,
        model.state_dict(),
        architecture=arch,
        purpose="SR",
        tags=[config.variant],
        supports_half=arch.supports_half,
        supports_bfloat16=arch.supports_bfloat16,
        scale=config.scale,
        input_channels=config.in_chans,
        output_channels=config.out_chans,
    )
    desc.srt_info = ModelInfo(family=arch.id, variant=config.variant, scale=config.scale, config=config)
    return desc


def run_torch(desc, x: torch.Tensor) -> torch.Tensor:
    """The descriptor's model on ``x`` as the engine calls it (float32 result)."""
    with torch.inference_mode():
        return desc.model(x).float()


# (family, kind) jobs of the export tests: kind is "fixed" (fp32), "dynamic" (fp32), "fp16" or "bf16"
# (fixed); tiles in windows of the family's size multiple
FIXED_WINDOWS = 4
DYNAMIC_WINDOWS = 6


def export_job(job: tuple[str, str, str]) -> dict:
    """Export one tiny family model (run in a worker process): ``(name, kind, path)`` -> the
    :class:`~srt.arch.export.ExportResult`'s fields, or ``{"error": ...}`` (that family's tests fail)."""
    import dataclasses
    import traceback

    from srt.arch.export import export_onnx

    name, kind, path = job
    torch.set_num_threads(1)  # two workers share the cores
    try:
        desc = tiny_descriptor(name)
        multiple = desc.model.preferred_tile_multiple()
        dynamic = kind == "dynamic"
        tile = multiple * (DYNAMIC_WINDOWS if dynamic else FIXED_WINDOWS)
        precision = kind if kind in ("fp16", "bf16") else "fp32"
        result = export_onnx(desc, path, tile=tile, dynamic=dynamic, precision=precision)
        return dataclasses.asdict(result)
    except Exception as e:  # reported by the test of this family
        return {"error": f"{type(e).__name__}: {e}\n{traceback.format_exc()[-3000:]}"}
