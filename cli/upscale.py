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
from collections.abc import Iterator
from typing import TextIO

import torch

from ..engine.host import Settings
from . import pool, ray_run
from .device import choose_device
from .errors import PARTIAL, CliError
from .models import DEFAULT_SCALE, default_model, find_model, load
from .outputs import Job, check_targets, plan_outputs
from .pool import parse_devices
from .progress import JobProgress
from .resume import job_record, plan_resume, write_record
from .upscaler import Outcome, RunSpec, attempt


def _in_this_process(spec: RunSpec, desc, device, jobs: list[Job], out, err) -> Iterator[Outcome]:
    upscaler = spec.upscaler(desc, device, out, err)
    threads = torch.get_num_threads()
    if spec.threads:
        torch.set_num_threads(spec.threads)
    try:
        for job in jobs:
            yield attempt(upscaler, job, err, spec.debug)
    finally:
        torch.set_num_threads(threads)


def _pixel_settings(settings: Settings) -> dict:
    """The settings that change an output's pixels (kept in the job record for resuming)."""
    return {
        "precision": settings.precision,
        "tile": settings.tile,
        "overlap": settings.overlap,
        "output_scale": settings.output_scale,
    }


def run(args, out: TextIO, err: TextIO) -> int:
    """The ``upscale`` command; returns the exit code."""
    if args.devices and args.ray is not None:
        raise CliError("--devices and --ray exclude each other", "--devices/--ray", "choose one")
    devices = parse_devices(args.devices) if args.devices else None
    device = choose_device(args.device) if devices is None and args.ray is None else None
    model_path = find_model(args.model) if args.model else default_model(args.scale or DEFAULT_SCALE)
    jobs = plan_outputs(args.inputs, args.output)
    check_targets([job.source for job in jobs], [job.target for job in jobs], overwrite=True)
    desc = load(model_path)
    resize = args.scale if args.model and args.scale and args.scale != desc.scale else 0
    settings = Settings(tile=args.tile, overlap=args.overlap, precision=args.precision, output_scale=resize)
    folder = None if len(jobs) == 1 and jobs[0].target == args.output else args.output
    record = job_record(model_path, _pixel_settings(settings))
    resume = plan_resume(jobs, folder, record, args.overwrite)
    if resize and not args.quiet:
        print(
            f"note: {os.path.basename(model_path)} is a x{desc.scale} model: its output is resized to x{resize}",
            file=err,
        )
    if resume.done and not args.quiet:
        print(f"resuming: {resume.done} of {len(jobs)} images are already in {folder}", file=err)
    if folder:
        write_record(folder, record)
    spec = RunSpec(
        model_path, settings, args.overwrite or resume.replace, args.quiet, args.debug, args.threads
    )
    start, failures, pending = time.perf_counter(), [], resume.pending
    if args.ray is not None:
        outcomes = ray_run.run(spec, pending, args.ray, args.concurrency, args.device, err)
    elif devices is not None:
        outcomes = pool.run(spec, pending, devices, err)
    else:
        outcomes = _in_this_process(spec, desc, device, pending, out, err)
    bar = JobProgress(err, len(pending), enabled=not args.quiet and err.isatty() and devices is not None)
    for outcome in outcomes:
        bar.clear()
        if outcome.error is not None:
            print(f"error: {outcome.error}", file=err)
            failures.append(outcome.error)
        elif not args.quiet:
            print(outcome.line, file=out)
        bar.advance()
    bar.finish()
    written = len(pending) - len(failures)
    if len(jobs) > 1 and not args.quiet and not pending:
        print(f"nothing to do: all {len(jobs)} images are already in {args.output}", file=out)
    elif len(jobs) > 1 and not args.quiet:
        failed = f"; {len(failures)} failed" if failures else ""
        kept = f"; {resume.done} were already there" if resume.done else ""
        print(
            f"{written} of {len(pending)} images written to {args.output} in "
            f"{time.perf_counter() - start:.1f} s{failed}{kept}",
            file=out,
        )
    if not failures:
        return 0
    return PARTIAL if written or resume.done else max(e.code for e in failures)
