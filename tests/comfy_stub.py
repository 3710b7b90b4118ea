"""A stand-in for the few ComfyUI modules the nodes import, so node logic runs in CI without ComfyUI.

It models what the nodes rely on, as both supported hosts do it (checked against the real
0.3.64 and 0.33 sources; ``tests/host/check_host.py`` runs the real thing):

* ``comfy.model_management``: ``current_loaded_models`` of records holding a patcher;
  ``load_models_gpu`` loads a patcher that is not registered yet (moves its module to the load
  device) and registers it, and leaves a registered one alone -- even if its module was moved
  away, as the real one does; ``free_memory`` unloads registered models (ON_DETACH callbacks,
  module back to the offload device). Every call is recorded in ``calls``.
* ``comfy.model_patcher``: ``ModelPatcher`` (both hosts) and ``CoreModelPatcher`` (0.33 on).
* ``"newest"``: the dynamic-VRAM core, rebuilt from the newest sources we could read
  (Comfy-Org/ComfyUI ``comfy/model_patcher.py`` @ 08d0e510f4e5, ``comfy/model_management.py`` @
  a7631e351dc2, ``comfy_extras/nodes_upscale_model.py`` @ 30a74432c780): ``CoreModelPatcher`` is
  :class:`DynamicPatcher`, and ``load_models_gpu`` loads a registered model again on every call.
* ``comfy_api.latest``: ``io``/``ui`` as plain records of what the schema declares;
  ``io.Schema`` takes ``search_aliases`` on 0.33 only.
* ``folder_paths``: model folders in a temporary directory; ``install(..., extra_paths=...)``
  adds folders as ``extra_model_paths.yaml`` does before custom nodes load.

``install(version)`` puts the modules into ``sys.modules``; ``version`` is ``"0.3.64"`` (no
``CoreModelPatcher``, no ``intermediate_dtype``), ``"0.33"`` or ``"newest"``. ``install(...,
device=torch.device("meta"))`` makes the stand-in GPU a device of its own, so a test can see where
every weight is (nothing runs there).
"""

from __future__ import annotations

import functools
import os
import sys
import types

import torch
from torch import nn

CPU = torch.device("cpu")


class Record:
    """Any schema object: remembers its arguments."""

    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return Record


@functools.cache
def _io_type(name: str) -> types.SimpleNamespace:
    """``io.<name>`` (Image, Int, Combo, ...): its ``Input``/``Output`` records know ``io_type``."""
    record = type(f"{name}Record", (Record,), {"io_type": name})
    return types.SimpleNamespace(Input=record, Output=record)


class NodeOutput:
    def __init__(self, *result, ui=None) -> None:
        self.result, self.ui = result, ui


class Schema(Record):
    """0.33's schema: ``search_aliases`` among its fields."""

    def __init__(self, *args, search_aliases=None, **kwargs) -> None:
        super().__init__(*args, search_aliases=search_aliases, **kwargs)


class OldSchema(Record):
    """0.3.64's schema: no ``search_aliases`` (a TypeError, as its dataclass raises)."""

    def __init__(self, *args, **kwargs) -> None:
        if "search_aliases" in kwargs:
            raise TypeError("Schema.__init__() got an unexpected keyword argument 'search_aliases'")
        super().__init__(*args, **kwargs)


def _io_module(new: bool) -> types.ModuleType:
    io = types.ModuleType("comfy_api.latest.io")
    io.ComfyNode = type("ComfyNode", (), {})
    io.Schema = Schema if new else OldSchema
    io.NodeOutput = NodeOutput
    io.FolderType = types.SimpleNamespace(temp="temp", output="output")
    io.__getattr__ = _io_type  # Image, Int, Combo, UpscaleModel, ...
    return io


class ModelPatcher:
    def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False) -> None:
        self.model, self.load_device, self.offload_device = model, load_device, offload_device
        self.callbacks: dict[str, list] = {}

    def add_callback(self, call_type: str, callback) -> None:
        self.callbacks.setdefault(call_type, []).append(callback)

    def detach(self, unpatch_all: bool = True):
        self.model.to(self.offload_device)
        for callback in self.callbacks.get("on_detach_after", []):
            callback(self, unpatch_all)
        return self.model


