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

A worker process that dies on an image (a crash in a native library, the OOM killer) does not
stall the job: its task is retried once (:data:`TASK_RETRIES`) on the restarted actor, then the
row is dropped (``DataContext.max_errored_blocks``, one image per block) and the driver reports
every image that never came back by name, as it does when the pipeline itself fails; the images
already written stay reported. Nothing is left in the temporary folder: the pack's staging copy
is removed once ``ray.init`` has uploaded it, each actor removes the checkpoint file it loaded at
once. Ray's own log lines (its loggers' console output, the C++ core's, the raylet's messages)
are quiet unless ``--debug``; Ray Data keeps writing its log file in the session folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import traceback
import warnings
from collections.abc import Iterator

import numpy as np
import torch

from .errors import PARTIAL, CliError, first_line
from .images import Picture, read_image
from .outputs import Job, exists_error, save_png
from .signals import Stopped, stop_signals
from .streams import LineStream
from .upscaler import Outcome, RunSpec, made_with

PACK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNTIME_PARTS = ("__init__.py", "arch", "engine", "cli")  # what a worker imports of the pack
INSTALL_HINT = "install it with: pip install -r requirements-ray.txt (or pip install .[ray])"
_EMPTY = np.zeros((1, 1, 1), np.float32)  # pixels of a row that carries an error
TASK_RETRIES = 1  # a task whose worker died is run once more, then its image is reported
# Test hook: an actor asked to upscale an image with this file name ends its process at once
# (os._exit), as a crash in a native library would. Ray workers inherit the variable from the
# driver (local Ray) or from `ray start` (a cluster); unset, it does nothing.
KILL_HOOK = "SRT_TEST_KILL_ON"


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


class UpscaleActor:
    """Stage 2: one model copy on this actor's device, upscaling one image per call."""

    def __init__(self, spec: dict, model_name: str, model_bytes, device: str, threads: int) -> None:
        import ray

        from ..engine.host import Settings
        from .models import load

        model_bytes = ray.get(model_bytes[0])  # a reference in a list: fetched here, not passed by value
        # the loader reads a file (its extension says the format): written, loaded, removed at once
        folder = tempfile.mkdtemp(prefix="srt-ray-model-")
        try:
            path = os.path.join(folder, model_name)
            with open(path, "wb") as f:
                f.write(model_bytes)
            self.desc = load(path)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if device == "cpu":
            torch.set_num_threads(threads)
        self.spec = RunSpec(**{**spec, "settings": Settings(**spec["settings"])})
        self.device = torch.device(device)

    def __call__(self, batch: dict) -> dict:
        rows = [{key: batch[key][i] for key in batch} for i in range(len(batch["index"]))]
        done = [self._one(row) for row in rows]
        return {key: [row[key] for row in done] for key in done[0]}

    def _one(self, row: dict) -> dict:
        if not row["ok"]:
            return row
        job = Job(str(row["source"]), str(row["target"]))
        if os.path.basename(job.source) == os.environ.get(KILL_HOOK):  # test hook (see KILL_HOOK)
            os._exit(70)
        lines: list[str] = []
        stream = LineStream(lines.append)
        upscaler = self.spec.upscaler(self.desc, self.device, stream, stream)
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
        warnings = "\n".join(filter(None, [row["warnings"], *lines, stream.buffer]))
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
    # ray.init makes SIGTERM exit 15 (sys.exit) and its C++ core dumps a stack on it: the command's
    # own handlers (cli/signals.py: stop like Ctrl+C, exit 143/129) are put back afterwards
    main = threading.current_thread() is threading.main_thread()
    handlers = {signum: signal.getsignal(signum) for signum in stop_signals()} if main else {}
    try:
        with _stderr_muted(not debug):
            ray.init(
                address=address,
                runtime_env=runtime_env,
                include_dashboard=False,
                logging_level=logging.INFO if debug else logging.ERROR,
                log_to_driver=debug,  # the workers' own log lines only with --debug
            )
    except SystemExit as e:  # SIGTERM while ray.init ran: its handler's sys.exit, a stop like ours
        if e.code == getattr(signal, "SIGTERM", None):
            raise Stopped(signal.SIGTERM) from None
        raise
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise CliError(
            "cannot connect to Ray",
            address or "local Ray",
            f"{first_line(e)}; check the address (ray status), or run again with --debug for Ray's messages",
        ) from e
    finally:
        for signum, handler in handlers.items():
            if handler is not None:
                signal.signal(signum, handler)


@contextlib.contextmanager
def _stderr_muted(muted: bool) -> Iterator[None]:
    """File descriptor 2 to the null device (while ``ray.init`` starts the C++ core, which writes
    there directly: the line saying it read ``RAY_BACKEND_LOG_LEVEL``)."""
    if not muted:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def _quiet_ray(debug: bool) -> Iterator[None]:
    """Ray's own console lines off while the command runs, unless ``debug`` (all restored after):
    the C++ core's (``RAY_BACKEND_LOG_LEVEL``, read when ``ray.init`` starts it; a local Ray's
    processes inherit it), the raylet's messages the driver prints, and the console handlers of
    the ``ray.data`` logger (its log file in the session folder keeps everything)."""
    if debug:
        yield
        return
    import ray._private.worker as core  # its flag mutes worker and raylet lines (Ray's debugger uses it)

    console = [
        handler
        for handler in logging.getLogger("ray.data").handlers
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
    ]
    levels = [handler.level for handler in console]
    backend = os.environ.get("RAY_BACKEND_LOG_LEVEL")
    enabled = getattr(core, "_worker_logs_enabled", True)
    try:
        if backend is None:  # a level the user set is kept
            os.environ["RAY_BACKEND_LOG_LEVEL"] = "fatal"
        for handler in console:
            handler.setLevel(logging.CRITICAL + 1)
        core._worker_logs_enabled = False
        yield
    finally:
        core._worker_logs_enabled = enabled
        for handler, level in zip(console, levels, strict=True):
            handler.setLevel(level)
        if backend is None:
            os.environ.pop("RAY_BACKEND_LOG_LEVEL", None)


