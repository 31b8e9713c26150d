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
import sys
import threading
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from itertools import compress, islice, repeat
from operator import add, eq, gt, le, sub
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


class _Skipped:
    """``n`` bytes of the image before the first file: hashed for the image, not handed on."""

    __slots__ = ("n",)

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n


class _SwitchInterval:
    """The interpreter's thread switch interval, shortened while any pass runs.

    A thread waiting for the GIL asks for it only after the switch interval
    (5 ms by default); the pass's threads each need it for a moment per
    chunk while the caller's thread releases and takes it per small file,
    so a waiting hasher could idle for most of that. 0.5 ms keeps them
    moving (a few per cent on 100,000 small files); restored when the last
    pass ends.
    """

    SHORT = 0.0005
    _lock = threading.Lock()
    _users = 0
    _saved = 0.0

    @classmethod
    def enter(cls) -> None:
        with cls._lock:
            if cls._users == 0:
                cls._saved = sys.getswitchinterval()
                sys.setswitchinterval(min(cls.SHORT, cls._saved))
            cls._users += 1

    @classmethod
    def leave(cls) -> None:
        with cls._lock:
            cls._users -= 1
            if cls._users == 0:
                sys.setswitchinterval(cls._saved)


class _ImageReader:
    """Reads the image's chunks and hashes them for the image, in two threads of its own.

    Every byte is hashed twice, once for the image and once for its file,
    so the pass uses three threads: one reads (it iterates ``chunks``), one
    hashes every chunk for the image (``image-sha256``) and the caller's
    hashes the files. hashlib and file reads release the GIL, so on two
    cores the pass takes about as long as hashing the image once, the
    operating system sharing the cores among the three.

    ``helper(pos, chunk)``: when the caller falls behind (2 chunks or more
    waiting for it), the reading thread also hashes the files wholly inside
    the chunk it has just read through it; it returns how far (in the
    caller's order of files) it got, or None. It may be set later
    (``reader.helper = ...``). Chunks that end at or before byte ``skip``
    (no file lies in them) go to the image's hash only: the caller gets a
    :class:`_Skipped` of the same length instead, so it may still be
    preparing while they are read. ``idle()`` is called in the caller's
    thread whenever no chunk is waiting for it, until it returns False.

    At most 4 chunks wait for each of the two hashing threads (32 MiB at
    most with :func:`file_chunks`' 4 MiB chunks). Iterating gives (chunk, how far the helper got
    or None), once. An error while reading is raised again in the caller's
    thread; when the caller stops early (an exception, a closed generator,
    :meth:`close`) both threads stop and are joined.
    """

    DEPTH = 4

    def __init__(self, chunks: Iterable[bytes],
                 helper: Callable[[int, bytes], int | None] | None = None,
                 skip: int = 0, idle: Callable[[], bool] | None = None):
        self._chunks, self.helper, self._skip, self._idle = chunks, helper, skip, idle
        self._h = hashlib.sha256()
        # Hand-offs: SimpleQueue (in C) for the chunks, and one for the free
        # slots of each hashing thread, so that the reading thread blocks
        # without Python-level condition variables.
        self._q, self._qi = queue.SimpleQueue(), queue.SimpleQueue()
        self._free, self._free_i = queue.SimpleQueue(), queue.SimpleQueue()
        for _ in range(self.DEPTH):
            self._free.put(True)
            self._free_i.put(True)
        self._error: BaseException | None = None
        self._stop = self._closed = False
        _SwitchInterval.enter()
        self._ti = threading.Thread(target=self._hash_image, name="image-sha256", daemon=True)
        self._t = threading.Thread(target=self._read, name="image-read", daemon=True)
        self._ti.start()
        self._t.start()

    def _hash_image(self) -> None:
        get, update, free = self._qi.get, self._h.update, self._free_i.put
        while (chunk := get()) is not None:
            update(chunk)
            free(True)

    def _read(self) -> None:
        q, qi, pos, skip = self._q, self._qi, 0, self._skip
        slot, slot_i = self._free.get, self._free_i.get
        try:
            for chunk in self._chunks:
                slot_i()
                if self._stop:
                    break
                qi.put(chunk)
                if pos + len(chunk) <= skip:
                    q.put((_Skipped(len(chunk)), None))     # takes no slot: holds no bytes
                    pos += len(chunk)
                    continue
                helper = self.helper
                done = helper(pos, chunk) if helper and q.qsize() >= 2 else None
                slot()
                if self._stop:
                    break
                q.put((chunk, done))
                pos += len(chunk)
        except BaseException as exc:   # handed to the caller's thread
            self._error = exc
        finally:
            qi.put(None)
            q.put(None)

    def __iter__(self) -> Iterator[tuple[bytes, int | None]]:
        q, free, idle = self._q, self._free.put, self._idle
        try:
            while True:
                while idle is not None and q.empty():
                    if not idle():
                        idle = None
                item = q.get()
                if item is None:
                    break
                yield item
                if item[0].__class__ is not _Skipped:
                    free(True)
        finally:
            self.close()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Stop reading and hashing, and wait for both threads to end."""
        self._stop = True
        self._free.put(True)           # the reading thread may wait for a slot
        self._t.join()
        self._ti.join()
        if not self._closed:
            self._closed = True
            _SwitchInterval.leave()

    def hexdigest(self) -> str:
        """The image's SHA-256 (hex) over every byte read; valid once iterating has ended."""
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


_hexdigest = type(hashlib.sha256()).hexdigest


