"""Replication (PREMIS): burn a set's copies, each in its drive, and read every one back.

Copies go to the configured drives in turn (A to the first, B to the
second...); each drive burns its copies one after another, and the drives
work at the same time, so a failure in one never stops another.

A copy's life in the inventory, each step committed before the next starts:

1. its ``discs`` row, ``burning``, before any drive is touched;
2. per attempt, a ``burns`` row when the burn starts, completed with the
   outcome (and for a coaster its failure class and message) when it ends,
   with a replication event;
3. ``burned`` with its medium and due date, then ``verified`` or
   ``failed`` with a fixity check event after the read-back.

Retry policy: an OPC (power calibration) failure is retried once at the
lowest speed on the same medium; after a failure of a class in
:data:`DriveError.RETRY_ON_NEW_MEDIUM` the copy is burned again on the next
blank medium, up to ``burn_attempts`` media. A file-backed drive loads the
next medium itself; for a real drive the operator is asked to insert one,
and without an operator at a terminal the copy stays failed.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Callable

from burners import DriveError
from burners.base import MediumStatus
from config import Config
from inventory.store import Inventory, utcnow
from mastering.iso import Image
from verification.readback import Report, verify_image

MEDIUM_FAMILY = {"cd-r": "CD", "dvd-r": "DVD-R", "dvd+r": "DVD+R", "dvd-r-dl": "DVD-R",
                 "dvd+r-dl": "DVD+R", "bd-r": "BD", "bd-r-dl": "BD", "bd-r-xl": "BD"}
"""The start of the medium type a drive must report for each medium profile."""


def due_date(burned: dt.date, years: int) -> dt.date:
    """The re-burn due date: ``years`` after the burn date (29 Feb -> 28 Feb)."""
    try:
        return burned.replace(year=burned.year + years)
    except ValueError:
        return burned.replace(year=burned.year + years, day=28)


def check_medium(drive_name: str, status: MediumStatus, media: str, sectors: int) -> None:
    """Refuse a loaded medium that is not a blank of the right kind and size.

    ``media`` is the job's medium profile (``dvd-r``...); a drive that reports
    an optical medium type (CD..., DVD..., BD...) must report the profile's
    kind; file media (``stdio file``) fit any profile. Raises DriveError
    ``incompatible-medium`` or ``medium-too-small``.
    """
    kind = (status.medium_type or "").upper()
    want = MEDIUM_FAMILY.get(media.split(":")[0])
    if want and kind[:2] in ("CD", "DV", "BD") and not kind.startswith(want):
        raise DriveError(f"drive {drive_name} holds a {status.medium_type} but this job burns "
                         f"{media}: insert a blank {media.upper()}", "incompatible-medium")
    if status.free_sectors < sectors:
        raise DriveError(f"the medium in drive {drive_name} has {status.free_sectors} free "
                         f"sectors, the image needs {sectors}: insert a larger blank medium",
                         "medium-too-small")


class Copy:
    """One copy to make: its disc ID, copy label and drive."""

    def __init__(self, disc_id: str, label: str, drive):
        self.disc_id, self.label, self.drive = disc_id, label, drive
        self.state, self.why = "failed", None


def burn_copies(cfg: Config, copies: list[Copy], set_id: str, media: str, image: Image,
                expected: dict[str, str], public_pem: bytes, work: Path, ui) -> None:
    """Burn and verify ``copies``: one thread per drive, the drives side by side.

    Sets each copy's ``state`` (``verified`` | ``failed``) and ``why``.
    Each thread keeps its own inventory connection (SQLite, WAL). An
    unexpected error in one drive's thread is raised after all threads end.
    """
    by_drive: dict[str, list[Copy]] = {}
    for c in copies:
        by_drive.setdefault(c.drive.name, []).append(c)
    errors: list[BaseException] = []

    def run(group: list[Copy]) -> None:
        inv = Inventory.open(cfg.inventory_path)
        try:
            for c in group:
                c.state, c.why = burn_copy(cfg, inv, c, set_id, media, image, expected,
                                           public_pem, work, ui)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)
        finally:
            inv.close()

    threads = [threading.Thread(target=run, args=(g,), name=f"drive-{name}")
               for name, g in by_drive.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def burn_copy(cfg: Config, inv: Inventory, copy: Copy, set_id: str, media: str, image: Image,
              expected: dict[str, str], public_pem: bytes, work: Path,
              ui) -> tuple[str, str | None]:
    """Burn one copy (with the retry policy) and read it back.

    Returns (``verified`` | ``failed``, the reason for a failure).
    """
    drive, disc_id = copy.drive, copy.disc_id
    inv.add_disc({"disc_id": disc_id, "set_id": set_id, "copy_label": copy.label,
                  "medium": media, "drive": drive.name, "adapter": drive.adapter,
                  "state": "burning", "image_sha256": image.sha256,
                  "image_sectors": image.sectors})
    last: DriveError | None = None
    burned = None
    for n in range(1, cfg.burn_attempts + 1):
        label = disc_id if n == 1 else f"{disc_id}~{n}"
        if n > 1 and not drive.media_dir and not ui.request_blank(drive.name, disc_id):
            break
        try:
            burned = _burn_on_new_medium(inv, drive, disc_id, set_id, label, media, image, ui,
                                         copy.label)
            break
        except DriveError as exc:
            last = exc
            ui.note(f"{disc_id}: burn failed in drive {drive.name}: {exc}")
            if exc.failure_class not in DriveError.RETRY_ON_NEW_MEDIUM:
                break
    if burned is None:
        assert last is not None
        inv.update_disc(disc_id, state="failed", failure=str(last),
                        failure_class=last.failure_class)
        return "failed", str(last)
    today = dt.datetime.now(dt.timezone.utc).date()
    inv.update_disc(disc_id, state="burned", burned_at=utcnow(), medium_path=burned.medium_path,
                    burn_seconds=round(burned.seconds, 3), speed=burned.speed,
                    due_at=due_date(today, cfg.reburn_years).isoformat())
    report = read_back(drive, burned.medium_path, image.size, image.sha256, expected,
                       public_pem, work / f"readback-{copy.label}",
                       ui.progress(f"read back {copy.label}"))
    record_fixity(inv, disc_id, set_id, drive.name, report, first=True)
    if report.passed:
        return "verified", None
    ui.note(f"{disc_id}: verification failed: {report.summary()}")
    return "failed", report.summary()


def _burn_on_new_medium(inv: Inventory, drive, disc_id: str, set_id: str, label: str,
                        media: str, image: Image, ui, copy_label: str):
    """Load a blank medium and burn it; one OPC failure is retried at the lowest speed."""
    try:
        drive.load_blank(label)
        check_medium(drive.name, drive.status(), media, image.sectors)
    except DriveError as exc:
        inv.add_event("replication", "failure", set_id, disc_id,
                      {"drive": drive.name, "stage": "before writing",
                       "class": exc.failure_class, "message": str(exc)})
        raise
    medium_path = os.path.join(drive.media_dir, label + ".medium") if drive.media_dir else None
    try:
        return _attempt(inv, drive, disc_id, set_id, medium_path, image, None, ui, copy_label)
    except DriveError as exc:
        if exc.failure_class != "calibration":
            raise
        ui.note(f"{disc_id}: power calibration failed; trying once more at the lowest speed")
        return _attempt(inv, drive, disc_id, set_id, medium_path, image, "min", ui, copy_label)


def _attempt(inv: Inventory, drive, disc_id: str, set_id: str, medium_path: str | None,
             image: Image, speed: str | None, ui, copy_label: str):
    """One burn, recorded in ``burns`` before it starts and after it ends."""
    attempt = len(inv.burns(disc_id)) + 1
    burn_id = inv.start_burn({"disc_id": disc_id, "set_id": set_id, "attempt": attempt,
                              "drive": drive.name, "adapter": drive.adapter,
                              "medium_path": medium_path, "requested_speed": speed,
                              "outcome": "started"})
    started = time.monotonic()
    try:
        burned = drive.burn(str(image.path), ui.progress(f"burn {copy_label}"), speed=speed)
    except DriveError as exc:
        inv.end_burn(burn_id, outcome="failed", failure_class=exc.failure_class,
                     message=str(exc), seconds=round(time.monotonic() - started, 3))
        inv.add_event("replication", "failure", set_id, disc_id,
                      {"drive": drive.name, "attempt": attempt, "class": exc.failure_class,
                       "message": str(exc)})
        raise
    inv.end_burn(burn_id, outcome="success", medium_path=burned.medium_path,
                 medium_type=burned.medium_type, medium_id=burned.medium_id,
                 speed=burned.speed, tool_version=burned.tool_version,
                 seconds=round(burned.seconds, 3))
    inv.add_event("replication", "success", set_id, disc_id,
                  {"drive": drive.name, "attempt": attempt, "speed": burned.speed,
                   "requested_speed": speed, "medium_type": burned.medium_type,
                   "medium_id": burned.medium_id, "tool_version": burned.tool_version,
                   "seconds": round(burned.seconds, 3)})
    return burned


def read_back(drive, medium_path: str | None, length: int, image_sha: str,
              expected: dict[str, str], public_pem: bytes, scratch: Path,
              progress: Callable[[int, int], None]) -> Report:
    """Read a medium in ``drive`` back in full and verify it (see verification.readback).

    Unreadable sectors (given as zeros by the drive) are named in the
    report's problems as LBA ranges; the files they hit fail their hashes.
    """
    scratch.mkdir(parents=True, exist_ok=True)
    copy = scratch.parent / (scratch.name + ".img")
    try:
        drive.load(medium_path)
        reader = drive.read(length, progress)
        with open(copy, "wb") as f:
            for chunk in reader:
                f.write(chunk)
    except DriveError as exc:
        copy.unlink(missing_ok=True)
        shutil.rmtree(scratch, ignore_errors=True)
        report = Report()
        report.problems.append(f"read-back failed: {exc}")
        return report
    try:
        report = verify_image(copy, length, image_sha, expected, public_pem, scratch)
    finally:
        copy.unlink(missing_ok=True)
    if reader.bad:
        count = sum(n for _, n in reader.bad)
        ranges = ", ".join(f"{a}-{a + n - 1}" if n > 1 else str(a) for a, n in reader.bad[:5])
        report.problems.append(f"{count} unreadable sector(s) at LBA {ranges}"
                               f"{' ...' if len(reader.bad) > 5 else ''}")
    report.bad_sectors = list(reader.bad)
    report.slow_sectors = list(reader.slow)
    report.retried_sectors = reader.retried
    return report


def record_fixity(inv: Inventory, disc_id: str, set_id: str, drive_name: str, report: Report,
                  first: bool, state: str | None = None) -> None:
    """Record a verification's outcome on the disc, with its fixity check event.

    The first read-back after burning makes a copy ``verified`` or ``failed``;
    a later one moves a ``verified`` copy to ``damaged`` (or back).
    """
    fields = {"verified_at": utcnow(), "verification": "passed" if report.passed else "failed",
              "failure": None if report.passed else report.summary()}
    if first:
        fields["state"] = "verified" if report.passed else "failed"
        if not report.passed:
            fields["failure_class"] = "verification"
    elif state in ("verified", "damaged"):
        fields["state"] = "verified" if report.passed else "damaged"
    inv.update_disc(disc_id, event={
        "event_type": "fixity check", "outcome": "success" if report.passed else "failure",
        "set_id": set_id,
        "detail": {"drive": drive_name, "image_sha256": report.image_sha256,
                   "files_checked": report.files_checked,
                   "damaged": [p for p, _ in report.damaged], "problems": report.problems,
                   "bad_sectors": report.bad_sectors, "slow_sectors": report.slow_sectors,
                   "retried_sectors": report.retried_sectors}},
        **fields)