class DynamicPatcher(ModelPatcher):
    """The newest core's ``ModelPatcherDynamic`` (dynamic VRAM), for a module not built from comfy ops.

    What it does to such a module, as ``model_patcher.py`` @ 08d0e510f4e5 does:

    * load (``partially_load``, on every ``load_models_gpu``): puts its backups back first; then a
      parameter of a module without parameterised children is *replaced* by a copy on the load
      device (the original kept as a backup); a parameter of a module with such children is moved
      in place (``param.data``, never put back); every buffer is replaced by a moved copy.
    * unload (``detach``, ``partially_unload``): the backups go back -- the original tensors, on the
      offload device; ON_DETACH callbacks after.
    * ``leaves_weights=True``: what ``nodes_upscale_model.py`` @ 30a74432c780 says of spandrel
      models ("leaves its parameters on the offload device even with force_full_load=True",
      hence its ``upscale_model.to(device)``): the load moves nothing.

    The real class reroutes a CPU load device to ``ModelPatcher``; this one stays dynamic so the CPU
    runs its path.
    """

    leaves_weights = False

    def __init__(
        self, model, load_device, offload_device, size=0, weight_inplace_update=False, fast_disk=False
    ):
        super().__init__(model, load_device, offload_device, size, weight_inplace_update)
        self.fast_disk = fast_disk
        self.backup: dict[str, tuple[nn.Module, str, torch.Tensor]] = {}
        self.backup_buffers: dict[str, tuple[nn.Module, str, torch.Tensor]] = {}
        self.loads = 0

    def is_dynamic(self) -> bool:
        return True

    def restore_loaded_backups(self) -> None:
        for m, name, original in self.backup.values():
            m._parameters[name] = original
        for m, name, original in self.backup_buffers.values():
            m._buffers[name] = original
        self.backup.clear()
        self.backup_buffers.clear()

    def partially_load(self, device_to, extra_memory=0, force_patch_weights=False):
        self.loads += 1
        self.restore_loaded_backups()
        if not self.leaves_weights:
            for prefix, m in self.model.named_modules():
                direct = dict(m.named_parameters(recurse=False))
                if any(n not in direct for n, _ in m.named_parameters()):  # "default" weights
                    for name, p in direct.items():  # real: p.data = ...; meta cannot take .data from CPU
                        m._parameters[name] = nn.Parameter(p.data.to(device_to), requires_grad=False)
                    continue
                for name, p in direct.items():
                    self.backup[f"{prefix}.{name}"] = (m, name, p)
                    m._parameters[name] = nn.Parameter(p.to(device_to), requires_grad=False)
            for prefix, m in self.model.named_modules():
                for name, b in list(m._buffers.items()):
                    if b is not None:
                        self.backup_buffers[f"{prefix}.{name}"] = (m, name, b)
                        m._buffers[name] = b.to(device_to)
        self.model.device = device_to
        return None

    def partially_unload(self, device_to, memory_to_free=0, force_patch_weights=False):
        self.restore_loaded_backups()

    def detach(self, unpatch_all: bool = True):
        if unpatch_all:
            self.restore_loaded_backups()
        for callback in self.callbacks.get("on_detach_after", []):
            callback(self, unpatch_all)
        return self.model


class LoadedModel:
    def __init__(self, patcher) -> None:
        self.model = patcher

    def model_unload(self, memory_to_free=None, unpatch_weights=True) -> bool:
        self.model.detach(unpatch_weights)
        return True


class ModelManagement(types.ModuleType):
    """``comfy.model_management`` on one device (the CPU stands for the GPU)."""

    OOM_EXCEPTION = torch.cuda.OutOfMemoryError

    def __init__(
        self, intermediate: torch.dtype | None, device: torch.device = CPU, newest: bool = False
    ) -> None:
        super().__init__("comfy.model_management")
        self.device, self.newest = device, newest
        self.current_loaded_models: list[LoadedModel] = []
        self.calls: list[tuple] = []
        self.interrupted = False
        if intermediate is not None:
            self.intermediate_dtype = lambda: intermediate

    def get_torch_device(self):
        return self.device

    def unet_offload_device(self):
        return CPU

    intermediate_device = unet_offload_device

    def get_free_memory(self, dev=None, torch_free_too=False):
        return 8 * 2**30

    def soft_empty_cache(self, force=False):
        pass

    def throw_exception_if_processing_interrupted(self):
        if self.interrupted:
            self.interrupted = False
            raise InterruptedError("Processing interrupted")

    def load_models_gpu(
        self,
        models,
        memory_required=0,
        force_patch_weights=False,
        minimum_memory_required=None,
        force_full_load=False,
    ):
        self.calls.append(("load_models_gpu", list(models), memory_required, force_full_load))
        for patcher in models:
            registered = any(lm.model is patcher for lm in self.current_loaded_models)
            if self.newest:  # model_load -> partially_load, registered or not (a7631e351dc2)
                if hasattr(patcher, "partially_load"):
                    patcher.partially_load(patcher.load_device, 1e32)
                else:
                    patcher.model.to(patcher.load_device)
            elif not registered:
                patcher.model.to(patcher.load_device)
            if not registered:
                self.current_loaded_models.insert(0, LoadedModel(patcher))

    def free_memory(self, memory_required, device, keep_loaded=()):
        self.calls.append(("free_memory", memory_required))
        unloaded = [lm for lm in self.current_loaded_models if lm not in keep_loaded]
        for lm in unloaded:
            lm.model_unload()
            self.current_loaded_models.remove(lm)
        return unloaded


