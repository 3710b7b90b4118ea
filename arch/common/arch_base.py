"""Our spandrel ``Architecture`` base: detection that explains itself, config from metadata.

Each family subclasses :class:`SRArchitecture`, lists the keys that identify it, and implements
:meth:`build` which reads every hyperparameter from tensor shapes (and from traiNNer-redux
metadata when given). ``spandrel.ModelLoader(registry=REGISTRY)`` calls :meth:`load`, our loader
calls :meth:`load_with_config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from spandrel import Architecture, ImageModelDescriptor, SizeRequirements
from spandrel.util import KeyCondition

from .state import missing_keys


@dataclass
class ModelInfo:
    """What Load SR Model shows: what was loaded and which settings were guessed."""

    family: str  # "RGT", "DRCT", "ATD"
    variant: str  # "RGT-S", "DRCT-L", "ATD-light", ...
    scale: int
    params: int = 0
    config: dict = field(default_factory=dict)  # constructor hyperparameters used
    inferred: dict = field(default_factory=dict)  # name -> why it was inferred, not read
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{self.variant} x{self.scale} ({self.family}), {self.params / 1e6:.2f} M params"]
        if self.inferred:
            lines.append("inferred: " + "; ".join(f"{k} ({v})" for k, v in self.inferred.items()))
        lines += self.notes
        return "\n".join(lines)


class SRArchitecture(Architecture[torch.nn.Module]):
    """A family detected by required keys; failures can name the keys that are missing."""

    required_keys: tuple[str, ...] = ()

    def __init__(self, id: str, name: str | None = None) -> None:
        super().__init__(id=id, name=name or id, detect=KeyCondition.has_all(*self.required_keys))

    def missing(self, state_dict) -> list[str]:
        """Required keys absent from ``state_dict`` (empty when the family is detected)."""
        return missing_keys(state_dict, self.required_keys)

    def load(self, state_dict) -> ImageModelDescriptor:
        return self.load_with_config(state_dict, None)

    def load_with_config(self, state_dict, config: dict | None) -> ImageModelDescriptor:
        """Build the model from ``state_dict``; ``config`` holds training hyperparameters if known."""
        raise NotImplementedError

    def describe(
        self,
        model: torch.nn.Module,
        state_dict,
        info: ModelInfo,
        *,
        supports_half: bool,
        supports_bfloat16: bool,
        in_ch: int = 3,
        out_ch: int = 3,
        size_requirements: SizeRequirements | None = None,
    ) -> ImageModelDescriptor:
        """Wrap ``model`` (strict weight load) and attach ``info`` as ``descriptor.srt_info``."""
        desc = ImageModelDescriptor(
            model,
            state_dict,
            architecture=self,
            purpose="SR" if info.scale > 1 else "Restoration",
            tags=[info.variant],
            supports_half=supports_half,
            supports_bfloat16=supports_bfloat16,
            scale=info.scale,
            input_channels=in_ch,
            output_channels=out_ch,
            size_requirements=size_requirements,
        )
        info.params = sum(p.numel() for p in model.parameters())
        desc.srt_info = info
        return desc
