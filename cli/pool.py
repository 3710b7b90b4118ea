"""Every device of one machine: one spawned worker process per device, one shared queue of images.

``upscale --devices all|0,1,...|cpu,cpu`` starts a worker per listed device (``spawn``, so CUDA
is initialised in each worker only). Each worker loads its own copy of the model through the
same loader and runs the same :class:`.upscaler.Upscaler` as the single-process path, takes the
next image from the shared queue when it is free (fast devices take more), and writes each PNG
as it finishes (a temporary file renamed into place). The parent only hands out work and reports.

Interrupting (Ctrl-C) stops every worker: a worker's own interrupt or the parent's SIGTERM ends
its current write, whose temporary file is removed; the parent then removes any temporary file a
killed worker could not, so no partial file is left. A worker that dies (killed, driver crash)
fails the image it was on; the others carry on with the rest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import multiprocessing
import os
import queue
import runpy
import signal
from collections.abc import Iterator

import torch

from .errors import PARTIAL, CliError
from .outputs import Job, temporary_pattern
from .streams import LineStream
from .upscaler import Outcome, RunSpec, attempt

BOOT_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_worker_boot.py")
POLL_SECONDS = 0.5
STOP_SECONDS = 10.0  # how long stopped workers get to end their write before they are killed


def parse_devices(text: str) -> list[str]:
    """``--devices``: ``all`` (every CUDA device), CUDA indices ``0,1``, or ``cpu`` entries
    (``cpu,cpu`` = two CPU workers); entries may repeat (two workers on one GPU)."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if text.strip() == "all":
        if not count:
            raise CliError(
                "no CUDA device for --devices all",
                "--devices",
                "pass cpu,cpu for CPU workers, or run on a GPU",
            )
        return [f"cuda:{i}" for i in range(count)]
    devices = []
    for item in (part.strip().lower() for part in text.split(",")):
        if item == "cpu":
            devices.append("cpu")
            continue
        index = item.removeprefix("cuda:")
        if not index.isdigit():
            raise CliError(
                f"unknown device {item!r}", "--devices", "use all, CUDA indices like 0,1, or cpu,cpu"
            )
        if int(index) >= count:
            found = f"this machine has {count} CUDA device{'s' if count != 1 else ''}" if count else "no CUDA"
            raise CliError(f"no CUDA device {index}", "--devices", f"{found}; list existing ones, or use cpu")
        devices.append(f"cuda:{int(index)}")
    return devices


def _stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt  # the write in progress removes its temporary file


def worker_main(rank: int, device: str, spec: dict, threads: int, tasks, results) -> None:
    """A worker's life: load the model, then upscale images from ``tasks`` until told to stop.

    Runs in the spawned process (started through :data:`BOOT_SCRIPT`); everything it receives is
    plain data, since the pack is only importable once the boot script has registered it.
    """
    from ..engine.host import Settings
    from .models import load

    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    torch.set_num_threads(threads)
    err = LineStream(lambda line: results.put(("text", rank, line)))  # each line to the parent
    run_spec = RunSpec(**{**spec, "settings": Settings(**spec["settings"])})
    try:
        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(device))
        upscaler = run_spec.upscaler(load(run_spec.model_path), torch.device(device), err, err)
    except KeyboardInterrupt:  # stopped while loading: quietly (the parent reports the stop)
        return
    except CliError as e:
        results.put(("fatal", rank, str(e)))
        return
    except Exception as e:
        results.put(("fatal", rank, f"cannot start on {device}: {type(e).__name__}: {e}"))
        return
    try:
        while (task := tasks.get()) is not None:
            index, source, target = task
            results.put(("start", rank, index))
            outcome = attempt(upscaler, Job(source, target), err, run_spec.debug)
            if outcome.error is None:
                results.put(("done", rank, index, outcome.line, outcome.made))
            else:
                e = outcome.error
                results.put(("failed", rank, index, (e.what, e.file, e.todo, e.code)))
    except KeyboardInterrupt:
        return
    results.put(("exit", rank))


