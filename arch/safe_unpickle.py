"""A restricted unpickler for training-state files that ``weights_only`` refuses.

Some trainers (e.g. the unofficial nhs2828 RGT) never save a state dict: they pickle a whole
training ``State`` object (model, optimizer, scheduler, iteration). Unpickling that normally would
import and call whatever the pickle names. This unpickler:

* rebuilds tensors from the zip archive's storages itself (``torch.as_strided`` over raw bytes);
* allows a short list of plain containers (dict, OrderedDict, list, set, ...) and ``torch.Size``
  / dtypes;
* turns *every* other global into an inert placeholder class: nothing is imported, and "calling"
  it (pickle's REDUCE) only records the arguments, so a payload such as ``os.system`` never runs;
* unpacks the archive within a byte budget (:mod:`.archive`: no zip bomb fills the memory), and
  copies no tensor that claims more elements than its storage holds (stride 0, overlapping
  strides), so memory stays within a small multiple of the file's size;
* then walks the placeholder tree for the ``nn.Module`` layout (``_parameters``, ``_buffers``,
  ``_modules``) and returns the model's state dict.
"""

from __future__ import annotations

import collections
import os
import pickle
import zipfile
from collections.abc import Iterator

import torch

from .archive import BudgetedStream, InflateBudget, elements_held, inflate_budget, strided_error
from .errors import CheckpointReadError, UnsafeCheckpointError

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "UntypedStorage": torch.uint8,
}
_CONTAINERS = {
    "dict": dict,
    "list": list,
    "set": set,
    "frozenset": frozenset,
    "tuple": tuple,
    "OrderedDict": collections.OrderedDict,
}


class Inert:
    """Stand-in for a class or function the pickle names; it never runs anything."""

    _global_name = "?"

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        obj.__dict__["_args"] = args
        return obj

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["_state"] = state

    def __repr__(self) -> str:
        return f"<inert {self._global_name}>"


class _StorageType:
    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


