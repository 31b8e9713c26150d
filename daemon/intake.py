"""Intake: the batches waiting in the configured source folders, and packing them.

Each folder directly inside a configured source folder (``[daemon] sources``)
is a *batch*: one delivery of records (a year's handover, a month's scans),
archived by one run of :func:`daemon.jobs.archive`, which makes a disc set
per fonds, year and side (收/支), each of as many discs (images) as it needs.
Deliver new records as a new batch folder; a batch is archived once (one
changed after that is logged, never archived over). The ``intake`` table
keeps each batch's state:

``pending`` -> ``packing`` (committed before the main job starts) ->
``archived`` (every copy of every image verified) | ``failed`` (a copy
failed, or the batch cannot be archived: see ``detail``).

``set_id`` holds the comma-separated IDs of the disc sets the batch made
(``disc_sets.group_id``, ``160-2024-S01,160-2024-Z01``), except while it is
``interrupted`` (below).

A daemon killed while a batch is ``packing`` finds, at the next scan, either
images the main job recorded for it (the batch becomes ``interrupted`` with
``set_id`` the comma-separated IDs of those images not yet archived, or
``archived`` if every one is; the daemon then finishes each image, see
:meth:`daemon.service.Daemon.finish_set`, and packs the batch again, so the
sets whose images were not yet recorded when it was killed are made: a run
records each set's images in one transaction, set after set, before it burns
the first) or none (nothing was recorded, so the batch is ``pending`` again
and is packed anew).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from config import Config, media_sectors
from inventory.store import Inventory

from .schedule import iso


@dataclass
class Batch:
    """One batch folder: its size in bytes, file count and newest change (aware UTC)."""

    path: str
    root: str
    bytes: int
    files: int
    newest: dt.datetime | None


def measure(path: Path) -> tuple[int, int, dt.datetime | None]:
    """(bytes, files, newest modification time) of every file below ``path``; read only."""
    size = files = 0
    newest = 0.0
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            try:
                st = os.stat(os.path.join(dirpath, name))
            except OSError:
                continue
            size += st.st_size
            files += 1
            newest = max(newest, st.st_mtime, st.st_ctime)
    return size, files, (dt.datetime.fromtimestamp(newest, dt.timezone.utc) if files else None)


def scan_sources(cfg: Config, inv: Inventory, now: dt.datetime, log) -> list[Batch]:
    """Look at every batch of the configured sources and update the ``intake`` table.

    Returns the batches that are ``pending`` after the look (see
    :func:`interrupted` for those whose packing was cut short). A missing
    source folder is logged (``intake.source_missing``) and skipped; a
    batch left ``packing`` by a killed daemon is settled as the module
    describes.
    """
    rows = {r["path"]: r for r in inv.db.query("SELECT * FROM intake")}
    pending = []
    for root in cfg.daemon.sources:
        rootp = Path(root)
        if not rootp.is_dir():
            log("intake.source_missing", "warning", source=root)
            continue
        for child in sorted(rootp.iterdir()):
            if not child.is_dir() or child.name.startswith("."):
                continue
            path = str(child.resolve())
            size, files, newest = measure(child)
            row = rows.get(path)
            if row is None:
                row = {"path": path, "source_root": root, "first_seen": iso(now),
                       "state": "pending"}
            elif row["state"] == "packing":
                row = dict(row, **_settle_interrupted(inv, path))
                log("intake.interrupted", "warning", batch=path, state=row["state"],
                    set_id=row.get("set_id"))
            elif row["state"] == "archived" and newest and row["newest_at"] and \
                    iso(newest) > row["newest_at"]:
                log("intake.changed_after_archiving", "warning", batch=path,
                    set_id=row["set_id"])
            if row["state"] == "pending":
                row.update(bytes=size, files=files, newest_at=iso(newest) if newest else None)
            row["last_scan"] = iso(now)
            with inv.transaction():
                inv.db["intake"].upsert(row, pk="path")
            if row["state"] == "pending" and files:
                pending.append(Batch(path, root, size, files, newest))
    return pending


def _settle_interrupted(inv: Inventory, path: str) -> dict:
    """The state of a batch whose packing was cut short, and the images recorded for it.

    ``interrupted``: ``set_id`` is the comma-separated IDs
    (``disc_sets.set_id``) of the batch's images that are not yet archived.
    ``archived`` (every recorded image is: a run records the images of all
    its sets before it burns the first): ``set_id`` is the batch's sets.
    ``pending``: nothing was recorded.
    """
    rows = images(inv, path)
    if not rows:
        return {"state": "pending", "detail": "packing was interrupted before anything was "
                "recorded: packed again"}
    open_ = [r["set_id"] for r in rows if r["state"] != "archived"]
    if not open_:
        return {"state": "archived", "set_id": ",".join(set_ids(inv, path)), "detail": None}
    return {"state": "interrupted", "set_id": ",".join(open_), "detail": None}


def images(inv: Inventory, path: str) -> list[dict]:
    """The images (``disc_sets`` rows) recorded from batch ``path``, in recording order."""
    return list(inv.db.query(
        "SELECT set_id, group_id, state FROM disc_sets WHERE source IN (?, ?) "
        "ORDER BY created_at, group_id, volume", [path, str(Path(path) / "data")]))


def set_ids(inv: Inventory, path: str) -> list[str]:
    """The IDs of the disc sets (``group_id``) made from batch ``path``, in recording order."""
    return list(dict.fromkeys(r["group_id"] or r["set_id"] for r in images(inv, path)))


def _why_waiting(cfg: Config, b: Batch, now: dt.datetime, deadline: bool,
                 deadline_at: dt.datetime | None = None) -> str | None:
    """None when batch ``b`` is packed now, else why it waits, in words."""
    settle = dt.timedelta(minutes=cfg.daemon.settle_minutes)
    fill = cfg.daemon.fill_share * media_sectors(cfg.media) * 2048
    if settle and (b.newest is None or b.newest > now - settle):
        return (f"changed at {iso(b.newest) if b.newest else 'an unknown time'}; packs once "
                f"unchanged for {cfg.daemon.settle_minutes} minutes")
    if deadline or b.bytes >= fill:
        return None
    share = 100 * b.bytes / (fill / cfg.daemon.fill_share) if fill else 0
    when = f" or at the deadline {deadline_at.date().isoformat()}" if deadline_at else ""
    return (f"{share:.0f} % of a {cfg.media}, packs at {100 * cfg.daemon.fill_share:.0f} %"
            f"{when}")


def ready(cfg: Config, batches: list[Batch], now: dt.datetime, deadline: bool) -> list[Batch]:
    """The batches to pack now: settled ones that fill the configured share of a medium,
    or at the deadline every settled one.

    Settled: unchanged for ``settle_minutes`` (0: always settled).
    """
    return [b for b in batches if _why_waiting(cfg, b, now, deadline) is None]


def waiting(cfg: Config, batches: list[Batch], now: dt.datetime, deadline: bool,
            deadline_at: dt.datetime | None = None) -> list[tuple[Batch, str]]:
    """The batches :func:`ready` leaves out, each with why it waits, e.g. ``12 % of a
    dvd-r, packs at 90 % or at the deadline 2027-01-31`` (``deadline_at``: the next
    deadline run, when one is scheduled) or that it changed too recently."""
    out = []
    for b in batches:
        why = _why_waiting(cfg, b, now, deadline, deadline_at)
        if why is not None:
            out.append((b, why))
    return out


def interrupted(inv: Inventory) -> list[dict]:
    """The batches whose packing was cut short after images of theirs were recorded."""
    return list(inv.db.query("SELECT * FROM intake WHERE state = 'interrupted' ORDER BY path"))


def mark(inv: Inventory, path: str, **fields) -> None:
    """Change one batch's row (committed)."""
    with inv.transaction():
        inv.db["intake"].update(path, fields)


def batches(inv: Inventory) -> list[dict]:
    """Every batch row, by path."""
    return list(inv.db.query("SELECT * FROM intake ORDER BY path"))
