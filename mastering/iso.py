"""Master a bag into an ISO image with pycdlib.

The image carries four directory trees over the same file data:

* ISO 9660 (ECMA-119) at interchange level 3, with short upper-case names
  (8.3 d-characters, or generated ``F0000001`` names where the original
  cannot be kept) for the oldest readers;
* Rock Ridge 1.09 (IEEE P1282): every original name, intact, up to 255
  UTF-8 bytes;
* Joliet (UCS-2, at most 64 characters a name): the original name where it
  fits; otherwise the one fixed rule of :func:`joliet_name`;
* UDF (OSTA), as pycdlib writes it when asked for 2.60: NSR02 descriptors,
  read by most tools as UDF 1.02, no metadata partition; every original
  name, intact.

Deep trees: ECMA-119 6.8.2.1 allows 8 directory levels (the root is the
first). pycdlib moves a folder that would be deeper into ``/RR_MOVED`` in
the ISO 9660 tree and links it back with Rock Ridge CL/PL/RE entries
(RRIP 4.1.5), so the Rock Ridge tree (``rr_moved`` is its one extra
folder), Joliet and UDF show every path at its place.

Large files: a file of more than 0xFFFFF800 bytes (4 GiB - 2048) has
several ISO 9660 directory records (level 3 multi-extent, ECMA-119 6.5.1)
and several UDF allocation descriptors; their data lies back to back,
which :meth:`Layout.write` checks, so one (first sector, size) places it.

The volume identifier is the disc set ID. Sizes are in bytes or in sectors
of 2048 bytes.
"""

from __future__ import annotations

import array
import bisect
import functools
import gc
import hashlib
import math
import os
import re
import threading
import time
import types
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pycdlib
from pycdlib import dr, inode, pycdlibexception, rockridge, utils
from pycdlib import udf as udfmod

SECTOR = 2048
JOLIET_MAX = 64
NAME_MAX_BYTES = 255          # Rock Ridge NM and most POSIX file systems
MAX_EXTENT = 0xFFFFF800       # the largest ISO 9660 extent a directory record gives
WRITE_BLOCK = 1 << 20   # bytes pycdlib copies at a time (its default, 32 KiB, costs a call per 32 KiB)
COPY_BLOCK = 1 << 20    # bytes of a file read, hashed and written at a time by Layout.write
_JOLIET_FORBIDDEN = re.compile(r"[\x00-\x1f*/:;?\\]")
_D_CHARS = re.compile(r"[^A-Z0-9_]")

Progress = Callable[[int, int], None]


class MasteringError(Exception):
    """The image could not be made; the message names the file and the fix."""


@dataclass(frozen=True)
class Image:
    """A mastered image.

    ``path`` is its file; ``size`` in bytes; ``sectors`` in 2048-byte
    sectors; ``sha256`` (hex) over exactly ``size`` bytes, None until a
    check has read the image (see verification.onepass); ``extents`` maps
    each file's path in the bag to the sector where its data starts (its
    bytes are contiguous: ISO 9660 single extent, or level 3 multi-extent
    laid out back to back); ``digests`` maps each file's path to the
    SHA-256 (hex) of the bytes :meth:`Layout.write` put into the image for
    it, measured as they were written.
    """

    path: Path
    size: int
    sectors: int
    sha256: str | None = None
    extents: dict[str, int] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)


def _utf16_units(text: str) -> int:
    return len(text.encode("utf-16-be")) // 2


def joliet_name(name: str) -> str:
    """The Joliet name for an original file or folder name.

    A name of at most 64 UTF-16 code units with no character Joliet forbids
    (controls, ``* / : ; ? \\``) is kept as it is. Any other name becomes::

        <start of the name, forbidden characters as _>~<8 hex digits><extension>

    where the hex digits are the start of the SHA-256 of the whole original
    name (UTF-8) and the extension (up to 10 characters) is kept, so the
    result is at most 64 units and two different names map to different
    Joliet names unless their hashes collide (which :func:`master` detects).
    """
    if _utf16_units(name) <= JOLIET_MAX and not _JOLIET_FORBIDDEN.search(name):
        return name
    tag = "~" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext) > 10:
        stem, ext = name, ""
    else:
        ext = "." + ext
    ext = _JOLIET_FORBIDDEN.sub("_", ext)
    room = JOLIET_MAX - _utf16_units(tag) - _utf16_units(ext)
    kept = ""
    for ch in _JOLIET_FORBIDDEN.sub("_", stem):
        if _utf16_units(kept + ch) > room:
            break
        kept += ch
    return kept + tag + ext


