"""A pure-Python, file-backed drive for tests and dry runs, with injectable faults.

It behaves like a DAO burn on a write-once disc: a medium file is blank
while it is empty, and closed (no free sectors) once anything is written.
A burn copies the image into the medium file and pads it with zeros to a
whole 2048-byte sector, as a real disc would be.

Faults (``faults``, from a ``[drives.faults]`` TOML table) make the drive
fail the way a real one does, with the same failure classes and, where a
real drive reports sense data, the same libburn-style sense line classified
through :mod:`burners.sense`. Every burn and every read in the drive meets
them. LBAs are 2048-byte sector numbers from the start of the medium.

=====================  ===================================================
``unreadable``         list of LBAs: a read yields zeros there and lists
                       them in ``bad`` (after the usual retries)
``slow``               list of LBAs: a read lists them in ``slow``
``write_error_at``     LBA N: the burn writes sectors 0..N-1, then fails
                       with ``WRITE@LBA=<N hex>h ... SK=3h/ASC=0Ch``
                       (``write-error``)
``close_session_error``  true: the burn writes everything, then fails with
                       ``CLOSE SESSION ... SK=5h/ASC=72h/ACQ=03h``
                       (``medium-error``)
``opc_failure``        true: a burn at any speed but ``"min"`` fails before
                       writing, ``SEND OPC ... ASC=73h/ACQ=03h``
                       (``calibration``); at ``"min"`` it burns
``power_loss_at``      LBA N: the medium keeps exactly N sectors
                       (``power-loss``)
``busy``               a process name: status() and burn() fail with
                       ``drive-busy`` naming it
``not_blank``          true: load_blank() finds a written medium
                       (``medium-not-blank``)
=====================  ===================================================

A fault at an LBA the image does not reach has no effect on that burn.
"""

from __future__ import annotations

import errno
import os
import time
from typing import Any, BinaryIO, Mapping

from ._media import (MediumFileReader, MediumSlot, _add_range, busy_error, check_speed,
                     check_writable, sectors)
from .base import SECTOR, BurnResult, DriveError, DriveInfo, MediumStatus, Progress
from .sense import classify_sense

COPY_CHUNK = 1 << 20
"""Bytes copied per write during a burn (and per progress report)."""

CONFIG_KEYS = frozenset({"name", "adapter", "media_dir", "capacity_sectors", "medium_type",
                         "faults"})
"""Keys of a virtual drive's ``[[drives]]`` table."""

FAULTS = {"unreadable": list, "slow": list, "write_error_at": int,
          "close_session_error": bool, "opc_failure": bool, "power_loss_at": int,
          "busy": str, "not_blank": bool}
"""Fault names and the TOML type each takes (lists are lists of LBAs)."""


def discover() -> list[DriveInfo]:
    """Virtual drives exist only in the config: there is nothing to discover."""
    return []


def from_config(spec: Mapping[str, Any]) -> "VirtualDrive":
    """Build a VirtualDrive from its ``[[drives]]`` table (keys: :data:`CONFIG_KEYS`).

    ``media_dir`` and ``capacity_sectors`` (2048-byte sectors per medium) are
    required; ``medium_type`` defaults to ``DVD-R``; ``faults`` is a table of
    faults (see the module). Raises DriveError ``config`` naming the drive.
    """
    name = spec.get("name") or "virtual"
    unknown = sorted(set(spec) - CONFIG_KEYS)
    if unknown:
        raise DriveError(f"drive {name}: {', '.join(unknown)} not used by the virtual adapter; "
                         f"remove it (known keys: {', '.join(sorted(CONFIG_KEYS))})", "config")
    if not spec.get("media_dir") or "capacity_sectors" not in spec:
        raise DriveError(f"drive {name}: a virtual drive needs media_dir and capacity_sectors "
                         "(2048-byte sectors, e.g. 2298496 for DVD-R)", "config")
    return VirtualDrive(name, spec["media_dir"], spec["capacity_sectors"],
                        spec.get("medium_type", "DVD-R"), spec.get("faults"))


