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
import threading
import time
from typing import Callable

from burners import DriveError
from burners.base import MediumStatus
from config import Config
from inventory.store import Inventory, utcnow
from mastering.iso import Image
from verification.readback import Expected, Report, verify

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
    """One copy to make: its disc ID, copy label and drive.

    ``second_reader()`` gives the drive for a second read of a file-backed
    medium: a fresh drive object of another configured drive (so it never
    shares state with that drive's own thread), or of this one.
    """

    def __init__(self, disc_id: str, label: str, drive, second_reader=None):
        self.disc_id, self.label, self.drive = disc_id, label, drive
        self.second_reader = second_reader or (lambda: drive)
        self.state, self.why = "failed", None


def burn_copies(cfg: Config, copies: list[Copy], set_id: str, media: str, image: Image,
                expected: Expected, public_pem: bytes, ui) -> None:
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
                                           public_pem, ui)
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
              expected: Expected, public_pem: bytes, ui) -> tuple[str, str | None]:
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
        label = _fresh_label(drive, disc_id)
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
    report = read_back(drive, burned.medium_path, expected, public_pem,
                       ui.progress(f"read back {copy.label}"))
    if not report.passed:
        # A disc is called bad only after a second read, in another drive where one
        # can take the medium (file-backed media), else again in the same drive.
        record_fixity(inv, disc_id, set_id, drive.name, report, first=False, read=1)
        ui.note(f"{disc_id}: first read-back failed ({report.summary()}); reading it again")
        second = copy.second_reader() if burned.medium_path else drive
        report = read_back(second, burned.medium_path, expected, public_pem,
                           ui.progress(f"read again {copy.label}"))
        record_fixity(inv, disc_id, set_id, second.name, report, first=True, read=2)
    else:
        record_fixity(inv, disc_id, set_id, drive.name, report, first=True)
    if report.passed:
        return "verified", None
    ui.note(f"{disc_id}: verification failed: {report.summary()}")
    return "failed", report.summary()


def _fresh_label(drive, disc_id: str) -> str:
    """The label of the next blank medium for a copy: the disc ID, then ``<disc ID>~2``...

    For a file-backed drive, the first label whose medium file is absent or
    empty (a coaster from an earlier run keeps its file); a real drive's
    medium needs no file name.
    """
    n = 1
    while drive.media_dir:
        label = disc_id if n == 1 else f"{disc_id}~{n}"
        path = os.path.join(drive.media_dir, label + ".medium")
        if not os.path.exists(path) or os.path.getsize(path) == 0:
            return label
        n += 1
    return disc_id


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


def read_back(drive, medium_path: str | None, expected: Expected, public_pem: bytes,
              progress: Callable[[int, int], None], keep_catalog: bool = False) -> Report:
    """Read a medium back in full, once, in order, and verify it (verification.readback).

    Unreadable sectors come from the drive as zeros and are mapped to the
    files they hit; a drive that cannot read at all gives a failed report.
    """
    try:
        drive.load(medium_path)
        reader = drive.read(expected.length, progress)
        report = verify(reader, expected, public_pem, keep_catalog=keep_catalog)
    except DriveError as exc:
        report = Report()
        report.problems.append(f"read-back failed: {exc}")
        return report
    report.bad_sectors = list(reader.bad)
    report.slow_sectors = list(reader.slow)
    report.retried_sectors = reader.retried
    return report


def record_fixity(inv: Inventory, disc_id: str, set_id: str, drive_name: str, report: Report,
                  first: bool, state: str | None = None, read: int = 1) -> None:
    """Record a verification's outcome, with its fixity check event (one per read).

    The read-back after burning makes a copy ``verified`` or ``failed``
    (``first``); a later one moves a ``verified`` copy to ``damaged`` (or
    back). ``read`` numbers the reads of one check (a second read follows a
    failed first one); each read's result is kept in its event, per drive.
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
        "detail": {"drive": drive_name, "read": read, "image_sha256": report.image_sha256,
                   "files_checked": report.files_checked,
                   "damaged": [p for p, _ in report.damaged], "problems": report.problems,
                   "bad_sectors": report.bad_sectors, "slow_sectors": report.slow_sectors,
                   "retried_sectors": report.retried_sectors}},
        **fields)
