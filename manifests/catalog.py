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
import datetime as dt
import functools
import hashlib
import operator
import os
from collections import deque
from itertools import repeat
from concurrent.futures import ThreadPoolExecutor
import re
import stat
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from sys import intern
from typing import Callable, Container, Iterator

from config import RETENTION_CODES
from mastering.iso import name_too_long

CATALOG_NAME = "归档文件目录.csv"
CATALOG_COLUMNS = ["件号", "档号", "责任者", "代码", "题名", "日期", "页数", "密级",
                   "保管期限", "类别", "收支", "备注", "文件"]
HASH_CHUNK = 1 << 20

# Whole names: \Z, not $ (which also matches before a final LF), and DOTALL, for a
# CR or LF inside a name (docs/NAMES.md).
_YEAR = re.compile(r"^(19|20)\d\d\Z")
_NUMBERED = re.compile(r"^(\d+)_(.+)\Z", re.DOTALL)


class ScanError(Exception):
    """The source cannot be archived as it is; the message says why and what to do.

    When a check finds several problems at once, the message names their
    count and the first, and ``problems`` lists every one (one line each,
    the path first) for the operator's report.
    """

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = list(problems or [])


@dataclass(slots=True)
class Item:
    """One payload file and its archival description.

    ``path`` is the file's POSIX path relative to the source root (and, under
    ``data/``, on the disc). ``size`` is in bytes; ``sha256`` is hex (empty
    until hashed: an archive run hashes most files as it writes the image);
    ``mtime_ns`` is the modification time the scan saw.
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
    row: int | None = None                # the catalog line describing it, if any

    @property
    def fonds(self) -> str | None:
        """The fonds number (全宗号): the archival code's first field."""
        if self.archival_code and "-" in self.archival_code:
            return self.archival_code.split("-", 1)[0]
        return None


Progress = Callable[[int, int], None]


