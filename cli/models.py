"""Which checkpoint a command means, and loading it with errors that name it.

``--model`` takes a path, or the name of a file in the pack's ``weights/`` folder (also ComfyUI's
``models/upscale_models`` when the pack sits in ``ComfyUI/custom_nodes/``). Without ``--model``
the command line uses the shipped default for the scale: the file in ``weights/`` matching
:data:`DEFAULT_PATTERN` (``weights/DEFAULT_MODELS.md`` describes them).
"""

from __future__ import annotations

import fnmatch
import os

from ..arch.errors import ModelLoadError
from ..arch.loader import MODEL_EXTENSIONS, load_model
from .choices import DEFAULT_PATTERN, DEFAULT_SCALE, DEFAULT_SCALES  # noqa: F401 (re-exported)
from .errors import CliError, first_line, strip_file_prefix

PACK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHTS_DIR = os.path.join(PACK_DIR, "weights")
# The default model for a scale: weights/SRT_<name>_x<scale>.safetensors (e.g. SRT_ATD-tiny_x4).
MODELS_CARD = "weights/DEFAULT_MODELS.md"


def model_dirs() -> list[str]:
    """Where names are looked up: ``weights/``, then ComfyUI's ``models/upscale_models`` if the
    pack is installed in a ComfyUI checkout's ``custom_nodes/``."""
    dirs = [WEIGHTS_DIR]
    parent = os.path.dirname(PACK_DIR)
    if os.path.basename(parent) == "custom_nodes":
        comfy_models = os.path.join(os.path.dirname(parent), "models", "upscale_models")
        if os.path.isdir(comfy_models):
            dirs.append(comfy_models)
    return dirs


def _model_files(folder: str) -> list[str]:
    if not os.path.isdir(folder):
        return []
    return sorted(n for n in os.listdir(folder) if n.lower().endswith(MODEL_EXTENSIONS))


def default_models() -> dict[int, str]:
    """The shipped default for each scale found in ``weights/``: ``{scale: path}``.

    If several files match a scale's pattern, the first by name is the default.
    """
    found = {}
    for scale in DEFAULT_SCALES:
        matches = fnmatch.filter(_model_files(WEIGHTS_DIR), DEFAULT_PATTERN.format(scale=scale))
        if matches:
            found[scale] = os.path.join(WEIGHTS_DIR, matches[0])
    return found


def default_model(scale: int) -> str:
    """Path of the shipped default model for ``scale``; :class:`CliError` if it is not there."""
    path = default_models().get(scale)
    if path is None:
        expected = os.path.join("weights", DEFAULT_PATTERN.format(scale=scale))
        raise CliError(
            f"no default x{scale} model",
            expected,
            f"the default models come with the repository (see {MODELS_CARD}): update your checkout, "
            "or pass a checkpoint with --model PATH",
        )
    return path


def find_model(name_or_path: str) -> str:
    """The checkpoint file ``name_or_path`` refers to: an existing path, else a name in :func:`model_dirs`."""
    if os.path.isfile(name_or_path):
        return name_or_path
    if os.path.isdir(name_or_path):
        raise CliError("expected a model file, got a folder", name_or_path, "pass a checkpoint file")
    for folder in model_dirs():
        for candidate in (name_or_path, *(name_or_path + ext for ext in MODEL_EXTENSIONS)):
            path = os.path.join(folder, candidate)
            if os.path.isfile(path):
                return path
    available = [n for folder in model_dirs() for n in _model_files(folder)]
    listing = f"; available: {', '.join(available[:6])}" + (" ..." if len(available) > 6 else "")
    raise CliError(
        "unknown model",
        name_or_path,
        "pass a checkpoint path, or the name of a file in weights/" + (listing if available else ""),
    )


def load(path: str):
    """The spandrel descriptor of checkpoint ``path``; :class:`CliError` naming it if it does not load."""
    try:
        return load_model(path)
    except ModelLoadError as e:
        raise CliError(
            "cannot load the model", path, strip_file_prefix(str(e), os.path.basename(path))
        ) from e
    except (OSError, RuntimeError, ValueError, KeyError) as e:  # not anticipated by the loader
        raise CliError(
            "cannot load the model",
            path,
            f"{type(e).__name__}: {first_line(e)}; the file may be truncated or a variant this version does not "
            "support -- download it again, and report it if it still fails",
        ) from e
