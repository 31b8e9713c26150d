"""Scan a source tree read-only and describe every file as an archival item.

The source tree is never written to: files are opened for reading only and
nothing is created, moved or deleted in it. Each regular file becomes one
:class:`Item` with its size and SHA-256. Item metadata (档号, 件号, title,
retention...) comes from the archival file catalog ``归档文件目录.csv`` at the
source root when there is one (columns as in DA/T 22-2015's catalog: 件号,
档号, 责任者, 代码, 题名, 日期, 页数, 密级, 保管期限, 类别, 收支, 备注, and 文件,
the file's path), otherwise from the path, laid out as
``YEAR/UNITCODE_UNITNAME/NN_CATEGORY/NNNN_TITLE.ext``.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from sys import intern
from typing import Callable, Iterator

from config import RETENTION_CODES

CATALOG_NAME = "归档文件目录.csv"
CATALOG_COLUMNS = ["件号", "档号", "责任者", "代码", "题名", "日期", "页数", "密级",
                   "保管期限", "类别", "收支", "备注", "文件"]
HASH_CHUNK = 1 << 20

_YEAR = re.compile(r"^(19|20)\d\d$")
_NUMBERED = re.compile(r"^(\d+)_(.+)$")


class ScanError(Exception):
    """The source cannot be archived as it is; the message says why and what to do."""


@dataclass(slots=True)
class Item:
    """One payload file and its archival description.

    ``path`` is the file's POSIX path relative to the source root (and, under
    ``data/``, on the disc). ``size`` is in bytes; ``sha256`` is hex;
    ``mtime_ns`` is the modification time seen when it was hashed.
    ``is_record`` is False for files that are not records (the source's own
    catalog, a README): they are archived too, but carry no archival code.
    """

    path: str
    size: int
    sha256: str
    mtime_ns: int
    is_record: bool = True
    archival_code: str | None = None      # 档号
    item_number: str | None = None        # 件号
    title: str | None = None              # 题名
    year: str | None = None               # 年度
    unit_code: str | None = None          # 代码 (insured unit)
    unit_name: str | None = None
    category: str | None = None           # 类别
    retention: str | None = None          # 保管期限
    date: str | None = None               # 日期 YYYYMMDD
    pages: str | None = None              # 页数
    classification: str | None = None     # 密级
    responsible: str | None = None        # 责任者
    flow: str | None = None               # 收支: 收 (collection) / 支 (payment)
    remarks: str | None = None            # 备注
    extra: dict = field(default_factory=dict)

    @property
    def fonds(self) -> str | None:
        """The fonds number (全宗号): the archival code's first field."""
        if self.archival_code and "-" in self.archival_code:
            return self.archival_code.split("-", 1)[0]
        return None


Progress = Callable[[int, int], None]


_BAD_NAME = re.compile(r"[\x00-\x1f\x7f%]|^\s|\s$")


def name_problem(name: str) -> str | None:
    """Why a file or folder name cannot go onto a disc as it is, or None.

    Refused: names that are not UTF-8 (e.g. GBK bytes from an old Windows
    share), control characters (they break ``sha256sum -c`` and terminals),
    ``%`` (RFC 8493 manifests encode it as %25, which bagit-python does not
    decode) and leading or trailing white space (manifest readers strip it).
    """
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "is not a UTF-8 name"
    m = _BAD_NAME.search(name)
    if m:
        return f"contains {m.group()!r}"
    return None


def shown(path: str) -> str:
    """A path safe to print on one line: undecodable bytes and controls escaped."""
    text = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _walk(source: Path, warnings: list[str] | None = None) -> list[str]:
    """Every regular file below ``source`` as sorted POSIX relative paths.

    Raises ScanError for links, devices, unreadable folders and names that
    cannot go onto a disc (all such names at once): nothing is skipped
    silently. Empty folders are not archived; ``warnings`` gets a line.
    """
    found: list[str] = []
    bad: list[str] = []
    empty: list[str] = []

    def onerror(exc: OSError) -> None:
        raise ScanError(f"cannot read folder {exc.filename}: {exc.strerror}; "
                        "fix its permissions and run again")

    for root, dirs, files in os.walk(source, onerror=onerror):
        dirs.sort()
        if not dirs and not files and root != str(source):
            empty.append(os.path.relpath(root, source))
        for name in dirs + files:
            why = name_problem(name)
            if why:
                bad.append(f"{shown(os.path.relpath(os.path.join(root, name), source))} {why}")
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(root, d))]):
            full = os.path.join(root, name)
            st = os.lstat(full)
            rel = os.path.relpath(full, source).replace(os.sep, "/")
            if stat.S_ISLNK(st.st_mode):
                raise ScanError(f"{rel} is a symbolic link: replace it by the file it points to "
                                "(links are not archived)")
            if not stat.S_ISREG(st.st_mode):
                raise ScanError(f"{rel} is not a regular file: move it out of the source")
            found.append(rel)
    if bad:
        raise ScanError(f"{len(bad)} name(s) cannot go onto a disc as they are: {bad[0]}"
                        f"{f'; {bad[1]}' if len(bad) > 1 else ''}{' ...' if len(bad) > 2 else ''}"
                        ": rename them in a copy of the source and archive the copy")
    if empty and warnings is not None:
        warnings.append(f"{len(empty)} empty folder(s) not archived (a disc holds files): "
                        f"{shown(empty[0])}{' ...' if len(empty) > 1 else ''}")
    return found