# C0 controls but CR and LF (RFC 8493 encodes those), DEL, and C1 controls.
_CONTROL = re.compile(r"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# A name name_problem accepts without looking further: 1 to 63 characters (so not
# too long, see mastering.iso.name_too_long), no control character (CR and LF
# included), no surrogate (a byte that is not UTF-8), no white space (as
# str.isspace tells it, which \s follows) first or last. Others take the full checks.
_PLAIN_NAME = re.compile(r"(?!\s)[^\x00-\x1f\x7f-\x9f\ud800-\udfff]{1,63}(?<!\s)")
# A folder's names joined by NUL (which no name holds), each followed by one: all of them
# plain names, in one match (the walk asks this once a folder, not once a name).
_PLAIN_NAMES = re.compile(r"(?:(?!\s)[^\x00-\x1f\x7f-\x9f\ud800-\udfff]{1,63}(?<!\s)\x00)*")


@dataclass(frozen=True)
class Problem:
    """One arrangement problem, to warn about (or refuse under ``--strict``).

    ``kind``: ``row-without-file`` (a catalog row whose file is not in the
    source, or that names none), ``file-without-row`` (a file in a year
    folder the catalog does not describe), ``malformed-code`` (an archival
    code that does not follow DA/T 22-2015 or contradicts its row),
    ``duplicate-number`` and ``number-gap`` (件号 within one class),
    ``unarranged`` (a record lacking what its place needs: year, category
    code), ``bad-value`` (a row's 件号, 日期 or 页数 not in the form
    DA/T 22-2015 gives it). ``where`` is ``归档文件目录.csv line N``, a
    path or a class.
    """

    kind: str
    where: str
    text: str

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"




def name_problem(name: str) -> str | None:
    """Why a file or folder name cannot go onto a disc as it is, or None.

    The policy of docs/NAMES.md. Refused: names that are not UTF-8 (e.g.
    GBK bytes from an old Windows share); names longer than Rock Ridge or
    UDF can hold (:func:`mastering.iso.name_too_long`: 255 UTF-8 bytes,
    and UDF's 254 Latin or 127 other characters); control characters other
    than CR and LF (no manifest encoding carries them, terminals act on
    them, Windows forbids them); white space at the start or end (manifest
    readers such as bagit-python strip it, Windows drops it). Accepted:
    ``%``, CR and LF, which manifests percent-encode (RFC 8493 section 2.1.3).
    """
    if _PLAIN_NAME.fullmatch(name):      # most names: one regular expression says none
        return None
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "is not a UTF-8 name"
    m = _CONTROL.search(name)
    if m:
        return f"contains {m.group()!r}"
    for where, ch in (("starts", name[:1]), ("ends", name[-1:])):
        if ch.isspace() and ch not in "\r\n":
            return f"{where} with white space {ch!r}"
    return name_too_long(name)


def shown(path: str) -> str:
    """A path safe to print on one line: undecodable bytes and controls escaped."""
    text = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def write_problems(error: ScanError, folder: Path) -> Path:
    """Write every line of ``error.problems`` to ``folder/scan-problems-<UTC time>.txt``.

    UTF-8 text, one problem a line (paths as :func:`shown` prints them),
    written to a temporary file, fsynced and renamed. Returns its path;
    raises OSError if ``folder`` cannot be written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    path = folder / f"scan-problems-{stamp}.txt"
    part = path.with_name(path.name + ".part")
    with open(part, "w", encoding="utf-8") as f:
        f.write(f"{error}\n\n" + "".join(line + "\n" for line in error.problems))
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, path)
    return path


def _form(name: str) -> str:
    """Which Unicode normalization form ``name`` is in: NFC, NFD or mixed."""
    for form in ("NFC", "NFD"):
        if unicodedata.normalize(form, name) == name:
            return form
    return "mixed"


# Each kind of tree problem: a short name, what the error line calls it, what to do.
_KINDS = {
    "name": ("bad name", "name(s) cannot go onto a disc as they are",
             "rename them in a copy of the source and archive the copy"),
    "long": ("name too long", "name(s) are too long for Rock Ridge or UDF",
             "shorten them in a copy of the source and archive the copy"),
    "form": ("NFC/NFD twin",
             "name(s) have a twin in another Unicode form (NFC and NFD) in the same folder",
             "rename one of each pair in a copy of the source and archive the copy"),
    "link": ("link outside or to nothing",
             "symbolic link(s) point outside the source or to nothing",
             "replace each by what it points to, or remove it, in a copy of the source"),
    "special": ("special file", "special file(s) (FIFO, socket or device) are not records",
                "move them out of the source"),
    "unreadable": ("unreadable", "path(s) cannot be read", "fix their permissions and run again"),
}


def _special_kind(mode: int) -> str:
    for test, what in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISCHR, "a character device")):
        if test(mode):
            return what
    return "not a regular file"


def _refuse(problems: list[tuple[str, str]]) -> ScanError:
    """One ScanError for every tree problem: the count and the first in its line, all in ``problems``."""
    problems.sort(key=lambda p: p[1])
    lines = [line for _, line in problems]
    counts: dict[str, int] = {}
    for kind, _ in problems:
        counts[kind] = counts.get(kind, 0) + 1
    if len(counts) == 1:
        (kind, n), = counts.items()
        _, what, fix = _KINDS[kind]
        head = f"{n} {what}"
    else:
        head = (f"{len(problems)} paths cannot be archived as they are ("
                + ", ".join(f"{_KINDS[k][0]}: {n}" for k, n in counts.items()) + ")")
        fix = "correct them in a copy of the source and archive the copy"
    more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
    return ScanError(f"{head}: {lines[0]}{more}: {fix}", lines)






def _twins(prefix: str, names: list[str], problems: list[tuple[str, str]],
           case_pairs: list[str]) -> None:
    """Names of one folder (``prefix``, sorted ``names``) that are one name in two
    Unicode forms (a problem) or differ only in case (a pair to warn about)."""
    by_form: dict[str, str] = {}
    by_case: dict[str, str] = {}
    for name in names:
        if name_problem(name):
            continue
        nfc = name if name.isascii() else unicodedata.normalize("NFC", name)
        twin = by_form.setdefault(nfc, name)
        if twin != name:
            a, b = sorted((twin, name), key=lambda n: (_form(n) != "NFC", n))
            problems.append(("form", f"{shown(prefix + a)} ({_form(a)}) and "
                                     f"{shown(prefix + b)} ({_form(b)}) are "
                                     "one name in two Unicode forms"))
        else:
            twin = by_case.setdefault(nfc.casefold(), name)
            if twin != name:
                case_pairs.append(f"{shown(prefix + twin)} and {shown(prefix + name)}")


def _walk(source: Path, warnings: list[str] | None = None,
          stats: dict[str, tuple[int, int]] | None = None) -> list[str]:
    """Every regular file below ``source`` as sorted POSIX relative paths.

    The tree policy of docs/NAMES.md, applied to the whole tree before a
    byte is hashed. Refused, all at once in one ScanError whose
    ``problems`` list every path: names :func:`name_problem` refuses, two
    names of one folder that are one name in two Unicode forms (NFC and
    NFD), symbolic links that point outside the source or to nothing,
    FIFOs, sockets and devices, folders that cannot be read. Not archived,
    with a line in ``warnings``: empty folders, and symbolic links to
    something inside the source (archived at its own path). Archived, with
    a warning: names of one folder that differ only in case. ``stats``,
    when given, gets each regular file's (size in bytes, modification time
    in ns) from its ``lstat`` (one system call a file: the folder listing
    tells files, folders and links apart).
    """
    found: list[str] = []
    problems: list[tuple[str, str]] = []      # (kind, line)
    empty: list[str] = []
    inside_links: list[str] = []
    case_pairs: list[str] = []
    real_source = os.path.realpath(source)
    folders = [("", os.fspath(source))]        # (relative path + "/", or "" at the root; path)
    all_plain = _PLAIN_NAMES.fullmatch
    nfc = unicodedata.normalize
    while folders:
        prefix, folder = folders.pop()
        fd = -1
        try:
            # Listed through a descriptor of the folder: each entry's lstat then looks up
            # its name in the folder, not its whole path (a tenth of the walk's time)
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            with os.scandir(fd) as listing:
                entries = list(listing)     # in no order: the paths are sorted at the end
        except OSError as exc:
            if fd >= 0:
                os.close(fd)
            problems.append(("unreadable", f"{shown(prefix[:-1] or '.')} cannot be read "
                                           f"({exc.strerror})"))
            continue
        try:
            if not entries and prefix:
                empty.append(shown(prefix[:-1]))
            names = [entry.name for entry in entries]
            # The folder's names at once, joined by NUL: NFC and case folding map each
            # character apart, and NUL, which no name holds, joins with no neighbour.
            joined = "\0".join(names)
            # Twins (one name in NFC and NFD, or in two cases) fold to one key; most folders
            # have none, which one set of keys tells: only then is each name looked at.
            if len(set(nfc("NFC", joined).casefold().split("\0"))) < len(names):
                _twins(prefix, sorted(names), problems, case_pairs)
            # Most folders hold plain names only (name_problem's own first test): then no
            # name is looked at alone.
            check_names = names and not all_plain(joined + "\0")
            subfolders = []
            for entry, name in zip(entries, names):
                path = prefix + name
                if check_names:
                    why = name_problem(name)
                    if why:
                        problems.append(("long" if why.startswith(("is longer", "is too long"))
                                         else "name", f"{shown(path)} {why}"))
                try:
                    if entry.is_file(follow_symlinks=False):       # the most, so asked first
                        found.append(path)
                        if stats is not None:
                            st = entry.stat(follow_symlinks=False)
                            stats[path] = (st.st_size, st.st_mtime_ns)
                    elif entry.is_symlink():
                        full = os.path.join(folder, name)
                        target = os.path.realpath(full)
                        inside = target == real_source or target.startswith(real_source + os.sep)
                        if not os.path.exists(full):
                            problems.append(("link", f"{shown(path)} is a symbolic link to "
                                                     f"nothing ({shown(os.readlink(full))})"))
                        elif not inside:
                            problems.append(("link", f"{shown(path)} is a symbolic link to "
                                                     f"{shown(target)}, outside the source"))
                        else:
                            inside_links.append(f"{shown(path)} -> "
                                                f"{shown(os.path.relpath(target, real_source))}")
                    elif entry.is_dir(follow_symlinks=False):
                        subfolders.append((path + "/", os.path.join(folder, name)))
                    else:
                        mode = entry.stat(follow_symlinks=False).st_mode
                        problems.append(("special", f"{shown(path)} is {_special_kind(mode)}"))
                except OSError as exc:
                    problems.append(("unreadable",
                                     f"{shown(path)} cannot be read ({exc.strerror})"))
        finally:
            os.close(fd)
        folders.extend(reversed(subfolders))
    if problems:
        raise _refuse(problems)
    if warnings is not None:
        if empty:
            warnings.append(f"{len(empty)} empty folder(s) not archived (a BagIt manifest "
                            f"lists files, so a disc holds files only): {'; '.join(sorted(empty))}")
        if inside_links:
            warnings.append(f"{len(inside_links)} symbolic link(s) not archived; each points "
                            "into the source, where its target is archived at its own path: "
                            + "; ".join(sorted(inside_links)))
        if case_pairs:
            warnings.append(f"{len(case_pairs)} pair(s) of names differ only in case: "
                            f"{'; '.join(sorted(case_pairs))}: both are archived and stay distinct "
                            "under Rock Ridge and UDF, but Windows (Joliet or UDF) and macOS "
                            "take each pair for one name, so reading or copying the disc there "
                            "may give one file for both")
    return sorted(found)


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


@functools.lru_cache(maxsize=1 << 12)
def _folder_fields(folder: str) -> tuple[str, str, str | None, str] | None:
    """(year, unit code, unit name, category) of a ``YEAR/CODE_UNIT/NN_CATEGORY`` folder,
    or None for any other folder. Cached: a folder's files come one after another."""
    parts = folder.split("/")
    if len(parts) != 3 or not _YEAR.match(parts[0]):
        return None
    code, _, name = parts[1].partition("_")
    m = _NUMBERED.match(parts[2])
    return parts[0], code, (name or None), (m.group(2) if m else parts[2])


