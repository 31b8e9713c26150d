"""The four-property check (四性检测) of one bag: a disc copy read back, or an incoming bag.

DA/T 70-2018 and GB/T 18894-2016 ask that every package of electronic
records received or written be checked for four properties:

- authenticity (真实性): each file's SHA-256 against its expected value, the
  manifest and the signature (checked by the caller, passed in as results);
- integrity (完整性): file count and bytes against Payload-Oxum (RFC 8493) and
  the inventory; the required catalog fields filled in every row; 件号 running
  from 0001 without gaps or repeats within each class of the 档号 (DA/T 22-2015);
- usability (可用性): every file's format identified from its content (never
  its name) and on the allow-list, and its structure readable: PDF (ISO
  32000), OFD (GB/T 33190), TIFF 6.0, JPEG/JFIF, PNG, XML 1.0, CSV (RFC 4180);
  the catalog parses;
- security (安全性): no encrypted or password-protected file, the configured
  virus scanner run over the payload, and every step recorded in the report.

The check does not care where the bytes come from: each payload file is an
object with ``path``, ``size``, ``sha256``, ``expected_sha256`` and ``open()``
(see :class:`PayloadFile`), so a bag folder, a disc read back or a slice of an
ISO image all work. Format checks read headers and trailers (and stream XML
and CSV through a parser): a large file is never read into memory whole.

Each finding is ``pass``, ``fail`` or ``not-checked`` with a reason. The
report is JSON with sorted keys (UTF-8); the caller stores it and logs its
:meth:`FourPropertyReport.digest` as an event.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import io
import json
import os
import posixpath
import re
import shutil
import struct
import subprocess
import tempfile
import time
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from xml.etree.ElementTree import ParseError

try:  # refuses entity declarations outright; the standard parser is used without it
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import iterparse as _iterparse
    _XML_ERRORS: tuple[type[Exception], ...] = (ParseError, DefusedXmlException)
except ImportError:  # expat >= 2.4.1 (Python 3.11 ships 2.5) limits entity expansion itself
    from xml.etree.ElementTree import iterparse as _iterparse
    _XML_ERRORS = (ParseError,)

PASS, FAIL, NOT_CHECKED = "pass", "fail", "not-checked"
PROPERTIES = {"authenticity": "真实性", "integrity": "完整性",
              "usability": "可用性", "security": "安全性"}

FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ofd": ("OFD (GB/T 33190)", (".ofd",)),
    "pdf": ("PDF (ISO 32000)", (".pdf",)),
    "tiff": ("TIFF 6.0", (".tif", ".tiff")),
    "jpeg": ("JPEG/JFIF", (".jpg", ".jpeg", ".jpe", ".jfif")),
    "png": ("PNG", (".png",)),
    "xml": ("XML 1.0", (".xml",)),
    "csv": ("CSV (RFC 4180)", (".csv",)),
}
"""Formats this module can identify and open: key -> (name, extensions that may carry it)."""

DEFAULT_REQUIRED_FIELDS = ("件号", "档号", "责任者", "题名", "日期", "保管期限")
HEAD = 4096             # bytes read to identify a format
TAIL = 64 * 1024        # bytes read from the end of a PDF for its trailer
XREF_BLOCK = 64 * 1024  # bytes read where startxref points
OUTPUT_KEPT = 2000      # characters of a scanner's output kept in the report
COPY_CHUNK = 1 << 20

_DANGHAO = re.compile(r"^(?P<fonds>[^-]+)-(?P<kind>[^-·.]+)[·.](?P<year>\d{4})-"
                      r"(?P<retention>[^-]+)-(?P<org>[^-]+)-(?P<number>\d+)$")
_BAG_COUNT = re.compile(r"^\s*(\d+)\s+of\s+(\d+|\?)\s*$")
_OXUM = re.compile(r"^\s*(\d+)\.(\d+)\s*$")
_PDF_ENCRYPT = re.compile(rb"/Encrypt\s*(?:\d+\s+\d+\s+R|<<)")
_XMLENC_NS = "{http://www.w3.org/2001/04/xmlenc#}"


# --- inputs ---------------------------------------------------------------------------

@dataclass
class PayloadFile:
    """One payload file, wherever its bytes are.

    ``path`` is its path in the bag ("data/..."); ``size`` is in bytes;
    ``sha256`` is the hex digest the caller measured while reading it (None:
    not measured); ``expected_sha256`` is the value the manifest or inventory
    records (None: none known). ``open()`` returns a seekable binary file
    object, which the check closes. ``local_path`` is a host file holding the
    same bytes, if there is one: a virus scanner is pointed at it; otherwise
    the bytes are copied to a private temporary file for the scan.

    Any object with these attributes and ``open()`` will do; this class is
    the ready-made one.
    """

    path: str
    size: int
    opener: Callable[[], BinaryIO] = field(repr=False)
    sha256: str | None = None
    expected_sha256: str | None = None
    local_path: Path | None = None

    def open(self) -> BinaryIO:
        return self.opener()

    @classmethod
    def from_path(cls, bag_path: str, host: Path, expected_sha256: str | None = None,
                  measure: bool = False) -> PayloadFile:
        """A file on this computer; ``measure`` hashes it now (1 MiB reads). Raises OSError."""
        digest = _sha256_of(host) if measure else None
        return cls(bag_path, host.stat().st_size, lambda: open(host, "rb"), digest,
                   expected_sha256, host)

    @classmethod
    def from_bytes(cls, bag_path: str, data: bytes,
                   expected_sha256: str | None = None) -> PayloadFile:
        """Bytes in memory (small files, tests); the digest is measured."""
        return cls(bag_path, len(data), lambda: io.BytesIO(data),
                   hashlib.sha256(data).hexdigest(), expected_sha256)


@dataclass(frozen=True)
class CheckSettings:
    """What the check accepts, from the ``[check]`` section of the config.

    ``formats``: allowed format keys, a subset of :data:`FORMATS`.
    ``virus_scan``: the scanner's argv; ``{path}`` runs it once per file,
    ``{dir}`` once on the payload folder; empty: no scanner. Exit status 0
    means clean, 1 infected, anything else an error (clamscan's convention).
    ``virus_scan_timeout``: seconds one run may take. ``required_fields``:
    catalog columns that must be filled in every row.
    Raises ValueError for an unknown format or a command without a placeholder.
    """

    formats: tuple[str, ...] = tuple(FORMATS)
    virus_scan: tuple[str, ...] = ()
    virus_scan_timeout: float = 600.0
    required_fields: tuple[str, ...] = DEFAULT_REQUIRED_FIELDS

    def __post_init__(self) -> None:
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown:
            raise ValueError(f"unknown format(s) {', '.join(unknown)}: "
                             f"use some of {', '.join(FORMATS)}")
        if self.virus_scan and not any("{path}" in a or "{dir}" in a for a in self.virus_scan):
            raise ValueError("the virus_scan command must contain {path} (one run per file) "
                             "or {dir} (one run on the payload folder)")
        if self.virus_scan_timeout <= 0:
            raise ValueError("virus_scan_timeout must be more than 0 seconds")


@dataclass
class CheckInput:
    """Everything one check looks at.

    ``files``: the payload (:class:`PayloadFile`). ``bag_info``: bag-info.txt
    fields. ``catalog_rows``: the bag's 归档文件目录.csv as dicts (None: it
    could not be read, ``catalog_error`` says why). ``manifest_ok`` and
    ``signature_ok``: the caller's results (None: not checked), each with a
    reason. ``expected_files``/``expected_bytes``: the inventory's record
    (None for an incoming bag). ``payload_dir``: a host folder holding the
    payload, for a ``{dir}`` scanner. ``whole_classes``: True if the catalog
    holds every item of its classes, so 件号 must start at 0001 without gaps;
    None infers it from Bag-Count ("1 of 1" yes, "2 of 3" no). ``subject``
    names what was checked ("disc 2024-0003 copy B").
    """

    files: list[PayloadFile]
    bag_info: dict[str, str]
    catalog_rows: list[dict[str, str]] | None
    settings: CheckSettings = field(default_factory=CheckSettings)
    manifest_ok: bool | None = None
    manifest_reason: str = ""
    signature_ok: bool | None = None
    signature_reason: str = ""
    expected_files: int | None = None
    expected_bytes: int | None = None
    catalog_error: str | None = None
    payload_dir: Path | None = None
    whole_classes: bool | None = None
    subject: str = ""


# --- the report -----------------------------------------------------------------------

@dataclass
class Finding:
    """One result: ``check`` names the test, ``subject`` a bag path or "bag"."""

    check: str
    subject: str
    status: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"check": self.check, "subject": self.subject, "status": self.status,
                "reason": self.reason}


@dataclass
class FourPropertyReport:
    """The findings of one check, by property, and the log of what was done.

    ``passed`` is True when no finding failed; not-checked findings do not
    fail the check but are counted and listed, so a reader sees what was not
    looked at. ``log`` holds each step and each program run (argv, exit
    status, seconds, output).
    """

    subject: str
    checked_at: str
    authenticity: list[Finding] = field(default_factory=list)
    integrity: list[Finding] = field(default_factory=list)
    usability: list[Finding] = field(default_factory=list)
    security: list[Finding] = field(default_factory=list)
    log: list[dict] = field(default_factory=list)

    def findings(self) -> Iterator[tuple[str, Finding]]:
        for prop in PROPERTIES:
            for f in getattr(self, prop):
                yield prop, f

    def failures(self) -> list[tuple[str, Finding]]:
        return [(p, f) for p, f in self.findings() if f.status == FAIL]

    @property
    def passed(self) -> bool:
        return not self.failures()

    def counts(self) -> dict[str, dict[str, int]]:
        out = {p: {PASS: 0, FAIL: 0, NOT_CHECKED: 0} for p in PROPERTIES}
        for p, f in self.findings():
            out[p][f.status] += 1
        return out

    def to_json(self) -> str:
        """The report as JSON: sorted keys, UTF-8 text (not escaped), 2-space indent."""
        doc = {
            "report": "四性检测 four-property check",
            "standards": ["DA/T 70-2018", "GB/T 18894-2016"],
            "subject": self.subject,
            "checked_at": self.checked_at,
            "passed": self.passed,
            "counts": self.counts(),
            "properties": {p: {"name": name, "findings": [f.as_dict() for f in getattr(self, p)]}
                           for p, name in PROPERTIES.items()},
            "log": self.log,
        }
        return json.dumps(doc, ensure_ascii=False, sort_keys=True, indent=2) + "\n"

    def digest(self) -> str:
        """SHA-256 (hex) of :meth:`to_json` encoded as UTF-8: the value to log as an event."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    def summary(self) -> str:
        """One line for the operator: the counts, then the first failures."""
        c = self.counts()
        head = ", ".join(f"{PROPERTIES[p]} {c[p][FAIL]} fail/{c[p][NOT_CHECKED]} not checked"
                         for p in PROPERTIES)
        bad = [f"{f.subject}: {f.reason}" for _, f in self.failures()[:3]]
        return f"{'passed' if self.passed else 'FAILED'} ({head})" + (
            "; " + "; ".join(bad) if bad else "")


