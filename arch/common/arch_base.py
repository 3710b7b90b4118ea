"""Our spandrel ``Architecture`` base: detection that explains itself, one way to load.

Each family subclasses :class:`SRArchitecture` with the keys that identify it, its
``read_config`` (every hyperparameter from tensor shapes, plus traiNNer-redux metadata when
given) and the model class built from that config. ``spandrel.ModelLoader(registry=REGISTRY)``
calls :meth:`~SRArchitecture.load`, our loader :meth:`~SRArchitecture.load_with_config`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from spandrel import Architecture, ImageModelDescriptor, SizeRequirements
from spandrel.util import KeyCondition

from .config import ModelConfig
from .model import SRModel
from .state import missing_keys

ConfigReader = Callable[[Mapping[str, torch.Tensor], Mapping | None], tuple[ModelConfig, dict[str, str]]]


@dataclass
class ModelInfo:
    """What Super Resolution Model Loader shows: what was loaded and which settings were guessed."""

    family: str  # the architecture id: "RGT", "RGT_nhs2828", "DRCT", "ATD"
    variant: str  # "RGT-S", "DRCT-L", "ATD-light", ...
    scale: int
    params: int = 0
    config: ModelConfig | None = None  # the config the model was built from
    inferred: dict = field(default_factory=dict)  # name -> why it was inferred, not read
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        # "RGT-S x4", "ATD (custom) x2": the family only where the variant does not name it
        family = "" if self.variant.startswith(self.family) else f" ({self.family})"
        lines = [f"{self.variant} x{self.scale}{family}, {self.params / 1e6:.2f} M params"]
        if self.inferred:
            lines.append("inferred: " + "; ".join(f"{k} ({v})" for k, v in self.inferred.items()))
        lines += self.notes
        return "\n".join(lines)


class SRArchitecture(Architecture[torch.nn.Module]):
    """A family: detected by required keys (failures name the missing ones), built from its config.

    Subclasses set ``arch_id``, ``required_keys``, ``read_config = staticmethod(...)`` (``(state_dict,
    metadata) -> (config, inferred)``) and ``model_class`` (built as ``model_class(config)``);
    half precision is validated for every family we ship (each family's tests measure it).
    """

    arch_id: str  # spandrel's architecture id
    display_name: str | None = None  # defaults to the id
    required_keys: tuple[str, ...] = ()
    read_config: ConfigReader
    model_class: Callable[[ModelConfig], SRModel]
    supports_half = True
    supports_bfloat16 = True

    def __init__(self) -> None:
        detect = KeyCondition.has_all(*self.required_keys)
        super().__init__(id=self.arch_id, name=self.display_name or self.arch_id, detect=detect)

    def missing(self, state_dict) -> list[str]:
        """Required keys absent from ``state_dict`` (empty when the family is detected)."""
        return missing_keys(state_dict, self.required_keys)

    def size_requirements(self, config: ModelConfig) -> SizeRequirements | None:
        """Input sizes the model accepts (any, by default: the models pad internally)."""
        return None

    def load(self, state_dict) -> ImageModelDescriptor:
        return self.load_with_config(state_dict, None)

    def load_with_config(self, state_dict, metadata: Mapping | None) -> ImageModelDescriptor:
        """The descriptor of our model for ``state_dict`` (strict weight load).

        Args:
            metadata: training hyperparameters (traiNNer-redux safetensors metadata), or None.
        """
        config, inferred = self.read_config(state_dict, metadata)
        model = self.model_class(config)
        info = ModelInfo(
            family=self.id,
            variant=config.variant,
            scale=config.scale,
            config=config,
            inferred=inferred,
            notes=config.notes,
        )
        desc = ImageModelDescriptor(
            model,
            state_dict,
            architecture=self,
            purpose="SR" if config.scale > 1 else "Restoration",
            tags=[info.variant],
            supports_half=self.supports_half,
            supports_bfloat16=self.supports_bfloat16,
            scale=config.scale,
            input_channels=config.in_chans,
            output_channels=config.out_chans,
            size_requirements=self.size_requirements(config),
        )
        info.params = sum(p.numel() for p in model.parameters())
        desc.srt_info = info
        return desc
