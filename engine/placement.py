"""Where the model's weights live during a run, and how a tile calls it.

The engine never moves weights itself in a host that manages memory (ComfyUI): it asks a
:class:`Placement` for the module in a dtype, resident on the compute device. Outside such a host
(tests, the command line) :class:`LocalPlacement` does it: the module is converted from its
original, unrounded tensors to ``(device, dtype)`` and put back afterwards.

Contract of a placement: ``module(dtype)`` returns a module whose weights are on the compute
device in ``dtype`` and whose fp32 originals were never rounded; at most one converted copy is on
the device at a time; ``done()`` is called once when the run ends (normally or not).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor, nn


class Placement(Protocol):
    """The model on the compute device, in the dtype a run asks for."""

    def module(self, dtype: torch.dtype) -> nn.Module: ...

    def done(self) -> None: ...


PlacementFactory = Callable[..., Placement]  # (descriptor, memory_required: int) -> Placement


def release_caches(module: nn.Module) -> None:
    """Empty the module's geometry caches (masks, biases) so they do not pin device memory.

    Our architectures expose ``release_caches()``; other modules have nothing to release.
    """
    release = getattr(module, "release_caches", None)
    if callable(release):
        release()


def model_call(desc) -> Callable[[nn.Module, Tensor], Tensor]:
    """``(module, x) -> raw output`` for descriptor ``desc``, applied to any copy of its module.

    spandrel's ``descriptor(x)`` clamps the output (hiding inf) and always calls
    ``descriptor.model``; some of its architectures need a custom call (e.g. take ``output[0]``).
    spandrel keeps that call in ``_call_fn`` and offers no public accessor, so this is the one
    place that reads it. Our own descriptors use the plain ``module(x)``.
    """
    call = getattr(desc, "_call_fn", None)
    if call is None:
        return lambda module, x: module(x)
    return call


def _snapshot(module: nn.Module) -> list[tuple[nn.Module, str, bool, Tensor]]:
    """References to every parameter's data and every buffer (no copies)."""
    items = []
    for mod in module.modules():
        for name, p in mod._parameters.items():
            if p is not None:
                items.append((mod, name, True, p.data))
        for name, b in mod._buffers.items():
            if b is not None:
                items.append((mod, name, False, b))
    return items


class LocalPlacement:
    """Converts the module in place from its original tensors; :meth:`done` puts them back.

    For hosts without their own model management. Converting fp32 weights to bf16 and back would
    round them, and the loader caches the model for later runs in other precisions, so every
    conversion starts from the originals.

    Args:
        module: the model (``descriptor.model``).
        device: compute device.
        offload_device: where the model goes afterwards.
    """

    def __init__(self, module: nn.Module, device: torch.device, offload_device) -> None:
        self._module = module
        self.device = torch.device(device)
        self.offload_device = torch.device(offload_device)
        self._originals = _snapshot(module)
        self.dtype: torch.dtype | None = None

    def _restore(self) -> None:
        for mod, name, is_param, tensor in self._originals:
            if is_param:
                mod._parameters[name].data = tensor
            else:
                mod._buffers[name] = tensor

    def module(self, dtype: torch.dtype) -> nn.Module:
        """The module on the device in ``dtype`` (floating tensors only), converted from the originals."""
        if dtype != self.dtype:
            self.dtype = None
            self._restore()
            self._module.to(device=self.device, dtype=dtype)
            self.dtype = dtype
        return self._module

    def done(self) -> None:
        """Original tensors back, moved to the offload device; per-device caches dropped."""
        self._restore()
        self.dtype = None
        self._module.to(self.offload_device)
        if self.device != self.offload_device:
            release_caches(self._module)