def _iso9660_name(name: str, is_dir: bool, taken: set[str], counter: list[int]) -> str:
    """A short ECMA-119 name: the original upper-cased as 8.3 d-characters if it fits, else generated."""
    stem, dot, ext = name.rpartition(".") if not is_dir else ("", "", name)
    if is_dir or not dot:
        stem, ext = name, ""
    s = _D_CHARS.sub("_", stem.upper())
    e = _D_CHARS.sub("_", ext.upper())[:3]
    ok = s and len(s) <= 8 and s == stem.upper() and name.isascii()
    cand = s if ok else ""
    if not cand or cand in taken:
        while True:
            counter[0] += 1
            cand = f"{'D' if is_dir else 'F'}{counter[0]:07d}"
            if cand not in taken:
                break
    taken.add(cand)
    return cand if is_dir else f"{cand}.{e};1"


class _Taken:
    """The ISO 9660 names used in one folder, as :func:`_iso9660_name` asks (``in``, ``add``).

    A set would hold a string a file; most names are generated
    (``F0000123``) from one counter that only grows, so those are kept as
    numbers in a sorted array (8 bytes a name) and the rest in a set. It
    answers exactly as a set of the same names does.
    """

    __slots__ = ("_names", "_numbers")

    def __init__(self):
        self._names: set[str] = set()
        self._numbers = array.array("q")   # 2 x counter + 1 for D, sorted

    @staticmethod
    def _number(name: str) -> int | None:
        """The array key of a name as the counter writes it (D or F, 7 or more digits), else None."""
        head, digits = name[:1], name[1:]
        if head not in ("D", "F") or len(digits) < 7 or not digits.isdigit() or not digits.isascii():
            return None
        n = int(digits)
        if f"{n:07d}" != digits:
            return None
        return 2 * n + (head == "D")

    def __contains__(self, name: str) -> bool:
        if name in self._names:
            return True
        key = self._number(name)
        if key is None or not self._numbers:
            return False
        at = bisect.bisect_left(self._numbers, key)
        return at < len(self._numbers) and self._numbers[at] == key

    def add(self, name: str) -> None:
        key = self._number(name)
        if key is not None and (not self._numbers or key > self._numbers[-1]):
            self._numbers.append(key)
        elif name not in self:
            self._names.add(name)


def name_too_long(name: str) -> str | None:
    """Why Rock Ridge or UDF cannot hold ``name`` intact, or None.

    Rock Ridge (and Linux file systems) take at most 255 UTF-8 bytes a
    name. A UDF file identifier (OSTA CS0 d-string) is at most 255 bytes
    including its compression byte: 254 characters when every one is
    U+00FF or below, else 127 UTF-16 code units.
    """
    if len(name) <= 63:      # at most 252 UTF-8 bytes and 126 UTF-16 units: fits both
        return None
    size = len(name.encode("utf-8"))
    if size > NAME_MAX_BYTES:
        return f"is longer than {NAME_MAX_BYTES} UTF-8 bytes ({size} bytes)"
    units = _utf16_units(name)
    udf_bytes = 1 + (2 * units if any(ord(c) > 0xFF for c in name) else len(name))
    if udf_bytes > 255:
        return (f"is too long for UDF ({units} characters; 254 Latin or 127 other "
                "characters at most)")
    return None


def check_name(name: str, path: str) -> None:
    """Refuse a name that Rock Ridge or UDF cannot hold intact (MasteringError)."""
    why = name_too_long(name)
    if why:
        raise MasteringError(f"{path}: the name {why}; shorten it")


class _PerSecondClock:
    """The ``time`` module as pycdlib's date code sees it: each second's calendar fields made once.

    pycdlib fills about ten dates a file (directory records, Rock Ridge TF,
    UDF timestamps), each with ``time.localtime`` and ``time.gmtime`` of
    the current time: two million calls for 100,000 files, about 2 s. Both
    depend only on the whole second (the fractions are dropped), so the
    result of each second is kept and reused; every other name is the
    ``time`` module's own, and the fields written are the same.
    """

    def __getattr__(self, name):
        return getattr(time, name)

    @staticmethod
    @functools.lru_cache(maxsize=8)
    def _local(second: int) -> time.struct_time:
        return time.localtime(second)

    @staticmethod
    @functools.lru_cache(maxsize=8)
    def _utc(second: int) -> time.struct_time:
        return time.gmtime(second)

    def localtime(self, secs=None):
        return time.localtime() if secs is None else self._local(math.floor(secs))

    def gmtime(self, secs=None):
        return time.gmtime() if secs is None else self._utc(math.floor(secs))


_CLOCK = _PerSecondClock()
for _module in (pycdlib.dates, pycdlib.udf, pycdlib.utils):
    if getattr(_module, "time", None) is time:
        _module.time = _CLOCK


