"""Predict the size of the image mastering/iso.py would make, without pycdlib.

:class:`mastering.iso.Layout` knows an image's exact size only after every
file was added to pycdlib, which costs milliseconds a file; planning a
year's 365,245 items needs microseconds. This module computes the same
number from the paths and sizes alone, by the rules pycdlib 1.x lays an
image out with (ISO 9660 level 3 + Rock Ridge 1.09 + Joliet + UDF 2.60, as
:class:`Layout` asks for):

* fixed areas: system area, volume descriptors (ECMA-119 8), the UDF volume
  recognition sequence, main and reserve descriptor sequences (ECMA TR-071:
  sectors 32-63), the integrity sequence, the first anchor at sector 256,
  the file set descriptor, the Rock Ridge ER sector and the closing anchor;
* UDF: one File Entry sector per file and folder, and each folder's File
  Identifier Descriptors (ECMA-167 4/14.4: 38 bytes + name, padded to 4);
* the four path tables (ISO 9660 and Joliet, little and big endian), each
  an even number of sectors as pycdlib allocates them;
* ISO 9660 and Joliet directories: records sorted by identifier, none
  crossing a sector (ECMA-119 6.8.1.1); Rock Ridge RR, NM, PX, TF entries
  in the record, and what does not fit in 254 bytes in continuation areas
  (SUSP CE) packed first-fit into shared 2048-byte blocks;
* file data, each file from a sector boundary.

:func:`image_sectors` is exact for such trees (tests/test_plan.py checks it
against ``Layout.sectors`` on varied trees); for folders deeper than 8
levels (Rock Ridge relocation) and files of 4 GiB or more (multi-extent)
it adds a margin and stays an upper bound. :class:`Bound` is a cheap
additive upper bound used while packing discs. Sizes are bytes; sectors
are 2048 bytes.
"""

from __future__ import annotations

import functools
import re
from typing import Iterable

from mastering.iso import _D_CHARS, _JOLIET_FORBIDDEN, JOLIET_MAX, SECTOR, _iso9660_name, joliet_name

_FIXED = 259 + 1 + 1 + 1
"""Sectors of an image with no file: up to the UDF root (259), ER, closing anchor,
and the root's UDF File Entry (the root folder's other sectors are counted as folders)."""
_RR_FIXED = 5 + 36 + 26          # RR (1.09), PX, TF
_CE = 28                          # SUSP CE entry
_MAX_DR = 254                     # pycdlib's limit on a record with its SUSP entries
_UDF_PARENT = 40                  # the parent FID
_MULTI_EXTENT = 0xFFFFF800        # largest ISO 9660 extent pycdlib writes (4 GiB - 2048)
_DEEP = 7                         # pycdlib relocates folders deeper than this (Rock Ridge RE/CL/PL)


def iso_record(identifier_len: int, rr_name_bytes: int) -> tuple[int, int]:
    """An ISO 9660 directory record with Rock Ridge: (bytes in the directory, CE bytes).

    ``identifier_len`` is the length of the ISO 9660 identifier
    (``NAME.EXT;1`` or a folder's name), ``rr_name_bytes`` the UTF-8 length
    of the original name (the NM entry). Mirrors pycdlib's RockRidge.new:
    entries that do not fit in 254 bytes go to a continuation area.
    """
    base = 33 + identifier_len + (1 - identifier_len % 2)
    cur = base + 5 + 5 + rr_name_bytes
    if cur <= _MAX_DR and cur + 36 <= _MAX_DR and cur + 36 + 26 <= _MAX_DR:
        cur += 62
        return cur + cur % 2, 0
    cur, ce = base + _CE, 0
    if cur + 5 > _MAX_DR:
        ce += 5
    else:
        cur += 5
    here = max(_MAX_DR - cur - 5, 0)
    if here >= rr_name_bytes:
        here = rr_name_bytes
    if here > 0:
        cur += 5 + here
    left = rr_name_bytes - here
    while left > 0:
        chunk = min(left, 250)
        ce += 5 + chunk
        left -= chunk
    for n in (36, 26):
        if cur + n > _MAX_DR:
            ce += n
        else:
            cur += n
    return cur + cur % 2, ce


