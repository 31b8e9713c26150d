"""The operator in the loop: requests to insert a disc or a blank medium, and their answers.

Discs are inserted by hand. When a job of the daemon needs a medium it
cannot load itself, it records a request (the ``requests`` table) and goes
on with other work; the request is shown by ``discarchive queue`` and, as an
alert, in the digest. At every tick the daemon looks at the drives named
by the waiting requests:

* ``disc`` (an inspection needs copy ``disc_id``, e.g. ``160-2025-S01-02-A``,
  of image ``set_id``, ``160-2025-S01-02``): once a disc is in the drive,
  it is recognised by its ISO 9660 volume ID (the image's ID, ECMA-119
  primary volume descriptor) and its disc description file (说明文件.txt,
  the tag file that names the disc set, the disc k of n and its item
  range; see :func:`check_description`). The right disc is inspected
  (:func:`daemon.lifecycle.inspect`: read back in full, its health signals
  recorded and judged); a wrong one gets a note on the request (nothing is
  read back or recorded for it);
* ``blank`` (copy ``disc_id`` of image ``set_id`` needs a new blank
  medium): once a blank medium is in the drive, that image's unverified
  copies are burned from its kept image (:func:`daemon.jobs.burn_set` on
  the one image, not its whole set); a written medium gets a note, never a
  write.

Copies A, B... of a disc hold the same image, so the volume ID tells the
disc, not the copy: the operator takes the copy named on the request (its
ID is written on the disc).

``state``: ``waiting`` -> ``done`` (``outcome`` says how it went) or
``cancelled`` (the job no longer needs it: the disc was verified meanwhile).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from typing import Any

from burners import SECTOR
from inventory.store import Inventory
from manifests.bag import DESCRIPTION_NAME

from .schedule import iso

PVD_OFFSET = 16 * 2048
"""Byte offset of the ISO 9660 primary volume descriptor (sector 16, ECMA-119 8.4)."""


def add(inv: Inventory, kind: str, drive: str, message: str, now: dt.datetime,
        disc_id: str | None = None, set_id: str | None = None,
        media: str | None = None) -> tuple[int, bool]:
    """Record a request unless the same one (kind, drive, disc) is waiting already.

    Returns (request ID, True if new). Committed on return.
    """
    with inv.transaction():
        row = inv.db.execute(
            "SELECT id FROM requests WHERE state = 'waiting' AND kind = ? AND drive = ? "
            "AND coalesce(disc_id, '') = coalesce(?, '')", [kind, drive, disc_id]).fetchone()
        if row:
            return row[0], False
        rid = inv.db["requests"].insert({
            "kind": kind, "drive": drive, "disc_id": disc_id, "set_id": set_id, "media": media,
            "message": message, "state": "waiting", "created_at": iso(now),
            "updated_at": iso(now), "note": None, "outcome": None}).last_pk
    return rid, True


def update(inv: Inventory, request_id: int, now: dt.datetime, **fields) -> None:
    """Change one request (``state``, ``note``, ``outcome``), committed."""
    with inv.transaction():
        inv.db["requests"].update(request_id, dict(fields, updated_at=iso(now)))


def waiting(inv: Inventory) -> list[dict[str, Any]]:
    """The waiting requests, oldest first."""
    return list(inv.db.query("SELECT * FROM requests WHERE state = 'waiting' ORDER BY id"))


def list_requests(inv: Inventory, everything: bool = False) -> list[dict[str, Any]]:
    """Waiting requests (``everything``: the done and cancelled ones too), oldest first."""
    where = "" if everything else "WHERE state = 'waiting' "
    return list(inv.db.query(f"SELECT * FROM requests {where}ORDER BY id"))


def volume_id(drive) -> str | None:
    """The ISO 9660 volume ID of the disc in ``drive`` (bytes 40-71 of its primary volume
    descriptor, trailing spaces removed), or None when sector 16 holds none (a blank or
    foreign disc). Raises DriveError when the disc cannot be read."""
    data = b"".join(drive.read(PVD_OFFSET + 2048))
    pvd = data[PVD_OFFSET:PVD_OFFSET + 2048]
    if len(pvd) < 72 or pvd[0:6] != b"\x01CD001":
        return None
    return pvd[40:72].decode("ascii", "replace").rstrip(" \0") or None


_NAMES = re.compile(r"^.*\bDisc set:[ \t]*(?P<set>\S+)[ \t]*$"
                    r"|^.*\bThis disc:[ \t]*(?P<disc>[^\s,]+)[^\n]*?"
                    r"(?:\(disc[ \t]+(?P<count>\d+ of \d+)\))?[ \t]*$"
                    r"|^.*\bItems:[ \t]*(?P<items>\S.*?)[ \t]*$", re.MULTILINE)
"""The lines of the description file (manifests.bag) that say which disc it is:
``Disc set:`` (the bag's Bag-Group-Identifier), ``This disc:`` (its
External-Identifier, and ``(disc k of n)``, its Bag-Count) and ``Items:``
(the first and last archival code on the disc)."""


def described(text: str) -> dict[str, str]:
    """What a description file's text names: ``set``, ``disc``, ``count`` (``k of n``),
    ``items`` (``FIRST to LAST``); a name it does not give is left out."""
    return {k: v for m in _NAMES.finditer(text) for k, v in m.groupdict().items() if v}


def read_extent(drive, lba: int, size: int) -> tuple[bytes, bool]:
    """The ``size`` bytes at sector ``lba`` of the disc in ``drive``, and whether a sector
    of them could not be read (given as zeros then).

    Only those sectors are read, through the drive's medium reader (its
    device node or medium file, with its retries: see
    :class:`burners._media.MediumFileReader`), so looking at a file near
    the end of a full BD-R costs a few sectors, not the disc. Raises
    DriveError when the disc cannot be read at all.
    """
    count = -(-size // SECTOR)
    reader = drive.read((lba + count) * SECTOR)
    with reader._open() as f:
        data = reader._read_sectors(f, lba, count)
    return data[:size], bool(reader.bad) or len(data) < size


def check_description(drive, inv: Inventory, set_id: str) -> tuple[bool, str]:
    """Whether the disc in ``drive`` is image ``set_id``'s by its description file: (ok, why).

    ``set_id`` is an image's ID (``disc_sets.set_id``, ``160-2025-S01-02``).
    The description file (:data:`manifests.bag.DESCRIPTION_NAME`) is read
    where the inventory recorded it (``disc_sets.tag_files``: first sector,
    size, SHA-256). Its SHA-256 as recorded: the disc is the one asked for.
    Otherwise not ok, and ``why`` says what the disc holds: the disc set,
    the disc (k of n) and the item range its description names
    (:func:`described`), or that it holds no description at all. Its
    sectors cannot be read: ok, as the volume ID already matched (a damaged
    disc is what an inspection is for; it records the damage). An image
    with no description recorded: ok on the volume ID alone. Raises
    DriveError when the disc cannot be read at all.
    """
    s = inv.disc_set(set_id)
    recorded = {name: (lba, size, sha) for name, lba, size, sha in
                json.loads((s or {}).get("tag_files") or "[]")}
    if DESCRIPTION_NAME not in recorded:
        return True, "no description file recorded for this disc: known by its volume ID"
    lba, size, sha = recorded[DESCRIPTION_NAME]
    data, unreadable = read_extent(drive, lba, size)
    if hashlib.sha256(data).hexdigest() == sha:
        return True, f"its {DESCRIPTION_NAME} is the one recorded"
    if unreadable:
        return True, f"its {DESCRIPTION_NAME} cannot be read in full (the inspection will " \
                     "tell the damage)"
    found = described(data.decode("utf-8", "replace"))
    if "set" not in found or "disc" not in found:
        return False, f"it holds no discarchive description file ({DESCRIPTION_NAME}) where " \
                      f"disc {set_id} has one"
    return False, (f"its description file ({DESCRIPTION_NAME}) names disc set {found['set']}, "
                   f"disc {found['disc']} ({found.get('count', '?')}), "
                   f"items {found.get('items', '?')}")
