"""Verify an image, or a medium read back from a drive, against what was recorded.

Four checks, each independent of the others so that a report names every
problem, not just the first:

1. the image's SHA-256 over exactly its recorded length (never the padding a
   drive or file adds after it), against the inventory's record;
2. every payload file's SHA-256, read through the UDF tree, against the
   inventory's record (which does not come from the disc);
3. the bag, extracted, validated by bagit-python (RFC 8493: manifests,
   tag manifest, Payload-Oxum);
4. the Ed25519 signature of the tag manifest, against the archive's own
   public key (not the copy on the disc).

This stage extracts the bag into a scratch folder to validate it with
bagit-python; the scratch folder is removed afterwards.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import bagit
import pycdlib
from pycdlib import pycdlibexception

from manifests import signing
from manifests.bag import PUBLIC_KEY_NAME, SIGNATURE_NAME

Progress = Callable[[int, int], None]

# bagit-python logs what it finds as warnings; our Report carries the findings.
logging.getLogger("bagit").addHandler(logging.NullHandler())
logging.getLogger("bagit").propagate = False


@dataclass
class Report:
    """The outcome of one verification.

    ``damaged`` lists (path in the bag, reason) for each payload file whose
    bytes do not match the record; ``problems`` holds every other finding as
    one line each. ``passed`` is True only when there is nothing in either.
    ``bad_sectors`` and ``slow_sectors`` are the drive's (first LBA, count)
    ranges from the read, ``retried_sectors`` how many read on a retry.
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

    @property
    def passed(self) -> bool:
        return (self.image_ok and self.bag_ok and self.signature_ok
                and not self.damaged and not self.problems)

    def summary(self) -> str:
        """One line per finding, for the operator and the event log."""
        lines = [f"damaged: {p} ({why})" for p, why in self.damaged]
        return "; ".join(lines + self.problems) or "passed"


class _HashingSink:
    """A write-only file object that hashes what it is given and copies it to ``out``."""

    def __init__(self, out):
        self.out = out
        self.h = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.h.update(data)
        self.out.write(data)
        return len(data)


def copy_to_file(chunks: Iterable[bytes], dest: Path) -> None:
    """Write a stream of chunks (e.g. a drive's read-back) to ``dest``."""
    with open(dest, "wb") as f:
        for chunk in chunks:
            f.write(chunk)


def image_sha256(path: Path, length: int, progress: Progress | None = None) -> tuple[str, int]:
    """SHA-256 (hex) of a file's first ``length`` bytes, and how many there were."""
    h = hashlib.sha256()
    done = 0
    with open(path, "rb") as f:
        while done < length:
            chunk = f.read(min(1 << 20, length - done))
            if not chunk:
                break
            h.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, length)
    return h.hexdigest(), done


def _udf_files(iso: pycdlib.PyCdlib) -> list[str]:
    """Every file's path in the UDF tree, relative to the root.

    pycdlib's own ``walk`` mis-decodes the paths below a folder whose name
    needs 16-bit OSTA characters (Chinese), so names are decoded here with
    the encoding each File Identifier Descriptor declares (ECMA-167 4/14.4).
    """
    out: list[str] = []
    stack = [""]
    while stack:
        base = stack.pop()
        for child in iso.list_children(udf_path="/" + base):
            ident = getattr(child, "file_ident", None)
            if child is None or ident is None or ident.is_parent():
                continue
            name = ident.fi.decode(ident.encoding or "latin-1")
            path = f"{base}/{name}" if base else name
            (stack.append if child.is_dir() else out.append)(path)
    return sorted(out)


def verify_image(image: Path, length: int, expected_sha256: str | None,
                 expected_files: dict[str, str], public_key_pem: bytes, scratch: Path,
                 progress: Progress | None = None) -> Report:
    """Check an image file (a mastered image or a medium read back) in full.

    ``length`` is the image's recorded size in bytes; ``expected_files`` maps
    each payload path in the bag (``data/...``) to its recorded SHA-256;
    ``public_key_pem`` is the archive's own public key. ``scratch`` is a
    folder that may be created and is removed again. Never raises for bad
    content: everything found goes into the :class:`Report`.
    """
    report = Report()
    report.image_sha256, got = image_sha256(image, length, progress)
    if got < length:
        report.problems.append(f"image ends after {got} of {length} bytes")
    report.image_ok = got == length and (expected_sha256 is None
                                         or report.image_sha256 == expected_sha256)
    if got == length and not report.image_ok:
        report.problems.append("image SHA-256 differs from the record")
    bag_dir = scratch / "bag"
    shutil.rmtree(scratch, ignore_errors=True)
    bag_dir.mkdir(parents=True)
    try:
        _extract_and_check(image, bag_dir, expected_files, report)
        if report.problems and not report.files_checked:
            return report
        _check_bag(bag_dir, report)
        _check_signature(bag_dir, public_key_pem, report)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return report


def _extract_and_check(image: Path, bag_dir: Path, expected: dict[str, str], report: Report) -> None:
    iso = pycdlib.PyCdlib()
    try:
        with open(image, "rb") as fp:
            iso.open_fp(fp)
            found = set()
            for path in _udf_files(iso):
                found.add(path)
                dest = bag_dir / path
                dest.parent.mkdir(parents=True, exist_ok=True)
                with open(dest, "wb") as out:
                    sink = _HashingSink(out)
                    try:
                        iso.get_file_from_iso_fp(sink, udf_path="/" + path)
                    except (pycdlibexception.PyCdlibException, OSError) as exc:
                        report.damaged.append((path, f"unreadable: {exc}"))
                        continue
                report.files_checked += 1
                want = expected.get(path)
                if want is not None and sink.h.hexdigest() != want:
                    report.damaged.append((path, "SHA-256 differs from the record"))
            for path in sorted(set(expected) - found):
                report.damaged.append((path, "missing from the disc"))
            extra = sorted(p for p in found - set(expected) if p.startswith("data/"))
            if extra:
                report.problems.append(f"{len(extra)} payload file(s) not in the record: {extra[0]}")
            iso.close()
    except Exception as exc:  # noqa: BLE001 - a damaged image may break pycdlib anywhere
        report.problems.append(f"file system structures unreadable: {type(exc).__name__}: {exc}")


def _check_bag(bag_dir: Path, report: Report) -> None:
    try:
        bagit.Bag(str(bag_dir)).validate(processes=1)
        report.bag_ok = True
    except bagit.BagValidationError as exc:
        details = "; ".join(str(d) for d in (exc.details or [])[:5])
        report.problems.append(f"bag invalid: {exc.message}{': ' + details if details else ''}")
    except bagit.BagError as exc:
        report.problems.append(f"bag invalid: {exc}")


def _check_signature(bag_dir: Path, public_key_pem: bytes, report: Report) -> None:
    tm = bag_dir / "tagmanifest-sha256.txt"
    sig = bag_dir / SIGNATURE_NAME
    if not tm.is_file() or not sig.is_file():
        report.problems.append("signature or tag manifest missing from the disc")
        return
    report.signature_ok = signing.verify(public_key_pem, tm.read_bytes(), sig.read_bytes())
    if not report.signature_ok:
        report.problems.append("tag manifest signature does not verify with the archive's key")
    disc_key = bag_dir / PUBLIC_KEY_NAME
    if disc_key.is_file() and disc_key.read_bytes() != public_key_pem:
        report.problems.append("the public key on the disc is not the archive's key")
