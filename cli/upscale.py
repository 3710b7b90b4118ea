"""``upscale``: image files or folders in, PNGs out, through the pack's engine.

Inputs are checked, outputs planned (:func:`.outputs.plan_outputs`: never an input, never an
existing file without ``--overwrite``) and the model resolved before anything runs, so a typo
fails at once. Each image is then read, planned (:func:`..engine.plan.plan`), upscaled tile by
tile (:func:`..engine.runner.upscale`) and written (:func:`.outputs.save_png`: a temporary file
renamed over the target); an image that fails, for whatever reason, is reported on one line
naming it and the others still run.
"""

from __future__ import annotations

import os
import time
import traceback
from typing import TextIO

import torch

from ..engine.channels import ChannelError
from ..engine.host import Settings
from ..engine.memory import looks_like_oom
from ..engine.plan import plan
from ..engine.runner import NonFiniteOutputError, upscale
from .device import choose_device, make_host
from .errors import PARTIAL, CliError, first_line
from .images import read_image
from .models import DEFAULT_SCALE, default_model, find_model, load
from .outputs import Job, check_targets, exists_error, plan_outputs, save_png
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
    """Upscales images with one model and one set of settings, reporting to ``out``/``err``."""

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
    ):
        self.desc, self.model_name, self.settings, self.device = desc, model_name, settings, device
        self.out: TextIO = out
        self.err: TextIO = err
        self.quiet = quiet
        self.overwrite = overwrite
        self.show_progress = not quiet and err.isatty()

    def run(self, job: Job) -> None:
        """Upscale one image and write it; :class:`CliError` naming the image if it fails."""
        picture = read_image(job.source)
        image = picture.pixels[None]
        name = os.path.basename(job.source)
        bar = TileProgress(self.err, name, self.show_progress)

        def warn(message: str) -> None:
            bar.close()
            print(f"warning: {message} ({job.source})", file=self.err)

        for note in picture.notes:
            warn(note)
        try:
            run_plan = plan(self.desc, image.shape, self.settings, self.device)
            if self.show_progress:
                print(f"{name}: {run_plan.describe()}", file=self.err)
            start = time.perf_counter()
            result = upscale(
                self.desc, image, self.settings, make_host(self.device, bar, warn), run_plan=run_plan
            )
            seconds = time.perf_counter() - start
        except Exception as e:  # ValueError, TypeError, ... too: the other images still run
            raise _run_error(e, job.source) from e
        finally:
            bar.close()
        try:
            save_png(job.target, result.image[0], picture.bits, overwrite=self.overwrite)
        except FileExistsError as e:  # appeared while this image ran
            raise exists_error([job.target]) from e
        except OSError as e:
            raise CliError("cannot write the output", job.target, f"{first_line(e)}; check the folder") from e
        if not self.quiet:
            print(self.summary(job, picture, result, seconds), file=self.out)

    def summary(self, job: Job, picture, result, seconds: float) -> str:
        """One line: files, sizes, model, dtype, tiles, seconds."""
        (h, w), (out_h, out_w), report = picture.pixels.shape[:2], result.image.shape[1:3], result.report
        dtype = str(report.dtype).removeprefix("torch.")
        extras = []
        if report.fp32_from_tile:
            extras.append(f"float32 from tile {report.fp32_from_tile}")
        elif report.nonfinite_tiles:
            extras.append(f"{report.nonfinite_tiles} tiles redone in float32")
        if report.oom_backoffs:
            extras.append(f"{report.oom_backoffs} out-of-memory back-offs")
        extra = f" ({'; '.join(extras)})" if extras else ""
        return (
            f"{job.source} -> {job.target}: {w}x{h} -> {out_w}x{out_h} {picture.kind}; {self.model_name}, "
            f"{dtype}, {report.tiles_run} tile{'s' if report.tiles_run != 1 else ''} of {report.tile[1]}x{report.tile[0]} "
            f"(overlap {report.overlap}), {seconds:.2f} s{extra}"
        )


def run(args, out: TextIO, err: TextIO) -> int:
    """The ``upscale`` command; returns the exit code."""
    device = choose_device(args.device)
    model_path = find_model(args.model) if args.model else default_model(args.scale or DEFAULT_SCALE)
    jobs = plan_outputs(args.inputs, args.output)
    check_targets([job.source for job in jobs], [job.target for job in jobs], args.overwrite)
    desc = load(model_path)
    resize = args.scale if args.model and args.scale and args.scale != desc.scale else 0
    settings = Settings(tile=args.tile, overlap=args.overlap, precision=args.precision, output_scale=resize)
    if resize and not args.quiet:
        print(
            f"note: {os.path.basename(model_path)} is a x{desc.scale} model: its output is resized to x{resize}",
            file=err,
        )
    upscaler = Upscaler(
        desc, os.path.basename(model_path), settings, device, out, err, args.quiet, args.overwrite
    )
    start, failures = time.perf_counter(), []
    for job in jobs:
        try:
            upscaler.run(job)
        except Exception as e:  # one image's failure, whatever it is, never stops the others
            error = e if isinstance(e, CliError) else _image_error(e, job.source)
            if args.debug:
                traceback.print_exception(e, file=err)
            print(f"error: {error}", file=err)
            failures.append(error)
    written = len(jobs) - len(failures)
    if len(jobs) > 1 and not args.quiet:
        failed = f"; {len(failures)} failed" if failures else ""
        print(
            f"{written} of {len(jobs)} images written to {args.output} in {time.perf_counter() - start:.1f} s{failed}",
            file=out,
        )
    if not failures:
        return 0
    return PARTIAL if written else max(e.code for e in failures)