class _PyCdlib(pycdlib.PyCdlib):
    """pycdlib, with Joliet's limit counted as the standard does, and leaner for many files.

    Besides the Joliet limit below: Rock Ridge continuation areas placed
    among the last few blocks (``_update_rr_ce_entry``), files added under
    folder records the caller holds (``add_file_in``), and the parts every
    file has alike shared (``_share``); the image's bytes are those pycdlib
    itself writes. ``close`` gives back what :class:`Layout` froze.

    pycdlib 1.x checks a Joliet name's 64-character limit on its UTF-8 bytes,
    which refuses Chinese names of 22 characters or more; the Joliet
    specification counts UCS-2 characters (64, i.e. 128 bytes).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._parts: dict = {}
        self._shared_dirs: set[int] = set()
        self.frozen = False        # Layout froze the collector's objects (gc.freeze)

    def close(self) -> None:
        """Close as pycdlib does; give the collector back what the layout froze (see Layout)."""
        try:
            super().close()
        finally:
            if self.frozen:
                self.frozen = False
                gc.unfreeze()

    def _joliet_name_and_parent_from_path(self, joliet_path):
        splitpath = utils.split_path(joliet_path)
        name = splitpath.pop()
        encoded = name.decode("utf-8").encode("utf-16_be")
        if len(encoded) > 2 * JOLIET_MAX:
            raise pycdlibexception.PyCdlibInvalidInput("Joliet names can be a maximum of 64 characters")
        parent = self._find_joliet_record(b"/" + b"/".join(splitpath))
        return encoded, parent

    # Rock Ridge continuation areas (SUSP CE, IEEE P1281 section 5.1) hold
    # what does not fit in a directory record: here the long UTF-8 names.
    # pycdlib places each new area by first fit over every continuation
    # block so far, each searched area by area: the cost grows with the
    # square of the number of long names (a third of the layout's time with
    # 100,000 files). Here only the last few blocks are tried, with
    # pycdlib's own first fit, and a new block is opened when none has
    # room: the same areas, at most a few bytes a block less tightly packed.
    _CE_TRIED = 4

    # While Layout.write runs, pycdlib writes every byte but the files' data:
    # each file's inode is listed here instead, in the order pycdlib would
    # copy it, and _copy_files copies (and hashes) the data at its place.
    _data_later: list | None = None

    def _output_file_data(self, outfp, blocksize, ino):
        if self._data_later is None:
            return super()._output_file_data(outfp, blocksize, ino)
        self._data_later.append(ino)
        return ()

    def _update_rr_ce_entry(self, rec):
        rr = rec.rock_ridge
        if rr is None or rr.dr_entries.ce_record is None:
            return 0
        rr.clear_ce_areas()
        size = self.logical_block_size
        blocks = self.pvd.rr_ce_blocks
        added = 0
        for length in rr.ce_area_lengths(size):
            for block in blocks[-self._CE_TRIED:]:
                offset = block.add_entry(length)
                if offset is not None:
                    break
            else:
                block = rockridge.RockRidgeContinuationBlock(0, size)
                blocks.append(block)
                offset = block.add_entry(length)
                if offset is None:
                    raise pycdlibexception.PyCdlibInternalError(
                        f"a Rock Ridge continuation area of {length} bytes exceeds a block")
                added += size
            rr.add_ce_area(block, offset, length)
        first = rr.ce_areas[0]
        rr.dr_entries.ce_record.update_offset(first.offset)
        rr.dr_entries.ce_record.update_len(first.length)
        return added

    # What pycdlib keeps a file by: two directory records (ISO 9660, Joliet)
    # with Rock Ridge entries on the first, a UDF file entry and identifier.
    # Each record gets its own date objects (about 10 a file, all of the
    # same second or two), its own empty lists for children and unused Rock
    # Ridge entries, and its own copy of the UDF implementation identifier:
    # about 2 KB of the 7 KB a file. Once a file is added, these are swapped
    # for one shared object each, equal by the bytes written (so the image
    # is the same); the empty containers become immutable ones, so a later
    # change to them fails loudly instead of reaching every file. A folder's
    # records get their dates shared when its first file is added.
    _EMPTY_MAP = types.MappingProxyType({})
    _TF_DATES = ("creation_time", "access_time", "modification_time", "attribute_change_time",
                 "backup_time", "expiration_time", "effective_time")

    def _add_fp(self, *args, **kwargs):
        added = super()._add_fp(*args, **kwargs)
        ino = self.inodes[-1] if self.inodes else None
        if ino is not None:
            for rec, _in_iso in ino.linked_records:
                self._share(rec)
        return added

    def folder_records(self, iso_path: str, joliet_path: str, udf_path: str) -> tuple:
        """A folder's (ISO 9660 record, Joliet record, UDF file entry), by its paths.

        pycdlib's lookups without ``get_record``, which first recomputes
        every extent of the image (once a folder: quadratic).
        """
        iso = self._find_iso_record(utils.normpath(iso_path))
        joliet = self._find_joliet_record(self._normalize_joliet_path(joliet_path))
        return iso, joliet, self._find_udf_record(utils.normpath(udf_path))[1]

    def add_file_in(self, parents: tuple, fp, length: int, iso_name: str, name: str,
                    joliet: str) -> None:
        """Add a file of at most MAX_EXTENT bytes into folders whose records the caller holds.

        ``parents`` is the folder's (ISO 9660 record, Joliet record, UDF file
        entry); ``iso_name`` its ISO 9660 name (``F0000001.PDF;1``), ``name``
        the original (Rock Ridge and UDF), ``joliet`` its Joliet name, all
        valid for their trees (Layout makes them so). The records are those
        ``add_file(fp, parent_iso_path + "/" + iso_name, rr_name=name,
        joliet_path=..., udf_path=..., file_mode=0o100444)`` makes, in the
        same order: pycdlib's add_file finds each folder again from its path
        (normalised, split and looked up in three trees), a third of its
        time a file. Raises what pycdlib raises (a duplicate name).
        """
        iso_parent, joliet_parent, udf_parent = parents
        block = self.logical_block_size
        ino = inode.Inode()
        ino.new(length, fp, True, 0)
        added = length
        rr_name = name.encode("utf-8")
        for vd, parent, ident, rr, rr_ident, xa, in_iso in (
                (self.pvd, iso_parent, iso_name.encode("utf-8"), self.rock_ridge, rr_name,
                 self.xa, True),
                (self.joliet_vd, joliet_parent, joliet.encode("utf-16_be"), "", b"", False,
                 False)):
            rec = dr.DirectoryRecord()
            rec.new_file(vd, length, ident, parent, vd.sequence_number(), rr, rr_ident, xa,
                         0o100444, time.time(), None)
            added += self._add_child_to_dr(rec)
            added += self._update_rr_ce_entry(rec)
            ino.linked_records.append((rec, in_iso))
            rec.inode = ino
        file_ident = udfmod.UDFFileIdentifierDescriptor()
        file_ident.new(False, False, rr_name, udf_parent)
        added += udf_parent.add_file_ident_desc(file_ident, block) * block
        entry = self._new_udf_file_entry(udf_parent, None)
        if isinstance(entry, udfmod.UDFExtendedFileEntry):
            entry.new(length, "file", udf_parent, block, None)
        else:
            entry.new(length, "file", udf_parent, block)
        file_ident.file_entry = entry
        entry.file_ident = file_ident
        added += block
        ino.num_udf += 1
        ino.linked_records.append((entry, False))
        entry.inode = ino
        if self.udf_logical_volume_integrity is not None:
            self.udf_logical_volume_integrity.logical_volume_impl_use.num_files += 1
        self.inodes.append(ino)
        for rec, _in_iso in ino.linked_records:
            self._share(rec)
        self._finish_add(0, added)

    def _shared(self, value):
        """The one object of this image equal to ``value`` (a date, a constant UDF part)."""
        return self._parts.setdefault((type(value), value.record()), value)

    def _share_dates(self, rec) -> None:
        """Share the dates of a directory record (and its Rock Ridge TF) or a UDF file entry."""
        shared = self._shared
        if isinstance(rec, udfmod.UDFFileEntry):
            rec.access_time = shared(rec.access_time)
            rec.mod_time = shared(rec.mod_time)
            rec.attr_time = shared(rec.attr_time)
            rec.impl_ident = shared(rec.impl_ident)
            rec.extended_attr_icb = shared(rec.extended_attr_icb)
            return
        rec.date = shared(rec.date)
        tf = rec.rock_ridge.dr_entries.tf_record if rec.rock_ridge is not None else None
        if tf is not None:
            for name in self._TF_DATES:
                value = getattr(tf, name, None)
                if value is not None:
                    setattr(tf, name, shared(value))

    def _share(self, rec) -> None:
        """Share the parts of a file's record that every file has alike (see above)."""
        self._share_dates(rec)
        parent = rec.parent
        if parent is not None and id(parent) not in self._shared_dirs:
            self._shared_dirs.add(id(parent))
            self._share_dates(parent)
            if not isinstance(parent, udfmod.UDFFileEntry):
                self._freeze_empty(parent, children=False)     # files are still to come
                for dot in parent.children[:2]:      # the folder's "." and ".."
                    if dot.is_dot() or dot.is_dotdot():
                        self._share_dates(dot)
                        self._freeze_empty(dot, children=True)
        if isinstance(rec, udfmod.UDFFileEntry):
            if not rec.fi_descs:
                rec.fi_descs = self._EMPTY_MAP
            return
        self._freeze_empty(rec, children=True)

    @staticmethod
    def _freeze_empty(rec, children: bool) -> None:
        """Swap a directory record's empty lists (its children's too if ``children``) for ()."""
        if children:
            if not rec.children:
                rec.children = ()
            if not rec.rr_children:
                rec.rr_children = ()
            if not getattr(rec, "_subdir_children", True):
                rec._subdir_children = ()
        rr = rec.rock_ridge
        if rr is not None:
            if not rr.ce_areas:
                rr.ce_areas = ()
            entries = rr.dr_entries
            for name in ("es_records", "sl_records", "pd_records", "al_records"):
                if not getattr(entries, name):
                    setattr(entries, name, ())