def _stem_fields(file: str) -> tuple[str | None, str]:
    """(item number, title) of a ``NNNN_TITLE.ext`` file name (no number: None, the stem)."""
    stem = file.rsplit(".", 1)[0]
    m = _NUMBERED.match(stem)
    return (m.group(1).zfill(4), m.group(2)) if m else (None, stem)


def _from_path(item: Item) -> None:
    """Fill metadata from a ``YEAR/CODE_UNIT/NN_CATEGORY/NNNN_TITLE.ext`` path."""
    folder, _, file = item.path.rpartition("/")
    fields = _folder_fields(folder)
    if fields is None:
        item.is_record = False
        return
    item.year, item.unit_code, item.unit_name, item.category = fields
    item.item_number, item.title = _stem_fields(file)


Row = tuple[int, tuple[str, ...], "dict[str, str] | None"]
"""A catalog row as :func:`read_catalog` keeps it: (line number, its values of the
columns ``_ROW_KEYS`` in that order, "" when blank or absent, stripped; the values of
other columns by name, or None when the header has exactly the DA/T 22-2015 columns).
Tuples, not a dict a row: planning reads 365,245 rows."""


def read_catalog(path: Path, files: Container[str], problems: list[Problem] | None = None
                 ) -> dict[str, Row]:
    """The catalog's rows by the file they describe: {path: :data:`Row`}.

    ``files`` holds the paths in the source (a set, or a dict by path). Every problem is collected
    and reported at once in one ScanError: not UTF-8, no 文件 column, rows
    with too many fields, two rows for one file, a retention period (保管期限)
    that is not one of 永久/100年/50年/30年/10年. Rows that name no file, or
    a file that is not in the source, go to ``problems`` (kind
    ``row-without-file``) when it is given, else into the ScanError too.
    """
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = list(filter(None, csv.reader(f)))   # blank lines skipped, as DictReader does
        header = rows.pop(0) if rows else []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ScanError(f"cannot read the catalog {path.name}: {exc}; "
                        "save it as UTF-8 CSV") from None
    if "文件" not in header:
        raise ScanError(f"the catalog {path.name} has no 文件 column: add one giving "
                        "each item's path relative to the source")
    errors: list[str] = []
    soft = problems if problems is not None else None
    by_path: dict[str, Row] = {}

    def missing(line: int, text: str) -> None:
        if soft is None:
            errors.append(f"line {line} {text}")
        else:
            soft.append(Problem("row-without-file", f"{path.name} line {line}", text))

    width = len(header)
    strip = str.strip
    # The columns looked at for every row, by position (the last of a name, as the row's
    # dict keeps; -1: no such column). Read from the stripped field list, so that the
    # row's dict is made only for the rows kept (speed: planning reads 365,245 rows).
    column = {name: k for k, name in enumerate(header)}
    at_file, at_retention = column["文件"], column.get("保管期限", -1)
    at_number, at_date, at_pages = (column.get("件号", -1), column.get("日期", -1),
                                    column.get("页数", -1))
    # A header of exactly the DA/T 22-2015 columns, each once: a full row's values in
    # _ROW_KEYS order are one itemgetter call.
    fast = len(header) == len(_KNOWN_COLUMNS) and set(header) == _KNOWN_COLUMNS
    known_values = operator.itemgetter(*(column[k] for k in _ROW_KEYS)) if fast else None
    for line, fields in enumerate(rows, start=2):
        n = len(fields)
        if n > width:
            errors.append(f"line {line} has more fields than the header")
        fields = list(map(strip, fields))
        rel = fields[at_file].replace("\\", "/") if at_file < n else ""
        if not rel:
            missing(line, "names no file (文件 is empty)")
            continue
        if rel in by_path:
            errors.append(f"lines {by_path[rel][0]} and {line} both describe {rel}")
            continue
        if rel not in files:
            missing(line, f"names {rel}, which is not in the source")
            continue
        retention = fields[at_retention] if 0 <= at_retention < n else ""
        if retention and retention not in RETENTION_CODES:
            errors.append(f"line {line}: 保管期限 {retention!r} is not one of "
                            f"{'/'.join(RETENTION_CODES)}")
        number = fields[at_number] if 0 <= at_number < n else ""
        date = fields[at_date] if 0 <= at_date < n else ""
        pages = fields[at_pages] if 0 <= at_pages < n else ""
        # _bad_values' own tests, the cheap way first: most rows pass them all
        if not ((not number or (number.isascii() and number.isdigit()))
                and (not date or _is_date(date))
                and (not pages or (pages.isascii() and pages.isdigit() and int(pages) > 0))):
            _check_values(number, date, pages, path.name, line, soft, errors)
        if fast and n >= width:
            by_path[rel] = (line, known_values(fields), None)
        else:
            by_path[rel] = (line, *_row_values(dict(zip(header, fields))))
    if errors:
        raise ScanError(f"the catalog {path.name} has {len(errors)} problem(s): "
                        f"{'; '.join(errors[:3])}{' ...' if len(errors) > 3 else ''}: "
                        "correct the catalog")
    return by_path


