"""Where the command line's outputs go, and how they are written so that nothing is lost.

* :func:`plan_outputs`: the PNG each input image becomes. It depends on the command line alone
  (the inputs in their order, each folder's images sorted by name, and ``-o``), never on what
  the output folder already holds, so the same command plans the same files every time.
* :func:`check_targets`: an output is never one of the inputs (by file identity, whatever the
  spelling of the path), and an existing output is only replaced when asked (``--overwrite``).
* :func:`write_atomically`: every output is written to a temporary file in its destination
  folder and renamed over the target (``os.replace``) once complete: an interrupted or failed
  write leaves no partial PNG and no temporary file behind.

Naming rule (``-o`` a folder): an image becomes ``<its name without extension>.png``. When
several inputs would get the same name (compared case-insensitively, as Windows and macOS do),
the first in input order keeps it and each later one gets ``<name>_2.png``, ``<name>_3.png``,
... (the lowest number no other output of the run uses).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import BinaryIO

import torch

from .errors import CliError
from .images import IMAGE_EXTENSIONS, is_image_file, write_png

NAMING_RULE = (
    "each image is written as <name>.png in the -o folder; when several inputs share a name "
    "(ignoring case) the first keeps it and the later ones get <name>_2.png, <name>_3.png, ... "
    "(in input order, folders' images by name)"
)
TEMP_SUFFIX = ".part"


@dataclass(frozen=True)
class Job:
    """One image to upscale and where its PNG goes."""

    source: str
    target: str


def collect_sources(inputs: Iterable[str]) -> tuple[list[str], bool]:
    """The image files named by ``inputs`` in order (a folder: its images by name), and whether any was a folder."""
    files, any_folder = [], False
    for path in inputs:
        if os.path.isdir(path):
            any_folder = True
            found = sorted(p for p in (os.path.join(path, n) for n in os.listdir(path)) if is_image_file(p))
            if not found:
                raise CliError(
                    "no images in the folder",
                    path,
                    f"put {', '.join(IMAGE_EXTENSIONS)} files in it, or pass image files",
                )
            files += found
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise CliError("input not found", path, "check the path")
    return files, any_folder


def output_names(sources: list[str]) -> list[str]:
    """The PNG file name of each source, unique within the run (see the module's naming rule)."""
    stems = [os.path.splitext(os.path.basename(path))[0] for path in sources]
    names: list[str | None] = [None] * len(stems)
    taken: set[str] = set()
    for i, stem in enumerate(stems):  # the first input of each name keeps it
        if f"{stem}.png".casefold() not in taken:
            names[i] = f"{stem}.png"
            taken.add(names[i].casefold())
    for i, stem in enumerate(stems):  # later ones: the lowest free number
        if names[i] is None:
            number = 2
            while f"{stem}_{number}.png".casefold() in taken:
                number += 1
            names[i] = f"{stem}_{number}.png"
            taken.add(names[i].casefold())
    return [name for name in names if name is not None]


def plan_outputs(inputs: list[str], output: str) -> list[Job]:
    """Where each input image goes: ``output`` itself for one image file given a ``.png`` name,
    else ``output/<name>.png`` by :func:`output_names`. Reads the inputs, not the outputs."""
    files, any_folder = collect_sources(inputs)
    single = len(files) == 1 and not any_folder and not os.path.isdir(output)
    extension = os.path.splitext(output)[1].lower()
    if single and extension:
        if extension != ".png":
            raise CliError("the output is always a PNG", output, "give the output file a .png name")
        return [Job(files[0], output)]
    if os.path.isfile(output) or extension == ".png":
        raise CliError(
            "several images need an output folder", output, "pass a folder with -o (it is created if needed)"
        )
    return [
        Job(path, os.path.join(output, name)) for path, name in zip(files, output_names(files), strict=True)
    ]


def _identity(path: str) -> tuple[int, int] | None:
    """``(device, inode)`` of an existing file (symlinks followed), None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_targets(sources: Iterable[str], targets: list[str], overwrite: bool) -> None:
    """:class:`CliError` if a target is one of ``sources`` (always) or exists (unless ``overwrite``)."""
    inputs = {_identity(path): path for path in sources}
    inputs.pop(None, None)
    existing = []
    for target in targets:
        identity = _identity(target)
        if identity is None:
            continue
        if identity in inputs:
            raise CliError(
                "the output would overwrite an input",
                target,
                f"it is the input {inputs[identity]}; choose another -o",
            )
        existing.append(target)
    if existing and not overwrite:
        raise exists_error(existing)


def exists_error(existing: list[str]) -> CliError:
    """The error for outputs that exist and may not be replaced."""
    more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
    them = "them" if more else "it"
    return CliError(
        "the output already exists",
        f"{existing[0]}{more}",
        f"pass --overwrite to replace {them}, or choose another -o",
    )


def write_atomically(target: str, write: Callable[[BinaryIO], None], overwrite: bool = True) -> None:
    """Write ``target`` through ``write(file)``: into a temporary file beside it, then renamed over it.

    The temporary file (``.<name>.<random>.part`` in the target's folder, so the rename stays on
    one file system) is removed if ``write`` fails or the run is interrupted; the target is then
    untouched. Without ``overwrite`` an existing target raises :class:`FileExistsError`.
    The folder is created if needed; ``OSError`` when it cannot be.
    """
    folder, name = os.path.split(target)
    if folder:
        os.makedirs(folder, exist_ok=True)
    while True:
        temp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        try:
            handle = open(temp, "xb")  # closed by the with below
            break
        except FileExistsError:
            continue
    try:
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if not overwrite and os.path.exists(target):
            raise FileExistsError(f"{target} exists")
        os.replace(temp, target)
    except BaseException:  # an error or an interrupt: no partial file remains
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp)
        raise


def save_png(target: str, pixels: torch.Tensor, bits: int = 8, overwrite: bool = True) -> None:
    """:func:`.images.write_png` through :func:`write_atomically`."""
    write_atomically(target, lambda file: write_png(file, pixels, bits), overwrite)
