"""One sequential pass over an image: its SHA-256 and every file's, together.

The files' places come from the inventory, recorded when the image was
mastered (each file's first 2048-byte sector and its size; its bytes are
contiguous), so reading a disc back needs no seeks and no trust in the
disc's own directories: the image hash over its exact length covers those.

Shapes: an :class:`Extent` is (path in the bag, first sector, size in
bytes); sector ranges are (first LBA, sector count).
"""

from __future__ import annotations

import hashlib
import io
import queue
import threading
from bisect import bisect_left
from operator import attrgetter
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterable

SECTOR = 2048
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True, slots=True)
class Extent:
    """Where one file's bytes lie in the image: ``lba`` (first sector), ``size`` (bytes)."""

    path: str
    lba: int
    size: int

    @property
    def sectors(self) -> range:
        """The sectors the file occupies (empty for a 0-byte file)."""
        return range(self.lba, self.lba + -(-self.size // SECTOR))


@dataclass
class PassResult:
    """What one pass measured.

    ``image_sha256`` covers the first ``bytes_read`` bytes; ``sha256`` maps
    each file whose bytes were all read to its SHA-256 (hex); ``captured``
    holds the bytes of the files asked for (small tag files); ``missing``
    lists files the stream ended before.
    """

    image_sha256: str
    bytes_read: int
    sha256: dict[str, str] = field(default_factory=dict)
    captured: dict[str, bytes] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


class _Open:
    __slots__ = ("extent", "start", "end", "hasher", "buf")

    def __init__(self, extent: Extent, capture: bool):
        self.extent = extent
        self.start = extent.lba * SECTOR
        self.end = self.start + extent.size
        self.hasher = hashlib.sha256()
        self.buf = bytearray() if capture else None


class _ImageHasher:
    """SHA-256 of the whole stream, computed in a thread of its own.

    Every byte is hashed twice, once for the image and once for its file;
    hashlib releases the GIL on large updates, so with the image's hash in
    a second thread the pass runs at about the speed of hashing once.
    The queue holds at most 8 chunks (8 MiB with 1 MiB chunks).
    """

    def __init__(self):
        self._h = hashlib.sha256()
        self._q: queue.Queue = queue.Queue(maxsize=8)
        self._t = threading.Thread(target=self._run, name="image-sha256", daemon=True)
        self._t.start()

    def _run(self) -> None:
        while (chunk := self._q.get()) is not None:
            self._h.update(chunk)

    def update(self, chunk: bytes) -> None:
        self._q.put(chunk)

    def hexdigest(self) -> str:
        self._q.put(None)
        self._t.join()
        return self._h.hexdigest()


def hash_pass(chunks: Iterable[bytes], extents: Iterable[Extent],
              capture: frozenset[str] | set[str] = frozenset(),
              progress: Callable[[int, int], None] | None = None,
              length: int = 0) -> PassResult:
    """Hash a stream of image bytes and every extent in it, in one pass.

    ``chunks`` are the image's bytes in order from byte 0 (a file read or a
    drive's read-back, which gives zeros for unreadable sectors); files of
    ``capture`` also have their bytes kept. ``progress(done, length)`` is
    called per chunk when given. Memory: the open files' hashers and the
    captured bytes, never a whole chunk list.
    """
    extents = list(extents)
    ordered = sorted((e for e in extents if e.size > 0), key=attrgetter("lba"))
    starts = [e.lba * SECTOR for e in ordered]
    result = PassResult("", 0)
    digests, captured = result.sha256, result.captured
    for e in extents:
        if e.size == 0:
            digests[e.path] = EMPTY_SHA256
            if e.path in capture:
                captured[e.path] = b""
    sha256 = hashlib.sha256
    image = _ImageHasher()
    pos, nxt, total = 0, 0, len(ordered)
    active: list[_Open] = []          # files begun in an earlier chunk (few: they are big)
    for chunk in chunks:
        end = pos + len(chunk)
        image.update(chunk)
        view = memoryview(chunk)
        if active:
            still = []
            for f in active:
                hi = min(f.end, end) - pos
                f.hasher.update(view[:hi])
                if f.buf is not None:
                    f.buf += view[:hi]
                if f.end <= end:
                    digests[f.extent.path] = f.hasher.hexdigest()
                    if f.buf is not None:
                        captured[f.extent.path] = f.buf
                else:
                    still.append(f)
            active = still
        while nxt < total and starts[nxt] < end:      # files that begin in this chunk
            e, first = ordered[nxt], starts[nxt]
            nxt += 1
            last = first + e.size
            if last <= end:                            # wholly inside: hash it at once
                piece = view[first - pos:last - pos]
                digests[e.path] = sha256(piece).hexdigest()
                if e.path in capture:
                    captured[e.path] = bytes(piece)
            else:
                f = _Open(e, e.path in capture)
                f.hasher.update(view[first - pos:])
                if f.buf is not None:
                    f.buf += view[first - pos:]
                active.append(f)
        pos = end
        if progress:
            progress(pos, length or pos)
    result.missing = [f.extent.path for f in active] + [e.path for e in ordered[nxt:]]
    result.image_sha256 = image.hexdigest()   # waits for the image thread
    result.bytes_read = pos
    return result


def file_chunks(path, length: int, chunk: int = 1 << 20) -> Iterable[bytes]:
    """The first ``length`` bytes of a file, in chunks of at most ``chunk`` bytes."""
    left = length
    with open(path, "rb") as f:
        while left > 0:
            data = f.read(min(chunk, left))
            if not data:
                return
            left -= len(data)
            yield data


def files_hit(bad: Iterable[tuple[int, int]], extents: Iterable[Extent]
              ) -> tuple[dict[str, list[int]], list[int]]:
    """Map unreadable sector ranges to the files they hit.

    Returns ({path: [bad LBAs in that file]}, [bad LBAs in no file]): the
    latter fall on file system structures (volume descriptors, directories,
    path tables, UDF descriptors) or on padding.
    """
    bad_lbas = sorted({lba for first, count in bad for lba in range(first, first + count)})
    if not bad_lbas:
        return {}, []
    hit: dict[str, list[int]] = {}
    owned: set[int] = set()
    for e in extents:
        span = e.sectors
        lo, hi = bisect_left(bad_lbas, span.start), bisect_left(bad_lbas, span.stop)
        if hi > lo:
            hit[e.path] = bad_lbas[lo:hi]
            owned.update(bad_lbas[lo:hi])
    return hit, [lba for lba in bad_lbas if lba not in owned]


def ranges(lbas: list[int]) -> str:
    """Sector numbers as compact text: ``40-42, 97``."""
    out, start, prev = [], None, None
    for lba in lbas:
        if start is None:
            start = prev = lba
        elif lba == prev + 1:
            prev = lba
        else:
            out.append(f"{start}-{prev}" if prev != start else str(start))
            start = prev = lba
    if start is not None:
        out.append(f"{start}-{prev}" if prev != start else str(start))
    return ", ".join(out)


class _Slice(io.RawIOBase):
    """A read-only, seekable window of ``size`` bytes at ``offset`` in a file."""

    def __init__(self, path, offset: int, size: int):
        self._f = open(path, "rb", buffering=0)
        self._offset, self._size, self._pos = offset, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def readinto(self, buf) -> int:
        n = max(0, min(len(buf), self._size - self._pos))
        if n == 0:
            return 0
        self._f.seek(self._offset + self._pos)
        got = self._f.readinto(memoryview(buf)[:n])
        self._pos += got
        return got

    def close(self) -> None:
        self._f.close()
        super().close()


def open_extent(path, extent: Extent) -> BinaryIO:
    """One file of an image or medium (a file or a device node), opened by its extent.

    Random access for format checks that read only headers and trailers.
    Raises OSError if ``path`` cannot be opened.
    """
    return io.BufferedReader(_Slice(path, extent.lba * SECTOR, extent.size))