@functools.lru_cache(maxsize=1 << 16)      # a catalog repeats the days of a few years
def _is_date(text: str) -> bool:
    """Whether ``text`` is a calendar date written YYYYMMDD."""
    if not (len(text) == 8 and text.isascii() and text.isdigit()):
        return False
    try:
        dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return False
    return True


def _bad_values(number: str, date: str, pages: str) -> list[str]:
    """What is wrong with a catalog row's 件号, 日期 and 页数, one line each (empty: nothing).

    DA/T 22-2015 writes the 件号 and 页数 in Arabic digits and the 日期 as
    eight digits YYYYMMDD; the date must be one the calendar has.
    """
    bad = []
    if number and not (number.isascii() and number.isdigit()):
        bad.append(f"件号 {number!r} is not a number: write it in digits (e.g. 0001); left so, "
                   "the record is given the next free 件号 of its class")
    if date and not _is_date(date):
        bad.append(f"日期 {date!r} is not a date written YYYYMMDD (e.g. 20240131)")
    if pages and not (pages.isascii() and pages.isdigit() and int(pages) > 0):
        bad.append(f"页数 {pages!r} is not a number of pages (a whole number from 1)")
    return bad


def _check_values(number: str, date: str, pages: str, catalog: str, line: int,
                  soft: list[Problem] | None, errors: list[str]) -> None:
    """Each bad value of catalog ``line`` (:func:`_bad_values`): a ``bad-value`` problem
    in ``soft`` when it is given, else a line of ``errors``."""
    for text in _bad_values(number, date, pages):
        if soft is None:
            errors.append(f"line {line}: {text}")
        else:
            soft.append(Problem("bad-value", f"{catalog} line {line}", text))