def _start(ctx, rank: int, device: str, spec: dict, threads: int, tasks, results):
    process = ctx.Process(
        target=runpy.run_path,
        args=(BOOT_SCRIPT,),
        kwargs={
            "init_globals": {"WORKER_ARGS": (rank, device, spec, threads, tasks, results)},
            "run_name": "__srt_worker__",
        },
        name=f"srt-upscale-{rank}-{device}",
        daemon=True,
    )
    process.start()
    return process


def _remove_temporaries(jobs: list[Job], job_id: str) -> None:
    """Remove temporary files a killed worker of job ``job_id`` left beside ``jobs``' targets
    (never another job's: theirs carry their own id)."""
    for job in jobs:
        for temp in glob.glob(temporary_pattern(job.target, job_id)):
            with contextlib.suppress(OSError):
                os.remove(temp)


def _stop(processes, jobs: list[Job], finished: bool, job_id: str) -> None:
    """End the workers: after a finished job they end by themselves; otherwise SIGTERM (each ends
    its write, removing the temporary file), SIGKILL if that takes too long."""
    if finished:
        for process in processes:
            process.join(STOP_SECONDS)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(STOP_SECONDS)
        if process.is_alive():
            process.kill()
            process.join()
    _remove_temporaries(jobs, job_id)


def run(spec: RunSpec, jobs: list[Job], devices: list[str], err) -> Iterator[Outcome]:
    """Upscale ``jobs`` with one worker per entry of ``devices``; yields outcomes as they finish."""
    if not jobs:
        return
    devices = devices[: len(jobs)]
    ctx = multiprocessing.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    for index, job in enumerate(jobs):
        tasks.put((index, job.source, job.target))
    for _ in devices:
        tasks.put(None)
    threads = spec.threads or max(1, (os.cpu_count() or 1) // len(devices))
    plain = {**dataclasses.asdict(spec), "settings": dataclasses.asdict(spec.settings)}
    processes = [
        _start(ctx, rank, device, plain, threads, tasks, results) for rank, device in enumerate(devices)
    ]
    outstanding, current, ended, fatal = set(range(len(jobs))), {}, set(), []
    finished = False
    try:
        while outstanding:
            try:
                message = results.get(timeout=POLL_SECONDS)
            except queue.Empty:
                for rank, process in enumerate(processes):
                    if rank not in ended and process.exitcode is not None and results.empty():
                        ended.add(rank)
                        index = current.pop(rank, None)
                        if index is not None and index in outstanding:
                            outstanding.discard(index)
                            yield Outcome(
                                jobs[index],
                                error=CliError(
                                    f"the worker on {devices[rank]} died (exit code {process.exitcode})",
                                    jobs[index].source,
                                    "the other images go on; run the command again to retry it",
                                    PARTIAL,
                                ),
                            )
                if len(ended) == len(processes):
                    reason = fatal[0] if fatal else "every worker ended"
                    for index in sorted(outstanding):
                        yield Outcome(
                            jobs[index], error=CliError("not upscaled", jobs[index].source, reason, PARTIAL)
                        )
                    break
                continue
            kind, rank, *rest = message
            if kind == "text":
                print(rest[0], file=err)
            elif kind == "start":
                current[rank] = rest[0]
            elif kind in ("done", "failed"):
                index = rest[0]
                current.pop(rank, None)
                outstanding.discard(index)
                if kind == "done":
                    yield Outcome(jobs[index], line=rest[1], made=rest[2])
                else:
                    yield Outcome(jobs[index], error=CliError(*rest[1]))
            elif kind == "fatal":
                fatal.append(rest[0])
                print(f"error: worker on {devices[rank]} could not start: {rest[0]}", file=err)
            elif kind == "exit":
                ended.add(rank)
        finished = True
    finally:
        _stop(processes, jobs, finished, spec.job_id)