def check(inp: CheckInput, now: dt.datetime | None = None) -> FourPropertyReport:
    """Run the four-property check on ``inp`` and return the report.

    Never raises for what it finds: unreadable files, a missing scanner and
    bad metadata become findings. ``now`` (UTC) stamps the report.
    """
    stamp = (now or dt.datetime.now(dt.timezone.utc)).isoformat(timespec="seconds")
    rep = FourPropertyReport(subject=inp.subject or inp.bag_info.get("External-Identifier", ""),
                             checked_at=stamp)
    files = sorted(inp.files, key=lambda f: f.path)
    rep.log.append({"step": "start", "files": len(files),
                    "bytes": sum(f.size for f in files),
                    "formats": list(inp.settings.formats)})

    t = time.monotonic()
    facts = {}
    for f in files:
        facts[f.path] = examine_file(f)
    rep.log.append({"step": "formats", "files": len(files),
                    "seconds": round(time.monotonic() - t, 3)})

    _authenticity(inp, files, facts, rep.authenticity)
    _integrity(inp, files, rep.integrity)
    _usability(inp, files, facts, rep.usability)
    _security(inp, files, facts, rep.security, rep.log)
    rep.log.append({"step": "end", "passed": rep.passed})
    return rep


# --- authenticity ---------------------------------------------------------------------