_NOT_IN_SOURCE = re.compile(r"names (.*), which is not in the source", re.DOTALL)


def _explain_unicode_twins(problems: list[Problem]) -> None:
    """Say so when a row without a file and a file without a row name the same path in two
    Unicode normalizations (NFC and NFD: e.g. a catalog saved on Windows, files copied
    from macOS). Changes the two problems' texts in ``problems``, in place."""
    files = {unicodedata.normalize("NFC", p.where): k for k, p in enumerate(problems)
             if p.kind == "file-without-row"}
    if not files:
        return
    for k, p in enumerate(problems):
        m = _NOT_IN_SOURCE.fullmatch(p.text) if p.kind == "row-without-file" else None
        twin = files.get(unicodedata.normalize("NFC", m[1])) if m else None
        if twin is None:
            continue
        file = problems[twin].where
        forms = "/".join(f for f in ("NFC", "NFD") if unicodedata.is_normalized(f, m[1])) or "mixed"
        problems[k] = Problem(p.kind, p.where, f"{p.text}: the source has {file}, which differs "
                              f"only in Unicode normalization (this row is {forms}); write the "
                              "name as the file has it")
        problems[twin] = Problem("file-without-row", file, f"{problems[twin].text}: {p.where} names "
                                 "it in another Unicode normalization")