class _TensorRebuilder:
    """``torch._utils._rebuild_tensor_v2`` for one file: checks the view against its storage
    *before* the copy, so a stride-0 or overlapping view claiming 10^9 elements over one stored
    float is refused instead of allocated."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, storage, offset, size, stride, *_ignored) -> torch.Tensor:
        if not isinstance(storage, torch.Tensor):
            raise pickle.UnpicklingError("tensor without a readable storage")
        size, stride = tuple(int(n) for n in size), tuple(int(s) for s in stride)
        numel = 1
        for n in size:
            numel *= n
        if len(size) != len(stride):
            raise pickle.UnpicklingError(f"tensor with {len(size)} sizes and {len(stride)} strides")
        held = elements_held(storage.numel(), int(offset), size, stride)
        if numel > held:
            raise strided_error(self.name, f"{size}/{stride}", numel, held)
        return torch.as_strided(storage, size, stride, int(offset)).clone()


def _rebuild_parameter(data, *_ignored) -> torch.Tensor:
    return data


def _plain_dict(*_ignored) -> dict:  # defaultdict(factory): keep the items, never call factory
    return {}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler over a torch zip archive that resolves only allow-listed globals."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, budget: InflateBudget) -> None:
        super().__init__(file)
        self._archive, self._prefix, self._budget = archive, prefix, budget
        self._name = budget.name
        self._storages: dict[str, torch.Tensor] = {}  # each storage read once, however often used
        self.blocked: dict[str, type[Inert]] = {}

    def find_class(self, module: str, name: str):
        if module in ("builtins", "__builtin__", "collections") and name in _CONTAINERS:
            return _CONTAINERS[name]
        if module == "collections" and name == "defaultdict":
            return _plain_dict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _TensorRebuilder(self._name)
        if module == "torch._utils" and name in ("_rebuild_parameter", "_rebuild_parameter_with_state"):
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch" and name == "Size":
            return torch.Size
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        key = f"{module}.{name}"
        if key not in self.blocked:
            self.blocked[key] = type(name, (Inert,), {"_global_name": key})
        return self.blocked[key]

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.80}")
        storage_type, key = pid[1], pid[2]
        dtype = storage_type.dtype if isinstance(storage_type, _StorageType) else torch.uint8
        member = f"{self._prefix}/data/{key}"
        if member not in self._storages:
            raw = self._budget.read(self._archive, member)
            self._storages[member] = (
                torch.frombuffer(raw, dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
            )
        raw = self._storages[member]
        return raw.view(dtype) if raw.numel() else torch.empty(0, dtype=dtype)


def _attrs(obj) -> dict:
    return obj.__dict__ if isinstance(obj, Inert) else {}


def _is_module(obj) -> bool:
    d = _attrs(obj)
    return isinstance(d.get("_parameters"), dict) and isinstance(d.get("_modules"), dict)


def _module_state(obj, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    d = _attrs(obj)
    non_persistent = d.get("_non_persistent_buffers_set") or set()
    for name, t in d["_parameters"].items():
        if isinstance(t, torch.Tensor):
            yield prefix + name, t
    for name, t in (d.get("_buffers") or {}).items():
        if isinstance(t, torch.Tensor) and name not in non_persistent:
            yield prefix + name, t
    for name, child in d["_modules"].items():
        if _is_module(child):
            yield from _module_state(child, f"{prefix}{name}.")


def _find_model(root, depth: int = 0):
    """The module in the pickle: ``root.model`` first, else the first module found depth-first."""
    if _is_module(root):
        return root
    if depth > 3:
        return None
    d = _attrs(root)
    children = ([d["model"]] if "model" in d else []) + list(d.values())
    if isinstance(root, dict):
        children += list(root.values())
    for child in children:
        found = _find_model(child, depth + 1)
        if found is not None:
            return found
    return None


def restricted_load(path: str, max_inflated: int | None = None) -> dict[str, torch.Tensor]:
    """State dict of the model pickled inside a torch zip checkpoint, without running any code.

    Args:
        max_inflated: bytes the archive's members may unpack to (default: :func:`.archive.inflate_budget`).

    Raises:
        UnsafeCheckpointError: no model could be found (the message lists what the pickle names).
        CheckpointReadError: not a torch zip archive, corrupt, or unpacking to more than the budget.
    """
    name = os.path.basename(path)
    budget = InflateBudget(name, max_inflated or inflate_budget(path))
    try:
        with zipfile.ZipFile(path) as archive:
            budget.check_declared(archive)
            pkl = next((n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
            if pkl is None:
                raise CheckpointReadError(f"{name}: not a PyTorch zip checkpoint (no data.pkl inside).")
            prefix = pkl[: -len("/data.pkl")] if "/" in pkl else ""
            with archive.open(pkl) as f:
                unpickler = RestrictedUnpickler(BudgetedStream(f, budget, pkl), archive, prefix, budget)
                root = unpickler.load()
    except zipfile.BadZipFile as e:
        raise CheckpointReadError(
            f"{name}: a legacy or corrupt pickle that cannot be read safely ({e}). "
            "Re-save the model's state_dict with a current PyTorch, or convert it to .safetensors."
        ) from e
    except (pickle.UnpicklingError, EOFError, KeyError, RuntimeError, ValueError, TypeError) as e:
        raise CheckpointReadError(f"{name}: corrupt or truncated checkpoint ({e}). Download it again.") from e
    model = _find_model(root)
    state = dict(_module_state(model)) if model is not None else {}
    if not state:
        names = ", ".join(sorted(unpickler.blocked)[:8]) or "nothing"
        raise UnsafeCheckpointError(
            f"{name}: this pickle holds no model weights we can extract, and it refers to code "
            f"({names}) that was NOT imported or run. If it is a model, export its state_dict to "
            ".safetensors with the tool that trained it."
        )
    return state