def install(
    version: str,
    weights_dir: str,
    intermediate: torch.dtype = torch.float32,
    extra_paths: dict[str, list[tuple[str, bool]]] | None = None,
    device: torch.device = CPU,
) -> ModelManagement:
    """Put stub ComfyUI modules (of host ``version``) into ``sys.modules``; returns the model manager.

    ``extra_paths``: ``{folder_name: [(path, is_default), ...]}`` added as ComfyUI adds the entries
    of ``extra_model_paths.yaml``.
    """
    new = version != "0.3.64"
    comfy = types.ModuleType("comfy")
    comfy.__path__ = []
    newest = version == "newest"
    mm = ModelManagement(intermediate if new else None, device, newest)
    patcher_mod = types.ModuleType("comfy.model_patcher")
    patcher_mod.ModelPatcher = ModelPatcher
    if new:
        patcher_mod.CoreModelPatcher = DynamicPatcher if newest else ModelPatcher
    if newest:
        patcher_mod.ModelPatcherDynamic = DynamicPatcher
    extension = types.ModuleType("comfy.patcher_extension")
    extension.CallbacksMP = types.SimpleNamespace(ON_DETACH="on_detach_after")
    utils = types.ModuleType("comfy.utils")
    utils.ProgressBar = type(
        "ProgressBar",
        (),
        {"__init__": lambda self, total: None, "update_absolute": lambda self, v, t=None: None},
    )
    cli_args = types.ModuleType("comfy.cli_args")
    cli_args.args = types.SimpleNamespace(force_fp32=False)
    for name, mod in {
        "model_management": mm,
        "model_patcher": patcher_mod,
        "patcher_extension": extension,
        "utils": utils,
        "cli_args": cli_args,
    }.items():
        setattr(comfy, name, mod)
        sys.modules[f"comfy.{name}"] = mod
    sys.modules["comfy"] = comfy

    api = types.ModuleType("comfy_api")
    api.__path__ = []
    latest = types.ModuleType("comfy_api.latest")
    latest.io = _io_module(new)
    latest.ui = types.ModuleType("comfy_api.latest.ui")
    latest.ui.PreviewText = Record
    latest.ui.__getattr__ = lambda name: Record
    latest.ComfyExtension = type("ComfyExtension", (), {})
    sys.modules.update({"comfy_api": api, "comfy_api.latest": latest})

    folders = types.ModuleType("folder_paths")
    folders.folder_names_and_paths = {
        "upscale_models": ([os.path.join(weights_dir, "upscale_models")], set())
    }

    def add_model_folder_path(name, path, is_default=False):
        paths = folders.folder_names_and_paths.setdefault(name, ([], set()))[0]
        if path in paths and is_default:
            paths.remove(path)
        if path not in paths:
            paths.insert(0 if is_default else len(paths), path)

    def get_folder_paths(name):
        return list(folders.folder_names_and_paths[name][0])

    def get_filename_list(name):
        paths, _ = folders.folder_names_and_paths[name]
        return sorted(f for p in paths if os.path.isdir(p) for f in os.listdir(p))

    def get_full_path(name, filename):
        for p in folders.folder_names_and_paths[name][0]:
            if os.path.isfile(os.path.join(p, filename)):
                return os.path.join(p, filename)
        return None

    folders.add_model_folder_path = add_model_folder_path
    folders.get_folder_paths = get_folder_paths
    folders.get_filename_list = get_filename_list
    folders.get_full_path = get_full_path
    folders.get_temp_directory = lambda: os.path.join(weights_dir, "temp")
    for name, entries in (extra_paths or {}).items():
        for path, is_default in entries:
            add_model_folder_path(name, path, is_default)
    sys.modules["folder_paths"] = folders
    return mm


def uninstall() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in ("comfy", "comfy_api", "folder_paths") or name.startswith("srt.nodes"):
            del sys.modules[name]
