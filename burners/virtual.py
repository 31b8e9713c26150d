"""A pure-Python, file-backed drive for tests and dry runs.

It behaves like a DAO burn on a write-once disc: a medium file is blank
while it is empty, and closed (no free sectors) once anything is written.
A burn copies the image into the medium file and pads it with zeros to a
whole 2048-byte sector, as a real disc would be.
"""

from __future__ import annotations

import os
import time
from typing import BinaryIO, Iterator

from ._media import MediumSlot, check_writable, read_medium, sectors
from .base import SECTOR, BurnResult, DriveError, MediumStatus, Progress

COPY_CHUNK = 1 << 20
"""Bytes copied per write during a burn (and per progress report)."""


class VirtualDrive:
    """A drive whose media are files ``<media_dir>/<label>.medium``.

    ``capacity_sectors`` is the size of every blank medium in 2048-byte
    sectors; ``medium_type`` is what :meth:`status` reports (``DVD-R``...).
    Raises DriveError ``config`` if the capacity is not a positive integer.
    """

    adapter = "virtual"

    def __init__(self, name: str, media_dir: str, capacity_sectors: int,
                 medium_type: str = "DVD-R"):
        if isinstance(capacity_sectors, bool) or not isinstance(capacity_sectors, int) \
                or capacity_sectors <= 0:
            raise DriveError(
                f"drive {name}: capacity_sectors must be a positive whole number of "
                f"2048-byte sectors, not {capacity_sectors!r}", "config")
        self.name = name
        self.media_dir = os.fspath(media_dir)
        self.capacity_sectors = capacity_sectors
        self.medium_type = medium_type
        self._slot = MediumSlot(name, self.media_dir)

    def __repr__(self) -> str:
        return f"VirtualDrive({self.name!r}, media_dir={self.media_dir!r})"

    def status(self) -> MediumStatus:
        """Report the loaded medium: ``blank`` (empty file, ``capacity_sectors``
        free), ``closed`` (written, 0 free) or ``no-medium``. Never raises
        for a missing medium; raises DriveError ``read-error`` if the medium
        file cannot be examined."""
        if self._slot.current is None or not os.path.exists(self._slot.current):
            return self._status("no-medium", None, 0)
        try:
            size = os.path.getsize(self._slot.current)
        except OSError as exc:
            raise DriveError(f"drive {self.name}: cannot examine {self._slot.current}: "
                             f"{exc.strerror}", "read-error") from exc
        if size == 0:
            return self._status("blank", self.medium_type, self.capacity_sectors)
        return self._status("closed", self.medium_type, 0)

    def _status(self, state: str, medium_type: str | None, free: int) -> MediumStatus:
        return MediumStatus(state, medium_type, free, vendor="discarchive",
                            model="virtual drive", firmware="")

    def load_blank(self, label: str) -> None:
        """Load a new empty medium file ``<media_dir>/<label>.medium``.

        Raises DriveError ``medium-not-blank`` if that file already holds
        bytes, ``config`` if the label or folder is unusable.
        """
        self._slot.load_blank(label)

    def load(self, medium_path: str | None) -> None:
        """Load an existing medium file. Raises DriveError ``no-medium`` if it is gone."""
        self._slot.load(medium_path)

    def burn(self, image_path: str, progress: Progress | None = None) -> BurnResult:
        """Copy the image at ``image_path`` onto the loaded blank medium.

        The medium file is padded with zeros to a whole 2048-byte sector and
        synced to disk. ``progress`` gets ``(done_bytes, image_bytes)``,
        starting with 0 and ending with the image size.

        Raises DriveError ``no-medium``, ``medium-not-blank``,
        ``medium-too-small`` (image sectors > free sectors) or
        ``write-error``; OSError if the image itself cannot be read.
        """
        medium = self._slot.require()
        size = os.path.getsize(image_path)
        check_writable(self.name, self.status(), size)
        started = time.monotonic()
        if progress:
            progress(0, size)
        with open(image_path, "rb") as src, self._open_medium(medium) as dst:
            done = 0
            while block := src.read(COPY_CHUNK):
                self._write(dst, block)
                done += len(block)
                if progress:
                    progress(min(done, size), size)
            if done != size:
                raise DriveError(
                    f"drive {self.name}: image {image_path} changed during the burn "
                    f"({done} bytes read, {size} expected)", "write-error")
            self._write(dst, b"\0" * (sectors(done) * SECTOR - done))
            self._sync(dst)
        return BurnResult(medium_path=medium, speed=None,
                          seconds=time.monotonic() - started)

    def _open_medium(self, medium: str) -> BinaryIO:
        try:
            return open(medium, "r+b")
        except OSError as exc:
            raise DriveError(f"drive {self.name}: cannot open {medium} for writing: "
                             f"{exc.strerror}", "write-error") from exc

    def _write(self, dst: BinaryIO, data: bytes) -> None:
        """Write ``data`` to the medium; every byte a burn puts there goes
        through here. Raises DriveError ``write-error``."""
        try:
            dst.write(data)
        except OSError as exc:
            raise DriveError(f"drive {self.name}: writing {dst.name} failed: {exc.strerror}",
                             "write-error") from exc

    def _sync(self, dst: BinaryIO) -> None:
        """Flush the medium to disk. Raises DriveError ``write-error``."""
        try:
            dst.flush()
            os.fsync(dst.fileno())
        except OSError as exc:
            raise DriveError(f"drive {self.name}: syncing {dst.name} failed: {exc.strerror}",
                             "write-error") from exc

    def read(self, length: int, progress: Progress | None = None,
             chunk: int = 1 << 20) -> Iterator[bytes]:
        """Stream the first ``length`` bytes of the loaded medium file.

        Raises DriveError ``no-medium`` (nothing loaded) at once, and
        ``read-error`` while iterating if the file ends before ``length``.
        """
        return read_medium(self._slot.require(), length, progress, chunk, self.name)

    def eject(self) -> None:
        """Unload the medium file (the file stays in ``media_dir``)."""
        self._slot.eject()

