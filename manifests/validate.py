"""Validate a BagIt bag and say, file by file, why it fails (RFC 8493).

bagit-python does the heavy lifting: it computes every checksum of the payload
and tag manifests, checks the Payload-Oxum, that every payload file is listed
and every listed file is there, and that fetch.txt's URLs are well formed. It
is lenient where RFC 8493 is strict, though, so this module first reads the
tag files itself and adds what bagit-python 1.9 misses:

* bagit.txt is exactly ``BagIt-Version: M.N`` and
  ``Tag-File-Character-Encoding: ENCODING`` (section 2.1.1); bagit-python
  strips the whitespace around the colon and accepts ``BagIt-Version : 1.0``.
* every manifest line is ``checksum filepath`` with a hex checksum as long as
  the algorithm's (sections 2.1.3, 2.2.1), every fetch.txt line is
  ``url length filepath`` (section 2.2.3), and no path leaves the bag: payload
  paths stay under data/, tag manifests list no payload file.
* in a 1.0 bag, %0A, %0D and %25 in a path stand for LF, CR and "%", and a bare
  "%" is an error (section 2.1.3). bagit-python decodes only %0D and %0A (in
  0.97 bags too, upper case only, at most twice a path) and never %25, so it
  is handed the paths as read here.
* in a 1.0 bag every payload manifest lists every payload file (section 3),
  each once (bagit-python and the BagIt conformance suite both reject a
  repeat), and no bag-info.txt label starts or ends with whitespace
  (section 2.2.2). A 0.97 bag keeps its looser rules: a repeated line with
  the same checksum, or md5sum's "*" marker, is a warning there.

Nothing here raises for a bad bag: each finding is one line of
``BagReport.problems`` that starts with the file it is about (and the line,
when there is one). Notes that do not make the bag invalid, and what
bagit-python logs, go to ``BagReport.warnings``.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import logging
import os
import posixpath
import re
import unicodedata
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import bagit

from .bag import decode_manifest_path

_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # section 2.1: LF, CR or CRLF; nothing else breaks a line
_MANIFEST_LINE = re.compile(r"([0-9A-Fa-f]+)[ \t]+(.+)")
_FETCH_LINE = re.compile(r"(\S+)[ \t]+(\S+)[ \t]+(.+)")
_PERCENT = re.compile(r"%(?:25|0[AaDd])")
_OXUM = re.compile(r"[0-9]+\.[0-9]+")
_SYSTEM_FILES = {".DS_Store", "Thumbs.db", "desktop.ini"}


@dataclass
class BagReport:
    """What ``validate_bag`` found.

    ``valid`` is true exactly when ``problems`` is empty. Each problem and
    warning is one line starting with the file it is about, relative to the
    bag (``manifest-sha256.txt line 3: ...``, ``data/a.pdf: ...``).
    """

    valid: bool
    version: str | None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    path: str = ""
    hashed: bool = True   # False: validated with hashing=False, no checksum computed

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=2)


def validate_bag(path: Path, processes: int = 1, hashing: bool = True) -> BagReport:
    """Validate the bag at ``path``: complete and every checksum right (RFC 8493 section 3).

    ``processes`` is handed to bagit-python for hashing. With ``hashing=False``
    every check that reads no file's content is made (bagit.txt, bag-info.txt,
    the manifests' and fetch.txt's lines, the Payload-Oxum against the payload
    files' sizes and count, every listed file present and every payload file
    listed, tag manifests listing tag files only) and no checksum is
    computed: the report's ``hashed`` is then False and a bag it calls valid
    may still fail its fixity check. Returns a report; a path that is not a
    folder gives a report with that one problem.
    """
    path = Path(path)
    report = BagReport(valid=False, version=None, path=str(path), hashed=hashing)
    if not path.is_dir():
        what = "not a folder" if path.exists() else "no such folder"
        report.problems.append(f"{path}: {what}; a bag is a folder (RFC 8493 section 2)")
        return report
    _Check(path, report, processes, hashing).run()
    report.valid = not report.problems
    return report


def _lines(text: str) -> list[str]:
    lines = _LINE_BREAK.split(text)
    if lines and lines[-1] == "":
        lines.pop()  # the last line's terminator
    return lines


def _nfc(path: str) -> str:
    return unicodedata.normalize("NFC", path)


def _one_line(text: str) -> str:
    """``text`` with line breaks, other control characters and undecodable bytes escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class _Check:
    """One validation run over one bag; collects into ``report``."""

    def __init__(self, bag: Path, report: BagReport, processes: int, hashing: bool = True):
        self.bag = bag
        self.report = report
        self.processes = processes
        self.hashing = hashing
        self.v1 = False
        self.encoding = "utf-8"
        self.oxum_well_formed = False
        self.payload: dict[str, dict[str, str]] = {}  # manifest name -> {path: checksum}
        self.tags: dict[str, dict[str, str]] = {}      # tag manifest name -> {path: checksum}
        self.fetched: set[str] = set()
        self.explained: set[str] = set()  # bagit-python's own words for findings already reported

    def problem(self, text: str) -> None:
        text = _one_line(text)
        if text not in self.report.problems:
            self.report.problems.append(text)

    def warning(self, text: str) -> None:
        text = _one_line(text)
        if text not in self.report.warnings:
            self.report.warnings.append(text)

    def run(self) -> None:
        version = self.read_declaration()
        if version is None:
            return  # without bagit.txt nothing else can be read (section 2.1.1)
        self.v1 = version >= (1, 0)
        self.read_bag_info()
        self.read_manifests()
        self.read_fetch()
        self.check_payload_directory()
        if not (self.bag / "data").is_dir() or not self.payload:
            return  # bagit-python would only repeat these problems
        self.run_bagit_python()

    # -- bagit.txt ---------------------------------------------------------

    def read_declaration(self) -> tuple[int, int] | None:
        """bagit.txt (section 2.1.1): UTF-8 with no byte-order mark, exactly two lines,
        ``BagIt-Version: M.N`` then ``Tag-File-Character-Encoding: ENCODING``.

        Returns the version, read leniently so that the other checks can go on
        after a malformed line; None when it cannot be read at all.
        """
        name = "bagit.txt"
        try:
            raw = (self.bag / name).read_bytes()
        except FileNotFoundError:
            self.problem(f"{name}: missing; every bag declares itself in bagit.txt (RFC 8493 section 2.1.1)")
            return None
        except OSError as e:
            self.problem(f"{name}: cannot be read: {e.strerror or e}")
            return None
        if raw.startswith(codecs.BOM_UTF8):
            self.problem(f"{name}: starts with a byte-order mark, which RFC 8493 section 2.1.1 forbids")
            raw = raw[len(codecs.BOM_UTF8):]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            self.problem(f"{name}: not UTF-8 (byte {e.start}); RFC 8493 section 2.1.1 requires it")
            text = raw.decode("utf-8", "replace")
        lines = _lines(text)

        version_text = self._declared(lines, 1, "BagIt-Version", r"[0-9]+\.[0-9]+")
        encoding = self._declared(lines, 2, "Tag-File-Character-Encoding", r"\S+")
        for number, line in enumerate(lines[2:], 3):
            if line.strip():
                self.problem(f"{name} line {number}: {line!r} is one line too many; "
                             f"bagit.txt has exactly two (RFC 8493 section 2.1.1)")
        self.report.version = version_text
        if encoding is not None:
            try:
                self.encoding = codecs.lookup(encoding).name
            except LookupError:
                self.problem(f"{name} line 2: unknown character encoding {encoding!r} (RFC 8493 section 2.1.1)")
        match = re.fullmatch(r"([0-9]+)\.([0-9]+)", version_text or "")
        if not match:
            return (0, 0)  # already a problem above; go on with the 0.97 rules
        version = (int(match[1]), int(match[2]))
        if not (0, 93) <= version < (2, 0):
            self.problem(f"{name} line 1: BagIt-Version {version_text} is not a version this "
                         f"validator knows (0.93 to 1.x; RFC 8493 is 1.0)")
        return version

    def _declared(self, lines: list[str], number: int, label: str, value: str) -> str | None:
        """The value of ``label``, which must be line ``number`` exactly as ``label: value``."""
        where = f"bagit.txt line {number}"
        line = lines[number - 1] if len(lines) >= number else None
        if line is not None and re.fullmatch(rf"{label}: {value}", line):
            return line.split(": ", 1)[1]
        # Read it leniently wherever it is, to say what is wrong and go on.
        loose = re.compile(rf"[ \t]*{label}[ \t]*:[ \t]*(.*?)[ \t]*")
        found = next((m[1] for m in map(loose.fullmatch, lines) if m), None)
        if line is None:
            self.problem(f"{where}: missing; expected '{label}: ...' (RFC 8493 section 2.1.1)")
        elif found is not None and loose.fullmatch(line) and re.fullmatch(value, found):
            self.problem(f"{where}: {line!r} must read exactly '{label}: {found}', "
                         f"with no other whitespace (RFC 8493 section 2.1.1)")
        elif found is not None and loose.fullmatch(line):
            self.problem(f"{where}: {found!r} is not a valid {label} (RFC 8493 section 2.1.1)")
        else:
            self.problem(f"{where}: {line!r} is not '{label}: ...' (RFC 8493 section 2.1.1)")
        return found

    # -- other tag files ---------------------------------------------------

    def read_tag_file(self, name: str) -> list[str] | None:
        """The lines of tag file ``name``, decoded with the declared encoding (section 2.1.1)."""
        try:
            raw = (self.bag / name).read_bytes()
        except OSError as e:
            self.problem(f"{name}: cannot be read: {e.strerror or e}")
            return None
        try:
            text = raw.decode(self.encoding)
        except UnicodeDecodeError as e:
            self.problem(f"{name}: not valid {self.encoding} at byte {e.start}, the encoding bagit.txt declares")
            return None
        if text.startswith("\ufeff"):
            if self.encoding == "utf-8":
                self.warning(f"{name}: starts with a byte-order mark, which UTF-8 tag files should not have")
            text = text[1:]
        return _lines(text)

    def read_bag_info(self) -> None:
        """bag-info.txt (section 2.2.2), which is optional: ``label: value`` lines,
        continued by lines that start with whitespace. From 1.0 a label neither
        starts nor ends with whitespace. Payload-Oxum is ``octets.files``."""
        name = "bag-info.txt"
        if not (self.bag / name).is_file():
            return
        lines = self.read_tag_file(name)
        for number, line in enumerate(lines or [], 1):
            where = f"{name} line {number}"
            if not line.strip() or line[0] in " \t":
                continue  # blank, or the continuation of a long value
            label, colon, value = line.partition(":")
            if not colon:
                self.problem(f"{where}: {line!r} is not 'label: value' (RFC 8493 section 2.2.2)")
                continue
            if self.v1 and label != label.strip(" \t"):
                self.problem(f"{where}: label {label!r} must not start or end with whitespace "
                             f"(RFC 8493 section 2.2.2)")
            if label.strip() == "Payload-Oxum":
                if _OXUM.fullmatch(value.strip()):
                    self.oxum_well_formed = True
                else:
                    self.problem(f"{where}: Payload-Oxum {value.strip()!r} is not OCTETS.FILES "
                                 f"(RFC 8493 section 2.2.2)")

    # -- manifests ---------------------------------------------------------

    def read_manifests(self) -> None:
        """Payload manifests (section 2.1.3) and tag manifests (section 2.2.1)."""
        try:
            names = sorted(p.name for p in self.bag.iterdir() if p.is_file())
        except OSError as e:
            self.problem(f"{self.bag.name}: cannot be listed: {e.strerror or e}")
            names = []
        for name in names:
            for prefix, kind in (("manifest-", self.payload), ("tagmanifest-", self.tags)):
                if name.startswith(prefix) and name.endswith(".txt"):
                    kind[name] = self.read_manifest(name, name[len(prefix):-len(".txt")],
                                                    payload=kind is self.payload)
        if not self.payload:
            self.problem("manifest-<algorithm>.txt: the bag has no payload manifest (RFC 8493 section 2.1.3)")
        self.check_every_manifest_lists_every_file()
        self.check_portable_names()

    def read_manifest(self, name: str, algorithm: str, payload: bool) -> dict[str, str]:
        """``checksum filepath`` lines: a hex checksum of the algorithm's length, then
        one or more spaces or tabs, then a path inside the bag (sections 2.1.3, 2.2.1)."""
        entries: dict[str, str] = {}
        first_line: dict[str, int] = {}
        digits = None
        if algorithm in hashlib.algorithms_guaranteed and not algorithm.startswith("shake"):
            digits = 2 * hashlib.new(algorithm).digest_size
        else:
            self.problem(f"{name}: {algorithm!r} is not an algorithm this validator can compute, "
                         f"so nothing it lists can be verified (RFC 8493 section 2.4)")
        for number, line in enumerate(self.read_tag_file(name) or [], 1):
            where = f"{name} line {number}"
            if not line.strip():
                self.warning(f"{where}: blank line")
                continue
            match = _MANIFEST_LINE.fullmatch(line)
            if not match:
                self.problem(f"{where}: {line!r} is not 'checksum filepath' (RFC 8493 section 2.1.3)")
                continue
            checksum, raw_path = match.groups()
            if digits and len(checksum) != digits:
                self.problem(f"{where}: the {algorithm} checksum of {raw_path!r} has {len(checksum)} "
                             f"hex digits, not {digits} (RFC 8493 section 2.1.3)")
            path = self.file_path(raw_path, where, payload, "2.1.3" if payload else "2.2.1")
            if path is None:
                continue
            if path in entries:
                again = f"{where}: {path!r} is listed again (first on line {first_line[path]})"
                if entries[path] != checksum.lower():
                    self.problem(f"{again} with a different checksum (RFC 8493 section 2.1.3)")
                elif self.v1:
                    self.problem(f"{again}; a 1.0 manifest lists each file once")
                else:
                    self.warning(f"{again} with the same checksum")
                continue
            entries[path] = checksum.lower()
            first_line[path] = number
        return entries

    def file_path(self, raw: str, where: str, payload: bool, section: str) -> str | None:
        """The bag-relative path that a manifest or fetch.txt line names, or None
        (with a problem) when it names nothing inside the bag.

        1.0 paths are percent-decoded (%0A, %0D, %25 only: section 2.1.3). Payload
        paths lie under data/ (sections 2.1.3, 2.2.3); tag paths do not (section 2.2.1).
        """
        path = raw
        if path.startswith("*"):  # md5sum's binary-mode marker
            if self.v1:
                self.problem(f"{where}: {raw!r} starts with '*', md5sum's binary-mode marker, "
                             f"which is no part of a 1.0 manifest (RFC 8493 section 2.1.3)")
                return None
            self.warning(f"{where}: {raw!r} carries md5sum's binary-mode marker '*'; read as {raw[1:]!r}")
            path = path[1:]
        if self.v1:
            path = decode_manifest_path(path)
            if "%" in _PERCENT.sub("", raw):
                self.problem(f"{where}: {raw!r} has a '%' that is not %25, %0A or %0D; "
                             f"a literal '%' must be written %25 (RFC 8493 section 2.1.3)")
        if path.startswith("/"):
            why = "an absolute path, outside the bag"
        elif path.startswith("~"):
            why = "a home-directory shortcut, outside the bag"
        elif re.match(r"[A-Za-z]:[\\/]|\\\\", path):
            why = "a Windows absolute path, outside the bag"
        elif ".." in path.split("/"):
            why = "a path that climbs out with '..'"
        elif payload and not posixpath.normpath(path).startswith("data/"):
            why = "outside the payload directory data/"
        elif not payload and posixpath.normpath(path).startswith("data/"):
            why = "a payload file; a tag manifest lists tag files only"
        else:
            why = None
        if why:
            self.problem(f"{where}: {raw!r} is {why} (RFC 8493 section {section})")
            return None
        normal = posixpath.normpath(path)
        if normal != path:
            self.warning(f"{where}: {raw!r} is read as {normal!r}")
        target = self.bag / normal
        if target.is_dir() and not target.is_symlink():
            self.problem(f"{where}: {normal!r} is a folder; manifests list files (RFC 8493 section 2.1.3)")
            return None
        return normal

    def check_every_manifest_lists_every_file(self) -> None:
        """From 1.0 every payload manifest lists every payload file (section 3)."""
        if not self.v1 or len(self.payload) < 2:
            return
        listed = {name: {_nfc(p) for p in entries} for name, entries in self.payload.items()}
        everything = set().union(*listed.values())
        for name, paths in listed.items():
            for path in sorted(everything - paths):
                other = next(n for n, ps in listed.items() if path in ps)
                self.problem(f"{name}: does not list {path!r}, which {other} lists; every payload "
                             f"manifest lists every payload file (RFC 8493 section 3)")

    def check_portable_names(self) -> None:
        """Warnings, not RFC rules: names that are one file on other file systems,
        and operating-system litter in the payload."""
        paths = sorted(set().union(*self.payload.values())) if self.payload else []
        seen_nfc: dict[str, str] = {}
        seen_case: dict[str, str] = {}
        for path in paths:
            twin = seen_nfc.setdefault(_nfc(path), path)
            if twin != path:
                self.warning(f"{path}: the same name as {twin!r} in another Unicode normalization; "
                             f"the two are one file on macOS")
            twin = seen_case.setdefault(_nfc(path).casefold(), path)
            if twin != path and _nfc(twin) != _nfc(path):
                self.warning(f"{path}: differs from {twin!r} only in case; the two are one file "
                             f"on Windows and macOS")
            if posixpath.basename(path) in _SYSTEM_FILES or posixpath.basename(path).startswith("._"):
                self.warning(f"{path}: an operating-system file, not a record")

    # -- fetch.txt ---------------------------------------------------------

    def read_fetch(self) -> None:
        """fetch.txt (section 2.2.3): ``url length filepath`` lines; the URL is absolute,
        the length a number or '-', the path a payload file listed in every payload manifest."""
        name = "fetch.txt"
        if not (self.bag / name).is_file():
            return
        listed = {manifest: {_nfc(p) for p in entries} for manifest, entries in self.payload.items()}
        for number, line in enumerate(self.read_tag_file(name) or [], 1):
            where = f"{name} line {number}"
            if not line.strip():
                continue
            match = _FETCH_LINE.fullmatch(line)
            if not match:
                self.problem(f"{where}: {line!r} is not 'url length filepath' (RFC 8493 section 2.2.3)")
                continue
            url, length, raw_path = match.groups()
            if not urlparse(url).scheme:
                self.problem(f"{where}: {url!r} is not an absolute URL (RFC 8493 section 2.2.3)")
            if length != "-" and not length.isdigit():
                self.problem(f"{where}: length {length!r} is neither a number nor '-' (RFC 8493 section 2.2.3)")
            path = self.file_path(raw_path, where, payload=True, section="2.2.3")
            if path is None:
                continue
            self.fetched.add(path)
            for manifest, paths in listed.items():
                if _nfc(path) not in paths:
                    self.problem(f"{where}: {path!r} is not listed in {manifest}; every fetched file "
                                 f"is (RFC 8493 section 2.2.3)")

    # -- data/ -------------------------------------------------------------

    def check_payload_directory(self) -> None:
        """The payload directory data/ (section 2.1.2)."""
        if not (self.bag / "data").is_dir():
            self.problem("data/: the payload directory is missing (RFC 8493 section 2.1.2)")

    # -- bagit-python ------------------------------------------------------

    def run_bagit_python(self) -> None:
        """Let bagit-python check the Payload-Oxum, completeness and (when hashing)
        every checksum (sections 2.2.2, 3), with what it logs routed into the report."""
        said: list[str] = []
        with _bagit_log_into(said):
            try:
                bag = bagit.Bag(str(self.bag))
            except Exception as e:  # bagit-python raises more than BagError on odd input
                self.bagit_stopped("could not open the bag", e)
            else:
                self.verify_with(bag)
        for message in said:
            if message not in self.explained:
                self.warning(f"bagit-python: {self.relative(message)}")

    def verify_with(self, bag: bagit.Bag) -> None:
        # bagit-python 1.9 reads paths in its own way (see the module docstring):
        # hand it the paths read above.
        entries: dict[str, dict[str, str]] = {}
        for name, listed in [*self.payload.items(), *self.tags.items()]:
            algorithm = name.split("-", 1)[1][:-len(".txt")]
            for path, checksum in listed.items():
                entries.setdefault(path.replace("/", os.sep), {})[algorithm] = checksum
        bag.entries = entries
        bag.normalized_manifest_names = {_nfc(p): p for p in entries}

        # bagit-python stops at the first failing stage, and the Payload-Oxum
        # comes before the checksums: check it alone first, then the rest without it.
        if bag.has_oxum() and self.oxum_well_formed:
            self.bagit_validate(bag, fast=True)
        bag.info.pop("Payload-Oxum", None)
        self.bagit_validate(bag, fast=False)
        if not self.hashing:
            self.check_listed_names_open(entries)

    def check_listed_names_open(self, entries: dict[str, dict[str, str]]) -> None:
        """Without hashing: every listed file opens by the very name its manifest gives.

        bagit-python's completeness check matches names in NFC, so a file listed
        in one Unicode normalization and stored in the other passes it, and only
        reading it for its checksum fails (RFC 8493 section 3).
        """
        for path in entries:
            if path.replace(os.sep, "/") in self.fetched or os.path.lexists(self.bag / path):
                continue
            missing = f"{path}: listed in a manifest but missing from the bag (RFC 8493 section 3)"
            if missing not in self.report.problems:
                self.problem(f"{path}: no file has this name; the bag has it only in another "
                             f"Unicode normalization, so it cannot be read (RFC 8493 section 3)")

    def bagit_validate(self, bag: bagit.Bag, fast: bool) -> None:
        try:
            bag.validate(processes=self.processes, fast=fast, completeness_only=not self.hashing)
        except bagit.BagValidationError as e:
            if e.details:
                for detail in e.details:
                    self.explained.add(str(detail))
                    self.problem(self.detail_line(detail))
            elif "Payload-Oxum" in e.message:
                self.problem(f"bag-info.txt: {e.message} (RFC 8493 section 2.2.2)")
            else:
                self.bagit_stopped("stopped", e)
        except Exception as e:
            self.bagit_stopped("stopped", e)

    def detail_line(self, detail: bagit.BagError) -> str:
        path = str(getattr(detail, "path", "")).replace(os.sep, "/")
        if isinstance(detail, bagit.ChecksumMismatch):
            if detail.found and not re.fullmatch(r"[0-9a-f]+", detail.found):
                return f"{path}: {self.relative(detail.found)}"  # bagit-python puts read errors here
            return (f"{path}: {detail.algorithm} checksum is {detail.found}, "
                    f"the manifest says {detail.expected} (RFC 8493 section 3)")
        if isinstance(detail, bagit.FileMissing):
            if path in self.fetched:
                return f"{path}: listed in fetch.txt but not fetched yet, so the bag is incomplete (RFC 8493 section 3)"
            return f"{path}: listed in a manifest but missing from the bag (RFC 8493 section 3)"
        if isinstance(detail, bagit.UnexpectedFile):
            return f"{path}: in the payload but not listed in any payload manifest (RFC 8493 section 3)"
        return self.relative(str(detail))

    def bagit_stopped(self, what: str, error: Exception) -> None:
        """bagit-python gave up before hashing. The cause is normally a problem
        already found above, so this only notes the checksums went unchecked."""
        message = self.relative(str(error)) or type(error).__name__
        note = f"bagit-python {what} ({message}), so {'no checksum was verified' if self.hashing else 'the bag is not known complete'}"
        where = self.bag.resolve().name
        if self.report.problems:
            self.warning(f"{where}: {note}")
        else:
            self.problem(f"{where}: {note}")

    def relative(self, message: str) -> str:
        """``message`` with the bag's own path taken out of the file names in it."""
        for root in {os.path.abspath(self.bag), str(self.bag.resolve())}:
            message = message.replace(root + os.sep, "").replace(root, self.bag.name)
        return message


@contextmanager
def _bagit_log_into(said: list[str]):
    """Collect what bagit-python logs at WARNING and above into ``said``, and keep it off stderr."""

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            said.append(record.getMessage())

    logger = bagit.LOGGER
    saved = logger.handlers[:], logger.propagate, logger.level
    logger.handlers = [Collect(logging.WARNING)]
    logger.propagate = False
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.handlers, logger.propagate, _ = saved
        logger.setLevel(saved[2])
