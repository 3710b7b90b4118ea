"""The model's weights on the GPU, owned by ComfyUI's model management.

What is resident, and when it leaves:

* float32 runs use the descriptor's own module through ``descriptor.patcher`` -- the same patcher
  core's "Upscale Image (using Model)" loads, so the two nodes share one resident copy.
* bf16/fp16 runs use a converted copy of the module (made once per descriptor and dtype, from the
  float32 weights, which are never rounded), with a patcher of its own. The copy lives on the
  offload device (CPU RAM) while it is not loaded.
* Only one of a descriptor's copies is on the GPU at a time: loading one unloads the others.
* After a run the model stays loaded and registered, as core's node leaves it. ComfyUI counts it
  and unloads it (weights back to RAM) when another model needs the room, or on "Free model and
  node cache". Geometry caches (masks, position biases) are emptied after every run and whenever
  ComfyUI unloads the model, so no memory ComfyUI does not know about stays behind.
* The descriptor is shared with every node it is connected to, and some convert its module in
  place (KJNodes' "Upscale Image (using Model) Batched" with fp16/bf16 leaves the weights in
  half precision, moved back to the CPU). :func:`restore_float32` undoes that before a run: the
  weights are read again from their file when it is known, else converted back to float32. (On
  a dynamic-VRAM core such a node converts the patcher's copies on the GPU; unloading puts the
  float32 originals back.)
"""

from __future__ import annotations

import copy
import itertools
import threading
import weakref
from collections.abc import Callable

import torch
from torch import nn

from ..engine.placement import release_caches
from ..engine.tile_run import model_name
from . import host_compat

_copies: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # descriptor -> {dtype: patcher}
_watched: weakref.WeakSet = weakref.WeakSet()  # patchers whose unload empties the model's caches
_lock = threading.Lock()


def converted_copy(module: nn.Module, dtype: torch.dtype, device: torch.device) -> nn.Module:
    """A copy of ``module`` on ``device`` with its floating-point tensors in ``dtype``.

    Tensors are converted one by one while copying, so memory peaks at the original plus the copy.
    """
    memo: dict[int, object] = {}
    for mod in module.modules():
        for p in mod._parameters.values():
            if p is not None and id(p) not in memo:
                data = p.detach().to(device, dtype if p.is_floating_point() else p.dtype)
                memo[id(p)] = nn.Parameter(data, requires_grad=False)
        for b in mod._buffers.values():
            if b is not None and id(b) not in memo:
                memo[id(b)] = b.to(device, dtype if b.is_floating_point() else b.dtype)
    clone = copy.deepcopy(module, memo)
    host_compat.fresh_copy_state(clone, device)
    return clone.eval()


def _watched_patcher(patcher):
    if patcher not in _watched:
        module = weakref.ref(patcher.model)
        host_compat.on_unload(patcher, lambda: module() is not None and release_caches(module()))
        _watched.add(patcher)
    return patcher


def attach_patcher(desc):
    """``desc.patcher`` (made when missing), whose unloading also empties the model's caches."""
    with _lock:
        return _watched_patcher(host_compat.ensure_patcher(desc))


def patcher_for(desc, dtype: torch.dtype):
    """The patcher holding ``desc``'s weights in ``dtype`` (fp32: ``desc.patcher`` itself)."""
    fp32 = attach_patcher(desc)
    if dtype == torch.float32:
        return fp32
    with _lock:
        copies = _copies.setdefault(desc, {})
        if dtype not in copies:
            host_compat.unload(fp32)  # copy from the weights in RAM, with no patcher state in flight
            module = converted_copy(desc.model, dtype, fp32.offload_device)
            copies[dtype] = _watched_patcher(host_compat.new_patcher(module))
        return copies[dtype]


def rounded_dtypes(module: nn.Module) -> list[torch.dtype]:
    """The floating dtypes other than float32 among ``module``'s parameters and buffers.

    Loaders build every module in float32; anything else means a node converted the shared
    module in place (its float32 weights are gone).
    """
    tensors = itertools.chain(module.parameters(), module.buffers())
    return sorted({t.dtype for t in tensors if t.is_floating_point() and t.dtype != torch.float32}, key=str)


def restore_float32(desc, file_module: Callable[[], nn.Module | None]) -> str | None:
    """Give ``desc`` float32 weights again if another node converted them; what was done, or None.

    Every patcher of ``desc`` is unloaded and its half copies dropped (they may have been made
    from the rounded weights). Then every parameter and buffer is converted to float32 and, when
    ``file_module()`` returns the module read again from the descriptor's file, overwritten with
    its exact values; otherwise the weights keep the rounding they received.
    """
    with _lock:
        rounded = rounded_dtypes(desc.model)
        if not rounded:
            return None
        for patcher in [getattr(desc, "patcher", None), *_copies.pop(desc, {}).values()]:
            if patcher is not None:
                host_compat.unload(patcher)
        kept = not rounded_dtypes(desc.model)  # a dynamic-VRAM patcher converted copies, not the originals
        fresh = None if kept else file_module()
        if not kept:
            desc.model.to(torch.float32)
        if fresh is not None:
            source = dict(itertools.chain(fresh.named_parameters(), fresh.named_buffers()))
            with torch.no_grad():
                for name, tensor in itertools.chain(
                    desc.model.named_parameters(), desc.model.named_buffers()
                ):
                    tensor.copy_(source[name])
        release_caches(desc.model)
    found = ", ".join(str(d).removeprefix("torch.") for d in rounded)
    what = (
        f"{model_name(desc)}: its weights were {found}, not float32 (another node converted the "
        "shared model in place)"
    )
    if kept:
        return f"{what}: model management kept the float32 weights and put them back when it unloaded them"
    if fresh is not None:
        return f"{what}: float32 weights read again from its file"
    return (
        f"{what}: converted back to float32, with the rounding they received; load the model again "
        "(Free model and node cache) for its exact weights"
    )


def resident_patchers(desc) -> list:
    """``desc``'s patchers that ComfyUI currently holds loaded."""
    candidates = [getattr(desc, "patcher", None), *_copies.get(desc, {}).values()]
    return [p for p in candidates if p is not None and host_compat.is_loaded(p)]


class ComfyPlacement:
    """:class:`..engine.placement.Placement` through ComfyUI's model management.

    Args:
        desc: the descriptor being run.
        memory_required: device bytes one tile needs besides the weights (from the engine's plan).
    """

    def __init__(self, desc, memory_required: int) -> None:
        self.desc = desc
        self.memory_required = int(memory_required)
        self._current = None

    def module(self, dtype: torch.dtype) -> nn.Module:
        patcher = patcher_for(self.desc, dtype)
        for other in resident_patchers(self.desc):
            if other is not patcher:
                host_compat.unload(other)  # never two copies of the weights on the device
        self._current = patcher
        return host_compat.load(patcher, self.memory_required)

    def done(self) -> None:
        """The model stays loaded (ComfyUI unloads it when it needs the room); caches go."""
        if self._current is not None:
            release_caches(self._current.model)