def hash_extents(chunks: Iterable[bytes], starts: Sequence[int], sizes: Sequence[int],
                 capture: Collection[int] = (), progress: Callable[[int, int], None] | None = None,
                 length: int = 0, idle: Callable[[], bool] | None = None,
                 reader: "_ImageReader | None" = None) -> Measured:
    """Hash a stream of image bytes and the files in it, in one pass.

    File ``k`` is ``sizes[k]`` bytes from byte ``starts[k]`` (files may come
    in any order; their bytes must not overlap). ``chunks`` are the image's
    bytes in order from byte 0 (a file read or a drive's read-back, which
    gives zeros for unreadable sectors); files whose index is in
    ``capture`` also have their bytes kept. ``progress(done, length)`` is
    called per chunk when given; ``idle()``, when given, whenever this
    thread waits for the image's bytes, until it returns False (work that
    can be done meanwhile, in small steps). Memory: a hex digest a file, a
    few integers a file, the files begun but not ended, the captured
    bytes, at most 8 chunks; never a whole chunk list. The files wholly
    inside a chunk are hashed together, the loop over them running in C
    (``map``), so that many small files cost little more than their bytes.

    ``reader``: an :class:`_ImageReader` of ``chunks`` the caller started
    earlier (with its ``skip``), taken over and closed here. Raises
    ValueError, reading nothing more, when a file begins before its
    ``skip``: those bytes went to the image's hash only.
    """
    n = len(starts)
    has_bytes = list(map(gt, sizes, repeat(0)))
    # The reading and the image's hash start at once: the bytes before the
    # first file (an image's file system structures) need no table.
    skip = min(compress(starts, has_bytes), default=0)
    if reader is not None:
        image = reader
        image._idle = idle
        if image._skip > skip:
            image.close()
            raise ValueError(f"a file begins at byte {skip}, before the {image._skip} bytes "
                             "read for the image only: the record's first file is wrong")
    else:
        image = _ImageReader(chunks, skip=skip, idle=idle)
    try:
        digests: list[str | None] = [None] * n
        captured: dict[int, bytes] = {}
        order = list(compress(range(n), has_bytes))     # the files with bytes
        for k in range(n) if len(order) < n else ():
            if not has_bytes[k]:
                digests[k] = EMPTY_SHA256
                if k in capture:
                    captured[k] = b""
        first = list(map(starts.__getitem__, order))
        if not all(map(le, first, islice(first, 1, None))):
            order.sort(key=starts.__getitem__)
            first = list(map(starts.__getitem__, order))
        last = list(map(add, first, map(sizes.__getitem__, order)))
        total = len(order)
        identity = total == n and all(map(eq, order, range(n)))
        out = digests if identity else [None] * total      # digests in image order
        take = sorted(order.index(k) for k in capture if has_bytes[k]) if capture else []
        apart = all(map(le, last, islice(first, 1, None)))   # else files overlap: one by one
    except BaseException:
        image.close()
        raise
    sha256 = hashlib.sha256

    def whole(view, at: int, lo: int, hi: int) -> None:
        """Hash files ``lo``..``hi - 1`` (image order), all inside ``view`` at byte ``at``."""
        pieces = map(view.__getitem__, map(slice, map(sub, first[lo:hi], repeat(at)),
                                           map(sub, last[lo:hi], repeat(at))))
        out[lo:hi] = map(_hexdigest, map(sha256, pieces))
        if take:
            for j in take[bisect_left(take, lo):bisect_left(take, hi)]:
                captured[order[j]] = bytes(view[first[j] - at:last[j] - at])

    def whole_files(at: int, chunk: bytes) -> int | None:
        """In the reading thread: hash the files wholly inside the chunk at byte ``at``."""
        lo = bisect_left(first, at)
        hi = bisect_right(last, at + len(chunk), lo)
        if hi <= lo:
            return None
        whole(memoryview(chunk), at, lo, hi)
        return hi

    if apart:
        image.helper = whole_files
    pos, nxt = 0, 0
    active: list[list] = []     # [image-order index, end, hasher, buffer]: begun in an earlier chunk
    for chunk, done in image:
        end = pos + len(chunk)
        if chunk.__class__ is _Skipped:
            pos = end
            if progress:
                progress(pos, length or pos)
            continue
        view = memoryview(chunk)
        if done is not None and done > nxt:            # the reading thread hashed them
            nxt = done
        if active:
            still = []
            for f in active:
                j, stop, h, buf = f
                hi = min(stop, end) - pos
                h.update(view[:hi])
                if buf is not None:
                    buf += view[:hi]
                if stop <= end:
                    out[j] = h.hexdigest()
                    if buf is not None:
                        captured[order[j]] = bytes(buf)
                else:
                    still.append(f)
            active = still
        if apart and nxt < total and last[nxt] <= end:   # files wholly inside: together
            hi = bisect_right(last, end, nxt)
            whole(view, pos, nxt, hi)
            nxt = hi
        while nxt < total:                              # files that begin in this chunk
            a = first[nxt]
            if a >= end:
                break
            b, j = last[nxt], nxt
            nxt += 1
            if b <= end:                                # wholly inside: hash it at once
                whole(view, pos, j, j + 1)
            else:
                buf = bytearray(view[a - pos:]) if take and order[j] in capture else None
                active.append([j, b, sha256(view[a - pos:]), buf])
        pos = end
        if progress:
            progress(pos, length or pos)
    if not identity:
        any(map(digests.__setitem__, order, out))     # back to the caller's order
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


def file_chunks(path, length: int, chunk: int = 1 << 22) -> Iterable[bytes]:
    """The first ``length`` bytes of a file, in chunks of at most ``chunk`` bytes.

    4 MiB: each chunk costs the pass's threads a hand-off of the interpreter
    lock, and 100,000 small files keep that lock busy between their hashes
    (make bench line 3b: 0.72-0.77 with 1 MiB chunks, 0.82-0.85 with 4 MiB;
    peak memory stays under line 4a's 200 MB)."""
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