def _given(check_name: str, ok: bool | None, reason: str, what: str) -> Finding:
    if ok is None:
        return Finding(check_name, "bag", NOT_CHECKED, reason or f"{what} was not checked")
    return Finding(check_name, "bag", PASS if ok else FAIL,
                   reason or f"{what} {'verified' if ok else 'does not verify'}")


def _authenticity(inp: CheckInput, files: list, facts: dict, out: list[Finding]) -> None:
    out.append(_given("manifest", inp.manifest_ok, inp.manifest_reason, "the manifest"))
    out.append(_given("signature", inp.signature_ok, inp.signature_reason, "the signature"))
    for f in files:
        got, want = f.sha256, f.expected_sha256
        if want is None:
            out.append(Finding("fixity", f.path, NOT_CHECKED,
                               "no expected SHA-256 from the manifest or inventory"))
        elif got is None:
            out.append(Finding("fixity", f.path, NOT_CHECKED, "SHA-256 not measured on this read"))
        elif got.lower() == want.lower():
            out.append(Finding("fixity", f.path, PASS, f"SHA-256 {got.lower()} as recorded"))
        else:
            out.append(Finding("fixity", f.path, FAIL,
                               f"SHA-256 is {got.lower()}, recorded {want.lower()}: "
                               "the file changed or was read wrongly"))
        seals = facts[f.path].seals
        if seals:
            out.append(Finding("seal", f.path, NOT_CHECKED,
                               f"carries electronic seals ({seals}); verifying them "
                               "(GB/T 38540) is not part of this check"))


# --- integrity ------------------------------------------------------------------------

def _integrity(inp: CheckInput, files: list, out: list[Finding]) -> None:
    count, total = len(files), sum(f.size for f in files)
    if not files:
        out.append(Finding("payload", "bag", FAIL, "the bag holds no payload files"))
    oxum = inp.bag_info.get("Payload-Oxum")
    m = _OXUM.match(oxum or "")
    if oxum is None:
        out.append(Finding("payload-oxum", "bag", NOT_CHECKED, "bag-info.txt has no Payload-Oxum"))
    elif not m:
        out.append(Finding("payload-oxum", "bag", FAIL,
                           f"Payload-Oxum {oxum!r} is not <bytes>.<files>"))
    else:
        out.append(_compare("payload-oxum", "Payload-Oxum", int(m[2]), int(m[1]), count, total))
    if inp.expected_files is None and inp.expected_bytes is None:
        out.append(Finding("inventory", "bag", NOT_CHECKED, "no inventory record to compare with"))
    else:
        out.append(_compare("inventory", "the inventory", inp.expected_files,
                            inp.expected_bytes, count, total))
    if inp.catalog_rows is None:
        out.append(Finding("metadata", "bag", NOT_CHECKED,
                           f"no catalog to check: {inp.catalog_error or 'none given'}"))
        return
    paths = {f.path for f in files}
    _required_fields(inp.catalog_rows, inp.settings.required_fields, paths, out)
    _numbering(inp, out)


def _compare(check_name: str, source: str, want_files: int | None, want_bytes: int | None,
             files: int, nbytes: int) -> Finding:
    wrong = []
    if want_files is not None and want_files != files:
        wrong.append(f"{files} files, {source} says {want_files}")
    if want_bytes is not None and want_bytes != nbytes:
        wrong.append(f"{nbytes} bytes, {source} says {want_bytes}")
    if wrong:
        return Finding(check_name, "bag", FAIL, "payload has " + " and ".join(wrong))
    return Finding(check_name, "bag", PASS, f"{files} files, {nbytes} bytes as {source} says")


def _row_subject(row: dict[str, str], line: int) -> str:
    path = (row.get("光盘路径") or "").strip()
    if not path and (row.get("文件") or "").strip():
        path = "data/" + row["文件"].strip()
    return path or f"catalog line {line}"


