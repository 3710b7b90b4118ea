"""Every difference between the ComfyUI versions we support, in one place.

Supported: ComfyUI 0.3.64 (the first with the V3 node API) to current (0.33 tested). What moved
in between and is bridged here:

* model patchers: 0.33 has ``CoreModelPatcher`` and its "Upscale Image (using Model)" reads
  ``upscale_model.patcher``; 0.3.64 has only ``ModelPatcher`` and its loader attaches none.
* the IMAGE dtype: ``model_management.intermediate_dtype()`` exists from some version on
  (``--fp16-intermediates``); older hosts use float32.
* ``--force-fp32`` and the out-of-memory exception type are read here too, so the nodes never
  touch ``comfy.cli_args`` or host constants directly.
* 0.3.64's core upscale node moves the model with ``.to()`` behind the model manager's back,
  so a patcher it has registered may say "loaded" for weights that are back on the CPU.
* ``io.Schema(search_aliases=...)`` (extra words the node search matches) is newer than 0.3.64,
  whose ``Schema`` rejects the keyword: :func:`schema_extras` passes it only where it exists.
* 0.3.64 never calls ``ComfyExtension.on_load``; both call ``get_node_list`` once at load, which
  is where the pack registers its ``weights/`` folder.

Nothing else in the pack checks versions or catches ``AttributeError``/``ImportError`` of the host.
"""

from __future__ import annotations

import inspect
import logging

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


def _on_device(module: nn.Module, device: torch.device) -> bool:
    first = next(iter(module.parameters()), None)
    return first is None or first.device == torch.device(device)


def load(patcher, memory_required: int) -> nn.Module:
    """Load ``patcher`` fully onto its load device through ComfyUI's model management.

    ComfyUI evicts what it must to leave ``memory_required`` bytes free besides the weights,
    counts the model while it is resident and may unload it later for another model.
    """
    mm.load_models_gpu([patcher], memory_required=memory_required, force_full_load=True)
    if not _on_device(patcher.model, patcher.load_device):
        # registered as loaded, but someone moved the module away (0.3.64's core node does)
        log.info(
            "[SR Transformers] model was moved off %s outside model management: reloading",
            patcher.load_device,
        )
        unload(patcher)
        mm.load_models_gpu([patcher], memory_required=memory_required, force_full_load=True)
    return patcher.model


def on_unload(patcher, callback) -> None:
    """Call ``callback()`` whenever ComfyUI unloads ``patcher`` (both versions have ON_DETACH)."""
    from comfy.patcher_extension import CallbacksMP

    patcher.add_callback(CallbacksMP.ON_DETACH, lambda *_: callback())


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