def scan(source: Path, retention_map: dict[str, str] | None = None,
         progress: Progress | None = None, warnings: list[str] | None = None,
         problems: list[Problem] | None = None,
         hashing: bool | Callable[[str, int], bool] = True,
         max_file_bytes: int | None = None, medium: str = "the medium",
         check_readable: bool = False) -> list[Item]:
    """Describe and hash every file of ``source``, reading it only.

    Returns items sorted by path. ``progress(done_bytes, total_bytes)`` is
    called while hashing; ``warnings`` collects lines for the operator.
    ``problems``, when given, collects the catalog's rows without a file and
    the files in a year folder without a row (see :class:`Problem`);
    without it a row without a file is a ScanError. ``hashing=False``
    only stats the files (for planning): ``sha256`` is then empty.
    ``hashing`` may also be ``f(path, size_in_bytes) -> bool``: only the
    files it picks are hashed, the others' ``sha256`` is empty (an
    archive run hashes the rest as it writes the image: see
    daemon.incremental.hashed_first). ``check_readable`` opens every
    file not hashed (reading nothing), so a file that cannot be read is
    refused here, before anything is written.
    ``max_file_bytes`` is the largest file one ``medium`` can hold
    (:func:`mastering.iso.max_file_bytes`): larger files are refused, all
    at once, before a byte is hashed. Raises ScanError for a missing or
    empty source, an unreadable file, the tree problems of :func:`_walk`
    (docs/NAMES.md), a file too large for the medium, or catalog problems
    (see :func:`read_catalog`).
    """
    if not source.exists():
        raise ScanError(f"source {source} does not exist: give the folder that holds the records")
    if not source.is_dir():
        raise ScanError(f"source {source} is not a folder: give the folder that holds the records")
    stats: dict[str, tuple[int, int]] = {}      # path -> (size, mtime_ns)
    paths = _walk(source, warnings, stats)
    if not paths:
        raise ScanError(f"source {source} holds no files: nothing to archive")
    if max_file_bytes is not None:
        too_big = [f"{shown(rel)} ({size} bytes)" for rel, (size, _) in stats.items()
                   if size > max_file_bytes]
        if too_big:
            more = f" (and {len(too_big) - 1} more)" if len(too_big) > 1 else ""
            raise ScanError(f"{len(too_big)} file(s) are larger than one {medium} medium holds "
                            f"(a file of at most {max_file_bytes} bytes, {max_file_bytes // 2048} "
                            f"sectors): {too_big[0]}{more}: archive them "
                            "on a larger medium (--media)", too_big)
    total = sum(size for size, _ in stats.values())
    root = os.fspath(source)
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done, total)

    rows_by_path: dict[str, Row] = {}
    has_catalog = CATALOG_NAME in stats
    if has_catalog:
        rows_by_path = read_catalog(source / CATALOG_NAME, stats, problems)
    items = []
    # (path, SHA-256 or "", (size, mtime_ns)) a file
    described: Iterator[tuple[str, str, tuple[int, int]]]
    if hashing is True:
        hashed = _hash_files(root, paths, [stats[rel][0] for rel in paths], tick)
        described = ((rel, digest, (size, stats[rel][1]))
                     for rel, (digest, size) in zip(paths, hashed))
    elif hashing:
        picked = [rel for rel in paths if hashing(rel, stats[rel][0])]
        some = dict(zip(picked, _hash_files(root, picked, [stats[rel][0] for rel in picked],
                                            tick)))
        if check_readable:
            _open_files(root, [rel for rel in paths if rel not in some])

        def described_some() -> Iterator[tuple[str, str, tuple[int, int]]]:
            for rel in paths:
                got = some.get(rel)
                yield (rel, got[0], (got[1], stats[rel][1])) if got else (rel, "", stats[rel])
        described = described_some()
    else:
        if check_readable:
            _open_files(root, paths)
        described = zip(paths, repeat(""), map(stats.__getitem__, paths))
    get_row = rows_by_path.get
    for rel, digest, (size, mtime) in described:
        row = get_row(rel)
        if row is not None and rel != CATALOG_NAME:
            # Item's fields by position, in one call (quicker: 365,245 items a plan)
            line, values, extra = row
            item = Item(rel, size, digest, mtime, *_row_fields(rel, values),
                        {} if extra is None else extra, line)
        elif rel == CATALOG_NAME:
            item = Item(rel, size, digest, mtime, False)
        else:
            item = Item(rel, size, digest, mtime)
            _from_path(item)
            if has_catalog and problems is not None and _YEAR.match(rel.split("/", 1)[0]):
                problems.append(Problem("file-without-row", rel,
                                        f"has no row in {CATALOG_NAME}"))
        if item.is_record and not item.retention and retention_map:
            item.retention = retention_map.get(item.category or "")
        if hashing:     # one string for the many items with the same value (archive runs
            for name in _SHARED:        # hold items for the whole job; a plan does not)
                value = getattr(item, name)
                if value:
                    setattr(item, name, intern(value))
        items.append(item)
    if problems:
        _explain_unicode_twins(problems)
    return items


