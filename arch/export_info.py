"""What an exported ONNX file says about itself: its metadata properties (:mod:`.export`).

Readers (chaiNNer-style loaders, ComfyUI-Upscaler-Tensorrt users, our tests) find the model, its
scale, channels, value range and the sizes the graph takes without running it.
"""

from __future__ import annotations

import os
import re

import torch

from .common.model import SideRange, SRModel

PACK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METADATA_KEYS = (
    "architecture",  # spandrel's architecture id: RGT, DRCT, ATD, HAT, DAT, SwinIR, RGT_nhs2828, ...
    "variant",  # RGT-S, DRCT-L, DAT-2, ...
    "implementation",  # "comfyui-sr-transformers" (ours) or "spandrel"
    "scale",
    "input_channels",
    "output_channels",
    "value_range",  # "0-1": float RGB in [0, 1]; the output is unclamped
    "layout",  # "NCHW, batch 1"
    "shape",  # "fixed" or "dynamic"
    "tile",  # "HxW" the graph was traced at (its only size when fixed)
    "size_multiple",  # height and width of a dynamic graph are multiples of it
    "height_range",  # "min-max" of a dynamic graph ("min-" without an upper limit)
    "width_range",
    "precision",  # fp32 / fp16 / bf16 (the input's and output's dtype too)
    "exporter",  # "comfyui-sr-transformers <version>, torch <version>"
    "pack_version",
)


def pack_version() -> str:
    """This pack's version, from ``pyproject.toml`` (``unknown`` where the file is not there)."""
    try:
        with open(os.path.join(PACK_DIR, "pyproject.toml"), encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return "unknown"
    project = text.split("[project]", 1)[-1].split("\n[", 1)[0]
    match = re.search(r'^version\s*=\s*"([^"]+)"', project, re.MULTILINE)
    return match.group(1) if match else "unknown"


def side_text(bounds: SideRange) -> str:
    """``"min-max"`` of a side range (``"min-"`` without an upper limit)."""
    return f"{bounds[0]}-{'' if bounds[1] is None else bounds[1]}"


def file_metadata(desc, shape, dynamic, multiple, heights, widths, precision) -> dict[str, str]:
    """The metadata properties of an export of ``desc`` (:data:`METADATA_KEYS`, in that order)."""
    info = getattr(desc, "srt_info", None)
    version = pack_version()
    values = {
        "architecture": str(desc.architecture.id),
        "variant": info.variant if info is not None else str(desc.architecture.name),
        "implementation": "comfyui-sr-transformers" if isinstance(desc.model, SRModel) else "spandrel",
        "scale": str(int(desc.scale)),
        "input_channels": str(int(desc.input_channels)),
        "output_channels": str(int(desc.output_channels)),
        "value_range": "0-1",
        "layout": "NCHW, batch 1",
        "shape": "dynamic" if dynamic else "fixed",
        "tile": f"{shape[0]}x{shape[1]}",
        "size_multiple": str(multiple),
        "height_range": side_text(heights),
        "width_range": side_text(widths),
        "precision": precision,
        "exporter": f"comfyui-sr-transformers {version}, torch {torch.__version__}",
        "pack_version": version,
    }
    return {key: values[key] for key in METADATA_KEYS}