def _required_fields(rows: list[dict], required: tuple[str, ...], paths: set[str],
                     out: list[Finding]) -> None:
    bad = 0
    for line, row in enumerate(rows, start=2):
        subject = _row_subject(row, line)
        empty = [c for c in required if not (row.get(c) or "").strip()]
        if empty:
            bad += 1
            out.append(Finding("metadata", subject, FAIL,
                               f"catalog line {line}: {', '.join(empty)} not filled"))
        if subject.startswith("data/") and subject not in paths:
            bad += 1
            out.append(Finding("metadata", subject, FAIL,
                               f"catalog line {line} describes a file that is not in the payload"))
    if not bad:
        out.append(Finding("metadata", "bag", PASS,
                           f"all {len(rows)} catalog rows name payload files and fill "
                           f"{', '.join(required) or 'every required field'}"))


def _whole_classes(inp: CheckInput) -> tuple[bool, str]:
    if inp.whole_classes is not None:
        return inp.whole_classes, "the catalog given is not the whole set's"
    m = _BAG_COUNT.match(inp.bag_info.get("Bag-Count", "1 of 1"))
    if m and m[2] == "1":
        return True, ""
    return False, (f"bag {inp.bag_info.get('Bag-Count', '').strip()} holds part of its set, "
                   "so a class may continue on another disc")


def _numbering(inp: CheckInput, out: list[Finding]) -> None:
    """件号 from 0001 without gaps or repeats in each class (DA/T 22-2015)."""
    classes: dict[str, list[tuple[int, str]]] = {}
    for line, row in enumerate(inp.catalog_rows or [], start=2):
        subject = _row_subject(row, line)
        number = (row.get("件号") or "").strip()
        code = (row.get("档号") or "").strip()
        m = _DANGHAO.match(code)
        if code and not m:
            out.append(Finding("numbering", subject, FAIL,
                               f"档号 {code!r} is not 全宗号-门类代码·年度-保管期限-机构代码-件号"))
            continue
        if m:
            key = f"{m['fonds']}-{m['kind']}·{m['year']}-{m['retention']}-{m['org']}"
            if number and number.isdigit() and int(number) != int(m["number"]):
                out.append(Finding("numbering", subject, FAIL,
                                   f"件号 {number} differs from the 档号's {m['number']} ({code})"))
            number = number or m["number"]
        else:  # no 档号: the class from the row's year, retention and category
            year = (row.get("日期") or "").strip()[:4] or "?"
            key = f"{year} {row.get('保管期限') or '?'} {row.get('类别') or '?'}"
        if not number.isdigit():
            if number:
                out.append(Finding("numbering", subject, FAIL, f"件号 {number!r} is not a number"))
            continue
        classes.setdefault(key, []).append((int(number), subject))

    whole, why_partial = _whole_classes(inp)
    for key in sorted(classes):
        entries = sorted(classes[key])
        seen: dict[int, str] = {}
        trouble = False
        for n, subject in entries:
            if n in seen:
                trouble = True
                out.append(Finding("numbering", subject, FAIL,
                                   f"class {key}: 件号 {n:04d} repeated (also {seen[n]})"))
            else:
                seen[n] = subject
        numbers = sorted(seen)
        start = 1 if whole else numbers[0]
        gaps = _gaps(numbers, start)
        if whole:
            for a, b in gaps:
                trouble = True
                span = f"{a:04d}" if a == b else f"{a:04d}-{b:04d}"
                out.append(Finding("numbering", "bag", FAIL, f"class {key}: 件号 {span} missing"))
        run = (f"{numbers[0]:04d}" if len(numbers) == 1
               else f"{numbers[0]:04d}-{numbers[-1]:04d}")
        if not whole:
            out.append(Finding("numbering", "bag", NOT_CHECKED,
                               f"class {key}: 件号 {run} here"
                               f"{f' with {len(gaps)} gap(s)' if gaps else ''}; {why_partial}: "
                               "check continuity on the whole set's catalog"))
        elif not trouble:
            out.append(Finding("numbering", "bag", PASS, f"class {key}: 件号 {run} continuous"))


def _gaps(numbers: list[int], start: int) -> list[tuple[int, int]]:
    """Missing ranges (first, last) in sorted ``numbers`` counted from ``start``."""
    gaps, expect = [], start
    for n in numbers:
        if n > expect:
            gaps.append((expect, n - 1))
        expect = max(expect, n + 1)
    return gaps


# --- usability ------------------------------------------------------------------------

@dataclass
class FileFacts:
    """What one pass over a file's headers and trailers found.

    ``kind``: a :data:`FORMATS` key, "zip", "text", or None (unknown).
    ``problems``: why it would not open. ``encrypted``: why it counts as
    encrypted; ``clear``: why it does not (both None: could not tell).
    ``seals``: where an OFD keeps its electronic seals, if it has any.
    """

    kind: str | None = None
    label: str = ""
    note: str = ""
    problems: list[str] = field(default_factory=list)
    encrypted: str | None = None
    clear: str | None = None
    seals: str | None = None
    unreadable: str | None = None


def examine_file(f) -> FileFacts:
    """Identify one payload file by content and check its structure; never raises."""
    try:
        with f.open() as fh:
            return examine(fh, f.size)
    except OSError as exc:
        return FileFacts(unreadable=f"cannot read it: {exc.strerror or exc}")