@functools.lru_cache(maxsize=1)
def _empty_image_sectors() -> int:
    layout = Layout([("data/empty", Path(os.devnull))], "EMPTY")
    try:
        return layout.sectors
    finally:
        layout.iso.close()


def max_file_bytes(capacity: int) -> int:
    """The largest single file that can go onto a medium of ``capacity`` sectors, in bytes.

    The sectors of an image holding one empty file (volume descriptors,
    the UDF anchor at sector 256, directories) are taken off: a larger file
    can never fit, whatever else the bag holds. A file up to this size may
    still not fit beside the rest of a bag; :attr:`Layout.sectors` says so
    exactly.
    """
    return max(0, capacity - _empty_image_sectors()) * SECTOR


class _Sequential:
    """The image file as pycdlib writes it: a seek that goes nowhere costs nothing.

    pycdlib seeks before every record it writes, and a buffered file
    flushes on every seek: a system call per record (680,000 for 100,000
    files). Here the position is only counted and the bytes gather in a
    run of up to 1 MiB, written with one os.pwrite when a write lands away
    from the run's end (or it is full); a gap of up to 64 KiB past the end
    of all that is written is filled with the zeros it would read as. The
    bytes of the image are the same. Call :meth:`flush` at the end.
    """

    mode = "wb"
    _RUN = 1 << 20

    def __init__(self, fd: int):
        self._fd = fd
        self._run = bytearray()
        self._start = self._pos = self._end = 0   # the run's offset, asked for, end of the data

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_CUR:
            offset += self._pos
        elif whence == os.SEEK_END:
            offset += self._end
        self._pos = offset
        return offset

    def write(self, data) -> int:
        at = self._start + len(self._run)
        if self._pos != at:
            gap = self._pos - at
            if 0 < gap <= 1 << 16 and at == self._end:
                self._run += bytes(gap)
            else:
                self.flush()
                self._start = self._pos
        self._run += data
        n = len(data)
        self._pos += n
        self._end = max(self._end, self._pos)
        if len(self._run) >= self._RUN:
            self.flush()
        return n

    def flush(self) -> None:
        """Write the gathered run. Raises OSError."""
        view = memoryview(self._run)
        at = self._start
        while view.nbytes:
            k = os.pwrite(self._fd, view, at)
            at, view = at + k, view[k:]
        view.release()
        self._start = at
        self._run.clear()