def run(
    spec: RunSpec, jobs: list[Job], address: str, concurrency: int, device: str, err
) -> Iterator[Outcome]:
    """Upscale ``jobs`` on Ray (``address`` ``""``: a local Ray started here); yields outcomes as
    images are written, then one for each image that never came back."""
    if not jobs:
        return
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise CliError("Ray is not installed", "--ray", INSTALL_HINT) from e
    with _quiet_ray(spec.debug):
        staging = tempfile.mkdtemp(prefix="srt-ray-pack-")
        try:
            try:
                _connect(ray, address or None, _stage_pack(staging), spec.debug)
            finally:
                shutil.rmtree(staging, ignore_errors=True)  # ray.init has uploaded it (or failed)
            yield from _pipeline(ray, spec, jobs, concurrency, device, err)
        finally:
            with contextlib.suppress(Exception):
                ray.shutdown()


def _lost(job: Job, failure: Exception | None) -> CliError:
    """The error of an image that never came back: its worker died on every try (the pipeline
    dropped it), or the pipeline itself failed (``failure``)."""
    if failure is None:
        return CliError(
            "the Ray worker died while upscaling it",
            job.source,
            f"tried {TASK_RETRIES + 1} times, the other images went on; run the command without --ray "
            "to see the error",
            PARTIAL,
        )
    return CliError(
        "not upscaled: the Ray pipeline failed",
        job.source,
        f"{type(failure).__name__}: {first_line(failure)}; run again with --debug for Ray's messages",
        PARTIAL,
    )


@contextlib.contextmanager
def _data_context(ray) -> Iterator[None]:
    """Ray Data's settings for the run (restored after): no progress bars (the command draws its
    own), and a failed block (one image) dropped instead of failing the pipeline."""
    context = ray.data.DataContext.get_current()
    before = context.enable_progress_bars, context.max_errored_blocks
    context.enable_progress_bars, context.max_errored_blocks = False, -1
    try:
        yield
    finally:
        context.enable_progress_bars, context.max_errored_blocks = before


def _dataset(ray, spec: RunSpec, jobs: list[Job], concurrency: int, device: str):
    """The three stages over ``jobs``: rows of what :func:`write_row` keeps, one image per block."""
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
        override_num_blocks=len(jobs),  # one image per block: a dropped block is one image
    )
    with warnings.catch_warnings():
        # the retry bounds can only go as ``ray_remote_args`` (deprecated since Ray 2.60, which
        # has no named parameter for them yet): the warning is not the user's business
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        upscaled = rows.map(read_row, num_cpus=0.25, max_retries=TASK_RETRIES).map_batches(
            UpscaleActor,
            batch_size=1,
            # one image at a time on an actor: its death fails that image's try only
            compute=ray.data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=1),
            fn_constructor_kwargs={
                "spec": plain,
                "model_name": spec.model_name,
                "model_bytes": [model],
                "device": "cuda" if gpus else "cpu",
                "threads": spec.threads or max(1, int(cpus) // actors),
            },
            num_gpus=1 if gpus else 0,
            num_cpus=1 if gpus else max(0.5, min(1.0, (cpus - 1) / actors)),
            # Ray Data's default is unbounded (an image that kills its actor stalls the job for
            # ever). Each image may kill its actor on each try and the actor still comes back for
            # the others (a fixed pool never replaces an actor that is dead for good)
            max_restarts=(TASK_RETRIES + 1) * len(jobs),
            max_task_retries=TASK_RETRIES,
        )
        return upscaled.map(
            write_row,
            fn_kwargs={"overwrite": spec.overwrite, "job_id": spec.job_id},
            num_cpus=0.25,
            max_retries=TASK_RETRIES,
        )


def _pipeline(ray, spec: RunSpec, jobs: list[Job], concurrency: int, device: str, err) -> Iterator[Outcome]:
    returned: set[int] = set()
    failure = None
    with _data_context(ray):
        dataset = _dataset(ray, spec, jobs, concurrency, device)  # holds the model's reference too
        stream = iter(dataset.iter_rows())
        while True:
            try:
                row = next(stream)
            except StopIteration:
                break
            except Exception as e:  # the pipeline failed: what came back stays reported
                failure = e
                if spec.debug:
                    traceback.print_exception(e, file=err)
                break
            if row["warnings"]:
                print(row["warnings"], file=err)
            index = int(row["index"])
            returned.add(index)
            error = _row_error(row)
            if error is None:
                made = json.loads(row["made"]) if row["made"] else None
                yield Outcome(jobs[index], line=str(row["line"]), made=made)
            else:
                yield Outcome(jobs[index], error=error)
    for index, job in enumerate(jobs):
        if index not in returned:
            yield Outcome(job, error=_lost(job, failure))
