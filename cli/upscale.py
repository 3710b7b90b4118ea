"""``upscale``: image files or folders in, PNGs out, through the pack's engine.

Inputs are checked, outputs planned (:func:`.outputs.plan_outputs`: never an input, never an
existing file without ``--overwrite``) and the model resolved before anything runs, so a typo
fails at once. Each image is then read, planned (:func:`..engine.plan.plan`), upscaled tile by
tile (:func:`..engine.runner.upscale`) and written (:func:`.outputs.save_png`: a temporary file
renamed over the target); an image that fails, for whatever reason, is reported on one line
naming it and the others still run.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from typing import TextIO

import torch

from ..engine.host import Settings
from ..engine.precision import choose_precision
from . import pool, ray_run
from .compile_policy import decide
from .device import choose_device
from .errors import PARTIAL, CliError
from .joblock import JobLock
from .models import DEFAULT_SCALE, default_model, find_model, load
from .outputs import Job, check_targets, plan_outputs
from .pool import parse_devices
from .progress import JobProgress
from .resume import job_identity, log_output, logged_outputs, plan_resume
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


def _pixel_settings(settings: Settings, backend: str) -> dict:
    """The settings that change an output's pixels (kept in the job record for resuming)."""
    pixels = {
        "precision": settings.precision,
        "tile": settings.tile,
        "overlap": settings.overlap,
        "output_scale": settings.output_scale,
    }
    return pixels if backend == "torch" else {"backend": backend, **pixels}  # torch: as logged before


def _compiles(args, desc, settings: Settings, jobs: list[Job], device, devices) -> bool:
    """``--compile`` for this job (see :mod:`.compile_policy`): the device kinds it runs on and the
    processes that each compile their own graphs. With ``--ray``, ``auto`` assumes ``--concurrency``
    actors (1 when automatic) on CUDA with ``--device cuda``, else on the CPU."""
    if devices is not None:
        kinds, workers = {torch.device(d).type for d in devices}, min(len(devices), len(jobs))
    elif args.ray is not None:
        kinds, workers = {"cuda" if args.device == "cuda" else "cpu"}, args.concurrency or 1
    else:
        kinds, workers = {device.type}, 1
    return decide(args.compile, desc, [job.source for job in jobs], settings, kinds, workers)


def _kinds(args, device, devices) -> set[str]:
    """The device kinds this job's images are made on (``--ray`` with ``--device auto``: either)."""
    if devices is not None:
        return {torch.device(d).type for d in devices}
    if device is not None:
        return {device.type}
    return {"cpu"} if args.device == "cpu" else {"cuda"} if args.device == "cuda" else {"cpu", "cuda"}


def _dtypes(desc, settings: Settings, kinds: set[str]) -> set[str]:
    """The dtypes ``settings.precision`` resolves to on ``kinds`` (what resumed outputs must have).
    A CUDA kind this machine cannot see (``--ray`` to a cluster) is taken to run bf16 well."""
    names = set()
    for kind in kinds:
        bf16_ok = None if kind == "cpu" or torch.cuda.is_available() else True
        chosen = choose_precision(
            settings.precision, torch.device(kind), desc.supports_half, desc.supports_bfloat16, bf16_ok
        )
        names.add(str(chosen.dtype).removeprefix("torch."))
    return names


def _check_ray() -> None:
    """``--ray`` without Ray: exit 2 before anything is loaded or written."""
    try:
        import ray  # noqa: F401
    except ImportError as e:
        raise CliError("Ray is not installed", "--ray", ray_run.INSTALL_HINT) from e


def _check_backend(args) -> None:
    """``--backend`` other than torch: this process, the CPU, no compile, fp32/fp16, its packages."""
    if args.backend == "torch":
        return
    from .backends import check_backend

    option = f"--backend {args.backend}"
    for given, what in (
        (args.devices, "--devices"),
        (args.ray is not None, "--ray"),
        (args.device == "cuda", "--device cuda"),
        (args.compile == "on", "--compile on"),
        (args.precision == "bf16", "--precision bf16"),
    ):
        if given:
            raise CliError(
                f"{option} runs fp32/fp16 on the CPU in this process, not with {what}", option, f"drop {what}"
            )
    check_backend(args.backend)