def examine(fh: BinaryIO, listed_size: int | None = None) -> FileFacts:
    """Identify the format of the seekable file ``fh`` and check its structure.

    Reads the first 4 KiB, then what the format needs: PDF trailer and
    cross-reference start; the ZIP central directory, OFD.xml and DocRoot
    (GB/T 33190); the first TIFF IFD; JPEG segments up to the scan; the PNG
    IHDR and IEND; XML and CSV streamed through a parser. OSError propagates.
    """
    end = fh.seek(0, io.SEEK_END)
    fh.seek(0)
    head = fh.read(HEAD)
    facts = FileFacts(kind=identify(head))
    if listed_size is not None and end != listed_size:
        facts.problems.append(f"reads {end} bytes, listed as {listed_size}")
    checker = {"pdf": _pdf, "zip": _zip, "tiff": _tiff, "jpeg": _jpeg, "png": _png,
               "xml": _xml, "csv": _csv}.get(facts.kind or "")
    if checker is None:
        facts.label = "plain text" if facts.kind == "text" else "unknown format"
        if facts.kind is None:
            facts.note = f"content matches no known format (starts {head[:8].hex(' ') or 'empty'})"
        return facts
    try:
        checker(fh, end, facts)
    except (struct.error, ValueError, EOFError, RuntimeError, NotImplementedError,
            zlib.error) as exc:
        facts.problems.append(f"cannot be read as {facts.label or facts.kind}: {exc}")
    return facts


def identify(head: bytes) -> str | None:
    """Format key from a file's first bytes: a FORMATS key, "zip", "text" or None."""
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"  # OFD once OFD.xml is found in it
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    text = _as_text(head)
    if text is None:
        return None
    text = text.lstrip("\ufeff \t\r\n")
    if re.match(r"<(\?xml|!--|!DOCTYPE|[A-Za-z_:])", text):
        return "xml"
    if "," in text.split("\n", 1)[0]:
        return "csv"
    return "text" if text else None


