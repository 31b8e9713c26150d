"""Verify an image, or a medium read back from a drive, against what was recorded.

One sequential read (see :mod:`verification.onepass`) gives the image's
SHA-256 over exactly its recorded length (never the padding a drive or file
adds after it) and every file's SHA-256; then, each independent of the
others so that a report names every problem and not just the first:

1. the image hash against the inventory's record;
2. every payload file's hash against the inventory's record (which does
   not come from the disc), naming each damaged file, and for unreadable
   sectors the files they hit or "file system structures";
3. the bag against itself (RFC 8493): bagit.txt, every manifest line
   against the measured hashes and the files present, the tag manifest
   against the tag files, Payload-Oxum against the payload;
4. the Ed25519 signature of the tag manifest against the archive's own
   public key (not the copy on the disc).

An image hash that fails while every file passes means the damage is in
the file system structures (directories, volume descriptors) or padding.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import chain, compress, repeat
from operator import is_, mul, ne, not_, or_
from typing import Callable, Iterable, Iterator

from manifests import signing
from manifests.bag import PUBLIC_KEY_NAME, SIGNATURE_NAME, decode_manifest_path, encode_manifest_path
from manifests.catalog import CATALOG_NAME

from .onepass import SECTOR, Extent, _ImageReader, files_hit, hash_extents, ranges

Progress = Callable[[int, int], None]

# bagit-python logs what it finds as warnings; our reports carry the findings.
logging.getLogger("bagit").addHandler(logging.NullHandler())
logging.getLogger("bagit").propagate = False

TAG_MANIFEST = "tagmanifest-sha256.txt"
MANIFEST = "manifest-sha256.txt"


@dataclass
class Report:
    """The outcome of one verification.

    ``damaged`` lists (path in the bag, reason) for each payload file whose
    bytes do not match the record; ``problems`` holds every other finding as
    one line each. ``passed`` is True only when there is nothing in either.
    ``bad_sectors`` and ``slow_sectors`` are the drive's (first LBA, count)
    ranges from the read, ``retried_sectors`` how many read on a retry.
    ``file_sha256`` holds every file's measured SHA-256 and ``tag_bytes``
    the tag files' bytes, for the four-property check.
    """

    image_sha256: str | None = None
    image_ok: bool = False
    files_checked: int = 0
    damaged: list[tuple[str, str]] = field(default_factory=list)
    bag_ok: bool = False
    signature_ok: bool = False
    problems: list[str] = field(default_factory=list)
    bad_sectors: list[tuple[int, int]] = field(default_factory=list)
    slow_sectors: list[tuple[int, int]] = field(default_factory=list)
    retried_sectors: int = 0
    file_sha256: Mapping[str, str] = field(default_factory=dict, repr=False)
    tag_bytes: dict[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def passed(self) -> bool:
        return (self.image_ok and self.bag_ok and self.signature_ok
                and not self.damaged and not self.problems)

    def summary(self) -> str:
        """One line per finding, for the operator and the event log."""
        lines = [f"damaged: {p} ({why})" for p, why in self.damaged]
        return "; ".join(lines + self.problems) or "passed"


class FileTable:
    """The files of an image, one entry each, held as columns.

    ``paths`` (path in the bag), ``lbas`` (first 2048-byte sector),
    ``sizes`` (bytes) and ``sha256`` (the recorded SHA-256 in hex, None for
    a file whose hash the disc's own tag manifest gives); about 140 bytes a
    file besides its path, against about 300 as (Extent, hex) pairs.
    Iterating gives (:class:`Extent`, hex SHA-256 or None) pairs.
    """

    __slots__ = ("paths", "lbas", "sizes", "sha256")

    def __init__(self, paths: list[str] | None = None, lbas: Iterable[int] = (),
                 sizes: Iterable[int] = (), sha256: list[str | None] | None = None):
        self.paths: list[str] = paths if paths is not None else []
        self.lbas = array("q", lbas)
        self.sizes = array("q", sizes)
        self.sha256: list[str | None] = sha256 if sha256 is not None else []
        if not len(self.paths) == len(self.lbas) == len(self.sizes) == len(self.sha256):
            raise ValueError("a file table's columns differ in length")

    @classmethod
    def of_rows(cls, rows: Iterable[tuple[str, int, int, str | None]]) -> "FileTable":
        """A table from (path, first sector, size, hex SHA-256 or None) rows, e.g. a cursor's."""
        t = cls()
        paths, lbas, sizes, shas = t.paths.append, t.lbas.append, t.sizes.append, t.sha256.append
        for path, lba, size, sha256 in rows:
            paths(path)
            lbas(lba)
            sizes(size)
            shas(sha256 if sha256 is None else sha256.lower())
        return t

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[tuple[Extent, str | None]]:
        for path, lba, size, sha256 in zip(self.paths, self.lbas, self.sizes, self.sha256):
            yield Extent(path, lba, size), sha256


class LazyFileTable(FileTable):
    """A :class:`FileTable` whose rows are read on first use, from ``load()``'s rows.

    For :func:`verify`, which starts reading the image before it needs the
    table (see :attr:`Expected.first_byte`).
    """

    __slots__ = ("_load",)

    def __init__(self, load: Callable[[], Iterable[tuple[str, int, int, str | None]]]):
        self._load = load

    def __getattr__(self, name: str):
        if name not in FileTable.__slots__ or self._load is None:
            raise AttributeError(name)
        t = FileTable.of_rows(self._load())
        self._load = None
        for slot in FileTable.__slots__:
            setattr(self, slot, getattr(t, slot))
        return getattr(self, name)

    @property
    def loaded(self) -> bool:
        """Whether the rows were read."""
        return self._load is None


@dataclass(frozen=True)
class Expected:
    """What the inventory says an image holds.

    ``length`` in bytes and ``sha256`` of the image; ``files``: every file
    of the bag (payload and tag files) as a :class:`FileTable`, or given as
    (:class:`Extent`, recorded hex SHA-256 or None) pairs, which become one
    (None for tag files, whose hashes the tag manifest gives).
    """

    length: int
    sha256: str | None
    files: FileTable
    first_byte: int = 0
    """No file begins before this byte: the image's bytes before it (its file
    system structures) need no table (0: unknown)."""

    def __post_init__(self):
        if not isinstance(self.files, FileTable):
            object.__setattr__(self, "files", FileTable.of_rows(
                (e.path, e.lba, e.size, sha) for e, sha in self.files))

    @classmethod
    def of_rows(cls, length: int, sha256: str | None,
                rows: Iterable[tuple[str, int, int, str | None]]) -> "Expected":
        """From (path, first sector, size, hex SHA-256 or None) rows; see :class:`FileTable`."""
        return cls(length, sha256, FileTable.of_rows(rows))


class FileDigests(Mapping):
    """Measured SHA-256s (hex) as a read-only {path: hex} mapping; its index is built on first use."""

    def __init__(self, paths: list[str], digests: list[str | None]):
        self._paths, self._digests, self._index = paths, digests, None

    def _lookup(self) -> dict[str, int]:
        if self._index is None:
            self._index = {p: k for k, p in enumerate(self._paths) if self._digests[k] is not None}
        return self._index

    def __getitem__(self, path: str) -> str:
        return self._digests[self._lookup()[path]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._lookup())

    def __len__(self) -> int:
        return len(self._lookup())


_MANIFEST_LINE = re.compile(rb"([0-9a-fA-F]{64})[ \t]+(.+)")


def manifest_lines(data: bytes, name: str, problems: list[str]) -> Iterator[tuple[str, str]]:
    """A manifest's lines as (path, hex digest), in order (RFC 8493 section 2.1.3).

    Paths are percent-decoded (%25, %0A, %0D: :func:`manifests.bag.decode_manifest_path`).

    Lines that are not ``<64 hex digits><whitespace><path>`` in UTF-8 are
    reported in ``problems``, naming the manifest and the line number. Read
    line by line from the bytes: a manifest of 100,000 files is never held
    a second time as text or as a table.
    """
    match = _MANIFEST_LINE.fullmatch
    for n, line in enumerate(io.BytesIO(data), 1):
        m = match(line.rstrip(b"\r\n"))
        try:
            path = m.group(2).decode("utf-8") if m else None
        except UnicodeDecodeError:
            path = None
        if path is None:
            problems.append(f"{name} line {n} is not '<sha256> <path>' in UTF-8")
            continue
        yield (decode_manifest_path(path) if "%" in path else path), m.group(1).decode("ascii").lower()


def parse_manifest(data: bytes, name: str, problems: list[str]) -> dict[str, str]:
    """A manifest as {path: hex digest}; see :func:`manifest_lines`."""
    return dict(manifest_lines(data, name, problems))


def verify(chunks: Iterable[bytes], expected: Expected, public_key_pem: bytes,
           progress: Progress | None = None,
           bad: list[tuple[int, int]] | None = None, keep_catalog: bool = False) -> Report:
    """Verify an image's bytes, read once in order, against ``expected``.

    ``chunks`` are the image's bytes from byte 0 (a file, or a drive's
    read-back with zeros for unreadable sectors); ``bad`` the unreadable
    (first LBA, count) ranges the drive reported. ``keep_catalog`` keeps the
    disc's catalog's bytes in ``tag_bytes`` (for the four-property check).
    Never raises for bad content: every finding goes into the
    :class:`Report`. Memory: about 300 bytes a file besides its path.
    """
    report = Report()
    early = None
    if expected.first_byte and isinstance(expected.files, LazyFileTable) \
            and not expected.files.loaded:
        # read and hash the structures before the first file while the table is loaded
        early = _ImageReader(chunks, skip=expected.first_byte)
    try:
        table = expected.files
        paths, wants = table.paths, table.sha256
        n = len(paths)
        # Whole-table work is done in C (map, compress): for 100,000 files a
        # loop in Python would cost as much as hashing a tenth of the image.
        is_data = list(map(str.startswith, paths, repeat("data/")))
        tag_index = list(compress(range(n), map(not_, is_data)))
        tags = {k for k in tag_index if keep_catalog or paths[k] != CATALOG_NAME}  # the catalog can be large
        recorded = _RecordedManifest(paths, wants, is_data)
        starts = list(map(mul, table.lbas, repeat(SECTOR)))
    except BaseException:
        if early is not None:
            early.close()
        raise
    m = hash_extents(chunks, starts, table.sizes, tags,
                     progress, expected.length, idle=recorded.step, reader=early)
    got = m.digests
    report.image_sha256 = m.image_sha256
    report.file_sha256 = FileDigests(paths, got)
    report.tag_bytes = {paths[k]: data for k, data in m.captured.items()}
    if m.bytes_read < expected.length:
        report.problems.append(f"image ends after {m.bytes_read} of {expected.length} bytes")
    report.image_ok = (m.bytes_read == expected.length
                       and expected.sha256 in (None, m.image_sha256))
    if bad is None:
        bad = list(getattr(chunks, "bad", None) or [])   # a drive's reader lists them
    hit, elsewhere = files_hit(bad, (e for e, _ in table)) if bad else ({}, [])
    # Only files whose measured hash differs from the record, or was not measured, need a look.
    suspects = range(n) if hit else list(compress(range(n), map(or_, map(ne, got, wants),
                                                                 map(is_, got, repeat(None)))))
    for k in suspects:
        path, want, have = paths[k], wants[k], got[k]
        if have is None:
            report.damaged.append((path, "not read: the image ends before it"))
        elif path in hit:
            report.damaged.append((path, f"unreadable sectors {ranges(hit[path])}"))
        elif want is not None and have != want:
            report.damaged.append((path, "SHA-256 differs from the record"))
    report.files_checked = len(got) - got.count(None)
    if elsewhere:
        report.problems.append(f"unreadable sectors {ranges(elsewhere)} in file system "
                               "structures or padding")
    if not report.image_ok and m.bytes_read == expected.length:
        if report.damaged:
            report.problems.append("image SHA-256 differs from the record")
        else:
            report.problems.append("image SHA-256 differs from the record while every file "
                                   "matches: the file system structures are damaged")
    # The manifest is as written when every payload file matches its record
    # and the manifest's own SHA-256 is that of the lines written from the records.
    manifest = next((k for k in tag_index if paths[k] == MANIFEST), None)
    as_written = (not hit and manifest is not None and got[manifest] is not None
                  and not any(map(is_data.__getitem__, suspects)) and None not in got
                  and got[manifest] == recorded.hexdigest()) or None
    _check_bag(table, got, report.tag_bytes, report, already={p for p, _ in report.damaged},
               is_data=is_data, tag_index=tag_index, as_written=as_written)
    _check_signature(report.tag_bytes, public_key_pem, report)
    return report


class _RecordedManifest:
    """SHA-256 of the payload manifest as written from the recorded hashes, a block at a time.

    The bytes :func:`_manifest_as_written` compares with, made from the
    inventory's hashes (``wants``) instead of the measured ones, so that
    they can be hashed while the pass waits for the image's bytes
    (:meth:`step`, given to :func:`~verification.onepass.hash_extents` as
    ``idle``). When every payload file's measured hash equals its record,
    the manifest on the disc is as written exactly when its measured SHA-256
    equals :meth:`hexdigest`. Not possible (None) when a payload file has no
    recorded hash.
    """

    BLOCK = 1024   # lines a step: well under a millisecond

    def __init__(self, paths: list[str], wants: list[str | None], is_data: list[bool]):
        self._source = paths, wants, is_data
        self._paths: list[str] = []
        self._wants: list[str | None] = []
        self._h: "hashlib._Hash | None" = None
        self._k = 0
        self._done = False

    def step(self) -> bool:
        """Hash the next block of lines; False when there is nothing more to do."""
        if self._done:
            return False
        if self._h is None:
            paths, wants, is_data = self._source
            self._paths, self._wants = list(compress(paths, is_data)), list(compress(wants, is_data))
            self._h = hashlib.sha256()
            if None in self._wants:
                self._done, self._h = True, None
                self._source = None
                return False
            return True
        k, some = self._k, self._paths[self._k:self._k + self.BLOCK]
        wants = self._wants[k:k + self.BLOCK]
        text = "".join(chain.from_iterable(zip(wants, repeat("  "), some, repeat("\n"))))
        if "%" in text or "\r" in text or text.count("\n") != len(some):   # rare: encode
            text = "".join(f"{d}  {encode_manifest_path(p)}\n" for p, d in zip(some, wants))
        self._h.update(text.encode("utf-8"))
        self._k += self.BLOCK
        self._done = self._k >= len(self._paths)
        return not self._done

    def hexdigest(self) -> str | None:
        """The SHA-256 (hex), finishing the blocks not yet hashed; None when not possible."""
        while self.step():
            pass
        return self._h.hexdigest() if self._h is not None else None


def _manifest_as_written(manifest: bytes, table: FileTable, got: list[str | None],
                         is_data: list[bool] | None = None) -> bool:
    """Whether ``manifest`` is, byte for byte, the payload's measured hashes as written.

    The manifest write_tag_files makes: ``<hex>  <path>`` per payload file
    in the table's order, paths percent-encoded where RFC 8493 asks.
    True means every line matches its file and every payload file is
    listed, with no need to parse it; False says nothing (the full check
    then finds what differs). Compared 4,096 lines at a time; ``is_data``
    (whether each path starts with ``data/``) is worked out when not given.
    """
    if None in got:
        return False
    if is_data is None:
        is_data = list(map(str.startswith, table.paths, repeat("data/")))
    paths, digests = list(compress(table.paths, is_data)), list(compress(got, is_data))
    pos = 0
    for k in range(0, len(paths), 4096):
        some = paths[k:k + 4096]
        text = "".join(chain.from_iterable(zip(digests[k:k + 4096], repeat("  "), some,
                                               repeat("\n"))))
        if "%" in text or "\r" in text or text.count("\n") != len(some):   # rare: encode
            text = "".join(f"{d}  {encode_manifest_path(p)}\n"
                           for p, d in zip(some, digests[k:k + 4096]))
        block = text.encode("utf-8")
        if not manifest.startswith(block, pos):
            return False
        pos += len(block)
    return pos == len(manifest)


def _check_bag(table: FileTable, got: list[str | None], tags: dict[str, bytes],
               report: Report, already: set[str], is_data: list[bool] | None = None,
               tag_index: list[int] | None = None, as_written: bool | None = None) -> None:
    """RFC 8493 checks from the measured hashes and the tag files' bytes.

    Files in ``already`` (reported damaged) are not reported again here.
    ``is_data`` (per file, whether its path starts with ``data/``) and
    ``tag_index`` (the indices of the others) are worked out when not given;
    ``as_written`` True says the manifest is known to be the measured
    hashes as written (see :func:`_manifest_as_written`).
    """
    before = len(report.problems)
    if is_data is None:
        is_data = list(map(str.startswith, table.paths, repeat("data/")))
    if tag_index is None:
        tag_index = list(compress(range(len(is_data)), map(not_, is_data)))
    if tags.get("bagit.txt", b"").splitlines()[:1] != [b"BagIt-Version: 1.0"]:
        report.problems.append("bag: bagit.txt is missing or does not declare BagIt 1.0")
    payload_files = sum(is_data)
    payload_bytes = sum(compress(table.sizes, is_data))
    manifest = tags.get(MANIFEST, b"")
    if not (as_written or _manifest_as_written(manifest, table, got, is_data)):
        measured = report.file_sha256
        unlisted = {p for p in table.paths if p.startswith("data/")}   # shares the strings
        for path, digest in manifest_lines(manifest, MANIFEST, report.problems):
            if path in unlisted:
                unlisted.discard(path)
                if path not in already and measured.get(path) not in (None, digest):
                    report.problems.append(f"bag: {path} does not match {MANIFEST}")
            elif path not in measured:
                report.problems.append(f"bag: {path} is in {MANIFEST} but not on the disc")
        for path in sorted(unlisted):
            report.problems.append(f"bag: {path} is on the disc but not in {MANIFEST}")
    tag_digests = {table.paths[k]: got[k] for k in tag_index if got[k] is not None}
    tagmanifest = parse_manifest(tags.get(TAG_MANIFEST, b""), TAG_MANIFEST, report.problems)
    for path, digest in tagmanifest.items():
        mine = report.file_sha256.get(path) if path.startswith("data/") else tag_digests.get(path)
        if path not in already and mine != digest:
            report.problems.append(f"bag: tag file {path} does not match {TAG_MANIFEST}")
    info = parse_bag_info(tags.get("bag-info.txt", b""))
    oxum = f"{payload_bytes}.{payload_files}"
    if info.get("Payload-Oxum") != oxum:
        report.problems.append(f"bag: Payload-Oxum {info.get('Payload-Oxum')!r} does not match "
                               f"the payload ({oxum})")
    report.bag_ok = len(report.problems) == before and not report.damaged


def parse_bag_info(data: bytes) -> dict[str, str]:
    """bag-info.txt's fields (RFC 8493 section 2.2.2); continuation lines are ignored."""
    info: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        label, sep, value = line.partition(":")
        if sep and not line[:1].isspace():
            info[label.strip()] = value.strip()
    return info


def _check_signature(tags: dict[str, bytes], public_key_pem: bytes, report: Report) -> None:
    if TAG_MANIFEST not in tags or SIGNATURE_NAME not in tags:
        report.problems.append("signature or tag manifest missing from the disc")
        return
    report.signature_ok = signing.verify(public_key_pem, tags[TAG_MANIFEST], tags[SIGNATURE_NAME])
    if not report.signature_ok:
        report.problems.append("tag manifest signature does not verify with the archive's key")
    if tags.get(PUBLIC_KEY_NAME, public_key_pem) != public_key_pem:
        report.problems.append("the public key on the disc is not the archive's key")