def _check_faults(drive: str, faults: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate a faults table; returns it as a dict. Raises DriveError ``config``."""
    if faults is None:
        return {}
    if not isinstance(faults, Mapping):
        raise DriveError(f"drive {drive}: faults must be a table ([drives.faults]), "
                         f"not {faults!r}", "config")
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        raise DriveError(f"drive {drive}: unknown fault {', '.join(unknown)}; "
                         f"known faults: {', '.join(sorted(FAULTS))}", "config")
    for key, value in faults.items():
        kind = FAULTS[key]
        if kind is list:
            ok = isinstance(value, list) and all(_is_lba(v) for v in value)
        elif kind is int:
            ok = _is_lba(value)
        else:
            ok = isinstance(value, kind) and (kind is not str or bool(value))
        if not ok:
            want = {list: "a list of sector numbers (LBAs >= 0)", int: "a sector number >= 0",
                    bool: "true or false", str: "a process name"}[kind]
            raise DriveError(f"drive {drive}: fault {key} must be {want}, not {value!r}",
                             "config")
    return dict(faults)


def _is_lba(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _sense(command: str, sk: int, asc: int, ascq: int) -> str:
    """A sense report in libburn's words:
    ``WRITE@LBA=330h failed with SK=3h/ASC=0Ch/ACQ=00h``."""
    return f"{command} failed with SK={sk:X}h/ASC={asc:02X}h/ACQ={ascq:02X}h"


class VirtualDrive:
    """A drive whose media are files ``<media_dir>/<label>.medium``.

    ``capacity_sectors`` is the size of every blank medium in 2048-byte
    sectors; ``medium_type`` is what :meth:`status` reports (``DVD-R``...);
    ``faults`` a table of faults to simulate (see the module). Raises
    DriveError ``config`` if the capacity is not a positive integer or a
    fault is unknown or ill-typed.
    """

    adapter = "virtual"

    def __init__(self, name: str, media_dir: str, capacity_sectors: int,
                 medium_type: str = "DVD-R", faults: Mapping[str, Any] | None = None):
        if isinstance(capacity_sectors, bool) or not isinstance(capacity_sectors, int) \
                or capacity_sectors <= 0:
            raise DriveError(
                f"drive {name}: capacity_sectors must be a positive whole number of "
                f"2048-byte sectors, not {capacity_sectors!r}", "config")
        self.name = name
        self.media_dir = os.fspath(media_dir)
        self.capacity_sectors = capacity_sectors
        self.medium_type = medium_type
        self.faults = _check_faults(name, faults)
        self._slot = MediumSlot(name, self.media_dir)

    def __repr__(self) -> str:
        return f"VirtualDrive({self.name!r}, media_dir={self.media_dir!r})"

    def status(self) -> MediumStatus:
        """Report the loaded medium: ``blank`` (empty file, ``capacity_sectors``
        free), ``closed`` (written, 0 free) or ``no-medium``. Raises
        DriveError ``drive-busy`` (fault ``busy``), ``read-error`` if the
        medium file cannot be examined; never for a missing medium."""
        self._check_busy()
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
        bytes (or fault ``not_blank`` is set: nothing is loaded then),
        ``config`` if the label or folder is unusable.
        """
        if self.faults.get("not_blank"):
            self._slot.eject()
            raise DriveError(f"drive {self.name}: the medium in the drive is already written "
                             "(simulated); load a blank medium", "medium-not-blank")
        self._slot.load_blank(label)

    def load(self, medium_path: str | None) -> None:
        """Load an existing medium file. Raises DriveError ``no-medium`` if it is gone."""
        self._slot.load(medium_path)

    def burn(self, image_path: str, progress: Progress | None = None,
             speed: str | None = None) -> BurnResult:
        """Copy the image at ``image_path`` onto the loaded blank medium.

        The medium file is padded with zeros to a whole 2048-byte sector and
        synced to disk. ``progress`` gets ``(done_bytes, image_bytes)``,
        starting with 0 and ending with the image size. ``speed`` (see
        :func:`burners._media.check_speed`) is recorded, not simulated.

        Raises DriveError ``config`` (bad speed), ``no-medium``,
        ``drive-busy`` (another process holds the medium file open, or fault
        ``busy``), ``medium-not-blank``, ``medium-too-small`` (image sectors
        > free sectors), ``calibration``, ``write-error``, ``medium-error``
        or ``power-loss`` (faults); OSError if the image cannot be read.
        """
        check_speed(self.name, speed)
        medium = self._slot.require()
        size = os.path.getsize(image_path)
        check_writable(self.name, self.status(), size)
        if (busy := busy_error(self.name, medium)) is not None:
            raise busy
        if self.faults.get("opc_failure") and speed != "min":
            sense = _sense("SEND OPC", 3, 0x73, 0x03)
            raise DriveError(f"drive {self.name}: power calibration failed at speed "
                             f"{speed or 'max'}: {sense}; retry at speed \"min\" or with "
                             "another medium", classify_sense(sense))
        started = time.monotonic()
        if progress:
            progress(0, size)
        limit, failure = self._burn_limit(size)
        with open(image_path, "rb") as src, self._open_medium(medium) as dst:
            done = 0
            while block := src.read(COPY_CHUNK):
                if limit is not None and done + len(block) > limit:
                    self._write(dst, block[:max(0, limit - done)])
                    self._sync(dst)
                    raise failure
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
        if self.faults.get("close_session_error"):
            sense = _sense("CLOSE SESSION", 5, 0x72, 0x03)
            raise DriveError(f"drive {self.name}: closing the session failed: {sense}; "
                             "the medium must not be trusted", classify_sense(sense))
        return BurnResult(medium_path=medium, speed=speed or "virtual",
                          seconds=time.monotonic() - started, requested_speed=speed,
                          medium_type=self.medium_type, medium_id=None, tool_version="")

    def _burn_limit(self, size: int) -> tuple[int | None, DriveError | None]:
        """Bytes of the image that reach the medium before a simulated fault stops
        the burn, and that fault's DriveError; (None, None) if none is reached."""
        image_sectors = sectors(size)
        stops = []
        if (lba := self.faults.get("write_error_at")) is not None and lba < image_sectors:
            sense = _sense(f"WRITE@LBA={lba:x}h", 3, 0x0C, 0x00)
            stops.append((lba, DriveError(
                f"drive {self.name}: writing failed at sector {lba}: {sense}; "
                "the medium must not be trusted", classify_sense(sense))))
        if (lba := self.faults.get("power_loss_at")) is not None and lba < image_sectors:
            stops.append((lba, DriveError(
                f"drive {self.name}: power was lost after {lba} of {image_sectors} sectors "
                "(simulated); the medium is truncated and must not be trusted", "power-loss")))
        if not stops:
            return None, None
        lba, failure = min(stops, key=lambda stop: stop[0])
        return lba * SECTOR, failure

    def _check_busy(self) -> None:
        """Raise DriveError ``drive-busy`` if fault ``busy`` names a holder."""
        if holder := self.faults.get("busy"):
            raise DriveError(f"drive {self.name}: the drive is held by {holder} (simulated); "
                             "close that program or wait for it, then retry", "drive-busy")

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
             chunk: int = 1 << 20, retries: int = 2) -> MediumFileReader:
        """A reader of the first ``length`` bytes of the loaded medium file.

        See :class:`burners._media.MediumFileReader`; faults ``unreadable``
        and ``slow`` show up in its ``bad`` and ``slow`` ranges, exactly
        (``slow`` lists the faulty sectors themselves, not whole chunks).
        Raises DriveError ``no-medium`` (nothing loaded) at once.
        """
        return _FaultyReader(self._slot.require(), length, progress, chunk, retries,
                             self.name, set(self.faults.get("unreadable", ())),
                             set(self.faults.get("slow", ())))

    def eject(self) -> None:
        """Unload the medium file (the file stays in ``media_dir``)."""
        self._slot.eject()


class _FaultyReader(MediumFileReader):
    """A MediumFileReader whose medium fails at the ``unreadable`` LBAs (EIO on
    every try) and reads slowly at the ``slow`` LBAs (reported as such, without
    the wait or the timing rule)."""

    def __init__(self, path: str, length: int, progress: Progress | None, chunk: int,
                 retries: int, drive: str, unreadable: set[int], slow: set[int]):
        super().__init__(path, length, progress, chunk, retries, drive)
        self._unreadable = unreadable
        self._slow_lbas = slow

    def _read(self, f: BinaryIO, offset: int, size: int) -> bytes:
        first, end = offset // SECTOR, sectors(offset + size)
        if any(first <= lba < end for lba in self._unreadable):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return super()._read(f, offset, size)

    def _judge(self, pace, lba: int, count: int, seconds: float) -> None:
        for n in sorted(n for n in self._slow_lbas if lba <= n < lba + count):
            _add_range(self.slow, n, 1)
