"""Checkpoint files -> spandrel descriptors, safely.

* ``.safetensors`` are read with safetensors (no code can run).
* ``.pth/.pt/.ckpt/.bin`` go through ``torch.load(weights_only=True)``. A pickle that needs code
  (e.g. a whole training ``State`` object) goes to :mod:`.safe_unpickle`, which extracts the
  model's tensors without importing or calling anything, or refuses with
  :class:`UnsafeCheckpointError`. Zip archives unpack within a budget (:mod:`.archive`).
* Wrappers (BasicSR ``params_ema`` before ``params``, ``state_dict``, ``model`` ...) and
  ``module.`` prefixes are removed; saved derived buffers are accepted by the models.
* Our architectures are tried first, then spandrel's ``MAIN_REGISTRY`` for everything else. A
  checkpoint of our families in a config we refuse but spandrel builds goes to spandrel's
  implementation (``desc.srt_fallback`` says why); our error stands only where spandrel fails too.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field

import torch
from spandrel import MAIN_REGISTRY, ImageModelDescriptor, UnsupportedModelError

from .archive import check_tensor_spans, check_zip_checkpoint
from .common.state import training_config
from .errors import (
    CheckpointReadError,
    ConfigError,
    ModelLoadError,
    UnrunnableConfigError,
    UnsupportedArchitectureError,
)
from .registry import REGISTRY, closest_family
from .safe_unpickle import restricted_load

MODEL_EXTENSIONS = (".safetensors", ".pth", ".pt", ".ckpt", ".bin", ".plt")  # .plt: nhs2828 RGT

# Preferred order: BasicSR keeps the EMA generator in params_ema; the others are common wrappers.
WRAPPER_KEYS = (
    "params_ema",
    "params-ema",
    "params",
    "state_dict",
    "model_state_dict",
    "model",
    "net",
    "netG",
)
PREFIXES = ("module.", "_orig_mod.", "netG.")


@dataclass
class Checkpoint:
    """A state dict plus whatever the file says about how it was trained."""

    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)
    source: str = "<state dict>"


def _name(path: str) -> str:
    return os.path.basename(path)


def _read_safetensors(path: str) -> Checkpoint:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            sd = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointReadError(
            f"{_name(path)}: not a readable .safetensors file ({e}). The file is probably truncated "
            "or corrupt: download it again."
        ) from e
    return Checkpoint(sd, metadata, path)


def _read_pickle(path: str) -> Checkpoint:
    check_zip_checkpoint(path)  # torch.load inflates each member whole: refuse a zip bomb first
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # weights_only refused a class: a whole pickled training state (model + optimizer ...).
        # Read it with the restricted unpickler, which never imports or calls what it names.
        return Checkpoint(restricted_load(path), {}, path)
    except Exception as e:  # garbage bytes surface as any of a dozen exception types
        raise CheckpointReadError(
            f"{_name(path)}: could not be read as a PyTorch checkpoint ({str(e).splitlines()[0][:200]}). "
            "The file is probably truncated or corrupt, or not a model file: download it again."
        ) from e
    if not isinstance(obj, dict):
        raise CheckpointReadError(
            f"{_name(path)}: holds a {type(obj).__name__}, not a state dict: this is not a model "
            "checkpoint we can read."
        )
    return Checkpoint(obj, {}, path)


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint file into a plain (unwrapped, unprefixed) state dict and its metadata."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointReadError(f"{path}: no such file. Put checkpoints in the pack's weights/ folder.")
    ext = os.path.splitext(path)[1].lower()
    if ext not in MODEL_EXTENSIONS:
        raise CheckpointReadError(
            f"{_name(path)}: unsupported file type '{ext}'. Use one of {', '.join(MODEL_EXTENSIONS)}."
        )
    if os.path.getsize(path) == 0:
        raise CheckpointReadError(f"{_name(path)}: the file is empty. Download it again.")
    ckpt = _read_safetensors(path) if ext == ".safetensors" else _read_pickle(path)
    ckpt.state_dict = unwrap_state_dict(ckpt.state_dict, source=_name(path))
    # torch.load's tensors are views over the file's storages: refuse any that claims more elements
    # than its storage holds before anything copies or converts it
    check_tensor_spans(_name(path), ckpt.state_dict.items())
    return ckpt


def unwrap_state_dict(obj: dict, source: str = "<state dict>") -> dict[str, torch.Tensor]:
    """Strip training wrappers and ``module.``-style prefixes; check that tensors are left."""
    for _ in range(3):  # wrappers can nest: {"state_dict": {"params_ema": ...}}
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointReadError(
            f"{source}: contains no tensors (keys: {', '.join(map(str, list(obj)[:8]))}). "
            "It is not a model checkpoint; check that you picked the generator weights."
        )
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
    return tensors


def _build(arch, sd: dict, metadata: dict, source: str) -> ImageModelDescriptor:
    """``arch.load_with_config`` with errors that name ``source``."""
    try:
        return arch.load_with_config(sd, metadata or None)
    except ConfigError as e:
        raise type(e)(f"{source}: {e}") from e  # the same kind (unrunnable ones stay refused)
    except (RuntimeError, KeyError, IndexError, ValueError) as e:
        # strict load_state_dict (a tensor of the wrong shape) or a key layout we half-recognise
        detail = str(e).strip().splitlines()
        detail = detail[-1].strip() if detail else type(e).__name__
        raise ModelLoadError(
            f"{source}: recognised as {arch.name}, but its weights do not fit together "
            f"({detail[:300]}). The file is probably damaged or from a modified architecture: "
            "download it again, or report it with the file's source."
        ) from e


def _weights_read(arch, sd: dict) -> bool:
    """Whether ``arch`` reads a config from the weights alone (no metadata)."""
    try:
        arch.read_config(sd, None)
    except Exception:
        return False
    return True


def _spandrel_instead(sd: dict, ours: Exception) -> ImageModelDescriptor | None:
    """spandrel's own build of a checkpoint ours refused (a config we do not implement), or None.

    The descriptor carries ``srt_fallback``: why ours was not used (our error's first line), which
    :func:`engine.describe.describe` shows. None when spandrel cannot build it either.
    """
    try:
        desc = MAIN_REGISTRY.load(sd)
    except Exception:  # spandrel fails too: the caller raises our (more specific) error
        return None
    if not isinstance(desc, ImageModelDescriptor):
        return None
    desc.srt_fallback = (str(ours).strip().splitlines() or [type(ours).__name__])[0]
    return desc


def load_state_dict(
    state_dict: dict, metadata: dict | None = None, source: str = "<state dict>"
) -> ImageModelDescriptor:
    """Detect the architecture of ``state_dict`` and build its descriptor (ours first)."""
    sd = unwrap_state_dict(state_dict, source)
    hyperparameters = training_config(metadata)
    for support in REGISTRY.architectures("detection"):
        if support.detect(sd):
            try:
                return _build(support.architecture, sd, hyperparameters, source)
            except (ConfigError, ModelLoadError) as ours:
                if isinstance(ours, UnrunnableConfigError):
                    raise  # spandrel would build it, and it would fail at its first call
                if (
                    isinstance(ours, ConfigError)
                    and hyperparameters
                    and _weights_read(support.architecture, sd)
                ):
                    raise  # the file's training metadata is at fault: spandrel would silently ignore it
                desc = _spandrel_instead(sd, ours)
                if desc is None:
                    raise
                return desc
    try:
        desc = MAIN_REGISTRY.load(sd)
    except UnsupportedModelError as e:
        raise UnsupportedArchitectureError(
            f"{source}: not a super-resolution model that this pack or spandrel recognises "
            f"({closest_family(sd)}). Check that the file is a complete generator checkpoint; "
            "if it is another architecture, see spandrel's list of supported models."
        ) from e
    except (RuntimeError, KeyError, IndexError, ValueError) as e:
        raise ModelLoadError(
            f"{source}: spandrel recognised the architecture but could not build it "
            f"({type(e).__name__}: {str(e).strip()[:300]}). The file may be damaged or a variant "
            "spandrel does not support."
        ) from e
    if not isinstance(desc, ImageModelDescriptor):
        raise UnsupportedArchitectureError(
            f"{source}: is a {desc.architecture.name} model ({type(desc).__name__}), which takes more "
            "than an image (e.g. an inpainting mask); Upscale Image needs an image-to-image model."
        )
    return desc


def load_model(path: str | os.PathLike) -> ImageModelDescriptor:
    """Read ``path`` and return its spandrel ``ImageModelDescriptor`` (eval mode, CPU, fp32)."""
    ckpt = read_checkpoint(path)
    desc = load_state_dict(ckpt.state_dict, ckpt.metadata, source=_name(ckpt.source))
    return desc.eval()
