"""Helpers shared by the drive adapters: medium files and reading media back.

A file-backed drive keeps its media as files ``<media_dir>/<label>.medium``;
:class:`MediumSlot` is the "tray" holding the one medium file now loaded.
:func:`read_medium` streams the first bytes of a medium file or of a real
drive's device node; it is the same for every adapter.
"""

from __future__ import annotations

import errno
import os
from typing import Iterator

from .base import SECTOR, DriveError, MediumStatus, Progress


def sectors(nbytes: int) -> int:
    """Number of 2048-byte sectors needed to hold ``nbytes`` bytes (rounded up)."""
    return -(-nbytes // SECTOR)


def check_writable(drive: str, status: MediumStatus, image_bytes: int) -> None:
    """Raise DriveError unless ``status`` shows a blank medium with room for
    ``image_bytes`` bytes (``no-medium``, ``medium-not-blank``, ``medium-too-small``)."""
    if status.state == "no-medium":
        raise DriveError(f"drive {drive}: no medium loaded", "no-medium")
    if status.state != "blank":
        raise DriveError(f"drive {drive}: the medium is {status.state}, not blank; "
                         "load a blank medium", "medium-not-blank")
    need = sectors(image_bytes)
    if need > status.free_sectors:
        raise DriveError(
            f"drive {drive}: image needs {need} sectors but the medium has only "
            f"{status.free_sectors} free (2048-byte sectors); use a larger medium or "
            "split the image", "medium-too-small")


class MediumSlot:
    """The medium file loaded in a file-backed drive, or None when it is empty.

    ``drive`` is the drive's name (for messages); ``media_dir`` is the folder
    that holds the drive's medium files. It is created on the first
    :meth:`load_blank`.
    """

    def __init__(self, drive: str, media_dir: str):
        self.drive = drive
        self.media_dir = os.fspath(media_dir)
        self.current: str | None = None

    def load_blank(self, label: str) -> str:
        """Load a blank medium ``<media_dir>/<label>.medium`` and return its path.

        An existing empty file counts as blank (a burn that never started).
        Raises DriveError ``medium-not-blank`` if the file holds any bytes,
        ``config`` if ``label`` is not a plain file name or the folder cannot
        be written.
        """
        if not label or label in (".", "..") or "/" in label or "\0" in label:
            raise DriveError(
                f"drive {self.drive}: medium label {label!r} is not a plain file name", "config")
        path = os.path.join(self.media_dir, label + ".medium")
        try:
            os.makedirs(self.media_dir, exist_ok=True)
            with open(path, "ab") as f:
                size = os.fstat(f.fileno()).st_size
        except OSError as exc:
            raise DriveError(
                f"drive {self.drive}: cannot create medium file {path}: {exc.strerror}",
                "config") from exc
        if size:
            raise DriveError(
                f"drive {self.drive}: medium {path} already holds {size} bytes; "
                "use a new label or remove the file", "medium-not-blank")
        self.current = path
        return path

    def load(self, medium_path: str | None) -> str:
        """Load the existing medium file ``medium_path`` and return its path.

        Raises DriveError ``no-medium`` if no path is given or the file is gone.
        """
        if not medium_path:
            raise DriveError(f"drive {self.drive}: no medium file given to load", "no-medium")
        if not os.path.isfile(medium_path):
            raise DriveError(
                f"drive {self.drive}: medium file {medium_path} does not exist", "no-medium")
        self.current = os.path.abspath(medium_path)
        return self.current

    def require(self) -> str:
        """The loaded medium's path. Raises DriveError ``no-medium`` if none is loaded."""
        if self.current is None:
            raise DriveError(
                f"drive {self.drive}: no medium loaded; call load_blank() or load() first",
                "no-medium")
        if not os.path.isfile(self.current):
            raise DriveError(
                f"drive {self.drive}: medium file {self.current} has disappeared", "no-medium")
        return self.current

    def eject(self) -> None:
        """Unload the medium file (the file itself stays)."""
        self.current = None


def read_medium(path: str, length: int, progress: Progress | None, chunk: int,
                drive: str) -> Iterator[bytes]:
    """Yield the first ``length`` bytes of the medium at ``path``.

    ``path`` is a medium file or a device node such as ``/dev/sr0``; it is
    opened unbuffered, so a failing sector is reported at the byte where the
    kernel refused it. Chunks are at most ``chunk`` bytes; nothing past
    ``length`` is read, whatever padding the medium has. ``progress`` gets
    ``(done_bytes, length)`` after each chunk.

    Raises DriveError ``no-medium`` if the file or the disc is missing, and
    ``read-error`` if the medium ends before ``length`` bytes or a read fails
    (the message names the byte offset and 2048-byte sector). Like any
    generator, it raises on iteration, not when called.
    """
    if length < 0 or chunk <= 0:
        raise ValueError(f"length ({length}) must be >= 0 and chunk ({chunk}) > 0")
    try:
        f = open(path, "rb", buffering=0)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOMEDIUM):
            raise DriveError(
                f"drive {drive}: no medium to read at {path}: {exc.strerror}",
                "no-medium") from exc
        raise DriveError(
            f"drive {drive}: cannot open {path} for reading: {exc.strerror}",
            "read-error") from exc
    with f:
        done = 0
        while done < length:
            try:
                data = f.read(min(chunk, length - done))
            except OSError as exc:
                raise DriveError(
                    f"drive {drive}: read failed at byte {done} (sector {done // SECTOR}) "
                    f"of {path}: {exc.strerror}", "read-error") from exc
            if not data:
                raise DriveError(
                    f"drive {drive}: medium ends at byte {done} of {length} "
                    f"(sector {done // SECTOR}) in {path}: truncated or unfinished burn",
                    "read-error")
            done += len(data)
            if progress:
                progress(done, length)
            yield data