def _as_text(head: bytes) -> str | None:
    """``head`` as UTF-8 text without control characters, or None."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3 or len(head) < HEAD:
            return None
        text = head[:exc.start].decode("utf-8")  # a character cut at the 4 KiB mark
    if any(ord(c) < 32 and c not in "\t\r\n\f" for c in text):
        return None
    return text


def _read_at(fh: BinaryIO, offset: int, n: int) -> bytes:
    fh.seek(offset)
    return fh.read(n)


def _pdf(fh: BinaryIO, end: int, facts: FileFacts) -> None:
    """ISO 32000 file structure: header, %%EOF, startxref pointing at xref or an xref stream."""
    m = re.match(rb"%PDF-(\d\.\d)", _read_at(fh, 0, 16))
    facts.label = f"PDF {m[1].decode()}" if m else "PDF"
    if not m:
        facts.problems.append("header %PDF- gives no version")
    tail = _read_at(fh, max(0, end - TAIL), TAIL)
    if b"%%EOF" not in tail[-1024:]:
        facts.problems.append("no %%EOF in the last 1024 bytes (truncated?)")
    at = tail.rfind(b"startxref")
    sx = re.match(rb"startxref\s+(\d+)", tail[at:]) if at >= 0 else None
    block = b""
    if at < 0:
        facts.problems.append("no startxref near the end (truncated?)")
    elif not sx:
        facts.problems.append("startxref gives no offset")
    elif int(sx[1]) >= end:
        facts.problems.append(f"startxref points to byte {int(sx[1])}, past the end ({end})")
    else:
        block = _read_at(fh, int(sx[1]), XREF_BLOCK)
        if not re.match(rb"\s*(xref|\d+\s+\d+\s+obj)", block):
            facts.problems.append(f"startxref points to byte {int(sx[1])}, where no "
                                  "cross-reference section starts")
            block = b""
    if _PDF_ENCRYPT.search(tail) or _PDF_ENCRYPT.search(block):
        facts.encrypted = "the trailer has an /Encrypt entry (password or certificate protected)"
    elif block:
        facts.clear = "no /Encrypt entry in the trailer"
    facts.note = f"header, startxref {int(sx[1]) if sx else '?'} and %%EOF read"


def _zip(fh: BinaryIO, end: int, facts: FileFacts) -> None:
    """A ZIP package; OFD (GB/T 33190) when OFD.xml is at its root."""
    facts.label = "ZIP package"
    try:
        zf = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        facts.problems.append(f"not a readable ZIP package: {exc}")
        return
    infos = zf.infolist()
    names = {i.filename for i in infos}
    locked = [i.filename for i in infos if i.flag_bits & 0x1]
    if locked:
        facts.encrypted = (f"{len(locked)} ZIP entr{'y is' if len(locked) == 1 else 'ies are'} "
                           f"encrypted (general purpose flag bit 0), first {locked[0]}")
    elif any(n.lower() == "encryptions.xml" for n in names):
        facts.encrypted = "the package has Encryptions.xml (OFD encryption, GM/T 0099-2020)"
    else:
        facts.clear = f"none of {len(infos)} ZIP entries encrypted"
    with zf:
        if "OFD.xml" not in names:
            facts.note = "ZIP package without OFD.xml at its root (not OFD)"
        elif locked:
            facts.kind, facts.label = "ofd", "OFD"
            facts.problems.append("encrypted entries cannot be opened")
        else:
            _ofd(zf, names, facts)


def _ofd(zf: zipfile.ZipFile, names: set[str], facts: FileFacts) -> None:
    """GB/T 33190: OFD.xml parses, its root is OFD, and each DocRoot it names exists and parses."""
    facts.kind, facts.label = "ofd", "OFD"
    found: dict[str, list[str]] = {"DocRoot": [], "Signatures": []}

    def on_end(elem) -> None:
        local = elem.tag.rsplit("}", 1)[-1]
        if local in found and (elem.text or "").strip():
            found[local].append(elem.text.strip())

    try:
        with zf.open("OFD.xml") as x:
            root, attrs = _parse_xml(x, on_end)
    except (*_XML_ERRORS, zipfile.BadZipFile) as exc:
        facts.problems.append(f"OFD.xml does not parse: {exc}")
        return
    if root != "OFD":
        facts.problems.append(f"OFD.xml's root element is {root}, not OFD")
    facts.label = f"OFD {attrs.get('Version', '')}".strip()
    if not found["DocRoot"]:
        facts.problems.append("OFD.xml names no DocRoot")
    for loc in found["DocRoot"]:
        target = posixpath.normpath(loc.lstrip("/"))
        if target not in names:
            facts.problems.append(f"OFD.xml names DocRoot {loc}, which is not in the package")
            continue
        try:
            with zf.open(target) as x:
                _parse_xml(x)
        except (*_XML_ERRORS, zipfile.BadZipFile) as exc:
            facts.problems.append(f"DocRoot {target} does not parse: {exc}")
    if found["Signatures"]:
        facts.seals = ", ".join(found["Signatures"])
    facts.note = f"OFD.xml and DocRoot {', '.join(found['DocRoot'])} parse"


def _parse_xml(stream, on_end: Callable | None = None) -> tuple[str, dict]:
    """Stream ``stream`` through the XML parser; (root local name, root attributes).

    Elements are cleared as they close, so memory stays small. Raises one of
    ``_XML_ERRORS`` (ParseError, or defusedxml's refusal of entity declarations).
    """
    root, attrs = "", {}
    for event, elem in _iterparse(stream, events=("start", "end")):
        if event == "start":
            if not root:
                root, attrs = elem.tag.rsplit("}", 1)[-1], dict(elem.attrib)
            continue
        if on_end:
            on_end(elem)
        elem.clear()
    return root, attrs


def _tiff(fh: BinaryIO, end: int, facts: FileFacts) -> None:
    """TIFF 6.0: byte order, the first IFD inside the file with the baseline image tags."""
    head = _read_at(fh, 0, 8)
    order = "<" if head[:2] == b"II" else ">"
    facts.label = "TIFF"
    facts.clear = "TIFF has no encryption"
    (ifd,) = struct.unpack(order + "I", head[4:8])
    if ifd < 8 or ifd + 2 > end:
        facts.problems.append(f"first IFD offset {ifd} is outside the file ({end} bytes)")
        return
    (n,) = struct.unpack(order + "H", _read_at(fh, ifd, 2))
    entries = _read_at(fh, ifd + 2, n * 12 + 4)
    if n == 0:
        facts.problems.append("the first IFD has no entries")
        return
    if len(entries) < n * 12 + 4:
        facts.problems.append(f"the first IFD ({n} entries at byte {ifd}) runs past the end")
        return
    tags = {struct.unpack(order + "H", entries[i * 12:i * 12 + 2])[0] for i in range(n)}
    missing = [name for tag, name in ((256, "ImageWidth"), (257, "ImageLength")) if tag not in tags]
    if 273 not in tags and 324 not in tags:
        missing.append("StripOffsets")
    if missing:
        facts.problems.append(f"the first IFD lacks {', '.join(missing)}")
    facts.note = f"{'little' if order == '<' else 'big'}-endian, first IFD of {n} entries read"


_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg(fh: BinaryIO, end: int, facts: FileFacts) -> None:
    """JPEG (ITU T.81) with JFIF or Exif: segments from SOI to the scan, a frame header, EOI."""
    facts.label = "JPEG"
    facts.clear = "JPEG has no encryption"
    pos, app, frame = 2, "", None
    for _ in range(10_000):
        mark = _read_at(fh, pos, 4)
        if len(mark) < 2 or mark[0] != 0xFF:
            facts.problems.append(f"no marker at byte {pos} (damaged header)")
            return
        code = mark[1]
        if code == 0xFF:  # fill byte
            pos += 1
            continue
        if code in (0x01, *range(0xD0, 0xD8)):
            pos += 2
            continue
        if code == 0xD9:
            facts.problems.append("EOI before any image scan")
            return
        if len(mark) < 4:
            facts.problems.append("header cut off (truncated?)")
            return
        (length,) = struct.unpack(">H", mark[2:4])
        if length < 2 or pos + 2 + length > end:
            facts.problems.append(f"segment {code:02X} at byte {pos} runs past the end")
            return
        if code == 0xE0 and _read_at(fh, pos + 4, 5) == b"JFIF\x00":
            app = "JFIF"
        elif code == 0xE1 and _read_at(fh, pos + 4, 6) == b"Exif\x00\x00":
            app = app or "Exif"
        elif code in _SOF:
            frame = code
        elif code == 0xDA:
            break
        pos += 2 + length
    else:
        facts.problems.append("too many header segments")
        return
    if frame is None:
        facts.problems.append("no frame header (SOFn) before the scan")
    if not _read_at(fh, max(0, end - 512), 512).rstrip(b"\x00").endswith(b"\xff\xd9"):
        facts.problems.append("does not end with EOI (truncated?)")
    facts.label = f"JPEG{'/' + app if app else ''}"
    facts.note = f"SOI, SOF{(frame or 0xC0) - 0xC0}, scan and EOI found"


def _png(fh: BinaryIO, end: int, facts: FileFacts) -> None:
    """PNG (ISO/IEC 15948): signature, IHDR first with a correct CRC, IEND last."""
    facts.label = "PNG"
    facts.clear = "PNG has no encryption"
    chunk = _read_at(fh, 8, 25)
    if len(chunk) < 25 or chunk[4:8] != b"IHDR" or struct.unpack(">I", chunk[:4])[0] != 13:
        facts.problems.append("the first chunk is not a 13-byte IHDR")
        return
    (crc,) = struct.unpack(">I", chunk[21:25])
    if zlib.crc32(chunk[4:21]) != crc:
        facts.problems.append("IHDR CRC does not match (damaged)")
    width, height = struct.unpack(">II", chunk[8:16])
    if not width or not height:
        facts.problems.append(f"IHDR gives a {width}x{height} image")
    if _read_at(fh, end - 12, 12) != b"\x00\x00\x00\x00IEND\xaeB`\x82":
        facts.problems.append("does not end with an IEND chunk (truncated?)")
    facts.note = f"{width}x{height}, IHDR and IEND read"


def _xml(fh: BinaryIO, end: int, facts: FileFacts) -> None:
    """XML 1.0 well-formedness, streamed; XML Encryption (xmlenc) elements count as encrypted."""
    facts.label = "XML"
    enc = []

    def on_end(elem) -> None:
        if not enc and isinstance(elem.tag, str) and elem.tag.startswith(_XMLENC_NS):
            enc.append(elem.tag)

    fh.seek(0)
    try:
        root, _ = _parse_xml(fh, on_end)
    except _XML_ERRORS as exc:
        facts.problems.append(f"does not parse as XML: {exc}")
        return
    if enc:
        facts.encrypted = "holds XML Encryption (xmlenc) content"
    else:
        facts.clear = "no XML Encryption elements"
    facts.note = f"well-formed, root element {root}"


def _csv(fh: BinaryIO, end: int, facts: FileFacts) -> None:
    """RFC 4180 CSV in UTF-8: every record has the header's number of fields."""
    facts.label = "CSV"
    facts.clear = "CSV has no encryption"
    bad = _utf8_error_at(fh)
    if bad is not None:
        facts.problems.append(f"not UTF-8 at byte {bad}")
        return
    fh.seek(0)
    text = io.TextIOWrapper(fh, encoding="utf-8-sig", newline="")
    width, records = None, 0
    try:
        for row in csv.reader(text, strict=True):
            if not row:
                continue
            records += 1
            if width is None:
                width = len(row)
            elif len(row) != width:
                facts.problems.append(f"record {records} has {len(row)} fields, "
                                      f"the header {width}")
                return
    except csv.Error as exc:
        facts.problems.append(f"not valid CSV after record {records}: {exc}")
        return
    finally:
        text.detach()
    facts.note = f"{records} records of {width} fields"


def _utf8_error_at(fh: BinaryIO) -> int | None:
    """Offset of the first byte that is not UTF-8, or None; reads 1 MiB at a time."""
    fh.seek(0)
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    while True:
        chunk = fh.read(COPY_CHUNK)
        pending = len(decoder.getstate()[0])  # bytes of a character cut at the last chunk
        try:
            decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            return offset - pending + exc.start
        if not chunk:
            return None
        offset += len(chunk)


def _usability(inp: CheckInput, files: list, facts: dict, out: list[Finding]) -> None:
    allowed = inp.settings.formats
    if inp.catalog_rows is None:
        out.append(Finding("metadata", "bag", FAIL,
                           f"the catalog does not parse: {inp.catalog_error or 'not given'}"))
    else:
        out.append(Finding("metadata", "bag", PASS,
                           f"the catalog parses ({len(inp.catalog_rows)} rows)"))
    for f in files:
        ff: FileFacts = facts[f.path]
        if ff.unreadable:
            out.append(Finding("format", f.path, FAIL, ff.unreadable))
            continue
        why = []
        if ff.kind not in FORMATS:
            why.append(f"{ff.note or ff.label}: not a format on the list")
        elif ff.kind not in allowed:
            why.append(f"{FORMATS[ff.kind][0]} is not on the allowed list ({', '.join(allowed)})")
        ext = posixpath.splitext(f.path)[1].lower()
        if ff.kind in FORMATS and ext not in FORMATS[ff.kind][1]:
            why.append(f"content is {ff.label} but the name ends in {ext or '(no extension)'}")
        why.extend(ff.problems)
        if why:
            out.append(Finding("format", f.path, FAIL, "; ".join(why)))
        else:
            out.append(Finding("format", f.path, PASS, f"{ff.label}: {ff.note}"))


# --- security -------------------------------------------------------------------------

def _security(inp: CheckInput, files: list, facts: dict, out: list[Finding],
              log: list[dict]) -> None:
    for f in files:
        ff: FileFacts = facts[f.path]
        if ff.encrypted:
            out.append(Finding("encryption", f.path, FAIL, ff.encrypted))
        elif ff.clear:
            out.append(Finding("encryption", f.path, PASS, ff.clear))
        else:
            why = ff.unreadable or (ff.problems[0] if ff.problems else f"{ff.label} not checked")
            out.append(Finding("encryption", f.path, NOT_CHECKED,
                               f"cannot tell whether it is encrypted: {why}"))
    _virus_scan(inp, files, out, log)


def _virus_scan(inp: CheckInput, files: list, out: list[Finding], log: list[dict]) -> None:
    """Run the configured scanner once per file ({path}) or once on the payload folder ({dir})."""
    cmd, timeout = inp.settings.virus_scan, inp.settings.virus_scan_timeout
    if not cmd:
        out.append(Finding("virus-scan", "bag", NOT_CHECKED, "no virus scanner configured"))
        log.append({"step": "virus-scan", "ran": False, "why": "no virus scanner configured"})
        return
    if not any("{path}" in a for a in cmd):
        if inp.payload_dir is None:
            out.append(Finding("virus-scan", "bag", NOT_CHECKED,
                               "the scanner runs on a folder ({dir}) but the payload is not in "
                               "a folder on this computer: use {path} in virus_scan"))
            return
        argv = [a.replace("{dir}", str(inp.payload_dir)) for a in cmd]
        out.append(_scan("bag", argv, timeout, log))
        return
    for n, f in enumerate(files):
        try:
            with _host_copy(f) as host:
                argv = [a.replace("{path}", str(host)) for a in cmd]
                finding = _scan(f.path, argv, timeout, log)
        except OSError as exc:
            finding = Finding("virus-scan", f.path, NOT_CHECKED,
                              f"could not hand the file to the scanner: {exc}")
        out.append(finding)
        if log[-1].get("error") == "not found":  # no scanner: do not try every file
            out.extend(Finding("virus-scan", rest.path, NOT_CHECKED, finding.reason)
                       for rest in files[n + 1:])
            return


@contextmanager
def _host_copy(f) -> Iterator[Path]:
    """A host path holding ``f``'s bytes: its own, or a private temporary copy."""
    local = getattr(f, "local_path", None)
    if local is not None:
        yield Path(local)
        return
    with tempfile.TemporaryDirectory(prefix="fourcheck-") as tmp:
        host = Path(tmp) / (posixpath.basename(f.path) or "payload")
        with f.open() as src, open(host, "wb") as dst:
            shutil.copyfileobj(src, dst, COPY_CHUNK)
        yield host


def _scan(subject: str, argv: list[str], timeout: float, log: list[dict]) -> Finding:
    """Run one scan: exit 0 clean, 1 infected, other an error; the run goes into ``log``."""
    entry: dict = {"step": "virus-scan", "subject": subject, "argv": argv}
    log.append(entry)
    t = time.monotonic()
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, check=False)
    except FileNotFoundError:
        entry.update(exit=None, error="not found")
        return Finding("virus-scan", subject, NOT_CHECKED,
                       f"scanner program {argv[0]} not found: install it or fix virus_scan")
    except subprocess.TimeoutExpired:
        entry.update(exit=None, error=f"timed out after {timeout:g} s")
        return Finding("virus-scan", subject, NOT_CHECKED,
                       f"scanner did not finish within {timeout:g} s and was stopped")
    except OSError as exc:
        entry.update(exit=None, error=str(exc))
        return Finding("virus-scan", subject, NOT_CHECKED, f"scanner could not start: {exc}")
    said = (proc.stdout + proc.stderr).decode("utf-8", "replace").strip()
    entry.update(exit=proc.returncode, seconds=round(time.monotonic() - t, 3),
                 output=said[:OUTPUT_KEPT])
    first = said.splitlines()[0] if said else "no output"
    if proc.returncode == 0:
        return Finding("virus-scan", subject, PASS, f"{os.path.basename(argv[0])}: clean")
    if proc.returncode == 1:
        return Finding("virus-scan", subject, FAIL,
                       f"{os.path.basename(argv[0])} reports an infection: {first}")
    return Finding("virus-scan", subject, NOT_CHECKED,
                   f"{os.path.basename(argv[0])} failed (exit {proc.returncode}): {first}")


