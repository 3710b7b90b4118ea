"""Every difference between the ComfyUI versions we support, in one place.

Supported: ComfyUI 0.3.64 (the first with the V3 node API) to current (0.33 tested on the real
host; the newest core's dynamic VRAM, as its sources read at Comfy-Org/ComfyUI
``comfy/model_patcher.py`` @ 08d0e510f4e5, ``comfy/model_management.py`` @ a7631e351dc2 and
``comfy_extras/nodes_upscale_model.py`` @ 30a74432c780, rebuilt in ``tests/comfy_stub.py``). What
moved in between and is bridged here:

* model patchers: 0.33 has ``CoreModelPatcher`` and its "Upscale Image (using Model)" reads
  ``upscale_model.patcher``; 0.3.64 has only ``ModelPatcher`` and its loader attaches none.
* the IMAGE dtype: ``model_management.intermediate_dtype()`` exists from some version on
  (``--fp16-intermediates``); older hosts use float32.
* ``--force-fp32`` and the out-of-memory exception type are read here too, so the nodes never
  touch ``comfy.cli_args`` or host constants directly.
* 0.3.64's core upscale node moves the model with ``.to()`` behind the model manager's back,
  so a patcher it has registered may say "loaded" for weights that are back on the CPU.
* dynamic VRAM (newest cores, NVIDIA): ``CoreModelPatcher`` is ``ModelPatcherDynamic``. Its load
  replaces parameters and buffers by copies on the GPU and puts the originals back on unload, and
  for modules not built from comfy ops it may leave weights on the offload device even with
  ``force_full_load`` (core's own upscale node then calls ``upscale_model.to(device)``).
  :func:`load` places whatever is still off the device the same way the patcher does (a copy on
  the device, the original kept) and puts the originals back when ComfyUI unloads the model.
* ``io.Schema(search_aliases=...)`` (extra words the node search matches) is newer than 0.3.64,
  whose ``Schema`` rejects the keyword: :func:`schema_extras` passes it only where it exists.
* 0.3.64 never calls ``ComfyExtension.on_load``; both call ``get_node_list`` once at load, which
  is where the pack registers its ``weights/`` folder.

Nothing else in the pack checks versions or catches ``AttributeError``/``ImportError`` of the host.
"""

from __future__ import annotations

import inspect
import logging
import weakref

import comfy.model_management as mm
import comfy.model_patcher
import torch
from torch import nn

log = logging.getLogger(__name__)

REQUIRES_COMFYUI = ">=0.3.64"  # also in pyproject.toml ([tool.comfy] requires-comfyui)

# Bookkeeping a patcher writes on the module it manages: a copy of the module must start fresh.
_PATCHER_STATE = {
    "model_loaded_weight_memory": 0,
    "lowvram_patch_counter": 0,
    "model_lowvram": False,
    "current_weight_patches_uuid": None,
    "model_offload_buffer_memory": 0,
}


def patcher_class() -> type:
    """``CoreModelPatcher`` where the host has it, else ``ModelPatcher``."""
    return getattr(comfy.model_patcher, "CoreModelPatcher", None) or comfy.model_patcher.ModelPatcher


def new_patcher(module: nn.Module):
    """A model patcher around ``module`` with ComfyUI's load and offload devices, as core's loader makes."""
    return patcher_class()(module, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())


def ensure_patcher(desc):
    """``desc.patcher``, attached first when the descriptor has none (0.3.64's core loader)."""
    patcher = getattr(desc, "patcher", None)
    if patcher is None or getattr(patcher, "model", None) is not desc.model:
        patcher = new_patcher(desc.model)
        desc.patcher = patcher
    return patcher


def fresh_copy_state(module: nn.Module, offload_device: torch.device) -> None:
    """Reset the patcher bookkeeping that ``copy.deepcopy`` carried over from a managed module."""
    for name, value in _PATCHER_STATE.items():
        if hasattr(module, name):
            setattr(module, name, value)
    if hasattr(module, "device"):
        module.device = offload_device
    for sub in module.modules():
        if "comfy_patched_weights" in vars(sub):
            del sub.comfy_patched_weights


def _record(patcher):
    """ComfyUI's ``LoadedModel`` entry for ``patcher``, or None when it is not loaded."""
    for loaded in mm.current_loaded_models:
        if loaded.model is patcher:
            return loaded
    return None


def is_loaded(patcher) -> bool:
    return _record(patcher) is not None


def unload(patcher) -> bool:
    """Unload ``patcher`` (weights back to its offload device) if ComfyUI holds it; True if it did."""
    loaded = _record(patcher)
    if loaded is None:
        return False
    loaded.model_unload()
    mm.current_loaded_models.remove(loaded)
    return True


