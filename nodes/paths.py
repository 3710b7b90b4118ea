"""Where "Super Resolution Model Loader" finds checkpoints: the pack's ``weights/`` folder and ``models/upscale_models``.

``weights/`` is registered with ComfyUI's ``folder_paths`` as ``srt_weights`` once, when the
extension loads (:func:`register`), so ``extra_model_paths.yaml`` can add more folders under that
name, restricted to the model file extensions our loader reads. ``folder_paths`` re-lists a folder
when its modification time changes, so files dropped in while ComfyUI runs show up on the next
refresh.
"""

from __future__ import annotations

import os

import folder_paths

from ..arch.loader import MODEL_EXTENSIONS

FOLDER = "srt_weights"
CORE_FOLDER = "upscale_models"
PACK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHTS_DIR = os.path.join(PACK_DIR, "weights")
# The README installed with the pack (ComfyUI-Manager clones it; the registry package keeps it),
# and its section listing the official and community checkpoints (keep the heading)
README = os.path.join(PACK_DIR, "README.md")
WHERE_TO_GET = f"section 'Where to get checkpoints' of {README}"


def register() -> None:
    """Add ``weights/`` to the ``srt_weights`` folders (idempotent; called when the extension loads).

    ComfyUI reads ``extra_model_paths.yaml`` before it loads custom nodes. Folders configured
    there for ``srt_weights`` keep their order -- the first is the default one, where ComfyUI and
    its manager save -- and ``weights/`` comes after them; without any, it is the only folder.
    """
    configured = folder_paths.folder_names_and_paths.get(FOLDER, ([], set()))[0]
    if WEIGHTS_DIR not in configured:
        folder_paths.add_model_folder_path(FOLDER, WEIGHTS_DIR, is_default=False)
    folder_paths.folder_names_and_paths[FOLDER][1].update(MODEL_EXTENSIONS)


def _folders() -> list[str]:
    """The registered folder kinds we search, ``srt_weights`` first."""
    return [f for f in (FOLDER, CORE_FOLDER) if f in folder_paths.folder_names_and_paths]


def _listed(folder: str) -> list[str]:
    names = folder_paths.get_filename_list(folder)
    return [n for n in names if n.lower().endswith(MODEL_EXTENSIONS)]


def model_names() -> list[str]:
    """Checkpoint names from ``weights/`` and ``upscale_models`` (sorted, without duplicates)."""
    names = {n for folder in _folders() for n in _listed(folder)}
    return sorted(names, key=str.lower)


def places() -> str:
    """The folders checkpoints are read from, for messages."""
    dirs = [d for f in _folders() for d in folder_paths.get_folder_paths(f)]
    return " or ".join(dirs) if dirs else f"{WEIGHTS_DIR} or ComfyUI's models/upscale_models"


def where_to_put() -> str:
    """One sentence: where checkpoints go and where to find them."""
    return (
        f"Put a checkpoint (.safetensors or .pth) in {places()}, then refresh (press R). "
        f"Official and community RGT/DRCT/ATD/HAT/DAT/SwinIR checkpoints: {WHERE_TO_GET}."
    )


def model_path(name: str) -> str:
    """Full path of ``name``, ``weights/`` first; ``FileNotFoundError`` naming the places otherwise."""
    for folder in _folders():
        path = folder_paths.get_full_path(folder, name)
        if path is not None and os.path.isfile(path):
            return path
    if not model_names():
        raise FileNotFoundError(f"no checkpoint installed (model '{name}' not found). {where_to_put()}")
    raise FileNotFoundError(f"model '{name}' not found. {where_to_put()}")
