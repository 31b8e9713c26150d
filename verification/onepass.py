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
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Collection, Iterable, Iterator, Sequence

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


class _ImageReader:
    """Reads the image's chunks in a thread of its own and hashes them for the image.

    Every byte is hashed twice, once for the image and once for its file.
    The reading and the image's hash run in this thread, the files' hashes
    in the caller's: hashlib and file reads release the GIL, so on two
    cores the pass takes about as long as the larger of the two. When the
    caller falls behind (2 chunks or more waiting), this thread also hashes
    the files wholly inside the chunk it has just read, through ``helper(pos,
    chunk)``, which returns how far (in the caller's order of files) it got,
    or None. At most 8 chunks wait between the threads (8 MiB with 1 MiB
    chunks). Iterating gives (chunk, how far the helper got or None). An
    error while reading is raised again in the caller's thread.
    """

    def __init__(self, chunks: Iterable[bytes],
                 helper: Callable[[int, bytes], int | None] | None = None):
        self._chunks, self._helper = chunks, helper
        self._h = hashlib.sha256()
        self._q: queue.Queue = queue.Queue(maxsize=8)
        self._error: BaseException | None = None
        self._stop = False
        self._t = threading.Thread(target=self._run, name="image-sha256", daemon=True)
        self._t.start()

    def _run(self) -> None:
        q, helper, pos = self._q, self._helper, 0
        try:
            for chunk in self._chunks:
                if self._stop:
                    break
                done = helper(pos, chunk) if helper and q.qsize() >= 2 else None
                q.put((chunk, done))
                self._h.update(chunk)
                pos += len(chunk)
        except BaseException as exc:   # handed to the caller's thread
            self._error = exc
        finally:
            q.put(None)

    def __iter__(self) -> Iterator[tuple[bytes, int | None]]:
        try:
            while (item := self._q.get()) is not None:
                yield item
        finally:
            self._stop = True
            while self._t.is_alive():          # let the thread see the stop and end
                try:
                    self._q.get(timeout=0.1)
                except queue.Empty:
                    pass
            self._t.join()
        if self._error is not None:
            raise self._error

    def hexdigest(self) -> str:
        return self._h.hexdigest()


@dataclass
class Measured:
    """What :func:`hash_extents` measured, by file index.

    ``image_sha256`` (hex) covers the first ``bytes_read`` bytes;
    ``digests[k]`` is file ``k``'s SHA-256 (hex), None if the stream
    ended before its last byte; ``captured`` maps the index of each file
    asked for to its bytes.
    """

    image_sha256: str
    bytes_read: int
    digests: list[str | None]
    captured: dict[int, bytes]


def hash_extents(chunks: Iterable[bytes], starts: Sequence[int], sizes: Sequence[int],
                 capture: Collection[int] = (), progress: Callable[[int, int], None] | None = None,
                 length: int = 0) -> Measured:
    """Hash a stream of image bytes and the files in it, in one pass.

    File ``k`` is ``sizes[k]`` bytes from byte ``starts[k]`` (files may come
    in any order; their bytes must not overlap). ``chunks`` are the image's
    bytes in order from byte 0 (a file read or a drive's read-back, which
    gives zeros for unreadable sectors); files whose index is in
    ``capture`` also have their bytes kept. ``progress(done, length)`` is
    called per chunk when given. Memory: a hex digest a file,
    the files begun but not ended, the captured bytes; never a whole chunk
    list. The per-file work is a slice and one hashlib call, so that many
    small files cost little more than their bytes.
    """
    n = len(starts)
    digests: list[str | None] = [None] * n
    captured: dict[int, bytes] = {}
    order = sorted((k for k in range(n) if sizes[k] > 0), key=starts.__getitem__)
    first = [starts[k] for k in order]
    last = [starts[k] + sizes[k] for k in order]
    for k in range(n):
        if sizes[k] <= 0:
            digests[k] = EMPTY_SHA256
            if k in capture:
                captured[k] = b""
    sha256 = hashlib.sha256
    total = len(order)

    def whole_files(at: int, chunk: bytes) -> int | None:
        """In the reading thread: hash the files wholly inside the chunk at byte ``at``."""
        lo, hi = bisect_left(first, at), bisect_right(last, at + len(chunk))
        if hi <= lo:
            return None
        view = memoryview(chunk)
        for j in range(lo, hi):
            k = order[j]
            piece = view[first[j] - at:last[j] - at]
            digests[k] = sha256(piece).hexdigest()
            if k in capture:
                captured[k] = bytes(piece)
        return hi

    apart = all(last[j] <= first[j + 1] for j in range(total - 1))   # else no help
    image = _ImageReader(chunks, whole_files if apart else None)
    pos, nxt = 0, 0
    active: list[list] = []     # [index, end, hasher, buffer]: files begun in an earlier chunk
    for chunk, done in image:
        end = pos + len(chunk)
        view = memoryview(chunk)
        if done is not None:                            # the reading thread hashed them
            nxt = done
        if active:
            still = []
            for f in active:
                k, stop, h, buf = f
                hi = min(stop, end) - pos
                h.update(view[:hi])
                if buf is not None:
                    buf += view[:hi]
                if stop <= end:
                    digests[k] = h.hexdigest()
                    if buf is not None:
                        captured[k] = bytes(buf)
                else:
                    still.append(f)
            active = still
        while nxt < total:                              # files that begin in this chunk
            a = first[nxt]
            if a >= end:
                break
            b, k = last[nxt], order[nxt]
            nxt += 1
            if b <= end:                                # wholly inside: hash it at once
                piece = view[a - pos:b - pos]
                digests[k] = sha256(piece).hexdigest()
                if k in capture:
                    captured[k] = bytes(piece)
            else:
                buf = bytearray(view[a - pos:]) if k in capture else None
                active.append([k, b, sha256(view[a - pos:]), buf])
        pos = end
        if progress:
            progress(pos, length or pos)
    return Measured(image.hexdigest(), pos, digests, captured)


def hash_pass(chunks: Iterable[bytes], extents: Iterable[Extent],
              capture: frozenset[str] | set[str] = frozenset(),
              progress: Callable[[int, int], None] | None = None,
              length: int = 0) -> PassResult:
    """Hash a stream of image bytes and every extent in it, in one pass.

    As :func:`hash_extents`, with the files as :class:`Extent` and the
    results by path, digests in hex; files of ``capture`` (paths) have their
    bytes kept.
    """
    extents = list(extents)
    m = hash_extents(chunks, [e.lba * SECTOR for e in extents], [e.size for e in extents],
                     {k for k, e in enumerate(extents) if e.path in capture}, progress, length)
    result = PassResult(m.image_sha256, m.bytes_read)
    for e, d in zip(extents, m.digests):
        if d is not None:
            result.sha256[e.path] = d
    result.captured = {extents[k].path: data for k, data in m.captured.items()}
    result.missing = [e.path for e, d in sorted(zip(extents, m.digests), key=lambda x: x[0].lba)
                      if d is None]
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
