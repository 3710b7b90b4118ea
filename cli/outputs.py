"""Where the command line's outputs go, and how they are written so that nothing is lost.

* :func:`plan_outputs`: the PNG each input image becomes. It depends on the command line alone
  (the inputs in their order, each folder's images sorted by name, and ``-o``), never on what
  the output folder already holds, so the same command plans the same files every time.
* :func:`check_targets`: an output is never one of the inputs (by file identity, whatever the
  spelling of the path), and an existing output is only replaced when asked (``--overwrite``).
* :func:`write_atomically`: every output is written to a temporary file in its destination
  folder and renamed over the target (``os.replace``) once complete: an interrupted or failed
  write leaves no partial PNG and no temporary file behind.

Naming rule (``-o`` a folder): an image becomes ``<its name without extension>.png``. Inputs
that would share a name (compared case-insensitively, as Windows and macOS do: ``a.jpg`` and
``a.png``) each keep their extension instead: ``a.jpg.png``, ``a.png.png``; one file name in
several folders is numbered in input order (``x.png``, ``x_2.png``). A name depends only on the
inputs of the same stem, so adding other files to a folder never renames an output (and a
resumed job traces every output to its input anyway, :mod:`.resume`). Outputs a job wrote into a
folder it also reads from (``upscale same/ -o same/``) are not taken as inputs by the next run.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import BinaryIO

import torch

from .choices import NAMING_RULE  # noqa: F401 (re-exported)
from .errors import CliError
from .images import IMAGE_EXTENSIONS, is_image_file, write_png

TEMP_SUFFIX = ".part"


@dataclass(frozen=True)
class Job:
    """One image to upscale and where its PNG goes."""

    source: str
    target: str


def collect_sources(inputs: Iterable[str], exclude: frozenset[str] = frozenset()) -> tuple[list[str], bool]:
    """The image files named by ``inputs`` in order (a folder: its images by name, but none of
    ``exclude``: absolute paths of outputs a job wrote there), and whether any was a folder."""
    files, any_folder = [], False
    for path in inputs:
        if os.path.isdir(path):
            any_folder = True
            found = sorted(
                p
                for p in (os.path.join(path, n) for n in os.listdir(path))
                if is_image_file(p) and os.path.abspath(p) not in exclude
            )
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
    """The PNG file name of each source (see the module's naming rule): ``<stem>.png``, or
    ``<file name>.png`` for each of the inputs whose stem others share with another extension.
    Inputs of one file name (from several folders) get ``_2``, ``_3``, ... in input order."""
    files = [os.path.basename(path) for path in sources]
    stems = [os.path.splitext(name)[0].casefold() for name in files]
    extensions: dict[str, set[str]] = {}
    for name, stem in zip(files, stems, strict=True):
        extensions.setdefault(stem, set()).add(os.path.splitext(name)[1].casefold())
    names, taken = [], set()
    for name, stem in zip(files, stems, strict=True):
        keep = len(extensions[stem]) > 1  # a.jpg beside a.png: each keeps its extension
        base = f"{name}.png" if keep else f"{os.path.splitext(name)[0]}.png"
        candidate, number = base, 2
        while candidate.casefold() in taken:  # one file name in two folders
            candidate = f"{base[: -len('.png')]}_{number}.png"
            number += 1
        taken.add(candidate.casefold())
        names.append(candidate)
    return names


def plan_outputs(inputs: list[str], output: str, exclude: frozenset[str] = frozenset()) -> list[Job]:
    """Where each input image goes: ``output`` itself for one image file given a ``.png`` name,
    else ``output/<name>.png`` by :func:`output_names`. Reads the inputs (but no file of
    ``exclude``, the outputs an earlier run logged there), not the outputs."""
    files, any_folder = collect_sources(inputs, exclude)
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


def temporary_pattern(target: str, job_id: str) -> str:
    """The glob of the temporary files job ``job_id`` may leave beside ``target`` if killed."""
    folder, name = os.path.split(target)
    return os.path.join(
        glob.escape(folder or "."), f".{glob.escape(name)}.{glob.escape(job_id)}-*{TEMP_SUFFIX}"
    )


def write_atomically(
    target: str, write: Callable[[BinaryIO], None], overwrite: bool = True, job_id: str = "x"
) -> None:
    """Write ``target`` through ``write(file)``: into a temporary file beside it, then renamed over it.

    The temporary file (``.<name>.<job id>-<random>.part`` in the target's folder, so the rename
    stays on one file system, and a job's cleanup can tell its own from another job's) is removed
    if ``write`` fails or the run is interrupted; the target is then untouched. Without
    ``overwrite`` an existing target raises :class:`FileExistsError`. The folder is created if
    needed; ``OSError`` when it cannot be.
    """
    folder, name = os.path.split(target)
    if folder:
        os.makedirs(folder, exist_ok=True)
    while True:
        temp = os.path.join(folder, f".{name}.{job_id}-{secrets.token_hex(4)}{TEMP_SUFFIX}")
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


def save_png(
    target: str, pixels: torch.Tensor, bits: int = 8, overwrite: bool = True, job_id: str = "x"
) -> None:
    """:func:`.images.write_png` through :func:`write_atomically`."""
    write_atomically(target, lambda file: write_png(file, pixels, bits), overwrite, job_id)
