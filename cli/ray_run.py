"""Many machines: the same jobs as a Ray Data pipeline (``upscale --ray [ADDRESS]``).

Three stages stream images through the cluster, so that GPUs only upscale:

1. read (CPU tasks): each image file decoded by the pack's reader (:func:`.images.read_image`);
2. upscale (``map_batches`` with :class:`UpscaleActor`, one actor per GPU with ``num_gpus=1``,
   ``--concurrency`` of them): the same loader, plan, tiling and precision as the single-process
   path, through :class:`.upscaler.Upscaler`;
3. write (CPU tasks): the PNG written as a temporary file renamed into place
   (:func:`.outputs.save_png`), exactly the bytes the single-process path writes.

Without an address the command starts a local Ray on this machine (and stops it at the end);
with one it joins that cluster (``auto`` for the one ``ray start`` set up here). The pack's code
goes to the workers as a Ray ``py_modules`` package (its runtime folders only) and the checkpoint
through the object store, so the workers need the same Python packages (torch, einops,
safetensors, spandrel, pillow) but no copy of the pack or the model; the input and output paths
must be reachable from every machine (a shared file system). A failed image is one error row:
the others go on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator

import numpy as np
import torch

from .errors import PARTIAL, CliError, first_line
from .images import Picture, read_image
from .outputs import Job, exists_error, save_png
from .upscaler import Outcome, RunSpec, made_with

PACK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNTIME_PARTS = ("__init__.py", "arch", "engine", "cli")  # what a worker imports of the pack
INSTALL_HINT = "install it with: pip install -r requirements-ray.txt (or pip install .[ray])"
_EMPTY = np.zeros((1, 1, 1), np.float32)  # pixels of a row that carries an error


def _error_fields(e: CliError | None) -> dict:
    if e is None:
        return {"ok": True, "what": "", "file": "", "todo": "", "code": 0}
    return {"ok": False, "what": e.what, "file": e.file, "todo": e.todo, "code": e.code}


def _row_error(row: dict) -> CliError | None:
    return None if row["ok"] else CliError(row["what"], row["file"], row["todo"], int(row["code"]))


def read_row(row: dict) -> dict:
    """Stage 1: decode ``row["source"]`` (errors become the row's error fields)."""
    try:
        picture = read_image(row["source"])
        pixels, bits, notes, error = picture.pixels.numpy(), picture.bits, picture.notes, None
    except CliError as e:
        pixels, bits, notes, error = _EMPTY, 8, [], e
    except Exception as e:
        pixels, bits, notes = _EMPTY, 8, []
        error = CliError(
            "cannot read the image", row["source"], f"{type(e).__name__}: {first_line(e)}", PARTIAL
        )
    warnings = "\n".join(f"warning: {note} ({row['source']})" for note in notes)
    fields = {"pixels": pixels, "bits": bits, "warnings": warnings, "line": "", "made": ""}
    return {**row, **fields, **_error_fields(error)}


class _Lines:
    """A text stream that keeps what the upscaler prints (its warnings) for the row."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


class UpscaleActor:
    """Stage 2: one model copy on this actor's device, upscaling one image per call."""

    def __init__(self, spec: dict, model_name: str, model_bytes, device: str, threads: int) -> None:
        import ray

        from ..engine.host import Settings
        from .models import load

        model_bytes = ray.get(model_bytes[0])  # a reference in a list: fetched here, not passed by value
        self.folder = tempfile.mkdtemp(prefix="srt-ray-model-")
        path = os.path.join(self.folder, model_name)  # the file's own name: the loader reads its extension
        with open(path, "wb") as f:
            f.write(model_bytes)
        if device == "cpu":
            torch.set_num_threads(threads)
        self.spec = RunSpec(**{**spec, "model_path": path, "settings": Settings(**spec["settings"])})
        self.desc = load(path)
        self.device = torch.device(device)

    def __call__(self, batch: dict) -> dict:
        rows = [{key: batch[key][i] for key in batch} for i in range(len(batch["index"]))]
        done = [self._one(row) for row in rows]
        return {key: [row[key] for row in done] for key in done[0]}

    def _one(self, row: dict) -> dict:
        if not row["ok"]:
            return row
        lines = _Lines()
        upscaler = self.spec.upscaler(self.desc, self.device, lines, lines)
        job = Job(str(row["source"]), str(row["target"]))
        picture = Picture(torch.from_numpy(np.array(row["pixels"])), int(row["bits"]))
        made = ""
        try:
            result, seconds = upscaler.compute(job, picture)
            pixels, line, error = (
                result.image[0].numpy(),
                upscaler.summary(job, picture, result, seconds),
                None,
            )
            made = json.dumps(made_with(result.report, self.device))
        except CliError as e:
            pixels, line, error = _EMPTY, "", e
        except Exception as e:
            pixels, line = _EMPTY, ""
            error = CliError(
                "the model cannot process this image",
                job.source,
                f"{type(e).__name__}: {first_line(e)}",
                PARTIAL,
            )
        warnings = "\n".join(filter(None, [row["warnings"], lines.text.rstrip("\n")]))
        return {
            **row,
            "pixels": pixels,
            "line": line,
            "warnings": warnings,
            "made": made,
            **_error_fields(error),
        }


def write_row(row: dict, overwrite: bool, job_id: str = "x") -> dict:
    """Stage 3: write the PNG; the row keeps only what the command reports."""
    error = _row_error(row)
    if error is None:
        try:
            pixels = torch.from_numpy(np.array(row["pixels"]))
            save_png(row["target"], pixels, int(row["bits"]), overwrite, job_id=job_id)
        except FileExistsError:
            error = exists_error([row["target"]])
        except OSError as e:
            error = CliError(
                "cannot write the output", row["target"], f"{first_line(e)}; check the folder", PARTIAL
            )
    keep = ("index", "line", "warnings", "made")
    return {**{key: row[key] for key in keep}, **_error_fields(error)}


def _stage_pack(folder: str) -> str:
    """A copy of the pack's runtime folders as the package ``srt`` (what ``py_modules`` ships)."""
    package = os.path.join(folder, "srt")
    os.makedirs(package)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "examples")
    for part in RUNTIME_PARTS:
        source = os.path.join(PACK_DIR, part)
        if os.path.isdir(source):
            shutil.copytree(source, os.path.join(package, part), ignore=ignore)
        else:
            shutil.copy2(source, package)
    return package


