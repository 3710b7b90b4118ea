"""Where "Load SR Model" finds checkpoints: the pack's ``weights/`` folder and ``models/upscale_models``.

``weights/`` is registered with ComfyUI's ``folder_paths`` as ``srt_weights`` (so
``extra_model_paths.yaml`` can add more folders under that name), restricted to the model file
extensions our loader reads. ``folder_paths`` re-lists a folder when its modification time
changes, so files dropped in while ComfyUI runs show up on the next refresh.
"""

from __future__ import annotations

import os

import folder_paths

from ..arch.loader import MODEL_EXTENSIONS

FOLDER = "srt_weights"
CORE_FOLDER = "upscale_models"
WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights")


def register() -> None:
    """Register ``weights/`` as ``srt_weights`` (idempotent)."""
    folder_paths.add_model_folder_path(FOLDER, WEIGHTS_DIR, is_default=True)
    folder_paths.folder_names_and_paths[FOLDER][1].update(MODEL_EXTENSIONS)


def _listed(folder: str) -> list[str]:
    try:
        names = folder_paths.get_filename_list(folder)
    except KeyError:  # a host without that folder kind
        return []
    return [n for n in names if n.lower().endswith(MODEL_EXTENSIONS)]


def model_names() -> list[str]:
    """Checkpoint names from ``weights/`` and ``upscale_models`` (sorted, without duplicates)."""
    register()
    return sorted(set(_listed(FOLDER)) | set(_listed(CORE_FOLDER)), key=str.lower)


def model_path(name: str) -> str:
    """Full path of ``name``, ``weights/`` first; ``FileNotFoundError`` naming both places otherwise."""
    register()
    for folder in (FOLDER, CORE_FOLDER):
        try:
            path = folder_paths.get_full_path(folder, name)
        except KeyError:
            path = None
        if path is not None and os.path.isfile(path):
            return path
    places = folder_paths.get_folder_paths(FOLDER) + folder_paths.get_folder_paths(CORE_FOLDER)
    raise FileNotFoundError(
        f"model '{name}' not found in {' or '.join(places)}. Put the checkpoint in the pack's weights/ "
        "folder or in models/upscale_models, then refresh the node list (press R)."
    )
