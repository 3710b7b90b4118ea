"""``upscale``: image files or folders in, PNGs out, through the pack's engine.

Inputs are checked and the model resolved before anything runs, so a typo fails at once. Each
image is then read, planned (:func:`..engine.plan.plan`), upscaled tile by tile
(:func:`..engine.runner.upscale`) and written; an image that fails is reported on one line and
the others still run.
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
from .device import choose_device, make_host
from .errors import PARTIAL, CliError, first_line
from .images import IMAGE_EXTENSIONS, is_image_file, read_image, write_png
from .models import DEFAULT_SCALE, default_model, find_model, load
from .progress import TileProgress


@dataclass(frozen=True)
class Job:
    """One image to upscale and where its PNG goes."""

    source: str
    target: str


def _sources(inputs: list[str]) -> tuple[list[str], bool]:
    """The image files named by ``inputs`` (folders: their images, by name) and whether any was a folder."""
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


def plan_jobs(inputs: list[str], output: str) -> list[Job]:
    """Where each input goes: ``output`` itself for one image file, else ``output/<name>.png``."""
    files, any_folder = _sources(inputs)
    single = len(files) == 1 and not any_folder and not os.path.isdir(output)
    extension = os.path.splitext(output)[1].lower()
    if single and extension:
        if extension != ".png":
            raise CliError("the output is always a PNG", output, "give the output file a .png name")
        jobs = [Job(files[0], output)]
    else:
        if os.path.isfile(output) or extension == ".png":
            raise CliError(
                "several images need an output folder",
                output,
                "pass a folder with -o (it is created if needed)",
            )
        jobs, taken = [], set()
        for path in files:
            stem, ext = os.path.splitext(os.path.basename(path))
            name = f"{stem}.png" if f"{stem}.png" not in taken else f"{stem}_{ext.lstrip('.')}.png"
            taken.add(name)
            jobs.append(Job(path, os.path.join(output, name)))
    for job in jobs:
        if os.path.exists(job.target) and os.path.samefile(job.source, job.target):
            raise CliError("the output would overwrite the input", job.source, "choose another output")
    return jobs


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
    return CliError("the model cannot process this image", source, first_line(e))


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
    ):
        self.desc, self.model_name, self.settings, self.device = desc, model_name, settings, device
        self.out: TextIO = out
        self.err: TextIO = err
        self.quiet = quiet
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
        except (ChannelError, NonFiniteOutputError, RuntimeError, MemoryError) as e:
            raise _run_error(e, job.source) from e
        finally:
            bar.close()
        folder = os.path.dirname(job.target)
        try:
            if folder:
                os.makedirs(folder, exist_ok=True)
            write_png(job.target, result.image[0], picture.bits)
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
    jobs = plan_jobs(args.inputs, args.output)
    desc = load(model_path)
    resize = args.scale if args.model and args.scale and args.scale != desc.scale else 0
    settings = Settings(tile=args.tile, overlap=args.overlap, precision=args.precision, output_scale=resize)
    if resize and not args.quiet:
        print(
            f"note: {os.path.basename(model_path)} is a x{desc.scale} model: its output is resized to x{resize}",
            file=err,
        )
    upscaler = Upscaler(desc, os.path.basename(model_path), settings, device, out, err, args.quiet)
    start, failures = time.perf_counter(), []
    for job in jobs:
        try:
            upscaler.run(job)
        except CliError as e:
            if args.debug:
                traceback.print_exception(e, file=err)
            print(f"error: {e}", file=err)
            failures.append(e)
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