def _connect(ray, address: str | None, package: str, debug: bool) -> None:
    runtime_env = {"py_modules": [package]}
    try:
        ray.init(
            address=address,
            runtime_env=runtime_env,
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=debug,  # the workers' own log lines only with --debug
        )
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise CliError(
            "cannot connect to Ray",
            address or "local Ray",
            f"{first_line(e)}; check the address (ray status)",
        ) from e


def run(
    spec: RunSpec, jobs: list[Job], address: str, concurrency: int, device: str, err
) -> Iterator[Outcome]:
    """Upscale ``jobs`` on Ray (``address`` ``""``: a local Ray started here); yields outcomes as
    images are written."""
    if not jobs:
        return
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise CliError("Ray is not installed", "--ray", INSTALL_HINT) from e
    with tempfile.TemporaryDirectory(prefix="srt-ray-pack-") as staging:
        _connect(ray, address or None, _stage_pack(staging), spec.debug)
        try:
            yield from _pipeline(ray, spec, jobs, concurrency, device, err)
        finally:
            with contextlib.suppress(Exception):
                ray.shutdown()


def _pipeline(ray, spec: RunSpec, jobs: list[Job], concurrency: int, device: str, err) -> Iterator[Outcome]:
    if not spec.debug:
        logging.getLogger("ray.data").setLevel(logging.ERROR)
    ray.data.DataContext.get_current().enable_progress_bars = False  # the command draws its own
    gpus = int(ray.cluster_resources().get("GPU", 0)) if device != "cpu" else 0
    actors = concurrency or max(1, gpus)
    cpus = max(1.0, ray.cluster_resources().get("CPU", 1.0))
    with open(spec.model_path, "rb") as f:
        model = ray.put(f.read())
    plain = {
        "model_path": spec.model_path,
        "settings": {
            k: getattr(spec.settings, k) for k in ("tile", "overlap", "precision", "output_scale", "compile")
        },
        "overwrite": spec.overwrite,
        "quiet": True,
        "debug": spec.debug,
        "threads": spec.threads,
        "job_id": spec.job_id,
    }
    rows = ray.data.from_items(
        [{"index": i, "source": job.source, "target": job.target} for i, job in enumerate(jobs)],
        override_num_blocks=len(jobs),
    )
    upscaled = rows.map(read_row, num_cpus=0.25).map_batches(
        UpscaleActor,
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=actors),
        fn_constructor_kwargs={
            "spec": plain,
            "model_name": spec.model_name,
            "model_bytes": [model],
            "device": "cuda" if gpus else "cpu",
            "threads": spec.threads or max(1, int(cpus) // actors),
        },
        num_gpus=1 if gpus else 0,
        num_cpus=1 if gpus else max(0.5, min(1.0, (cpus - 1) / actors)),
    )
    written = upscaled.map(
        write_row, fn_kwargs={"overwrite": spec.overwrite, "job_id": spec.job_id}, num_cpus=0.25
    )
    for row in written.iter_rows():
        if row["warnings"]:
            print(row["warnings"], file=err)
        job = jobs[int(row["index"])]
        error = _row_error(row)
        if error is None:
            yield Outcome(job, line=str(row["line"]), made=json.loads(row["made"]) if row["made"] else None)
        else:
            yield Outcome(job, error=error)