_EMPTY_SHA256 = hashlib.sha256().hexdigest()
_BATCH_BYTES = 8 << 20       # a thread copies files in batches of at most this many bytes
_BATCH_FILES = 256           # or files
_FLUSH_BYTES = 256 << 20     # written bytes that start the image's write-back (see _Flusher)
_buffers = threading.local()


def _copy_one(out: int, ino, buf: memoryview) -> tuple[str, int]:
    """Copy one file's data to its place in the image, hashing it on the way.

    ``out`` is the image's descriptor; ``ino`` the pycdlib inode (its
    extent, length and source: a host file name, or an open file object).
    The bytes are read into ``buf``, hashed and written with os.pwrite at
    the file's extent, so the digest is of exactly the bytes in the image.
    A source shorter than laid out (it shrank since it was added) leaves
    zeros in the image, as pycdlib's copy does, and the digest covers them.
    Returns (SHA-256 hex, bytes written). Raises OSError.
    """
    at, left = ino.extent_location() * SECTOR, ino.get_data_length()
    h, written = hashlib.sha256(), 0
    if ino.manage_fp:
        fd = os.open(ino.data_fp, os.O_RDONLY)
        read = lambda view: os.readv(fd, [view])
    else:       # an open file object (pycdlib's add_fp): not used by Layout, kept correct
        opened = inode.InodeOpenData(ino, SECTOR)
        src, _ = opened.__enter__()
        read = src.readinto
    try:
        while left:
            view = buf[:min(left, len(buf))]
            n = read(view)
            if not n:                 # shorter than laid out: the image keeps zeros there
                while left:
                    n = min(left, len(buf))
                    h.update(bytes(n))
                    left -= n
                break
            piece = view[:n]
            h.update(piece)
            while piece.nbytes:
                k = os.pwrite(out, piece, at)
                at, piece = at + k, piece[k:]
            written, left = written + n, left - n
    finally:
        if ino.manage_fp:
            os.close(fd)
        else:
            opened.__exit__(None, None, None)
    return h.hexdigest(), written


