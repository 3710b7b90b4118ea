"""Errors raised while reading and recognising checkpoints.

Every message names the file (or input) and says what to do next.
"""

from __future__ import annotations

from spandrel import UnsupportedModelError


class ModelLoadError(Exception):
    """Base class: a checkpoint could not be turned into a model."""


class CheckpointReadError(ModelLoadError):
    """The file is missing, truncated, corrupt or in a format we do not read."""


class UnsafeCheckpointError(ModelLoadError):
    """The file is a pickle that needs code to load; we never run code from a checkpoint."""


class UnsupportedArchitectureError(ModelLoadError, UnsupportedModelError):
    """The state dict matches no architecture we or spandrel support."""


class ConfigError(ModelLoadError):
    """The weights are recognised but a hyperparameter cannot be worked out from them."""


class UnrunnableConfigError(ConfigError):
    """The weights describe a model no implementation can run (e.g. heads that do not divide the
    width): refused, never handed to spandrel, which would build it and fail at the first call."""


class InputSizeError(ValueError):
    """The input image is smaller than the model can process (tiling pads it for you)."""