def hash_file(path: Path, progress: Callable[[int], None] | None = None) -> tuple[str, int]:
    """SHA-256 (hex) and size in bytes of one file, read in 1 MiB chunks.

    Raises ScanError if the file cannot be read.
    """
    h = hashlib.sha256()
    n = 0
    try:
        with open(path, "rb") as f:
            while chunk := f.read(HASH_CHUNK):
                h.update(chunk)
                n += len(chunk)
                if progress:
                    progress(len(chunk))
    except OSError as exc:
        raise ScanError(f"cannot read {path}: {exc.strerror}; fix its permissions "
                        "and run again") from None
    return h.hexdigest(), n


def _from_path(item: Item) -> None:
    """Fill metadata from a ``YEAR/CODE_UNIT/NN_CATEGORY/NNNN_TITLE.ext`` path."""
    parts = item.path.split("/")
    if len(parts) != 4 or not _YEAR.match(parts[0]):
        item.is_record = False
        return
    item.year = parts[0]
    code, _, name = parts[1].partition("_")
    item.unit_code, item.unit_name = code, (name or None)
    m = _NUMBERED.match(parts[2])
    item.category = m.group(2) if m else parts[2]
    stem = parts[3].rsplit(".", 1)[0]
    m = _NUMBERED.match(stem)
    if m:
        item.item_number, item.title = m.group(1).zfill(4), m.group(2)
    else:
        item.title = stem


def read_catalog(path: Path, files: set[str]) -> dict[str, tuple[int, dict[str, str]]]:
    """The catalog's rows by the file they describe: {path: (line number, row)}.

    ``files`` is the set of paths in the source. Every problem is collected
    and reported at once in one ScanError: not UTF-8, no 文件 column, a row
    without a file, rows with too many fields, two rows for one file, a
    retention period (保管期限) that is not one of 永久/100年/50年/30年/10年,
    rows naming files that are not in the source.
    """
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ScanError(f"cannot read the catalog {path.name}: {exc}; "
                        "save it as UTF-8 CSV") from None
    if "文件" not in header:
        raise ScanError(f"the catalog {path.name} has no 文件 column: add one giving "
                        "each item's path relative to the source")
    problems: list[str] = []
    by_path: dict[str, tuple[int, dict[str, str]]] = {}
    for line, row in enumerate(rows, start=2):
        if None in row:
            problems.append(f"line {line} has more fields than the header")
        row = {k: (v or "").strip() for k, v in row.items() if k is not None}
        rel = row.get("文件", "").replace("\\", "/")
        if not rel:
            problems.append(f"line {line} names no file (文件 is empty)")
            continue
        if rel in by_path:
            problems.append(f"lines {by_path[rel][0]} and {line} both describe {rel}")
            continue
        if rel not in files:
            problems.append(f"line {line} names {rel}, which is not in the source")
        retention = row.get("保管期限", "")
        if retention and retention not in RETENTION_CODES:
            problems.append(f"line {line}: 保管期限 {retention!r} is not one of "
                            f"{'/'.join(RETENTION_CODES)}")
        by_path[rel] = (line, row)
    if problems:
        raise ScanError(f"the catalog {path.name} has {len(problems)} problem(s): "
                        f"{'; '.join(problems[:3])}{' ...' if len(problems) > 3 else ''}: "
                        "correct the catalog")
    return by_path


