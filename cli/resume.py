"""Resuming a folder job: which planned outputs are already written, and whether they belong to it.

A folder run writes a small job record, :data:`RECORD_NAME`, into its output folder before the
first image: the model file (name, size, SHA-256) and the settings that change pixels. Running
the same command again on the same folder finds the record and skips every image whose PNG is
already complete, so a stopped job of a million images continues where it stopped. Outputs are
only ever renamed into place once fully written (:func:`.outputs.write_atomically`), so a target
that exists is complete; :func:`is_complete_png` still checks the file's first and last bytes, and
an incomplete one (written by something else, or a disk that filled up) is done again.

Existing outputs without a matching record (another model, other settings, or files that were
there before) are never skipped silently: the run stops with an error unless ``--overwrite``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

from .errors import CliError
from .outputs import Job, exists_error, write_atomically

RECORD_NAME = ".srt_upscale_job.json"
RECORD_VERSION = 1
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


def job_record(model_path: str, settings: dict) -> dict:
    """What identifies a job's outputs: the model file and the settings that change pixels."""
    return {
        "version": RECORD_VERSION,
        "model": os.path.basename(model_path),
        "model_bytes": os.path.getsize(model_path),
        "model_sha256": file_digest(model_path),
        "settings": settings,
    }


@dataclass(frozen=True)
class Resume:
    """The jobs still to run, how many planned outputs were found complete, and whether the
    remaining ones may replace a file (an incomplete output of this same job)."""

    pending: list[Job]
    done: int
    replace: bool = False


def plan_resume(jobs: list[Job], folder: str | None, record: dict, overwrite: bool) -> Resume:
    """Which of ``jobs`` to run.

    Args:
        jobs: the planned jobs (:func:`.outputs.plan_outputs`; never an input as target).
        folder: the output folder of a folder run; None for one image written to a named file
            (no record: an existing file is replaced only with ``overwrite``).
        record: this run's :func:`job_record`.
        overwrite: replace existing outputs (every job runs) and the folder's record.

    Raises:
        CliError: outputs exist that this job did not write (no record, or another model or
            settings) and ``overwrite`` is not set.
    """
    existing = [job for job in jobs if os.path.exists(job.target)]
    if overwrite or not existing:
        return Resume(list(jobs), 0)
    found = read_record(folder) if folder else None
    if found != record:
        error = exists_error([job.target for job in existing])
        if found is not None:
            error = CliError(
                "the output folder holds another job's images",
                os.path.join(folder, RECORD_NAME),
                f"they were made by {found.get('model', '?')} with other settings; pass --overwrite to "
                "replace them, or choose another -o",
            )
        raise error
    complete = {job.target for job in existing if is_complete_png(job.target)}
    return Resume([job for job in jobs if job.target not in complete], len(complete), replace=True)


def read_record(folder: str) -> dict | None:
    """The job record in ``folder``; None when there is none or it is unreadable."""
    try:
        with open(os.path.join(folder, RECORD_NAME), encoding="utf-8") as f:
            found = json.load(f)
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def write_record(folder: str, record: dict) -> None:
    """Write ``record`` into ``folder`` (atomically; the folder is created if needed)."""
    text = json.dumps(record, indent=1, sort_keys=True).encode()
    write_atomically(os.path.join(folder, RECORD_NAME), lambda f: f.write(text))
