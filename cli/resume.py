"""Resuming a folder job: which planned outputs are already written, and by whom.

A folder run keeps a log in its output folder, :data:`RECORD_NAME`: one JSON line per PNG,
appended once the PNG has been renamed into place (:func:`.outputs.write_atomically`), saying
what made it -- the model file's SHA-256, the settings that change pixels (precision asked and
the dtype it resolved to, tile, overlap, scale) -- which input it came from (path, size,
modification time) and the PNG's own size and modification time. Like rsync, a later run skips an
output only when the log traces it to this job's settings and neither the PNG nor its input has
changed since; everything else is done again:

* an output the log attributes to other settings or another model (e.g. a ``--overwrite`` run
  stopped half-way) is redone, never taken as complete;
* an output the log does not know (a file that was there before, or one added by hand) is an
  error unless ``--overwrite`` -- it may be somebody's file.

The log is written by the one process that holds the folder's lock (:mod:`.joblock`), so two
jobs never write into one folder at once.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

from .outputs import Job, exists_error

RECORD_NAME = ".srt_upscale_job.jsonl"
RECORD_VERSION = 2
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the IEND chunk every complete PNG ends with


def is_complete_png(path: str) -> bool:
    """Whether ``path`` starts with the PNG signature and ends with the IEND chunk."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(_PNG_SIGNATURE))
            if os.fstat(f.fileno()).st_size < len(_PNG_SIGNATURE) + len(_PNG_END):
                return False
            f.seek(-len(_PNG_END), os.SEEK_END)
            return head == _PNG_SIGNATURE and f.read() == _PNG_END
    except OSError:
        return False


def file_digest(path: str, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def job_identity(model_path: str, settings: dict) -> dict:
    """What this job's outputs must have been made with: the model file and the settings that
    change pixels (as asked; the dtype each output resolved to is logged beside it)."""
    return {
        "version": RECORD_VERSION,
        "model": os.path.basename(model_path),
        "model_bytes": os.path.getsize(model_path),
        "model_sha256": file_digest(model_path),
        "settings": settings,
    }


def file_stamp(path: str) -> dict | None:
    """``{"size", "mtime_ns"}`` of a file, None when it does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


@dataclass(frozen=True)
class Resume:
    """The jobs still to run and how many planned outputs were found done by this job's settings.

    Attributes:
        pending: jobs to run.
        done: planned outputs already written by this job's settings.
        redo: outputs the log attributes to other settings (or that changed since): replaced.
    """

    pending: list[Job]
    done: int
    redo: int = 0


def read_log(folder: str) -> dict[str, dict]:
    """Per output file name, the log's last entry for it (an empty dict when there is no log)."""
    entries: dict[str, dict] = {}
    try:
        with open(os.path.join(folder, RECORD_NAME), encoding="utf-8") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line cut by a crash: that output is simply not known
                if isinstance(entry, dict) and isinstance(entry.get("output"), str):
                    entries[entry["output"]] = entry
    except OSError:
        pass
    return entries


def log_output(folder: str, job: Job, identity: dict, made: dict) -> None:
    """Append ``job``'s entry (after its PNG was renamed into place): what made it, from which input.

    Args:
        folder: the output folder (holding the log).
        job: the image just written.
        identity: :func:`job_identity` of this job.
        made: what the run resolved (``dtype``, ``device``, ``tile``).
    """
    entry = {
        "output": os.path.basename(job.target),
        "identity": identity,
        "made": made,
        "input": {"path": os.path.abspath(job.source), **(file_stamp(job.source) or {})},
        "png": file_stamp(job.target),
    }
    with open(os.path.join(folder, RECORD_NAME), "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def traced(entry: dict | None, job: Job, identity: dict, dtypes: set[str]) -> bool:
    """Whether the log ``entry`` traces ``job``'s existing PNG to this job: same model and settings,
    a dtype this job resolves to, the same input unchanged, and the PNG as it was written."""
    if entry is None or entry.get("identity") != identity:
        return False
    if (entry.get("made") or {}).get("dtype") not in dtypes:
        return False
    source = {"path": os.path.abspath(job.source), **(file_stamp(job.source) or {})}
    return entry.get("input") == source and entry.get("png") == file_stamp(job.target)


def plan_resume(
    jobs: list[Job], folder: str | None, identity: dict, dtypes: set[str], overwrite: bool
) -> Resume:
    """Which of ``jobs`` to run.

    Args:
        jobs: the planned jobs (:func:`.outputs.plan_outputs`; never an input as target).
        folder: the output folder of a folder run; None for one image written to a named file
            (no log: an existing file is replaced only with ``overwrite``).
        identity: this job's :func:`job_identity`.
        dtypes: the dtypes this job's outputs are made in (per device it runs on).
        overwrite: replace existing outputs (every job runs).

    Raises:
        CliError: outputs exist that no job of ours is logged to have written (they may be
            somebody's files), and ``overwrite`` is not set.
    """
    existing = [job for job in jobs if os.path.exists(job.target)]
    if overwrite or not existing:
        return Resume(list(jobs), 0)
    log = read_log(folder) if folder else {}
    unknown = [job.target for job in existing if os.path.basename(job.target) not in log]
    if unknown:
        raise exists_error(unknown)
    done = {
        job.target for job in existing if traced(log[os.path.basename(job.target)], job, identity, dtypes)
    }
    pending = [job for job in jobs if job.target not in done]
    return Resume(pending, len(done), redo=len(existing) - len(done))


def logged_outputs(folder: str) -> set[str]:
    """Absolute paths of the outputs the log in ``folder`` names (never inputs of a later run)."""
    return {os.path.abspath(os.path.join(folder, name)) for name in read_log(folder)}