def _copy_batch(out: int, batch: list, flusher: "_Flusher") -> list[tuple[str, int]]:
    buf = getattr(_buffers, "buf", None)
    if buf is None:
        buf = _buffers.buf = memoryview(bytearray(COPY_BLOCK))
    done = [_copy_one(out, ino, buf) for _, ino in batch]
    flusher.wrote(sum(n for _, n in done))
    return done


def _write_parts(out: int, path: str, parts: Iterable[bytes], at: int, length: int) -> str:
    """Write ``parts`` one after the other from byte ``at`` of ``out``; their SHA-256 (hex).

    Raises MasteringError (a bug) unless they are exactly ``length`` bytes.
    """
    h, n = hashlib.sha256(), 0
    for data in parts:
        n += len(data)
        if n > length:
            break
        h.update(data)
        view = memoryview(data)
        while view.nbytes:
            k = os.pwrite(out, view, at)
            at, view = at + k, view[k:]
    if n != length:
        raise MasteringError(f"{path}: {'more than ' if n > length else ''}{n} bytes to write "
                             f"where {length} were laid out; report this as a bug")
    return h.hexdigest()


class _Flusher:
    """Starts the image's write-back while the copy goes on (one thread, fdatasync).

    The kernel writes dirty pages back only once a large share of memory
    is dirty, so the final fsync would wait for gigabytes with nothing
    else to do. Each time the copying threads have written
    ``_FLUSH_BYTES`` more, this thread calls fdatasync: the disk works
    while the CPUs hash, and the final fsync has little left.
    """

    def __init__(self, fd: int):
        self.fd, self.pending = fd, 0
        self.lock, self.wake, self.stop = threading.Lock(), threading.Event(), False
        self.thread = threading.Thread(target=self._run, name="image-writeback", daemon=True)
        self.thread.start()

    def wrote(self, n: int) -> None:
        with self.lock:
            self.pending += n
            if self.pending >= _FLUSH_BYTES:
                self.pending = 0
                self.wake.set()

    def _run(self) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            if self.stop:
                return
            try:
                os.fdatasync(self.fd)
            except OSError:
                return               # the final fsync reports it

    def close(self) -> None:
        self.stop = True
        self.wake.set()
        self.thread.join()


def _copy_files(out: int, copies: list[tuple[str | None, object]],
                tick: Callable[[int], None]) -> dict[str | None, str]:
    """Copy and hash every file's data into the image ``out`` (a descriptor).

    ``copies`` lists (path in the bag, pycdlib inode) in the order pycdlib
    would write them. Files are copied in batches of up to 256 files or
    8 MiB by up to 4 threads (no more than the CPUs): reads, hashlib and
    os.pwrite release the GIL, so hashing takes all the cores while the
    disk writes. ``tick(bytes)`` is called per batch, in order, from this
    thread. Returns {path: SHA-256 hex}. Raises OSError.
    """
    batches, batch, room = [], [], _BATCH_BYTES
    for path, ino in copies:
        batch.append((path, ino))
        room -= ino.get_data_length()
        if room <= 0 or len(batch) >= _BATCH_FILES:
            batches.append(batch)
            batch, room = [], _BATCH_BYTES
    if batch:
        batches.append(batch)
    digests: dict[str | None, str] = {}
    workers = min(4, os.cpu_count() or 1)
    flusher = _Flusher(out)
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="image-copy") as pool:
            window: deque = deque()

            def settle() -> None:
                b, future = window.popleft()
                done = future.result()
                for (path, _), (digest, _) in zip(b, done):
                    digests[path] = digest
                tick(sum(n for _, n in done))

            try:
                for b in batches:
                    window.append((b, pool.submit(_copy_batch, out, b, flusher)))
                    while len(window) > 2 * workers or (window and window[0][1].done()):
                        settle()
                while window:
                    settle()
            except BaseException:
                for _, future in window:
                    future.cancel()
                raise
    finally:
        flusher.close()
    return digests


class _HostFile:
    """A payload file's host path as a shared root and the tail of its bag path.

    ``data/2023/x.pdf`` from ``/src/2023/x.pdf`` is ``/src/`` + the bag
    path after ``data/``: pycdlib opens it by :func:`os.fspath` when the
    image is written, and the path is not held as a string of its own
    (about 300 bytes a file with Chinese names).
    """

    __slots__ = ("_root", "_bag_path", "_cut")

    def __init__(self, root: str, bag_path: str, cut: int):
        self._root, self._bag_path, self._cut = root, bag_path, cut

    def __fspath__(self) -> str:
        return self._root + self._bag_path[self._cut:]

    def __repr__(self) -> str:
        return f"_HostFile({self.__fspath__()!r})"


