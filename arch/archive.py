"""Reading a checkpoint's zip archive within a byte budget (no zip bomb fills the memory).

``torch.save`` stores archive members uncompressed, so a real checkpoint unpacks to about its own
size. A crafted file can instead hold members that inflate a thousandfold (a few MB of deflated
zeros claiming gigabytes). Every path that unpacks a zip checkpoint (``torch.load`` in
:mod:`.loader`, the restricted unpickler in :mod:`.safe_unpickle`, and so ``GET /srt/model_info``)
first checks the sizes the archive declares, then counts the bytes really inflated, reading in
chunks and stopping at the budget.
"""

from __future__ import annotations

import os
import zipfile

from .errors import CheckpointReadError

INFLATE_RATIO = 16  # budget over the file's size: stored members are 1x, deflated weights < 2x
MIN_BUDGET = 1 << 20  # bytes: small files may still hold a few deflated members
CHUNK = 1 << 20  # bytes inflated per read


def inflate_budget(path: str) -> int:
    """Bytes the members of the zip checkpoint at ``path`` may unpack to in total."""
    return max(MIN_BUDGET, INFLATE_RATIO * os.path.getsize(path))


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


class InflateBudget:
    """Bytes left to inflate from one archive; :meth:`charge` raises once they are spent.

    Args:
        name: the file's name, for messages.
        limit: total bytes the members may unpack to.
    """

    def __init__(self, name: str, limit: int) -> None:
        self.name, self.limit, self.used = name, limit, 0

    def error(self, member: str, size: int, how: str) -> CheckpointReadError:
        return CheckpointReadError(
            f"{self.name}: archive member {member!r:.120} {how} {_mib(size)}, more than the "
            f"{_mib(self.limit)} this file may unpack to ({INFLATE_RATIO}x its size; a PyTorch "
            "checkpoint unpacks to about its own size). The file is damaged or a zip bomb and was "
            "not unpacked: download the model again from its source."
        )

    def check_declared(self, archive: zipfile.ZipFile) -> None:
        """Refuse an archive whose declared member sizes add up to more than the budget."""
        declared = 0
        for info in archive.infolist():
            declared += info.file_size
            if declared > self.limit:
                raise self.error(info.filename, declared, "brings the declared unpacked size to")

    def charge(self, member: str, n: int) -> None:
        self.used += n
        if self.used > self.limit:
            raise self.error(member, self.used, "inflates the archive to at least")

    def read(self, archive: zipfile.ZipFile, member: str) -> bytearray:
        """The bytes of ``member``, inflated ``CHUNK`` at a time, charged as they come."""
        data = bytearray()
        with archive.open(member) as f:
            while chunk := f.read(CHUNK):
                self.charge(member, len(chunk))
                data += chunk
        return data


class BudgetedStream:
    """A member opened for streaming (``pickle`` reads ``data.pkl`` from it), charged as it is read."""

    def __init__(self, file, budget: InflateBudget, member: str) -> None:
        self._file, self._budget, self._member = file, budget, member

    def read(self, n: int = -1) -> bytes:
        out = bytearray()
        while n < 0 or len(out) < n:  # whole CHUNKs at most, so no single read inflates a bomb
            chunk = self._file.read(CHUNK if n < 0 else min(CHUNK, n - len(out)))
            if not chunk:
                break
            self._budget.charge(self._member, len(chunk))
            out += chunk
        return bytes(out)

    def readline(self, limit: int = -1) -> bytes:
        line = self._file.readline(CHUNK if limit < 0 else min(CHUNK, limit))
        self._budget.charge(self._member, len(line))
        return line


def strided_error(name: str, key: str, numel: int, held: int) -> CheckpointReadError:
    return CheckpointReadError(
        f"{name}: tensor {key!r:.120} claims {numel:,} elements over a storage that holds {held:,} "
        "(zero or overlapping strides). Real weights are stored whole; the file is crafted or "
        "damaged and was not loaded: download the model again from its source."
    )


def elements_held(storage_elements: int, offset: int, size, stride) -> int:
    """How many elements a ``size``/``stride`` view at ``offset`` can hold without overlapping:
    the storage elements from ``offset`` on (0 when the view reaches past them)."""
    if any(s < 0 for s in size) or any(s < 0 for s in stride) or offset < 0:
        return 0
    span = 1 + sum((n - 1) * s for n, s in zip(size, stride, strict=True) if n > 0)
    if any(n == 0 for n in size):
        span = 0
    return storage_elements - offset if span <= storage_elements - offset else 0


def check_tensor_spans(name: str, tensors) -> None:
    """Refuse tensors that claim more elements than their storage holds (a stride-0 ``expand`` of
    one float claiming 10^9): a copy or dtype conversion would allocate all of them.

    Args:
        name: the file's name, for the message.
        tensors: ``(key, tensor)`` pairs, as loaded (views over the file's storages).
    """
    for key, t in tensors:
        held = t.untyped_storage().nbytes() // max(1, t.element_size()) - t.storage_offset()
        if t.numel() > max(0, held):
            raise strided_error(name, key, t.numel(), max(0, held))


def check_zip_checkpoint(path: str, limit: int | None = None) -> None:
    """Refuse a zip checkpoint whose members declare more than its budget (before ``torch.load``,
    which inflates each member whole). Files that are not zip archives are left to the reader."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            InflateBudget(os.path.basename(path), limit or inflate_budget(path)).check_declared(archive)
    except zipfile.BadZipFile:
        return  # torch.load reports it in its own words