def joliet_record(name: str) -> int:
    """A Joliet directory record's length in bytes for an original name."""
    return 34 + len(joliet_name(name).encode("utf-16-be"))


def udf_fid(name: str) -> int:
    """A UDF File Identifier Descriptor's length in bytes (OSTA CS0: 8 or 16 bits a character)."""
    n = len(name) if max(name, default="\0") <= "\xff" else len(name.encode("utf-16-be"))
    n = 38 + n + 1
    return n + (-n) % 4


@functools.lru_cache(maxsize=1 << 17)
def name_info(name: str) -> tuple[int, bytes, int]:
    """What a name costs in the trees: (UTF-8 bytes, Joliet identifier in UCS-2, UDF FID bytes)."""
    ucs2 = name.encode("utf-16-be")
    if len(ucs2) <= 2 * JOLIET_MAX and not _JOLIET_FORBIDDEN.search(name):
        jol = ucs2              # joliet_name keeps such a name as it is
    else:
        jol = joliet_name(name).encode("utf-16-be")
    n = len(name) if max(name, default="\0") <= "\xff" else len(ucs2)
    n = 38 + n + 1
    return len(name.encode("utf-8")), jol, n + (-n) % 4


def _iso_dir_sectors(records: list[int]) -> int:
    """Sectors of a directory whose records (sorted) may not cross a sector boundary."""
    sectors, used = 1, 0
    for r in records:
        if used + r > SECTOR:
            sectors += 1
            used = 0
        used += r
    return sectors


def _udf_dir_sectors(fids: list[int]) -> int:
    """Sectors of a UDF folder's FID area, as pycdlib places them (FIDs may span sectors)."""
    sectors, offset = 1, 0
    for f in fids:
        if offset >= SECTOR:
            sectors += 1
            offset -= SECTOR
        offset += f
    if offset > SECTOR:
        sectors += 1
    return sectors