class Layout:
    """The bag's entries placed into the four directory trees, not yet written.

    ``sectors`` is the image's exact size in 2048-byte sectors, known before
    a byte is written, so a medium that is too small is found first.

    The layout's objects are kept out of Python's cyclic collector
    (``gc.freeze``) until :meth:`write` closes the image; a layout that is
    not written is closed with ``layout.iso.close()``.
    """

    def __init__(self, entries: list[tuple[str, Path]], volume_id: str):
        self.iso = _PyCdlib()
        self.iso.new(interchange_level=3, vol_ident=volume_id, joliet=3,
                     rock_ridge="1.09", udf="2.60", app_ident_str="discarchive")
        self._dirs: dict[str, tuple[str, str, str]] = {"": ("", "", "")}
        self._taken: dict[str, _Taken] = {}
        # Per folder, the Joliet names that another name of it could also
        # be given: every shortened one, and every kept one with a "~" (a
        # shortened name always has one); two kept names never collide.
        self._joliet_taken: dict[str, dict[str, str]] = {}
        self._counter = [0]
        self._files: dict[str, str] = {}
        self._roots: dict[str, str] = {}
        self._parents: dict[str, tuple] = {"": (self.iso.pvd.root_dir_record,
                                                self.iso.joliet_vd.root_dir_record,
                                                self.iso.udf_root)}
        # pycdlib's records hold one another in cycles (a folder and its
        # children, an inode and its records), all alive while the layout is
        # built; each of Python's full collections walks every one of them,
        # which was 40 % of the time for 100,000 files. The collector is
        # paused meanwhile (the layout makes no garbage cycles) and resumed
        # as it was.
        collecting, built = gc.isenabled(), False
        gc.disable()
        try:
            for disc_path, host_path in entries:
                self._add(disc_path, host_path)
            built = True
        except pycdlibexception.PyCdlibException as exc:
            raise MasteringError(f"cannot lay out the image: {exc}") from None
        finally:
            if collecting:
                if built:
                    # Then moved out of the collector's sight until the image
                    # is closed (_PyCdlib.close): else the first full collection
                    # while it is written walks them all (2.5 s for 100,000 files).
                    gc.freeze()
                    self.iso.frozen = True
                gc.enable()

    @property
    def sectors(self) -> int:
        return self.iso.pvd.space_size

    def _names(self, parent: str, name: str, is_dir: bool, full: str) -> tuple[str, str]:
        """The ISO 9660 and Joliet names of ``name`` in folder ``parent`` (MasteringError if refused)."""
        check_name(name, full)
        taken = self._taken.get(parent)
        if taken is None:
            taken = self._taken[parent] = _Taken()
        iso = _iso9660_name(name, is_dir, taken, self._counter)
        jol = joliet_name(name)
        if jol != name or "~" in name:
            seen = self._joliet_taken.setdefault(parent, {})
            if seen.get(jol, name) != name:
                raise MasteringError(f"{full}: its Joliet name {jol!r} collides with "
                                     f"{seen[jol]!r}; rename one of them")
            seen[jol] = name
        return iso, jol

    def _ensure_dir(self, path: str) -> None:
        if path in self._dirs:
            return
        parent, _, name = path.rpartition("/")
        self._ensure_dir(parent)
        iso_name, jol_name = self._names(parent, name, True, path)
        p_iso, p_jol, p_udf = self._dirs[parent]
        iso, jol, udf = f"{p_iso}/{iso_name}", f"{p_jol}/{jol_name}", f"{p_udf}/{name}"
        self.iso.add_directory(iso, rr_name=name, joliet_path=jol, udf_path=udf)
        self._dirs[path] = (iso, jol, udf)
        self._parents[path] = self.iso.folder_records(iso, jol, udf)

    def _add(self, disc_path: str, host_path: Path) -> None:
        parent, _, name = disc_path.rpartition("/")
        self._ensure_dir(parent)
        iso_name, jol_name = self._names(parent, name, False, disc_path)
        p_iso, p_jol, p_udf = self._dirs[parent]
        iso = f"{p_iso}/{iso_name}"
        host = self._host_file(disc_path, os.fspath(host_path))
        size = os.stat(host).st_size
        if size <= MAX_EXTENT:
            self.iso.add_file_in(self._parents[parent], host, size, iso_name, name, jol_name)
        else:      # several ISO 9660 extents: pycdlib's own add_file lays them out
            self.iso.add_file(host, iso, rr_name=name, joliet_path=f"{p_jol}/{jol_name}",
                              udf_path=f"{p_udf}/{name}", file_mode=0o100444)
        self._files[disc_path] = iso

    def _host_file(self, disc_path: str, host: str) -> str | _HostFile:
        """What pycdlib keeps to open the file: a _HostFile when the host path ends as the bag path."""
        cut = disc_path.find("/") + 1
        tail = len(disc_path) - cut
        if cut and tail and host.endswith(disc_path[cut:]) and host[-tail - 1:-tail] == "/":
            root = host[:-tail]
            return _HostFile(self._roots.setdefault(root, root), disc_path, cut)
        return host

    def _check_contiguous(self, path: str, iso: str, lba: int) -> None:
        """Refuse a large file whose pieces do not lie back to back from ``lba``.

        The inventory and the one-pass read-back place each file by its
        first sector and size; a multi-extent ISO 9660 file or a UDF file
        with several allocation descriptors must therefore be one run of
        bytes in both trees. Raises MasteringError otherwise.
        """
        for tree, where in (("ISO 9660", {"iso_path": iso}), ("UDF", {"udf_path": "/" + path})):
            runs = self.iso.get_file_byte_extents(**where)
            at = lba * SECTOR
            for offset, length in runs:
                if offset != at:
                    raise MasteringError(f"{path}: its {tree} extents are not back to back "
                                         f"(byte {offset}, expected {at}); report this as a bug")
                at += length
            size = self.iso.get_record(iso_path=iso).get_data_length()
            if at - lba * SECTOR != size:
                raise MasteringError(f"{path}: its {tree} extents hold {at - lba * SECTOR} of "
                                     f"{size} bytes; report this as a bug")

    def write(self, out: Path, progress: Progress | None = None,
              finish: Callable[[dict[str, str]], Iterable[tuple[str, Iterable[bytes]]]]
              | None = None) -> Image:
        """Write the image to ``out`` (via ``out.part``, fsynced, then renamed).

        pycdlib writes the volume descriptors and the four trees; each file's
        data is then read once, hashed and written at its place by
        :func:`_copy_files` (``Image.digests``: the SHA-256 of exactly the
        bytes in the image). The bytes are those pycdlib's own ``write_fp``
        writes. ``finish(digests)``, when given, is called once every file
        is in the image, with ``{path: SHA-256 hex}``; it returns (path,
        pieces of bytes) pairs for files to write again in place, each
        exactly as long as the file laid out: the tag files, laid out with
        placeholders of their final size, whose contents come from the
        payload's hashes. Each file's pieces are written in order before
        the next file is asked for; their digests become those of the new
        bytes. Only then is the image
        fsynced and renamed, so a crash leaves at most ``out.part``.
        ``progress(done, total)`` counts the image's bytes.

        Raises MasteringError if a file cannot be read while writing, or if
        a rewritten file's length is not the laid-out one (a bug).
        """
        part = out.with_name(out.name + ".part")
        total = self.sectors * SECTOR
        show = progress or (lambda done, total: None)
        cb = lambda done, whole, _opaque: show(done, total) if done < whole else None
        try:
            with open(part, "wb", buffering=0) as f:
                self.iso._data_later = later = []
                try:       # everything but the files' data (see _PyCdlib._output_file_data)
                    meta = _Sequential(f.fileno())
                    self.iso.write_fp(meta, blocksize=WRITE_BLOCK, progress_cb=cb)
                    meta.flush()
                finally:
                    self.iso._data_later = None
                extents, lengths, owner = {}, {}, {}
                for path, iso in self._files.items():
                    record = self.iso.get_record(iso_path=iso)
                    extents[path] = record.extent_location()
                    lengths[path] = record.get_data_length()
                    if record.inode is not None:
                        owner[id(record.inode)] = path
                    if record.data_continuation is not None:      # multi-extent (> MAX_EXTENT)
                        self._check_contiguous(path, iso, extents[path])
                done = total - sum(ino.get_data_length() for ino in later)

                def tick(n: int) -> None:
                    nonlocal done
                    done += n
                    show(done, total)

                digests = _copy_files(f.fileno(), [(owner.get(id(ino)), ino) for ino in later],
                                      tick)
                digests.pop(None, None)          # data pycdlib writes that is no bag file
                for path, length in lengths.items():
                    if path not in digests:
                        if length:
                            raise MasteringError(f"{path}: its data was not written; report "
                                                 "this as a bug")
                        digests[path] = _EMPTY_SHA256
                for path, parts in (finish(dict(digests)) if finish else ()):
                    digests[path] = _write_parts(f.fileno(), path, parts,
                                                 extents[path] * SECTOR, lengths[path])
                os.fsync(f.fileno())
        except OSError as exc:
            part.unlink(missing_ok=True)
            raise MasteringError(f"cannot write the image: {exc}") from None
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        finally:
            self.iso.close()
        os.replace(part, out)
        size = out.stat().st_size
        return Image(path=out, size=size, sectors=-(-size // SECTOR), extents=extents,
                     digests=digests)