_KNOWN_COLUMNS = frozenset(CATALOG_COLUMNS)


_SHARED = ("year", "unit_code", "unit_name", "category", "retention", "date", "pages",
           "classification", "responsible", "flow")


_BATCH_BYTES = 8 << 20
_BATCH_FILES = 256


def _hash_batch(root: str, rels: list[str]) -> list[tuple[str, int]]:
    return [hash_file(os.path.join(root, rel)) for rel in rels]


def _open_batch(root: str, rels: list[str]) -> list[tuple[str, int]]:
    """Open (and close) each file, reading nothing: ("", 0) each. Raises ScanError."""
    for rel in rels:
        path = os.path.join(root, rel)
        try:
            open(path, "rb", buffering=0).close()
        except OSError as exc:
            raise ScanError(f"cannot read {path}: {exc.strerror}; fix its permissions "
                            "and run again") from None
    return [("", 0)] * len(rels)


def _open_files(root: str, paths: list[str]) -> None:
    """Open every file of ``paths`` (relative to ``root``) once, threaded as hashing is.

    Raises ScanError naming the first that cannot be opened.
    """
    for _ in _hash_files(root, paths, [0] * len(paths), lambda n: None, _open_batch):
        pass


def _hash_files(root: str, paths: list[str], sizes: list[int],
                tick: Callable[[int], None],
                work: Callable[[str, list[str]], list[tuple[str, int]]] = _hash_batch
                ) -> Iterator[tuple[str, int]]:
    """(SHA-256, size) of each file of ``paths`` (relative to ``root``), in order.

    Hashed by up to 4 threads (no more than the CPUs), in batches of up to
    256 files or 8 MiB: hashlib and file reads release the GIL, so the
    hashing of a scan takes all the cores. At most two batches a thread are
    in flight. ``tick(bytes)`` is called per file, in order. ``work`` does
    one batch (:func:`_open_batch` only opens the files). Raises
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
            for result in work(root, b):
                tick(result[1])
                yield result
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="scan-sha256") as pool:
        window: deque = deque()
        for b in batches:
            window.append(pool.submit(work, root, b))
            while len(window) > 2 * workers or (window and window[0].done()):
                for result in window.popleft().result():
                    tick(result[1])
                    yield result
        while window:
            for result in window.popleft().result():
                tick(result[1])
                yield result
_ROW_KEYS = ("件号", "题名", "档号", "代码", "类别", "保管期限", "日期", "页数", "密级",
             "责任者", "收支", "备注")


def _row_values(row: dict[str, str]) -> tuple[tuple[str, ...], dict[str, str]]:
    """A catalog row given by column name as :data:`Row` keeps it: (the values of
    ``_ROW_KEYS`` in order, "" when absent; the other columns' non-blank values)."""
    return (tuple(row.get(k, "") for k in _ROW_KEYS),
            {k: v for k, v in row.items() if k not in _KNOWN_COLUMNS and k and v})


# Item's fields that _row_fields gives, in its order (the order of Item's own fields).
_ROW_FIELDS = ("is_record", "archival_code", "item_number", "title", "year", "unit_code",
               "unit_name", "category", "retention", "date", "pages", "classification",
               "responsible", "flow", "remarks")


def _from_row(item: Item, values: tuple[str, ...], extra: dict[str, str] | None) -> None:
    """Fill metadata from a catalog row, the path filling what the row leaves blank.

    ``values`` and ``extra`` as :data:`Row` holds them (stripped by :func:`read_catalog`);
    ``extra`` None: no other column.
    """
    for name, value in zip(_ROW_FIELDS, _row_fields(item.path, values)):
        setattr(item, name, value)
    if extra is not None:
        item.extra = extra


def _row_fields(path: str, values: tuple[str, ...]) -> tuple:
    """Item's ``_ROW_FIELDS`` for the file ``path`` from its catalog row's ``values``
    (:data:`Row`), the path filling what the row leaves blank. A tuple, so that
    :func:`scan` makes each Item in one call (planning makes 365,245)."""
    (number, title, code, unit_code, category, retention, date, pages, classification,
     responsible, flow, remarks) = values
    number, title = number or None, title or None
    folder, _, file = path.rpartition("/")
    fields = _folder_fields(folder)
    if fields is None:                  # not a YEAR/UNIT/CATEGORY path: the row alone
        year = path_unit = unit_name = path_category = None
    else:
        year, path_unit, unit_name, path_category = fields
        if not (number and title):      # only then is the file name read
            path_number, path_title = _stem_fields(file)
            number, title = number or path_number, title or path_title
    if not year and date and len(date) >= 4 and date[:4].isdigit():
        year = date[:4]
    return (True, code or None, number, title, year, unit_code or path_unit, unit_name,
            category or path_category, retention or None, date or None, pages or None,
            classification or None, responsible or None, flow or None, remarks or None)