def _path_table(sizes: int) -> int:
    """Sectors of one path table copy: whole sectors, rounded up to an even count."""
    n = -(-sizes // SECTOR)
    return -(-n // 2) * 2


class _Dir:
    __slots__ = ("iso", "jol", "udf", "taken", "joliet_id", "iso_id", "depth")

    def __init__(self, iso_id: bytes, joliet_id: bytes, depth: int):
        self.iso: list[tuple[bytes, int]] = []
        self.jol: list[tuple[bytes, int]] = []
        self.udf: list[int] = [_UDF_PARENT]
        self.taken: set[str] = set()
        self.iso_id, self.joliet_id, self.depth = iso_id, joliet_id, depth


def image_sectors(entries: Iterable[tuple[str, int]]) -> int:
    """The size in 2048-byte sectors of the image :class:`Layout` makes of ``entries``.

    ``entries`` are (path in the image, size in bytes), in the order the
    bag gives them to Layout (generated ISO 9660 names depend on it). Exact
    for trees at most 8 folders deep with files under 4 GiB; an upper bound
    otherwise (:func:`image_size` tells which). Raises nothing for names
    Layout refuses (check them first).
    """
    return image_size(entries)[0]


def image_size(entries: Iterable[tuple[str, int]]) -> tuple[int, bool]:
    """:func:`image_sectors` and whether it is exact: (sectors, exact). Not exact
    (an upper bound) when a folder is deeper than 8 levels (Rock Ridge relocation)
    or a file is of 4 GiB or more (multi-extent)."""
    dirs: dict[str, _Dir] = {"": _Dir(b"", b"", 0)}
    counter = [0]
    data = files = ce_total = 0
    ce_blocks: list[int] = []      # bytes used in each shared CE block (first fit)
    margin = deep = 0

    def ce(n: int) -> None:
        for k, used in enumerate(ce_blocks):
            if used + n <= SECTOR:
                ce_blocks[k] = used + n
                return
        ce_blocks.append(n)

    exts: dict[str, str] = {}

    def iso_name(parent: _Dir, name: str, is_dir: bool) -> str:
        """_iso9660_name, quicker for a file whose name is not ASCII (always a generated name)."""
        if is_dir or name.isascii():
            return _iso9660_name(name, is_dir, parent.taken, counter)
        stem, dot, ext = name.rpartition(".")
        if not dot:
            ext = ""
        e = exts.get(ext)
        if e is None:
            e = exts[ext] = _D_CHARS.sub("_", ext.upper())[:3]
        while True:
            counter[0] += 1
            cand = f"F{counter[0]:07d}"
            if cand not in parent.taken:
                break
        parent.taken.add(cand)
        return f"{cand}.{e};1"

    def child(parent: _Dir, name: str, is_dir: bool, size: int = 0) -> tuple[bytes, bytes]:
        nonlocal margin
        iso = iso_name(parent, name, is_dir)
        nbytes, jol, fid = name_info(name)
        rec, ce_bytes = iso_record(len(iso), nbytes)
        extents = max(1, -(-size // _MULTI_EXTENT)) if not is_dir else 1
        parent.iso.extend([(iso.encode("ascii"), rec)] * extents)
        if extents > 1:
            margin += extents
        if ce_bytes:
            ce(ce_bytes)
        parent.jol.append((jol, 34 + len(jol)))
        parent.udf.append(fid)
        return iso.encode("ascii"), jol

    def ensure(path: str) -> _Dir:
        d = dirs.get(path)
        if d is not None:
            return d
        parent_path, _, name = path.rpartition("/")
        parent = ensure(parent_path)
        iso, jol = child(parent, name, True)
        d = dirs[path] = _Dir(iso, jol, parent.depth + 1)
        return d

    for path, size in entries:
        parent_path, _, name = path.rpartition("/")
        child(ensure(parent_path), name, False, size)
        data += -(-size // SECTOR)
        files += 1

    iso_dirs = jol_dirs = udf = 0
    pt_iso = pt_jol = 0
    for path, d in dirs.items():
        dots = [136, 102] if not path else [102, 102]
        iso_dirs += _iso_dir_sectors(dots + [r for _, r in sorted(d.iso)])
        jol_dirs += _iso_dir_sectors([34, 34] + [r for _, r in sorted(d.jol)])
        udf += _udf_dir_sectors(d.udf) + (1 if path else 0)
        pt_iso += 8 + len(d.iso_id) + len(d.iso_id) % 2 if path else 10
        pt_jol += 8 + len(d.joliet_id) if path else 10
        if d.depth > _DEEP:
            deep += 1
    if deep:                  # relocation: rr_moved, its path table entry, CL/RE/PL records
        margin += 2 + -(-deep * 130 // _ISO_FILL)
    tables = 2 * _path_table(pt_iso) + 2 * _path_table(pt_jol)
    return (_FIXED + udf + files + tables + iso_dirs + len(ce_blocks) + jol_dirs + data
            + margin), margin == 0


_ISO_FILL = SECTOR - _MAX_DR          # a full directory sector holds more than this
_BEYOND_LATIN1 = re.compile(r"[^\x00-\xff]")   # UDF then stores 16 bits a character
_JOLIET_FILL = SECTOR - (34 + 128)


@functools.lru_cache(maxsize=1 << 12)
def _file_terms(nbytes: int, jol: int, fid: int, extents: int
                ) -> tuple[float, float, float, float, int]:
    """The name's terms of :meth:`Bound.file_cost`, in sectors: ISO 9660 records, CE
    bytes, Joliet record, UDF FID, extra File Entries. ``nbytes`` is the name's UTF-8
    length, ``jol`` its Joliet identifier's bytes, ``fid`` the FID's name bytes (8 or
    16 bits a character). Few distinct lengths occur, so they are worked out once."""
    rec, ce = iso_record(14, nbytes)
    n = 38 + fid + 1
    return (extents * rec / _ISO_FILL, 2 * ce / SECTOR, (34 + jol) / _JOLIET_FILL,
            (n + (-n) % 4) / SECTOR, 2 * (extents - 1))


@functools.lru_cache(maxsize=1 << 15)
def _dir_name_cost(name: str) -> float:
    """:meth:`Bound.dir_cost` of a folder named ``name`` not deeper than Rock Ridge
    relocates. Cached by name: the same unit and category names recur in every year."""
    rec, ce = iso_record(8, len(name.encode("utf-8")))
    jol = joliet_record(name)
    return (5 + (204 + rec) / _ISO_FILL + 2 * ce / SECTOR + (68 + jol) / _JOLIET_FILL
            + (_UDF_PARENT + udf_fid(name)) / SECTOR + 2 * (18 + 8 + (jol - 34)) / SECTOR)


class Bound:
    """An additive upper bound of :func:`image_sectors`, for packing discs fast.

    Every file and folder adds a fixed cost, whatever else is on the disc:
    its data and File Entry sectors, and its directory records and path
    table entries as fractions of a sector, each divided by the least a
    full sector holds (a record never crosses a sector, so a sector wastes
    less than one record). A folder adds a whole sector for each of its
    four directory areas besides. :meth:`sectors` is then never below the
    exact size, and above it by about one sector a folder.
    """

    BASE = _FIXED + 2 + 1 + 1 + 8 + 8 + 1
    """The image with an empty root: fixed areas, the root's directory areas,
    path tables with their rounding, one CE block."""

    def __init__(self):
        self.total = float(self.BASE + (136 + 102) / _ISO_FILL + 68 / _JOLIET_FILL
                           + _UDF_PARENT / SECTOR + 4 * 10 / SECTOR)
        self.dirs: set[str] = {""}

    @staticmethod
    def file_cost(name: str, size: int) -> float:
        """Sectors a file adds at most: data, File Entry, its records in three trees."""
        n = len(name)
        nbytes = len(name.encode("utf-8"))
        # UCS-2 bytes: "utf-16" (a byte order mark, then the native order) is encoded
        # without a codec lookup, unlike "utf-16-be", and has as many bytes but the mark
        ucs2 = len(name.encode("utf-16")) - 2
        if ucs2 <= 2 * JOLIET_MAX and not _JOLIET_FORBIDDEN.search(name):
            jol = ucs2              # name_info's Joliet identifier, measured without the cache
        else:                       # (file names are nearly all distinct: it would only churn)
            jol = len(joliet_name(name).encode("utf-16-be"))
        # UDF's 16 bits a character when one is beyond Latin-1: not so for an ASCII name,
        # surely so when UTF-8 takes over 2 bytes a character (3 from U+0800 on)
        if nbytes == n:
            fid = n
        else:
            fid = ucs2 if nbytes > 2 * n or _BEYOND_LATIN1.search(name) else n
        extents = 1 if size <= _MULTI_EXTENT else -(-size // _MULTI_EXTENT)
        # the terms in the order they were always added in, so that sums stay bit for bit
        a, b, c, d, e = _file_terms(nbytes, jol, fid, extents)
        return -(-size // SECTOR) + 1 + a + b + c + d + e

    @staticmethod
    @functools.lru_cache(maxsize=1 << 18)
    def dir_cost(path: str) -> float:
        """Sectors a folder adds at most (its own areas, records, path table entries)."""
        # the relocation margin is added last, as it always was: sums stay bit for bit
        return _dir_name_cost(path.rpartition("/")[2]) + (16 if path.count("/") + 1 > _DEEP
                                                          else 0)

    def new_dirs(self, path: str) -> list[str]:
        """The folders above ``path`` not yet on the disc, outermost first."""
        out = []
        parent = path.rpartition("/")[0]
        while parent not in self.dirs:
            out.append(parent)
            parent = parent.rpartition("/")[0]
        return out[::-1]

    def add(self, path: str, size: int) -> None:
        """Count a file (and any new folders above it)."""
        for d in self.new_dirs(path):
            self.total += self.dir_cost(d)
            self.dirs.add(d)
        self.total += self.file_cost(path.rpartition("/")[2], size)

    def sectors(self) -> int:
        """The bound in whole sectors."""
        return int(self.total) + 1