# --- helpers for callers --------------------------------------------------------------

def _sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(COPY_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def files_in_bag(bag: Path, expected: dict[str, str] | None = None,
                 measure: bool = True) -> list[PayloadFile]:
    """The payload of a bag folder: every file under ``bag/data``, sorted by bag path.

    ``expected`` maps bag paths to recorded SHA-256 values (manifest or
    inventory); ``measure`` hashes each file now. Raises OSError.
    """
    data = bag / "data"
    out = []
    for root, dirs, names in os.walk(data):
        dirs.sort()
        for name in sorted(names):
            host = Path(root) / name
            rel = "data/" + host.relative_to(data).as_posix()
            out.append(PayloadFile.from_path(rel, host, (expected or {}).get(rel), measure))
    return sorted(out, key=lambda f: f.path)


def read_catalog_rows(fh: BinaryIO) -> list[dict[str, str]]:
    """The rows of a 归档文件目录.csv (UTF-8, BOM allowed) as dicts.

    Raises ValueError saying why it does not parse: not UTF-8, bad quoting,
    or a row with more fields than the header.
    """
    text = io.TextIOWrapper(fh, encoding="utf-8-sig", newline="")
    try:
        reader = csv.DictReader(text, strict=True)
        rows = []
        for row in reader:
            if None in row:
                raise ValueError(f"line {reader.line_num} has more fields than the header")
            rows.append({k: (v or "") for k, v in row.items()})
        return rows
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 ({exc.reason})") from None
    except csv.Error as exc:
        raise ValueError(f"not valid CSV: {exc}") from None
    finally:
        text.detach()
