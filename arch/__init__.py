"""Our own RGT, DRCT, ATD, HAT, DAT and SwinIR implementations and their spandrel-compatible detectors.

``REGISTRY`` (:mod:`.registry`) is a ``spandrel.ArchRegistry`` holding *only* our architectures;
:func:`load_model` (:mod:`.loader`) reads a checkpoint file safely and tries ours first, then
spandrel's ``MAIN_REGISTRY`` for every other architecture; :func:`export_onnx` (:mod:`.export`)
writes a loaded model as an ONNX file (needs ``requirements-export.txt``).
"""

from __future__ import annotations

from .common.arch_base import ModelInfo, SRArchitecture
from .export import ExportError, export_onnx
from .loader import load_model, load_state_dict, read_checkpoint
from .registry import OUR_ARCHITECTURES, REGISTRY

__all__ = [
    "OUR_ARCHITECTURES",
    "REGISTRY",
    "ExportError",
    "ModelInfo",
    "SRArchitecture",
    "export_onnx",
    "load_model",
    "load_state_dict",
    "read_checkpoint",
]
