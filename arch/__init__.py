"""Our own RGT, DRCT and ATD implementations and their spandrel-compatible detectors.

``REGISTRY`` is a ``spandrel.ArchRegistry`` holding *only* our architectures, so
``spandrel.ModelLoader(registry=REGISTRY).load_from_state_dict(sd)`` returns an
``ImageModelDescriptor`` that wraps our module. spandrel's ``MAIN_REGISTRY`` is never touched;
:func:`load_model` falls back to it for every other architecture.
"""

from __future__ import annotations

from spandrel import ArchRegistry, ArchSupport

from .atd import ATDArch
from .common.arch_base import ModelInfo, SRArchitecture
from .drct import DRCTArch
from .rgt import RGTArch
from .rgt_nhs2828 import NHS2828RGTArch

OUR_ARCHITECTURES: tuple[SRArchitecture, ...] = (RGTArch(), NHS2828RGTArch(), DRCTArch(), ATDArch())

REGISTRY = ArchRegistry()
REGISTRY.add(*(ArchSupport.from_architecture(a) for a in OUR_ARCHITECTURES))

from .loader import load_model, load_state_dict, read_checkpoint  # noqa: E402

__all__ = [
    "OUR_ARCHITECTURES",
    "REGISTRY",
    "ModelInfo",
    "SRArchitecture",
    "load_model",
    "load_state_dict",
    "read_checkpoint",
]