def _tensor_slots(module: nn.Module):
    """``(owner, kind, name, tensor)`` for every parameter and buffer of ``module``."""
    for owner in module.modules():
        for kind, slots in (("_parameters", owner._parameters), ("_buffers", owner._buffers)):
            for name, tensor in slots.items():
                if tensor is not None:
                    yield owner, kind, name, tensor


def off_device(module: nn.Module, device: torch.device) -> list[str]:
    """Names of ``module``'s parameters and buffers that are not on ``device``."""
    device = torch.device(device)
    return [
        f"{type(owner).__name__}.{name}"
        for owner, _, name, tensor in _tensor_slots(module)
        if tensor.device != device and not (device.index is None and tensor.device.type == device.type)
    ]


def is_dynamic(patcher) -> bool:
    """Whether ``patcher`` loads weights the dynamic-VRAM way (newest cores)."""
    check = getattr(patcher, "is_dynamic", None)
    return bool(check()) if callable(check) else False


_placed: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # patcher -> [(owner, kind, name, original)]


def _place_rest(patcher) -> int:
    """Put on the load device what model management left off it; how many tensors that was.

    Each one is replaced by a copy on the device and its original kept, as the dynamic patcher
    does with what it loads; :func:`_put_back` restores them when ComfyUI unloads the model.
    """
    device = torch.device(patcher.load_device)
    placed = _placed.setdefault(patcher, [])
    count = 0
    for owner, kind, name, tensor in list(_tensor_slots(patcher.model)):
        if tensor.device == device or (device.index is None and tensor.device.type == device.type):
            continue
        moved = tensor.detach().to(device)
        getattr(owner, kind)[name] = (
            nn.Parameter(moved, requires_grad=False) if kind == "_parameters" else moved
        )
        placed.append((owner, kind, name, tensor))
        count += 1
    if count and patcher not in _put_back_watch:
        patcher.add_callback(_on_detach(), lambda p, unpatch_all=True, *_: unpatch_all and _put_back(p))
        _put_back_watch.add(patcher)
    return count


_put_back_watch: weakref.WeakSet = weakref.WeakSet()


def _put_back(patcher) -> None:
    """The originals of what :func:`_place_rest` copied to the device, back in the module."""
    for owner, kind, name, original in reversed(_placed.pop(patcher, [])):
        getattr(owner, kind)[name] = original


def load(patcher, memory_required: int) -> nn.Module:
    """Load ``patcher`` fully onto its load device through ComfyUI's model management.

    ComfyUI evicts what it must to leave ``memory_required`` bytes free besides the weights,
    counts the model while it is resident and may unload it later for another model. Every
    parameter and buffer is on the load device when this returns, on every host shape.
    """
    mm.load_models_gpu([patcher], memory_required=memory_required, force_full_load=True)
    if off_device(patcher.model, patcher.load_device) and not is_dynamic(patcher):
        # registered as loaded, but someone moved the module away (0.3.64's core node does)
        log.info(
            "[SR Transformers] model was moved off %s outside model management: reloading",
            patcher.load_device,
        )
        unload(patcher)
        mm.load_models_gpu([patcher], memory_required=memory_required, force_full_load=True)
    if off_device(patcher.model, patcher.load_device):
        # dynamic VRAM leaves weights of modules not built from comfy ops where they were
        placed = _place_rest(patcher)
        log.debug(
            "[SR Transformers] placed %d tensors on %s after load_models_gpu", placed, patcher.load_device
        )
    return patcher.model


def _on_detach() -> str:
    from comfy.patcher_extension import CallbacksMP

    return CallbacksMP.ON_DETACH


def on_unload(patcher, callback) -> None:
    """Call ``callback()`` whenever ComfyUI unloads ``patcher`` (both versions have ON_DETACH)."""
    patcher.add_callback(_on_detach(), lambda *_: callback())


def intermediate_dtype() -> torch.dtype:
    """dtype for IMAGE outputs (float32 on hosts without ``intermediate_dtype``)."""
    get = getattr(mm, "intermediate_dtype", None)
    return get() if get is not None else torch.float32


def oom_exceptions() -> tuple[type[BaseException], ...]:
    return (mm.OOM_EXCEPTION,)


def force_fp32() -> bool:
    """Whether ComfyUI was started with ``--force-fp32``."""
    from comfy.cli_args import args

    return bool(getattr(args, "force_fp32", False))


def schema_extras(search_aliases: list[str]) -> dict:
    """Keyword arguments for ``io.Schema`` that only newer hosts accept (none on 0.3.64)."""
    from comfy_api.latest import io

    accepted = inspect.signature(io.Schema).parameters
    return {"search_aliases": list(search_aliases)} if "search_aliases" in accepted else {}
