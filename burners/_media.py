"""Helpers shared by the drive adapters: medium files, reading media back, drive holders.

A file-backed drive keeps its media as files ``<media_dir>/<label>.medium``;
:class:`MediumSlot` is the "tray" holding the one medium file now loaded.
:class:`MediumFileReader` reads a medium file or a real drive's device node
back, keeping account of bad and slow sectors; it is the same for every
adapter. :func:`holder_of` names another process that holds a drive or a
medium file open. :func:`check_writable`, :func:`require_disc` and
:func:`require_blank` check what a drive reports about its medium. Sizes
are bytes or 2048-byte sectors; times are seconds.
"""

from __future__ import annotations

import errno
import heapq
import os
import re
import stat
import time
from typing import BinaryIO, Iterator

import psutil

from .base import SECTOR, DriveError, MediumStatus, Progress

SLOW_FACTOR = 4.0
"""A chunk is slow when it reads this many times slower, per sector, than the median."""

SLOW_MIN_SECONDS = 0.5
"""...and when that costs at least this many seconds more than the median pace would."""

_SPEED = re.compile(r"(?:min|max|\d+(?:\.\d+)?x)")
_ENOMEDIUM = getattr(errno, "ENOMEDIUM", None)   # Linux only


def sectors(nbytes: int) -> int:
    """Number of 2048-byte sectors needed to hold ``nbytes`` bytes (rounded up)."""
    return -(-nbytes // SECTOR)


def check_speed(drive: str, speed: str | None) -> str | None:
    """Return a requested write speed unchanged if every adapter understands it.

    Accepted: None (the drive's choice), ``"min"`` (the lowest speed the
    drive offers for the medium), ``"max"``, or an x-factor of the medium's
    own base speed such as ``"4x"`` or ``"2.4x"``. Raises DriveError
    ``config`` for anything else.
    """
    if speed is None or (isinstance(speed, str) and _SPEED.fullmatch(speed)):
        return speed
    raise DriveError(f"drive {drive}: write speed {speed!r} is not understood; "
                     "use \"min\", \"max\" or an x-factor such as \"4x\"", "config")


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


def require_disc(drive: str, where: str, status: MediumStatus, note: str = "") -> MediumStatus:
    """``status``, if it shows a disc in a real drive; else DriveError
    ``no-medium``: ``drive NAME: no disc in WHERE NOTE; insert one``."""
    if status.state in ("no-medium", "tray-open"):
        raise DriveError(f"drive {drive}: no disc in {where}{note}; insert one", "no-medium")
    return status


def require_blank(drive: str, where: str, status: MediumStatus) -> None:
    """Raise DriveError ``medium-not-blank`` unless ``status`` shows a blank
    disc in a real drive (the message names the disc in ``where`` and its state)."""
    if status.state != "blank":
        raise DriveError(f"drive {drive}: the disc in {where} is {status.state}, "
                         "not blank; insert a blank disc", "medium-not-blank")


def holder_of(path: str) -> tuple[int, str] | None:
    """``(pid, process name)`` of another process holding ``path`` open, or None.

    ``path`` is a medium file or a drive's device node (``/dev/sr0``).
    Regular files are matched through psutil's ``open_files()``, which lists
    regular files only; device nodes through the ``/proc/<pid>/fd`` links
    (Linux; elsewhere a device holder is not found). Processes we may not
    inspect, or that end meanwhile, are skipped, so None means "no holder
    that we can see". Our own process is never named. None if ``path``
    does not exist.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    device = stat.S_ISBLK(st.st_mode) or stat.S_ISCHR(st.st_mode)
    real = os.path.realpath(path)
    me = os.getpid()
    for proc in psutil.process_iter(["name"]):
        if proc.pid == me:
            continue
        try:
            if device:
                held = _holds_device(proc.pid, st)
            else:
                held = any(f.path == real for f in proc.open_files())
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            continue
        if held:
            return proc.pid, proc.info.get("name") or "?"
    return None


def _holds_device(pid: int, node: os.stat_result) -> bool:
    """True if process ``pid`` has the device ``node`` open (Linux /proc)."""
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return False
    kind = stat.S_IFMT(node.st_mode)
    for fd in fds:
        try:
            st = os.stat(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if stat.S_IFMT(st.st_mode) == kind and st.st_rdev == node.st_rdev:
            return True
    return False


def busy_error(drive: str, path: str) -> DriveError | None:
    """DriveError ``drive-busy`` naming the process that holds ``path`` open, or None."""
    holder = holder_of(path)
    if holder is None:
        return None
    pid, name = holder
    return DriveError(f"drive {drive}: {path} is held open by {name} (PID {pid}); "
                      "close that program or wait for it, then retry", "drive-busy")


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


class _RunningMedian:
    """Median of the numbers added so far (two heaps: O(log n) per number)."""

    def __init__(self) -> None:
        self._low: list[float] = []    # max-heap of the lower half, negated
        self._high: list[float] = []   # min-heap of the upper half

    def __len__(self) -> int:
        return len(self._low) + len(self._high)

    def add(self, x: float) -> None:
        if self._low and x > -self._low[0]:
            heapq.heappush(self._high, x)
        else:
            heapq.heappush(self._low, -x)
        if len(self._low) > len(self._high) + 1:
            heapq.heappush(self._high, -heapq.heappop(self._low))
        elif len(self._high) > len(self._low):
            heapq.heappush(self._low, -heapq.heappop(self._high))

    def median(self) -> float:
        if len(self._low) > len(self._high):
            return -self._low[0]
        return (-self._low[0] + self._high[0]) / 2


def _add_range(ranges: list[tuple[int, int]], lba: int, count: int) -> None:
    """Append sectors ``lba .. lba+count-1`` to ``ranges``, merging with the last range."""
    if ranges and ranges[-1][0] + ranges[-1][1] == lba:
        first, n = ranges[-1]
        ranges[-1] = (first, n + count)
    else:
        ranges.append((lba, count))


class MediumFileReader:
    """Read the first ``length`` bytes of a medium file or device node, salvaging what it can.

    Implements :class:`burners.base.MediumReader`. The medium is read
    sequentially in chunks of at most ``chunk`` bytes, always whole 2048-byte
    sectors (so device nodes get aligned reads); nothing past ``length`` is
    yielded. ``progress`` gets ``(done_bytes, length)`` after each chunk.

    Failing sectors: when a chunk fails with EIO, that chunk is read again
    sector by sector; a failing sector is tried ``retries`` more times
    (sectors that then read count in ``retried``), and one that still fails
    is yielded as 2048 zero bytes and listed in ``bad``. If the medium ends
    before ``length`` (a truncated medium, an unfinished burn), the rest is
    yielded as zeros and its sectors listed in ``bad`` too. ``bad`` and
    ``slow`` hold merged ``(first_lba, sector_count)`` ranges.

    Slow chunks: a chunk is listed in ``slow`` when its time per sector is
    more than ``slow_factor`` times the median time per sector of the chunks
    read before it in this pass, *and* it took at least
    :data:`SLOW_MIN_SECONDS` longer than that median pace would. The first
    chunk is never judged (it carries the drive's spin-up); the median keeps
    a few slow chunks from raising the bar; the absolute floor keeps
    scheduling jitter on fast (cached) reads from counting. A chunk with bad
    sectors usually takes long enough to be listed in ``slow`` as well.

    Raises DriveError ``no-medium`` on construction if ``path`` does not
    exist, and while iterating: ``no-medium`` (no disc, or it went away),
    ``read-error`` if the medium cannot be opened or read at all (an error
    other than EIO). ``drive`` names the drive in messages. ValueError for
    a negative ``length``/``retries`` or a ``chunk`` below 1.
    """

    def __init__(self, path: str, length: int, progress: Progress | None = None,
                 chunk: int = 1 << 20, retries: int = 2, drive: str = "",
                 slow_factor: float = SLOW_FACTOR):
        if length < 0 or chunk < 1 or retries < 0 or slow_factor <= 1:
            raise ValueError(f"need length ({length}) >= 0, chunk ({chunk}) >= 1, "
                             f"retries ({retries}) >= 0, slow_factor ({slow_factor}) > 1")
        self.path = os.fspath(path)
        self.length = length
        self.progress = progress
        self.chunk = chunk
        self.retries = retries
        self.drive = drive
        self.slow_factor = slow_factor
        self.bad: list[tuple[int, int]] = []
        self.slow: list[tuple[int, int]] = []
        self.retried = 0
        if not os.path.exists(self.path):
            raise DriveError(f"drive {drive}: no medium to read at {self.path}", "no-medium")

    def __repr__(self) -> str:
        return f"MediumFileReader({self.path!r}, length={self.length})"

    def __iter__(self) -> Iterator[bytes]:
        """Read the medium once from the start; ``bad``, ``slow``, ``retried`` start afresh."""
        self.bad, self.slow, self.retried = [], [], 0
        pace = _RunningMedian()
        total = sectors(self.length)
        span = max(1, self.chunk // SECTOR)
        done = 0
        with self._open() as f:
            lba = 0
            ended = False
            while lba < total:
                count = min(span, total - lba)
                if ended:
                    data = b""
                else:
                    started = self._clock()
                    data = self._read_sectors(f, lba, count)
                    self._judge(pace, lba, count, self._clock() - started)
                if len(data) < count * SECTOR:     # the medium ended inside this chunk
                    ended = True
                    have = len(data) // SECTOR
                    _add_range(self.bad, lba + have, count - have)
                    data = data[:have * SECTOR] + bytes((count - have) * SECTOR)
                lba += count
                data = data[:self.length - done]
                for i in range(0, len(data), self.chunk):
                    piece = data[i:i + self.chunk]
                    done += len(piece)
                    if self.progress:
                        self.progress(done, self.length)
                    yield piece

    # -- hooks (a simulated drive overrides these) ----------------------------------

    def _read(self, f: BinaryIO, offset: int, size: int) -> bytes:
        """Read up to ``size`` bytes at byte ``offset``: every byte the reader gets
        comes through here. Returns fewer bytes only where the medium ends;
        raises OSError for a failing sector."""
        f.seek(offset)
        parts = []
        while size > 0:
            data = f.read(size)
            if not data:
                break
            parts.append(data)
            size -= len(data)
        return b"".join(parts)

    def _clock(self) -> float:
        """Seconds on a monotonic clock, for timing chunks."""
        return time.monotonic()

    def _judge(self, pace: _RunningMedian, lba: int, count: int, seconds: float) -> None:
        """Apply the slow-chunk rule (see the class) to one chunk, then add it to ``pace``."""
        per_sector = seconds / count
        if pace:
            usual = pace.median()
            if per_sector > self.slow_factor * usual \
                    and seconds - usual * count >= SLOW_MIN_SECONDS:
                _add_range(self.slow, lba, count)
        pace.add(per_sector)

    # -- internals ------------------------------------------------------------------

    def _open(self) -> BinaryIO:
        try:
            return open(self.path, "rb", buffering=0)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, _ENOMEDIUM):
                raise DriveError(f"drive {self.drive}: no medium to read at {self.path}: "
                                 f"{exc.strerror}", "no-medium") from exc
            raise DriveError(f"drive {self.drive}: cannot open {self.path} for reading: "
                             f"{exc.strerror}", "read-error") from exc

    def _read_sectors(self, f: BinaryIO, lba: int, count: int) -> bytes:
        """Sectors ``lba .. lba+count-1``: shorter only where the medium ends;
        sectors that fail after retries come back as zeros, listed in ``bad``."""
        try:
            return self._read(f, lba * SECTOR, count * SECTOR)
        except OSError as exc:
            self._check_errno(exc, lba)
        parts = []
        for n in range(lba, lba + count):
            data = self._read_one(f, n)
            parts.append(data)
            if len(data) < SECTOR:
                break
        return b"".join(parts)

    def _read_one(self, f: BinaryIO, lba: int) -> bytes:
        """One sector, tried 1 + ``retries`` times; zeros (and ``bad``) if it never reads."""
        for attempt in range(1 + self.retries):
            try:
                data = self._read(f, lba * SECTOR, SECTOR)
            except OSError as exc:
                self._check_errno(exc, lba)
                continue
            if attempt:
                self.retried += 1
            return data
        _add_range(self.bad, lba, 1)
        return bytes(SECTOR)

    def _check_errno(self, exc: OSError, lba: int) -> None:
        """Return for EIO (a sector failed: salvage it); raise DriveError for the rest."""
        if exc.errno == errno.EIO:
            return
        where = f"at sector {lba} (byte {lba * SECTOR}) of {self.path}: {exc.strerror}"
        if exc.errno is not None and exc.errno == _ENOMEDIUM:
            raise DriveError(f"drive {self.drive}: the medium went away {where}",
                             "no-medium") from exc
        raise DriveError(f"drive {self.drive}: reading failed {where}", "read-error") from exc