def run(args, out: TextIO, err: TextIO) -> int:
    """The ``upscale`` command; returns the exit code."""
    if args.devices and args.ray is not None:
        raise CliError("--devices and --ray exclude each other", "--devices/--ray", "choose one")
    _check_backend(args)
    if args.backend != "torch":
        args.device, args.compile = "cpu", "off"
    if args.ray is not None:
        _check_ray()
    devices = parse_devices(args.devices) if args.devices else None
    device = choose_device(args.device) if devices is None and args.ray is None else None
    model_path = find_model(args.model) if args.model else default_model(args.scale or DEFAULT_SCALE)
    planned = plan_outputs(args.inputs, args.output)
    folder = None if len(planned) == 1 and planned[0].target == args.output else args.output
    lock = JobLock(folder).acquire() if folder else None
    try:
        return _run_locked(args, out, err, model_path, folder, lock, device, devices)
    finally:
        if lock is not None:
            lock.release()


def _run_locked(args, out, err, model_path, folder, lock, device, devices) -> int:
    """The job, with the output folder's lock held (:mod:`.joblock`)."""
    # outputs an earlier run wrote into a folder it also reads are not inputs
    jobs = plan_outputs(
        args.inputs, args.output, frozenset(logged_outputs(folder)) if folder else frozenset()
    )
    check_targets([job.source for job in jobs], [job.target for job in jobs], overwrite=True)
    desc = load(model_path)
    resize = args.scale if args.model and args.scale and args.scale != desc.scale else 0
    settings = Settings(tile=args.tile, overlap=args.overlap, precision=args.precision, output_scale=resize)
    identity = job_identity(model_path, _pixel_settings(settings, args.backend))
    if args.backend != "torch":
        from .backends import graph_descriptor

        desc = graph_descriptor(desc, args.backend, identity["model_sha256"], err, args.quiet)
    resume = plan_resume(
        jobs, folder, identity, _dtypes(desc, settings, _kinds(args, device, devices)), args.overwrite
    )
    if resize and not args.quiet:
        print(
            f"note: {os.path.basename(model_path)} is a x{desc.scale} model: its output is resized to x{resize}",
            file=err,
        )
    if resume.done and not args.quiet:
        print(f"resuming: {resume.done} of {len(jobs)} images are already in {folder}", file=err)
    if resume.redo and not args.quiet:
        print(
            f"note: {resume.redo} image{'s' * (resume.redo != 1)} in {folder} were made with other settings "
            "or changed since: making them again",
            file=err,
        )
    compiles = _compiles(args, desc, settings, resume.pending, device, devices)
    if compiles and args.compile == "auto" and not args.quiet:
        print("note: --compile auto: compiling the model (its first tiles take longer)", file=err)
    settings = dataclasses.replace(settings, compile=compiles)
    replace = args.overwrite or resume.redo > 0
    job_id = lock.job_id if lock is not None else "x"
    spec = RunSpec(model_path, settings, replace, args.quiet, args.debug, args.threads, job_id)
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
        else:
            if folder:
                log_output(folder, outcome.job, identity, outcome.made or {})
            if not args.quiet:
                print(outcome.line, file=out)
        bar.advance()
    bar.finish()
    written = len(pending) - len(failures)
    if len(jobs) > 1 and not args.quiet and not pending:
        print(f"nothing to do: all {len(jobs)} images are already in {args.output}", file=out)
    elif len(jobs) > 1 and not args.quiet:
        failed = f"; {len(failures)} failed" if failures else ""
        kept = f"; {resume.done} {'was' if resume.done == 1 else 'were'} already there" if resume.done else ""
        print(
            f"{written} of {len(pending)} images written to {args.output} in "
            f"{time.perf_counter() - start:.1f} s{failed}{kept}",
            file=out,
        )
    if not failures:
        return 0
    return PARTIAL if written or resume.done else max(e.code for e in failures)
