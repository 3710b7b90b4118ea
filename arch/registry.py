"""The registry of our architectures: ``REGISTRY`` for spandrel, ``OUR_ARCHITECTURES`` for us.

``REGISTRY`` is a ``spandrel.ArchRegistry`` holding *only* our architectures, so
``spandrel.ModelLoader(registry=REGISTRY).load_from_state_dict(sd)`` returns an
``ImageModelDescriptor`` that wraps our module. spandrel's ``MAIN_REGISTRY`` is never touched
(registering ours there raises ``DuplicateArchitectureError``); the loader falls back to it.
"""

from __future__ import annotations

from spandrel import ArchRegistry, ArchSupport

from .atd import ATDArch
from .common.arch_base import SRArchitecture
from .dat import DATArch
from .drct import DRCTArch
from .hat import HATArch
from .rgt import RGTArch
from .rgt_nhs2828 import NHS2828RGTArch
from .swinir import SwinIRArch

OUR_ARCHITECTURES: tuple[SRArchitecture, ...] = (
    RGTArch(),
    NHS2828RGTArch(),
    DRCTArch(),
    ATDArch(),
    HATArch(),
    SwinIRArch(),
    DATArch(),
)

REGISTRY = ArchRegistry()
REGISTRY.add(*(ArchSupport.from_architecture(a) for a in OUR_ARCHITECTURES))


def closest_family(state_dict) -> str:
    """Which of ours ``state_dict`` comes closest to, and the keys it lacks (for error messages)."""
    best = min(OUR_ARCHITECTURES, key=lambda a: len(a.missing(state_dict)) / max(1, len(a.required_keys)))
    miss = best.missing(state_dict)
    shown = ", ".join(miss[:6]) + (f" and {len(miss) - 6} more" if len(miss) > 6 else "")
    return f"closest of ours: {best.name} (missing keys: {shown})"
