"""One image through the pack's engine: read, upscale, write, and what became of it.

:class:`Upscaler` is what every way of running ``upscale`` shares -- this process, one worker per
device (:mod:`.pool`) and Ray actors (:mod:`.ray_run`) -- so all of them write the same files.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass
from typing import TextIO

import torch

from ..engine.channels import ChannelError
from ..engine.host import Settings
from ..engine.memory import looks_like_oom
from ..engine.plan import plan
from ..engine.runner import NonFiniteOutputError, upscale
from .device import make_host
from .errors import PARTIAL, CliError, first_line
from .images import Picture, read_image
from .outputs import Job, exists_error, save_png
from .progress import TileProgress


def _run_error(e: Exception, source: str) -> CliError:
    """A failure of the model on one image as a :class:`CliError` naming the image."""
    if looks_like_oom(e):
        return CliError(
            "out of memory even with the smallest tile",
            source,
            "close other programs, or use a smaller model",
            PARTIAL,
        )
    if isinstance(e, NonFiniteOutputError):
        return CliError("the model produced NaN/inf", source, first_line(e), PARTIAL)
    if isinstance(e, (ChannelError, RuntimeError)):
        return CliError("the model cannot process this image", source, first_line(e))
    return CliError(
        "the model cannot process this image",
        source,
        f"{type(e).__name__}: {first_line(e)}; run again with --debug for the traceback and report it",
        PARTIAL,
    )


def _image_error(e: Exception, source: str) -> CliError:
    """An unexpected failure around one image (a bug) as one line naming the image."""
    return CliError(
        f"unexpected {type(e).__name__}",
        source,
        f"{first_line(e)}; run again with --debug for the traceback and report it",
        PARTIAL,
    )


class Upscaler:
    """Upscales images with one model and one set of settings, reporting to ``out``/``err``.

    ``compile_backend``: ``torch.compile``'s backend when ``settings.compile`` (tests swap in a
    cheap one).
    """

    compile_backend: object = "inductor"

    def __init__(
        self,
        desc,
        model_name: str,
        settings: Settings,
        device: torch.device,
        out: TextIO,
        err: TextIO,
        quiet: bool,
        overwrite: bool = False,
        job_id: str = "x",
    ):
        self.desc, self.model_name, self.settings, self.device = desc, model_name, settings, device
        self.job_id = job_id
        self.made: dict = {}  # what the last image was made with (the job log records it)
        self.out: TextIO = out
        self.err: TextIO = err
        self.quiet = quiet
        self.overwrite = overwrite
        self.show_progress = not quiet and err.isatty()

    def run(self, job: Job) -> str:
        """Upscale one image and write it; returns its summary line. :class:`CliError` naming the
        image if it fails."""
        picture = self.read(job)
        result, seconds = self.compute(job, picture)
        self.write(job, picture, result)
        self.made = made_with(result.report, self.device)
        return self.summary(job, picture, result, seconds)

    def read(self, job: Job) -> Picture:
        """The input image (warnings about how it was read go to ``err``)."""
        picture = read_image(job.source)
        for note in picture.notes:
            print(f"warning: {note} ({job.source})", file=self.err)
        return picture

    def compute(self, job: Job, picture: Picture, bar: TileProgress | None = None):
        """``(result, seconds)`` of the engine on ``picture``; ``bar`` draws its tiles."""
        image = picture.pixels[None]
        name = os.path.basename(job.source)
        bar = bar or TileProgress(self.err, name, self.show_progress)

        def warn(message: str) -> None:
            bar.close()
            print(f"warning: {message} ({job.source})", file=self.err)

        try:
            run_plan = plan(self.desc, image.shape, self.settings, self.device)
            if self.show_progress:
                print(f"{name}: {run_plan.describe()}", file=self.err)
            start = time.perf_counter()
            result = upscale(
                self.desc,
                image,
                self.settings,
                make_host(self.device, bar, warn, self.compile_backend),
                run_plan=run_plan,
            )
            return result, time.perf_counter() - start
        except Exception as e:  # ValueError, TypeError, ... too: the other images still run
            raise _run_error(e, job.source) from e
        finally:
            bar.close()

    def write(self, job: Job, picture: Picture, result) -> None:
        """Write the output PNG (a temporary file renamed over the target)."""
        try:
            save_png(job.target, result.image[0], picture.bits, overwrite=self.overwrite, job_id=self.job_id)
        except FileExistsError as e:  # appeared while this image ran
            raise exists_error([job.target]) from e
        except OSError as e:
            # one image's failure, as under Ray: the other images go on, exit 1
            raise CliError(
                "cannot write the output", job.target, f"{first_line(e)}; check the folder", PARTIAL
            ) from e

    def summary(self, job: Job, picture, result, seconds: float) -> str:
        """One line: files, sizes, model, dtype, tiles, seconds, and what the compiler did if it ran."""
        (h, w), (out_h, out_w), report = picture.pixels.shape[:2], result.image.shape[1:3], result.report
        dtype = str(report.dtype).removeprefix("torch.")
        extras = []
        if report.fp32_from_tile:
            extras.append(f"float32 from tile {report.fp32_from_tile}")
        elif report.nonfinite_tiles:
            extras.append(f"{report.nonfinite_tiles} tiles redone in float32")
        if report.oom_backoffs:
            extras.append(f"{report.oom_backoffs} out-of-memory back-offs")
        if report.compile.tiles:
            compiling = report.compile.graphs and report.compile_seconds >= 0.05  # else timing noise
            cost = f", about {report.compile_seconds:.1f} s compiling" if compiling else ""
            extras.append(f"compiled: {report.compile.describe()}{cost}")
        extra = f" ({'; '.join(extras)})" if extras else ""
        return (
            f"{job.source} -> {job.target}: {w}x{h} -> {out_w}x{out_h} {picture.kind}; {self.model_name}, "
            f"{dtype}, {report.tiles_run} tile{'s' if report.tiles_run != 1 else ''} of {report.tile[1]}x{report.tile[0]} "
            f"(overlap {report.overlap}), {seconds:.2f} s{extra}"
        )


def made_with(report, device) -> dict:
    """What resuming compares besides the settings asked for: the dtype the run resolved to, the
    device kind and the tile it used (``precision auto`` is fp32 on a CPU, bf16 on most GPUs)."""
    return {
        "dtype": str(report.dtype).removeprefix("torch."),
        "device": torch.device(device).type,
        "tile": list(report.tile),
    }


@dataclass(frozen=True)
class Outcome:
    """What became of one image: its summary line, or the error naming it."""

    job: Job
    line: str | None = None
    error: CliError | None = None
    made: dict | None = None  # what a written image was made with (:func:`made_with`)


@dataclass(frozen=True)
class RunSpec:
    """Everything a worker needs to build its own :class:`Upscaler` (picklable)."""

    model_path: str
    settings: Settings
    overwrite: bool
    quiet: bool
    debug: bool = False
    threads: int = 0  # torch CPU threads of each process (0: torch's default, or cores / CPU workers)
    job_id: str = "x"  # the job's id (its temporary files carry it: cleanup touches only its own)

    @property
    def model_name(self) -> str:
        return os.path.basename(self.model_path)

    def upscaler(self, desc, device: torch.device, out: TextIO, err: TextIO) -> Upscaler:
        return Upscaler(
            desc, self.model_name, self.settings, device, out, err, self.quiet, self.overwrite, self.job_id
        )


def attempt(upscaler: Upscaler, job: Job, err: TextIO, debug: bool) -> Outcome:
    """Run one job; any failure becomes an :class:`Outcome` with a one-line error (never raised)."""
    try:
        line = upscaler.run(job)
        return Outcome(job, line=line, made=upscaler.made)
    except Exception as e:  # one image's failure, whatever it is, never stops the others
        if debug:
            traceback.print_exception(e, file=err)
        return Outcome(job, error=e if isinstance(e, CliError) else _image_error(e, job.source))