def scan(source: Path, retention_map: dict[str, str] | None = None,
         progress: Progress | None = None, warnings: list[str] | None = None) -> list[Item]:
    """Describe and hash every file of ``source``, reading it only.

    Returns items sorted by path. ``progress(done_bytes, total_bytes)`` is
    called while hashing; ``warnings`` collects lines for the operator.
    Raises ScanError for a missing or empty source, an unreadable file, a
    link, a name that cannot go onto a disc, or catalog problems (see
    :func:`read_catalog`).
    """
    if not source.exists():
        raise ScanError(f"source {source} does not exist: give the folder that holds the records")
    if not source.is_dir():
        raise ScanError(f"source {source} is not a folder: give the folder that holds the records")
    paths = _walk(source, warnings)
    if not paths:
        raise ScanError(f"source {source} holds no files: nothing to archive")
    root = str(source)
    sizes, mtimes = [], []
    for rel in paths:
        st = os.stat(os.path.join(root, rel))
        sizes.append(st.st_size)
        mtimes.append(st.st_mtime_ns)
    total = sum(sizes)
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done, total)

    rows_by_path: dict[str, tuple[int, dict[str, str]]] = {}
    if CATALOG_NAME in paths:
        rows_by_path = read_catalog(source / CATALOG_NAME, set(paths))
    items = []
    hashed = _hash_files(root, paths, sizes, tick)
    for rel, mtime, (digest, size) in zip(paths, mtimes, hashed):
        item = Item(path=rel, size=size, sha256=digest, mtime_ns=mtime)
        row = rows_by_path.get(rel)
        if rel == CATALOG_NAME:
            item.is_record = False
        elif row is not None:
            _from_row(item, row[1])
        else:
            _from_path(item)
        if item.is_record and not item.retention and retention_map:
            item.retention = retention_map.get(item.category or "")
        for name in _SHARED:        # one string for the many items with the same value
            value = getattr(item, name)
            if value:
                setattr(item, name, intern(value))
        items.append(item)
    return items


_SHARED = ("year", "unit_code", "unit_name", "category", "retention", "date", "pages",
           "classification", "responsible", "flow")


_BATCH_BYTES = 8 << 20
_BATCH_FILES = 256


def _hash_batch(root: str, rels: list[str]) -> list[tuple[str, int]]:
    return [hash_file(os.path.join(root, rel)) for rel in rels]


def _hash_files(root: str, paths: list[str], sizes: list[int],
                tick: Callable[[int], None]) -> Iterator[tuple[str, int]]:
    """(SHA-256, size) of each file of ``paths`` (relative to ``root``), in order.

    Hashed by up to 4 threads (no more than the CPUs), in batches of up to
    256 files or 8 MiB: hashlib and file reads release the GIL, so the
    hashing of a scan takes all the cores. At most two batches a thread are
    in flight. ``tick(bytes)`` is called per file, in order. Raises
    ScanError as :func:`hash_file` does.
    """
    workers = min(4, os.cpu_count() or 1)
    batches, batch, room = [], [], _BATCH_BYTES
    for rel, size in zip(paths, sizes):
        batch.append(rel)
        room -= size
        if room <= 0 or len(batch) >= _BATCH_FILES:
            batches.append(batch)
            batch, room = [], _BATCH_BYTES
    if batch:
        batches.append(batch)
    if workers < 2:
        for b in batches:
            for result in _hash_batch(root, b):
                tick(result[1])
                yield result
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="scan-sha256") as pool:
        window: deque = deque()
        for b in batches:
            window.append(pool.submit(_hash_batch, root, b))
            while len(window) > 2 * workers or (window and window[0].done()):
                for result in window.popleft().result():
                    tick(result[1])
                    yield result
        while window:
            for result in window.popleft().result():
                tick(result[1])
                yield result


def _from_row(item: Item, row: dict[str, str]) -> None:
    """Fill metadata from a catalog row, the path filling what the row leaves blank."""
    _from_path(item)
    item.is_record = True

    def get(col: str) -> str | None:
        v = (row.get(col) or "").strip()
        return v or None

    item.archival_code = get("档号")
    item.item_number = get("件号") or item.item_number
    item.title = get("题名") or item.title
    item.unit_code = get("代码") or item.unit_code
    item.category = get("类别") or item.category
    item.retention = get("保管期限")
    item.date = get("日期")
    item.pages = get("页数")
    item.classification = get("密级")
    item.responsible = get("责任者")
    item.flow = get("收支")
    item.remarks = get("备注")
    if item.date and len(item.date) >= 4 and item.date[:4].isdigit():
        item.year = item.year or item.date[:4]
    item.extra = {k: v for k, v in row.items() if k not in CATALOG_COLUMNS and k and v}
