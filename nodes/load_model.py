"""The "Super Resolution Model Loader" node: a checkpoint file -> spandrel ``ImageModelDescriptor`` (UPSCALE_MODEL).

Our architectures load first, spandrel's for everything else (see :mod:`..arch.loader`), so the
output plugs into core "Upscale Image (using Model)", UltimateSDUpscale and the like unchanged:
like core's loader, it carries a model patcher (``descriptor.patcher``) for ComfyUI's model management.
The node shows what it loaded. A file is read once per (path, modification time, size): the
last few descriptors are kept, and any other one is reused while it is alive anywhere (ComfyUI's
output cache, another node) -- unless another node has converted its weights in place (they are
no longer float32): that descriptor is stale and the file is read again, as core's loader does.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections import OrderedDict

from comfy_api.latest import io, ui

from ..arch.errors import ModelLoadError
from ..arch.loader import load_model
from ..engine.describe import describe
from . import host_compat
from .paths import model_names, model_path, where_to_put
from .residency import attach_patcher, rounded_dtypes

log = logging.getLogger(__name__)

SEARCH_ALIASES = [
    "load sr model",  # its earlier name
    "load upscale model",
    "upscale model",
    "upscaler",
    "super resolution",
    "SR",
    "RGT",
    "DRCT",
    "ATD",
    "HAT",
    "DAT",
    "SwinIR",
    "spandrel",
    "checkpoint",
]
KEEP_LOADED = 2  # descriptors kept alive after ComfyUI's own cache has dropped them

_cache: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_recent: OrderedDict = OrderedDict()
_origins: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # descriptor -> (path, file key)
_lock = threading.Lock()


def _file_key(path: str) -> tuple[str, int, int]:
    st = os.stat(path)
    return (os.path.realpath(path), st.st_mtime_ns, st.st_size)


def load_cached(path: str):
    """The descriptor for ``path``, read from disk only if no live one matches its mtime and size
    (or the live one is stale: its weights are no longer float32)."""
    key = _file_key(path)
    with _lock:
        desc = _cache.get(key)
        rounded = rounded_dtypes(desc.model) if desc is not None else []
        if rounded:
            found = ", ".join(str(d).removeprefix("torch.") for d in rounded)
            log.warning(
                "[SR Transformers] %s: the loaded model's weights are %s, not float32 (another node "
                "converted them in place): reading the file again",
                os.path.basename(path),
                found,
            )
            desc = None
        cached = desc is not None
        if not cached:
            desc = _load(path)
            _cache[key] = desc
            _origins[desc] = (path, key)
        _recent[key] = desc
        _recent.move_to_end(key)
        while len(_recent) > KEEP_LOADED:
            _recent.popitem(last=False)
        return desc, cached


def _load(path: str):
    try:
        return load_model(path)
    except ModelLoadError:
        raise
    except Exception as e:  # an error the loader did not anticipate: still name the file
        raise ModelLoadError(
            f"{os.path.basename(path)}: could not be loaded ({type(e).__name__}: {e}). The file may be "
            "truncated, corrupt or a variant this version does not support: download it again, and "
            "report it if it still fails."
        ) from e


def file_module(desc):
    """``desc``'s module read again from its file (float32, as loaded), or None when ``desc`` did
    not come from this loader or its file has changed or gone since."""
    path, key = _origins.get(desc, (None, None))
    try:
        if path is None or _file_key(path) != key:
            return None
        return _load(path).model
    except (OSError, ModelLoadError) as e:  # gone or unreadable since: the caller converts instead
        log.warning("[SR Transformers] %s could not be read again: %s", os.path.basename(path), e)
        return None


def model_info(model_name: str) -> tuple[bool, str]:
    """``(ok, text)``: what the node shows for ``model_name`` (the front end asks before any run),
    or the reason it cannot be loaded, in the words the node's error would use."""
    try:
        desc, _ = load_cached(model_path(model_name))
    except (OSError, ModelLoadError) as e:  # missing, unreadable, or not a model we can load
        return False, f"Cannot load {model_name}: {e}"
    return True, describe(desc, model_name)


class LoadModelNode(io.ComfyNode):
    """Load a super-resolution checkpoint from ``weights/`` or ``models/upscale_models``."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        names = model_names()
        return io.Schema(
            node_id="SRT_LoadModel",
            display_name="Super Resolution Model Loader",
            category="image/upscaling",
            description=(
                "Loads an RGT, DRCT, ATD, HAT, DAT or SwinIR super-resolution checkpoint (.safetensors, .pth, "
                ".pt, .ckpt, .bin, .plt) from the pack's weights/ folder or models/upscale_models, with this "
                "pack's fast implementations of those families; any other architecture spandrel knows loads too. Shows the architecture, variant, scale, "
                "parameter count, supported precisions and which settings were inferred."
            ),
            inputs=[
                io.Combo.Input(
                    "model_name",
                    options=names,
                    tooltip=(
                        "Checkpoint file from the pack's weights/ folder or models/upscale_models. "
                        "Files dropped in while ComfyUI runs appear after a refresh (R)."
                        if names
                        else f"No checkpoint installed. {where_to_put()}"
                    ),
                ),
            ],
            outputs=[
                io.UpscaleModel.Output(
                    tooltip=(
                        "The loaded model (a spandrel descriptor): connect it to Super Resolution Upscale (tiled), "
                        "core Upscale Image (using Model) or any node that takes an UPSCALE_MODEL."
                    ),
                ),
            ],
            **host_compat.schema_extras(search_aliases=SEARCH_ALIASES),
        )

    @classmethod
    def validate_inputs(cls, model_name: str | None = None):
        """A missing file fails the queue with where to put one (instead of "Value not in list")."""
        try:
            model_path(model_name or "")
        except FileNotFoundError as e:
            return str(e)
        return True

    @classmethod
    def fingerprint_inputs(cls, model_name: str):
        """Re-run when the file changes on disk, not only when another name is picked."""
        try:
            return _file_key(model_path(model_name))
        except OSError:
            return model_name

    @classmethod
    def execute(cls, model_name: str) -> io.NodeOutput:
        path = model_path(model_name)
        desc, cached = load_cached(path)
        attach_patcher(desc)  # what core's upscale node and ComfyUI's model management use
        text = describe(desc, model_name)
        log.info(
            "[SR Transformers] %s %s: %s", "reused" if cached else "loaded", model_name, text.splitlines()[0]
        )
        return io.NodeOutput(desc, ui=ui.PreviewText(text))
