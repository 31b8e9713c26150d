"""The disc lifecycle in the inventory: cabinet places, inspections, lineage, appraisal.

Pure inventory work (no drive is touched here; reading discs is
:mod:`daemon.lifecycle`'s). Every change is one transaction
(:meth:`Inventory._write`) together with its PREMIS event in the hash-chained
log, so a kill leaves either the old state or the new one:

- a move of a disc (``shelve``, ``checkout``, ``checkin``): ``transfer``;
- an inspection with its health signals: ``validation`` (outcome
  ``failure`` when the disc is flagged for an early re-burn);
- a re-burn: ``migration`` on the new disc (lineage: the disc it replaces,
  its generation, the source) and on the disc it supersedes;
- an appraisal decision: ``appraisal``.

Where a disc is: ``site`` (NULL on site, else the off-site store's name),
``cabinet`` (text, e.g. ``防磁柜1``), ``shelf`` and ``slot`` (whole numbers
from 1). A slot holds one disc (a unique index); a disc checked out keeps
its slot for its return.

IDs follow the README's scheme: a disc set ``160-2025-S01`` (``disc_sets.group_id``)
holds discs (images) ``160-2025-S01-02`` (``disc_sets.set_id``, disc ``volume``
of ``volumes``: Bag-Count "k of n"), each burned as copies ``160-2025-S01-02-A``
(``discs.disc_id``); a re-burned copy is ``160-2025-S01-02-A2`` (generation 2).
The listings here give every copy its set and ``volume``/``volumes`` (see
:func:`with_sets`), so a clerk sees which disc of which set a copy holds. An
image recorded before sets existed (``group_id`` NULL) is its own set of one.

Times are UTC: stored as ISO 8601 text (``2026-11-29T08:46:10Z``); the
``now`` and ``at`` parameters are :class:`datetime.datetime` (UTC) and
:class:`datetime.date`, so tests and rehearsals run on a fixed clock.

Retention (保管期限, DA/T 22-2015, MOHRSS/SAAC Order No. 3 of 2009) is
counted from 1 January of the year after the record was formed; 永久 never
ends. The product never deletes anything: an approved appraisal is a record
of a decision and a destruction register (销毁清册) for people to act on.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import re
from dataclasses import dataclass, fields
from typing import Any, Iterable, Iterator

from config import CATEGORY_ORDER, RETENTION_YEARS
from inventory.store import Inventory

CURRENT_STATES = ("verified", "damaged")
"""States of a copy that counts: burned, read back, and not superseded."""

BASE_SPEED_KBS = {"CD": 153.6, "DVD": 1385.0, "BD": 4495.625}
"""1x read speed of each medium family in kB/s (10^3 bytes per second)."""


class LifecycleError(Exception):
    """A lifecycle request that cannot be done as asked; the message says what to do."""


@dataclass(frozen=True)
class LifecycleSettings:
    """The ``[lifecycle]`` table of the config (see config/defaults.toml).

    ``inspect_percent``: share of the current discs inspected each year
    (GB/T 18894 asks for at least 10 % in 4 years; more is taken when needed
    to inspect every disc once per re-burn cycle). ``keep_superseded_years``:
    years a superseded disc is kept before it appears for appraisal.
    Thresholds for an early re-burn: more than ``max_bad_sectors``
    unreadable, ``max_retried_sectors`` retried or ``max_slow_sectors`` slow
    sectors (2048-byte sectors) in one inspection; an average read speed
    below ``min_read_speed`` times the medium's 1x speed, or one that fell by
    ``worsen_speed_percent`` % or more since the last inspection (speeds
    only count for reads of at least ``speed_min_seconds`` seconds, so a
    cached or file-backed read never does); any of the sector counts growing
    by ``worsen_sectors`` or more since the last inspection.
    """

    inspect_percent: float = 10.0
    keep_superseded_years: int = 3
    max_bad_sectors: int = 0
    max_retried_sectors: int = 16
    max_slow_sectors: int = 64
    min_read_speed: float = 1.0
    speed_min_seconds: float = 30.0
    worsen_sectors: int = 8
    worsen_speed_percent: float = 50.0

    @classmethod
    def from_table(cls, table: dict) -> "LifecycleSettings":
        """Settings from a parsed ``[lifecycle]`` table; ValueError naming a wrong key or value."""
        known = {f.name: f.type for f in fields(cls)}
        out = {}
        for key, value in table.items():
            if key not in known:
                raise ValueError(f"unknown setting {key!r}: check its spelling (known: "
                                 f"{', '.join(known)})")
            whole = known[key] == "int"
            if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
                raise ValueError(f"{key} must be {'a whole number' if whole else 'a number'}, "
                                 f"not {value!r}")
            if value < 0:
                raise ValueError(f"{key} must be 0 or more, not {value!r}")
            out[key] = value
        settings = cls(**out)
        if not 0 < settings.inspect_percent <= 100:
            raise ValueError("inspect_percent must be more than 0 and at most 100")
        return settings


# -- time ----------------------------------------------------------------------------

def stamp(now: dt.datetime | None = None) -> str:
    """``now`` (default: the clock) as stored: UTC, ISO 8601 with seconds and ``Z``."""
    now = now or dt.datetime.now(dt.timezone.utc)
    if now.tzinfo is not None:
        now = now.astimezone(dt.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def add_years(day: dt.date, years: int) -> dt.date:
    """``day`` plus whole years (29 February -> 28 February)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def _day(text: str | None) -> dt.date | None:
    return dt.date.fromisoformat(text[:10]) if text else None


# -- places --------------------------------------------------------------------------

def place(row: dict) -> str:
    """Where a disc row says the disc is, in words: ``cabinet 1, shelf 2, slot 3``...

    Off-site copies name their site; a copy checked out names who has it and
    since when. A copy not shelved yet is ``not shelved``, followed, when
    the row has them, by its medium file (a file-backed medium, with its
    drive) or the drive that burned it: where to look for a disc no one has
    put away. The one wording of a disc's place for
    the CLI, the pull lists, the daemon's requests and its alerts.
    """
    if row.get("cabinet") is None:
        where = "not shelved"
        path, drive = row.get("medium_path"), row.get("drive")
        if path and not str(path).startswith("/dev/"):
            where += f"; medium file {path}, drive {drive or '-'}"
        elif drive:
            where += f"; burned in drive {drive}"
    else:
        where = f"cabinet {row['cabinet']}, shelf {row['shelf']}, slot {row['slot']}"
        if row.get("site"):
            where = f"off-site at {row['site']}: {where}"
    if row.get("out_by"):
        where += f"; out with {row['out_by']} since {row['out_at'][:10]}"
    return where


def place_cn(row: dict) -> str:
    """Where a disc row says the disc is, in Chinese words for a register a clerk signs:
    ``防磁柜1 第2层 第3位`` (a cabinet name without 柜 gets it: ``1号柜``), off-site
    ``异地 <site>：...``, ``未上架`` when not shelved; a checked-out copy adds who has
    it and since when. Never a file path or a drive."""
    if row.get("cabinet") is None:
        where = "未上架"
    else:
        cab = str(row["cabinet"])
        cab = cab if "柜" in cab else f"{cab}号柜"
        where = f"{cab} 第{row['shelf']}层 第{row['slot']}位"
        if row.get("site"):
            where = f"异地 {row['site']}：{where}"
    if row.get("out_by"):
        where += f"（{row['out_at'][:10]}起借出：{row['out_by']}）"
    return where


@functools.lru_cache(maxsize=4096)
def _natural(text: str | None) -> tuple:
    """Sort key: numbers inside names by value (cabinet 2 before cabinet 10)."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p)
                 for p in re.split(r"(\d+)", text or "") if p)


def location_key(row: dict) -> tuple:
    """Pull-list order: on site first, then site, cabinet, shelf, slot; unshelved last."""
    shelved = row.get("cabinet") is not None
    return (not shelved, bool(row.get("site")), row.get("site") or "",
            _natural(row.get("cabinet")), row.get("shelf") or 0, row.get("slot") or 0,
            row["disc_id"])


def with_sets(inv: Inventory, rows: list[dict]) -> list[dict]:
    """Give each row (with a ``set_id``: an image ID) its set: ``group_id``, ``volume``, ``volumes``.

    One query for all the rows: by their image IDs (passed as one JSON
    array) when they are few, else over every image (a plain scan of
    ``disc_sets`` is then the cheaper). An image without a set (recorded
    before sets existed) is its own set of one disc. Returns ``rows``,
    changed in place.
    """
    ids = sorted({r["set_id"] for r in rows if r.get("set_id")})
    info = {}
    columns = "set_id, coalesce(group_id, set_id), coalesce(volume, 1), coalesce(volumes, 1)"
    if len(ids) > 200:
        info = {r[0]: r[1:] for r in inv.db.execute(f"SELECT {columns} FROM disc_sets")}
    elif ids:
        info = {r[0]: r[1:] for r in inv.db.execute(
            f"SELECT {columns} FROM disc_sets WHERE set_id IN (SELECT value FROM json_each(?))",
            [json.dumps(ids)])}
    for r in rows:
        group, volume, volumes = info.get(r.get("set_id"), (r.get("set_id"), 1, 1))
        r.update(group_id=group, volume=volume, volumes=volumes)
    return rows


def volume_text(row: dict) -> str:
    """Which disc of which set a row's image is: ``disc 2 of 3 of set 160-2025-S01``."""
    return f"disc {row.get('volume') or 1} of {row.get('volumes') or 1} of set " \
           f"{row.get('group_id') or row.get('set_id')}"


def _current_copies(inv: Inventory, image_id: str) -> list[str]:
    """The IDs of an image's current copies (else every copy not superseded), A first."""
    rows = [c for c in inv.copies(image_id) if c["state"] != "superseded"]
    current = [c["disc_id"] for c in rows if c["state"] in CURRENT_STATES]
    return current or [c["disc_id"] for c in rows]


def not_a_copy(inv: Inventory, given: str) -> str:
    """Why ``given`` names no disc copy, for a command that takes a copy ID
    (``160-2025-S01-02-A``): the error line's text.

    When ``given`` is a disc (image) ID it names that disc's copies
    (``160-2025-S01-02 is a disc; give one of its copies: 160-2025-S01-02-A,
    -B``); a disc set ID, the copies of its first disc; else the ID form the
    command takes.
    """
    image = inv.disc_set(given)
    if image is None:
        images = inv.group(given)
        if images:
            first = _current_copies(inv, images[0]["set_id"])
            return (f"{given} is a disc set of {len(images)} disc(s); give one disc copy, e.g. "
                    f"{first[0] if first else images[0]['set_id'] + '-A'} (see `discarchive "
                    "discs`)")
        return (f"no disc {given} in the inventory: give a disc copy ID such as "
                "160-2025-S01-02-A (see `discarchive discs`)")
    copies = _current_copies(inv, given)
    if not copies:
        return f"{given} is a disc with no copy burned: burn it with `discarchive burn {given}`"
    rest = [c[len(given):] if c.startswith(given + "-") else c for c in copies[1:]]
    return f"{given} is a disc; give one of its copies: {', '.join([copies[0]] + rest)}"


def not_a_set(inv: Inventory, given: str) -> str:
    """Why ``given`` names no disc set or disc, for a command that takes one (``burn``):
    the error line's text, naming the copy's disc when ``given`` is a copy ID."""
    copy = inv.disc(given)
    if copy is not None:
        return (f"{given} is a disc copy; give its disc {copy['set_id']} (or its set "
                f"{copy.get('group_id') or copy['set_id']}): the command takes a disc set or "
                "disc ID")
    return (f"no disc set {given} in the inventory: give a disc set ID (160-2025-S01) or a "
            "disc ID (160-2025-S01-02) (see `discarchive discs`)")


def _disc(inv: Inventory, disc_id: str) -> dict:
    row = inv.db.execute("SELECT * FROM discs WHERE disc_id = ?", [disc_id])
    names = [d[0] for d in row.description]
    found = row.fetchone()
    if found is None:
        raise LifecycleError(not_a_copy(inv, disc_id))
    return dict(zip(names, found))


def shelve(inv: Inventory, disc_id: str, cabinet: str, shelf: int, slot: int,
           site: str | None = None, agent: str = "discarchive",
           now: dt.datetime | None = None) -> dict:
    """Put a disc in a cabinet slot (on site, or off-site at ``site``); returns its old row.

    A disc already shelved moves. Raises LifecycleError for an unknown disc,
    a copy without a good medium (``burning``, ``failed``), a disc that is
    out (check it in first), a bad place, or a slot that holds another disc.
    """
    cabinet = (cabinet or "").strip()
    site = (site or "").strip() or None
    if not cabinet or shelf < 1 or slot < 1:
        raise LifecycleError("give a cabinet name and shelf and slot numbers from 1")
    for what, name in (("cabinet", cabinet), ("site", site or "")):
        if not name.isprintable():
            raise LifecycleError(f"the {what} name {name!r} holds a line break or control "
                                 f"character: give it as one line of plain text")
    with inv._write():
        disc = _disc(inv, disc_id)
        if disc["state"] in ("burning", "failed"):
            raise LifecycleError(f"disc {disc_id} is {disc['state']}: only a burned copy is "
                                 "shelved (a failed one is a coaster)")
        if disc["out_by"]:
            raise LifecycleError(f"disc {disc_id} is out with {disc['out_by']}: check it in "
                                 f"first (`discarchive checkin {disc_id}`)")
        taken = inv.db.execute(
            "SELECT disc_id FROM discs WHERE ifnull(site, '') = ? AND cabinet = ? AND shelf = ? "
            "AND slot = ? AND disc_id != ?", [site or "", cabinet, shelf, slot, disc_id]).fetchone()
        if taken:
            raise LifecycleError(f"{place({'site': site, 'cabinet': cabinet, 'shelf': shelf, 'slot': slot})} "
                                 f"holds disc {taken[0]}: choose another slot or move that disc first")
        when = stamp(now)
        inv.db["discs"].update(disc_id, {"site": site, "cabinet": cabinet, "shelf": shelf,
                                         "slot": slot, "shelved_at": when})
        inv._event("transfer", "success", disc["set_id"], disc_id,
                   {"action": "shelve", "from": place(disc), "to": place(
                       {"site": site, "cabinet": cabinet, "shelf": shelf, "slot": slot}),
                    "at": when}, agent)
    return disc


def checkout(inv: Inventory, disc_id: str, by: str, reason: str,
             now: dt.datetime | None = None) -> None:
    """Record that ``by`` takes a disc out for ``reason`` (查阅利用登记); its slot stays its own.

    Raises LifecycleError for an unknown disc, an empty name or reason, or a
    disc already out (naming who has it).
    """
    by, reason = (by or "").strip(), (reason or "").strip()
    if not by or not reason:
        raise LifecycleError("give who takes the disc (--by) and why (--reason)")
    with inv._write():
        disc = _disc(inv, disc_id)
        if disc["out_by"]:
            raise LifecycleError(f"disc {disc_id} is already out with {disc['out_by']} since "
                                 f"{disc['out_at'][:10]}: check it in first")
        when = stamp(now)
        inv.db["discs"].update(disc_id, {"out_by": by, "out_at": when, "out_reason": reason})
        inv.db["checkouts"].insert({"disc_id": disc_id, "out_by": by, "reason": reason,
                                    "out_at": when})
        inv._event("transfer", "success", disc["set_id"], disc_id,
                   {"action": "checkout", "from": place(disc), "by": by, "reason": reason,
                    "at": when}, by)


def checkin(inv: Inventory, disc_id: str, now: dt.datetime | None = None) -> dict:
    """Record a disc's return to its slot; returns its row as it was while out.

    Raises LifecycleError for an unknown disc or one that is not out.
    """
    with inv._write():
        disc = _disc(inv, disc_id)
        if not disc["out_by"]:
            raise LifecycleError(f"disc {disc_id} is not checked out: nothing to check in")
        when = stamp(now)
        inv.db["discs"].update(disc_id, {"out_by": None, "out_at": None, "out_reason": None})
        inv.db.execute("UPDATE checkouts SET in_at = ? WHERE disc_id = ? AND in_at IS NULL",
                       [when, disc_id])
        inv._event("transfer", "success", disc["set_id"], disc_id,
                   {"action": "checkin", "by": disc["out_by"], "to": place(
                       dict(disc, out_by=None)), "at": when}, disc["out_by"])
    return disc


_MAP_COLUMNS = ("disc_id", "set_id", "state", "site", "cabinet", "shelf", "slot", "out_by",
                "out_at", "out_reason", "superseded_by", "reburn_reason")


def storage_map(inv: Inventory) -> dict[str, Any]:
    """The storage map (存放示意图): every shelved disc by site, cabinet, shelf and slot.

    Returns ``{"cabinets": [{"site", "cabinet", "shelves": [{"shelf", "slots":
    [{"slot", "disc_id", "state", "out_by", ...}]}]}], "not_shelved": [disc
    rows]}``; on-site cabinets first, cabinets in natural order. Unshelved
    discs listed are those with a medium worth keeping (not burning/failed).
    ``destruction_approved`` is True for a disc an appraisal approved; each
    disc has its set (``group_id``, ``volume`` of ``volumes``: :func:`with_sets`).
    """
    approved = {r[0] for r in inv.db.execute(
        "SELECT disc_id FROM appraisal_entries WHERE kind = 'disc'")}
    cols = ", ".join(_MAP_COLUMNS)
    cabinets: list[dict] = []
    # in the order of the discs_slot index: no sorting in SQLite or here
    for r in inv.db.execute(f"SELECT {cols} FROM discs WHERE cabinet IS NOT NULL "
                            "ORDER BY ifnull(site, ''), cabinet, shelf, slot"):
        disc_id, set_id, state, site, cabinet, shelf, slot, out_by, out_at, out_reason, \
            superseded_by, reburn_reason = r
        if not cabinets or cabinets[-1]["cabinet"] != cabinet or cabinets[-1]["site"] != site:
            cabinets.append({"site": site, "cabinet": cabinet, "shelves": []})
            shelves = cabinets[-1]["shelves"]
        if not shelves or shelves[-1]["shelf"] != shelf:
            shelves.append({"shelf": shelf, "slots": []})
            slots = shelves[-1]["slots"]
        slots.append({"slot": slot, "disc_id": disc_id, "set_id": set_id, "state": state,
                      "out_by": out_by, "out_at": out_at, "out_reason": out_reason,
                      "superseded_by": superseded_by, "reburn_reason": reburn_reason,
                      "destruction_approved": disc_id in approved})
    loose = [dict(zip(_MAP_COLUMNS, r), destruction_approved=r[0] in approved)
             for r in inv.db.execute(f"SELECT {cols} FROM discs WHERE cabinet IS NULL AND "
                                     "state NOT IN ('burning', 'failed') ORDER BY disc_id")]
    with_sets(inv, [d for c in cabinets for sh in c["shelves"] for d in sh["slots"]] + loose)
    # SQLite orders cabinet names as text; put "柜2" before "柜10" (few cabinets: cheap)
    cabinets.sort(key=lambda c: (c["site"] is not None, c["site"] or "", _natural(c["cabinet"])))
    return {"cabinets": cabinets, "not_shelved": loose}


# -- inspections ---------------------------------------------------------------------

LAST_CHECKED = "coalesce(inspected_at, burned_at)"
"""SQL over ``discs``: when a copy was last checked (its last inspection, else its burn)."""


def last_checked(row: dict) -> str | None:
    """When a disc row was last checked, as :data:`LAST_CHECKED` says: its last inspection
    (``inspected_at``), else its burn (``burned_at``); UTC ISO 8601 text, or None."""
    return row.get("inspected_at") or row.get("burned_at")


def inspection_cut(year: int, reburn_years: int) -> dt.date:
    """A current copy last checked before this day must be inspected by the end of ``year``.

    The once-per-re-burn-cycle rule: its last check would otherwise be more
    than ``reburn_years`` old before the year ends (1 January of the next
    year minus ``reburn_years``; see :func:`due`).
    """
    return add_years(dt.date(year + 1, 1, 1), -reburn_years)


def inspection_overdue(row: dict, at: dt.date, reburn_years: int) -> bool:
    """True when a disc row missed an inspection the lifecycle asked for in an earlier year.

    That is, it was on a pull list of the year before ``at`` as a disc that
    must be inspected (:func:`inspection_cut` of that year) and has not been
    inspected since; :func:`due` lists it again this year.
    """
    checked = last_checked(row)
    return bool(checked) and checked < inspection_cut(at.year - 1, reburn_years).isoformat()


def _family(medium: str | None) -> str:
    m = (medium or "").lower()
    return "CD" if m.startswith("cd") else "BD" if m.startswith("bd") else "DVD"


def judge(signals: dict, previous: dict | None, settings: LifecycleSettings,
          medium: str | None) -> list[str]:
    """The reasons to re-burn a disc early after one inspection (empty: healthy).

    ``signals`` and ``previous`` (the disc's last inspection, or None) hold
    ``passed`` (bool), ``failure`` (text), ``bad_sectors``,
    ``retried_sectors``, ``slow_sectors`` (counts of 2048-byte sectors),
    ``speed_kbs`` (kB/s), ``read_seconds`` and ``at``. ``medium`` is the
    medium profile (``dvd-r``...), for its 1x speed (:data:`BASE_SPEED_KBS`).
    """
    s, reasons = settings, []
    if not signals["passed"]:
        reasons.append(f"failed verification: {signals.get('failure') or 'see its fixity check'}")
    for key, word, limit in (("bad_sectors", "unreadable", s.max_bad_sectors),
                             ("retried_sectors", "retried", s.max_retried_sectors),
                             ("slow_sectors", "slow", s.max_slow_sectors)):
        if signals[key] > limit:
            reasons.append(f"{signals[key]} {word} sectors (more than {limit})")
    base = BASE_SPEED_KBS[_family(medium)]
    timed = (signals.get("read_seconds") or 0) >= s.speed_min_seconds
    if timed and signals.get("speed_kbs") and signals["speed_kbs"] < s.min_read_speed * base:
        reasons.append(f"read at {signals['speed_kbs'] / base:.2f}x (below "
                       f"{s.min_read_speed:g}x)")
    if previous:
        since = f"since the inspection of {previous['at'][:10]}"
        for key, word in (("bad_sectors", "unreadable"), ("retried_sectors", "retried"),
                          ("slow_sectors", "slow")):
            before, now = previous.get(key) or 0, signals[key]
            if now - before >= max(1, s.worsen_sectors):
                reasons.append(f"{word} sectors rose from {before} to {now} {since}")
        if (previous.get("passed") and not signals["passed"]):
            reasons.append(f"it verified at the inspection of {previous['at'][:10]}, now it fails")
        if (timed and (previous.get("read_seconds") or 0) >= s.speed_min_seconds
                and previous.get("speed_kbs") and signals.get("speed_kbs")
                and signals["speed_kbs"] <= previous["speed_kbs"] * (1 - s.worsen_speed_percent / 100)):
            reasons.append(f"read speed fell from {previous['speed_kbs']:.0f} to "
                           f"{signals['speed_kbs']:.0f} kB/s {since}")
    return reasons


def inspections(inv: Inventory, disc_id: str) -> list[dict]:
    """A disc's inspections, oldest first (rows of the ``inspections`` table)."""
    return list(inv.db.query("SELECT * FROM inspections WHERE disc_id = ? ORDER BY at, id",
                             [disc_id]))


def record_inspection(inv: Inventory, disc_id: str, signals: dict,
                      settings: LifecycleSettings, now: dt.datetime | None = None) -> dict:
    """Record one inspection of a disc and judge it against the last one.

    ``signals``: ``drive``, ``reads`` (1, or 2 after a failed first read),
    ``passed``, ``failure``, ``bad_sectors``, ``retried_sectors``,
    ``slow_sectors``, ``read_bytes``, ``read_seconds``, ``damaged_files``;
    the row's ``speed_kbs`` is ``read_bytes / read_seconds`` in kB/s over all
    the reads of the inspection. In one transaction: the ``inspections`` row, the disc's ``inspected_at``
    and, when :func:`judge` finds reasons, its early re-burn flag
    (``reburn_reason``, ``flagged_at``; a flag stays until the disc is
    re-burned), and a ``validation`` event (``failure`` when flagged).
    Returns the row with ``reasons`` (list of text).
    """
    when = stamp(now)
    seconds = signals.get("read_seconds") or 0
    row = {k: signals.get(k) for k in ("drive", "reads", "bad_sectors", "retried_sectors",
                                        "slow_sectors", "read_bytes", "read_seconds",
                                        "damaged_files")}
    row.update(disc_id=disc_id, at=when, passed=int(bool(signals["passed"])),
               speed_kbs=round(signals["read_bytes"] / seconds / 1000, 1) if seconds > 0 else None)
    with inv._write():
        disc = _disc(inv, disc_id)
        prev = inv.db.execute("SELECT * FROM inspections WHERE disc_id = ? ORDER BY at DESC, id "
                              "DESC LIMIT 1", [disc_id])
        names = [d[0] for d in prev.description]
        previous = prev.fetchone()
        previous = dict(zip(names, previous)) if previous else None
        medium = inv.db.execute("SELECT media FROM disc_sets WHERE set_id = ?",
                                [disc["set_id"]]).fetchone()[0]
        reasons = judge(dict(row, failure=signals.get("failure"), passed=bool(row["passed"])),
                        previous, settings, disc["medium"] or medium)
        row["flag"] = "; ".join(reasons) or None
        row["id"] = inv.db["inspections"].insert(row).last_pk
        update = {"inspected_at": when}
        if reasons:
            update.update(reburn_reason=row["flag"], flagged_at=when)
        inv.db["discs"].update(disc_id, update)
        inv._event("validation", "failure" if reasons else "success", disc["set_id"], disc_id,
                   {"inspection": row["id"], "passed": bool(row["passed"]),
                    "bad_sectors": row["bad_sectors"], "retried_sectors": row["retried_sectors"],
                    "slow_sectors": row["slow_sectors"], "speed_kbs": row["speed_kbs"],
                    "early_reburn": reasons})
    return dict(row, reasons=reasons)


_DUE_COLUMNS = ("disc_id", "set_id", "state", "medium", "burned_at", "due_at", "inspected_at",
                "site", "cabinet", "shelf", "slot", "out_by", "out_at", "reburn_reason",
                "flagged_at")


def due(inv: Inventory, at: dt.date, settings: LifecycleSettings,
        reburn_years: int) -> dict[str, Any]:
    """What is due at date ``at``: re-burns and this year's inspection pull list.

    ``reburn``: current copies whose re-burn date has come (``due_at`` <=
    ``at``), that an inspection flagged, or that are damaged, each with ``why``. ``inspect``:
    the pull list for the calendar year of ``at``: every current copy whose
    last inspection (or, never inspected, its burn) would otherwise be more
    than ``reburn_years`` old before the year ends, then the least recently
    checked ones until ``inspect_percent`` % of the current copies are
    inspected this year (inspections done this year count). Both lists are
    in cabinet, shelf, slot order (off-site, then unshelved, last), each row
    with ``place`` and its set (``group_id``, ``volume`` of ``volumes``).
    ``commands``: ``discarchive reburn`` targets covering the re-burn list,
    whole sets and discs where they can (see :func:`reburn_commands`). The counting, choosing and
    ordering run in SQLite over ``discs`` (no items are read); Python sees
    only the rows listed.
    """
    iso, nxt = at.isoformat(), (at + dt.timedelta(days=1)).isoformat()
    year_start = dt.date(at.year, 1, 1).isoformat()
    # inspected by the end of the year, or its cycle runs out: checked before this day
    cut = inspection_cut(at.year, reburn_years).isoformat()
    current = "state IN ('verified', 'damaged')"
    done_now = "(ifnull(inspected_at, '') >= :start AND ifnull(inspected_at, '') < :next)"
    checked = LAST_CHECKED
    args = {"start": year_start, "next": nxt, "cut": cut, "at": iso}
    n, done, must = inv.db.execute(
        f"SELECT count(*), ifnull(sum({done_now}), 0), ifnull(sum(NOT {done_now} AND "
        f"({checked} IS NULL OR {checked} < :cut)), 0) FROM discs WHERE {current}",
        args).fetchone()
    quota = math.ceil(n * settings.inspect_percent / 100)
    want = max(quota - done, must)
    cols = ", ".join(_DUE_COLUMNS)
    pull = _rows(inv, f"SELECT {cols}, {checked} IS NULL OR {checked} < :cut FROM discs "
                      f"WHERE {current} AND NOT {done_now} ORDER BY {checked}, disc_id "
                      "LIMIT :want", dict(args, want=want), _DUE_COLUMNS + ("must",))
    for r in pull:
        never = ("never inspected" if not r["inspected_at"]
                 else f"last inspected {r['inspected_at'][:10]}")
        r["why"] = f"{never}; " + ("once per re-burn cycle" if r.pop("must")
                                   else f"{settings.inspect_percent:g} % a year")
    reburn = _rows(inv, f"SELECT {cols} FROM discs WHERE {current} AND (reburn_reason IS NOT "
                        "NULL OR due_at <= :at OR state = 'damaged')", args, _DUE_COLUMNS)
    for r in reburn:
        r["why"] = (f"early re-burn: {r['reburn_reason']}" if r["reburn_reason"]
                    else "damaged: it failed verification (see `discarchive show`)"
                    if r["state"] == "damaged"
                    else f"re-burn due {r['due_at']} (every {reburn_years} years)")
    reburn = _by_place(inv, reburn)
    return {"at": iso, "current": n, "inspected_this_year": done, "quota": quota,
            "reburn": reburn, "commands": reburn_commands(inv, reburn),
            "inspect": _by_place(inv, pull)}


def _rows(inv: Inventory, sql: str, args: dict, names: tuple) -> list[dict]:
    return [dict(zip(names, r)) for r in inv.db.execute(sql, args)]


def _by_place(inv: Inventory, rows: list[dict]) -> list[dict]:
    """Rows in pull-list order (:func:`location_key`), each given its ``place`` and set."""
    for r in rows:
        r["place"] = place(r)
    return sorted(with_sets(inv, rows), key=location_key)


def reburn_commands(inv: Inventory, rows: list[dict]) -> list[dict]:
    """The ``discarchive reburn`` targets that re-burn exactly the copies ``rows`` (with sets).

    A set's ID when every current copy of every disc of the set is listed
    (each disc having one), else a disc's (image's) ID when all its current
    copies are, else each copy's ID. Returns ``[{"target", "what",
    "copies"}]`` (``copies``: the listed copy IDs it covers), sets in the
    order of their first row.
    """
    groups: dict[str, dict[str, list[str]]] = {}
    for r in rows:
        groups.setdefault(r["group_id"], {}).setdefault(r["set_id"], []).append(r["disc_id"])
    if not groups:
        return []
    current: dict[str, dict[str, int]] = {}
    for group, image, n in inv.db.execute(
            "SELECT coalesce(s.group_id, s.set_id), s.set_id, count(d.disc_id) FROM disc_sets s "
            "LEFT JOIN discs d ON d.set_id = s.set_id AND d.state IN ('verified', 'damaged') "
            "WHERE coalesce(s.group_id, s.set_id) IN (SELECT value FROM json_each(?)) "
            "GROUP BY s.set_id", [json.dumps(sorted(groups))]):
        current.setdefault(group, {})[image] = n
    out = []
    for group, images in groups.items():
        have = current.get(group, {})
        listed = sorted(c for ids in images.values() for c in ids)
        if have and all(n and len(images.get(image, [])) == n for image, n in have.items()):
            out.append({"target": group, "copies": listed,
                        "what": f"the whole set: {len(have)} disc(s), {len(listed)} copies"})
            continue
        for image, ids in sorted(images.items()):
            if len(ids) == have.get(image):
                out.append({"target": image, "copies": sorted(ids),
                            "what": f"every copy of the disc ({len(ids)})"})
            else:
                out += [{"target": c, "copies": [c], "what": "this copy"} for c in sorted(ids)]
    return out


# -- re-burn lineage -----------------------------------------------------------------

def reburn_targets(inv: Inventory, target: str) -> tuple[str, list[tuple[dict, list[dict]]]]:
    """What a re-burn of ``target`` replaces: (kind, [(image row, copy rows)]).

    ``target`` is a disc set ID (``160-2025-S01``, kind ``set``: every current
    copy of every disc of the set, volume 1 first), a disc (image) ID
    (``160-2025-S01-02``, kind ``disc``: its current copies) or a copy ID
    (``160-2025-S01-02-A``, kind ``copy``: that copy). Current copies are
    ``verified`` or ``damaged``. Raises LifecycleError for an unknown ID, a
    copy that is not current (superseded, failed, never burned), or a disc
    (of the set) without a current copy.
    """
    def current(image: dict, whose: str) -> list[dict]:
        olds = [c for c in inv.copies(image["set_id"]) if c["state"] in CURRENT_STATES]
        if not olds:
            raise LifecycleError(f"{whose} has no verified or damaged copy to re-burn: burn it "
                                 f"with `discarchive burn {image['set_id']}`, see "
                                 "`discarchive discs`")
        return olds

    s = inv.disc_set(target)
    if s is not None:
        return "disc", [(s, current(s, f"disc {target}"))]
    images = inv.group(target)
    if images:
        return "set", [(i, current(i, f"disc {i['set_id']} ({i['volume']} of {i['volumes']}) "
                                      f"of set {target}")) for i in images]
    disc = inv.disc(target)
    if disc is None:
        raise LifecycleError(f"no disc set, disc or copy {target} in the inventory: see "
                             "`discarchive discs`")
    if disc["state"] not in CURRENT_STATES:
        hint = (f"it was superseded by {disc['superseded_by']}" if disc["state"] == "superseded"
                else f"burn it with `discarchive burn {disc['set_id']}`")
        raise LifecycleError(f"disc {target} is {disc['state']}, not a copy to re-burn: {hint}")
    return "copy", [(inv.disc_set(disc["set_id"]), [_disc(inv, target)])]


def next_disc_id(old: dict) -> tuple[str, int]:
    """The copy ID and generation of the copy that replaces copy ``old``: ``<disc>-<label><gen>``.

    Generation 1 is the first burn (``160-2025-S01-02-A``); its replacement
    is generation 2 (``160-2025-S01-02-A2``), and so on. ``old['set_id']``
    is the disc (image) ID, which a re-burn keeps.
    """
    generation = (old.get("generation") or 1) + 1
    return f"{old['set_id']}-{old['copy_label']}{generation}", generation


def record_replacement(inv: Inventory, new_id: str, old: dict, generation: int, verified: bool,
                       source: dict, now: dt.datetime | None = None) -> None:
    """Record a re-burn's outcome for one new copy, in one transaction.

    The new copy gets its lineage (``replaces``, ``generation``); if it
    ``verified``, the old copy becomes ``superseded`` (``superseded_at``,
    ``superseded_by``; its early re-burn flag is cleared) and both get a
    ``migration`` event (ISO/IEC 29121 data migration) naming the source;
    else the new copy gets a failed ``migration`` event and the old copy
    stays as it was.
    """
    when = stamp(now)
    with inv._write():
        inv.db["discs"].update(new_id, {"replaces": old["disc_id"], "generation": generation})
        detail = {"replaces": old["disc_id"], "generation": generation, "source": source}
        if not verified:
            inv._event("migration", "failure", old["set_id"], new_id, detail)
            return
        inv.db["discs"].update(old["disc_id"], {"state": "superseded", "superseded_at": when,
                                                "superseded_by": new_id, "reburn_reason": None})
        inv._event("migration", "success", old["set_id"], new_id, detail)
        inv._event("migration", "success", old["set_id"], old["disc_id"],
                   {"superseded_by": new_id, "generation": generation, "at": when})


def lineage(inv: Inventory, disc_id: str) -> list[dict]:
    """A disc's line back to its first burn: [this disc, the one it replaced, ...]."""
    line, seen = [], set()
    while disc_id and disc_id not in seen:
        seen.add(disc_id)
        row = inv.db.execute("SELECT disc_id, generation, replaces, state, burned_at, "
                             "superseded_at FROM discs WHERE disc_id = ?", [disc_id]).fetchone()
        if row is None:
            break
        line.append(dict(zip(("disc_id", "generation", "replaces", "state", "burned_at",
                              "superseded_at"), row)))
        disc_id = row[2]
    return line


# -- retention and appraisal ---------------------------------------------------------

_PERIODS = {k: v for k, v in RETENTION_YEARS.items() if v is not None}

# The year a record was formed: its date (YYYYMMDD) when that has a year, else its year.
_FORMED = ("CAST(CASE WHEN substr(i.date, 1, 4) GLOB '[0-9][0-9][0-9][0-9]' "
           "THEN substr(i.date, 1, 4) ELSE i.year END AS INTEGER)")
_ENDS = f"({_FORMED} + 1 + CAST(rtrim(i.retention, '年') AS INTEGER))"
_TIMED = "i.retention IN (" + ", ".join(f"'{k}'" for k in _PERIODS) + ")"


def appraisal_list(inv: Inventory, at: dt.date, settings: LifecycleSettings) -> dict[str, Any]:
    """What is due for appraisal (鉴定) at date ``at``, not yet decided.

    ``items``: records whose retention period has ended: a period of N years
    ends on 1 January of (year formed + 1 + N); 永久 never ends. ``discs``:
    the copies of every disc (image) whose every record's period has ended
    (a disc holds the longest retention of anything on it; the other discs
    of its set need not have ended) with ``reason`` ``retention``, and
    superseded copies kept ``keep_superseded_years`` since they were
    superseded, with ``reason`` ``superseded``. Items and copies carry their
    disc's set (``group_id``, ``volume`` of ``volumes``). Items and discs an
    earlier appraisal decided on are left out. Nothing is deleted, ever.
    """
    year = at.year
    items = list(inv.db.query(
        f"SELECT i.id, i.set_id, i.archival_code, i.item_number, i.title, i.year, i.date, "
        f"i.retention, {_FORMED} AS formed, {_ENDS} AS ends FROM items i "
        f"WHERE i.is_record = 1 AND {_TIMED} AND {_ENDS} <= :year "
        "AND NOT EXISTS (SELECT 1 FROM appraisal_entries e WHERE e.item_id = i.id) "
        "ORDER BY i.archival_code, i.id", {"year": year}))
    for r in items:
        r["retention_ends"] = f"{r.pop('ends')}-01-01"
        r["reason"] = f"retention {r['retention']} ended {r['retention_ends']}"
        r["opinion"] = f"保管期限{r['retention']}已于{r['retention_ends']}届满，拟销毁"
    ended_sets = [r[0] for r in inv.db.execute(
        f"SELECT i.set_id FROM items i WHERE i.is_record = 1 GROUP BY i.set_id "
        f"HAVING sum(NOT ({_TIMED})) = 0 AND max({_ENDS}) <= ?", [year])]
    discs = []
    undecided = "NOT EXISTS (SELECT 1 FROM appraisal_entries e WHERE e.disc_id = d.disc_id)"
    for set_id in ended_sets:
        for d in inv.db.query(f"SELECT * FROM discs d WHERE set_id = ? AND state NOT IN "
                              f"('burning', 'failed') AND {undecided} ORDER BY disc_id", [set_id]):
            discs.append(dict(d, reason="retention"))
    keep = settings.keep_superseded_years
    listed = {d["disc_id"] for d in discs}
    for d in inv.db.query(f"SELECT * FROM discs d WHERE state = 'superseded' AND {undecided} "
                          "ORDER BY superseded_at, disc_id"):
        until = add_years(_day(d["superseded_at"]), keep)
        if until <= at and d["disc_id"] not in listed:
            discs.append(dict(d, reason="superseded", why=f"superseded by {d['superseded_by']} "
                              f"on {d['superseded_at'][:10]}, kept {keep} years to {until}",
                              opinion=f"已于{d['superseded_at'][:10]}由{d['superseded_by']}替代，"
                                      f"保留{keep}年至{until}期满，拟销毁"))
    with_sets(inv, items)
    for d in with_sets(inv, discs):
        d["place"] = place(d)
        d["place_cn"] = place_cn(d)
        if d["reason"] == "retention":
            d["why"] = (f"every record on {volume_text(d)} ended its retention by "
                        f"{year}-01-01")
            d["opinion"] = f"盘内档案保管期限均已于{year}-01-01前届满，拟销毁"
    return {"at": at.isoformat(), "items": items, "discs": discs}


def approve(inv: Inventory, listing: dict, refs: Iterable[str], by: str,
            register: dict | None = None, now: dt.datetime | None = None,
            today: dt.date | None = None) -> dict:
    """Record an appraisal decision: destroy what ``refs`` names from ``listing``.

    ``listing`` is :func:`appraisal_list`'s answer; ``refs`` are disc IDs and
    archival codes (档号) on it, or ``all``. ``register`` holds the
    exported register's file names and SHA-256 (``register_csv``,
    ``csv_sha256``, ``register_xlsx``, ``xlsx_sha256``). One transaction:
    the ``appraisals`` row, one ``appraisal_entries`` row per item or disc,
    and an ``appraisal`` event. Returns ``{"id", "items", "discs"}`` (the
    chosen rows). Raises LifecycleError for a ref not on the list, no
    approver, or a listing dated after ``today`` (the archive's local date;
    ``now``'s UTC date when None): a decision is judged at the day it is
    taken, never against a future date. Nothing is deleted: the people who destroy the discs use the
    register.
    """
    by = (by or "").strip()
    if not by:
        raise LifecycleError("an appraisal decision needs who approved it (--by NAME)")
    now = now or dt.datetime.now(dt.timezone.utc)
    if listing["at"] > (today or now.date()).isoformat():
        raise LifecycleError(f"the appraisal list of {listing['at']} is in the future: approve "
                             "only what is due today")
    chosen = select(listing, refs)
    when = stamp(now)
    with inv._write():
        aid = inv.db["appraisals"].insert(dict(
            {"at": when, "as_of": listing["at"], "approved_by": by, "decision": "destroy"},
            **(register or {}))).last_pk
        inv.db["appraisal_entries"].insert_all(
            [{"appraisal_id": aid, "kind": "item", "item_id": i["id"], "ref": i["archival_code"],
              "reason": i["reason"]} for i in chosen["items"]]
            + [{"appraisal_id": aid, "kind": "disc", "disc_id": d["disc_id"], "ref": d["disc_id"],
                "reason": d["why"]} for d in chosen["discs"]])
        inv._event("appraisal", "success", None, None,
                   {"appraisal": aid, "decision": "destroy", "approved_by": by,
                    "as_of": listing["at"], "items": len(chosen["items"]),
                    "discs": [d["disc_id"] for d in chosen["discs"]], **(register or {})}, by)
    return {"id": aid, **chosen}


def select(listing: dict, refs: Iterable[str]) -> dict:
    """The rows of an appraisal listing that ``refs`` (disc IDs, 档号, or ``all``) name.

    Raises LifecycleError naming a ref that is not on the list, or when
    nothing is chosen.
    """
    refs = [r.strip() for r in refs if r.strip()]
    if "all" in refs:
        chosen = {"items": listing["items"], "discs": listing["discs"]}
    else:
        by_disc = {d["disc_id"]: d for d in listing["discs"]}
        by_code: dict[str, list] = {}
        for i in listing["items"]:
            by_code.setdefault(i["archival_code"], []).append(i)
        chosen = {"items": [], "discs": []}
        for ref in refs:
            if ref in by_disc:
                chosen["discs"].append(by_disc[ref])
            elif ref in by_code:
                chosen["items"].extend(by_code[ref])
            else:
                raise LifecycleError(f"{ref} is not on the appraisal list of {listing['at']}: "
                                     "only what `discarchive appraisal` lists can be approved")
    if not chosen["items"] and not chosen["discs"]:
        raise LifecycleError(f"nothing to approve on the appraisal list of {listing['at']}")
    return chosen


def handover_rows(inv: Inventory, year: str,
                  category_order: Iterable[str] = CATEGORY_ORDER) -> tuple[int, Iterator[dict]]:
    """The records formed in ``year`` (交接清单 rows): (how many, the rows in archival order).

    Archival order is :func:`manifests.arrange.arrange`'s (DA/T 22-2015): fonds,
    year, side (收 before 支), insured unit (``unit_code``), business category
    in ``category_order`` (the configured one; others after it, by name),
    件号 by value, then the path; the versions of one record (``version``
    1, 2...: see daemon.incremental) follow each other, oldest first. Each
    row has the catalog's fields, ``version`` (1 for rows recorded before
    versions) and ``versions`` (how many versions of its 档号 there are),
    its disc (``set_id``: the image ID) with its set (``group_id``,
    ``volume`` of ``volumes``) and ``discs``: the current (verified or
    damaged) copies' IDs, joined by spaces. The rows are read as they are
    consumed (a year of 365,000 records is never held at once). Raises
    LifecycleError when the inventory holds no record of that year.
    """
    year = str(year)
    (count,) = inv.db.execute("SELECT count(*) FROM items WHERE is_record = 1 AND year = ?",
                              [year]).fetchone()
    if not count:
        raise LifecycleError(f"no records of {year} in the inventory: give a year that was "
                             "archived (see `discarchive discs`)")
    order = list(category_order)
    rows = inv.db.query(
        "SELECT i.id, i.set_id, i.item_number, i.archival_code, i.responsible, i.unit_code, "
        "i.title, i.date, i.pages, i.classification, i.retention, i.remarks, i.year, "
        "i.category, coalesce(i.version, 1) AS version, "
        "(SELECT count(*) FROM items v WHERE v.archival_code = i.archival_code "
        " AND v.is_record = 1) AS versions, "
        "coalesce(s.group_id, i.set_id) AS group_id, coalesce(s.volume, 1) AS volume, "
        "coalesce(s.volumes, 1) AS volumes, "
        "(SELECT group_concat(disc_id, ' ') FROM (SELECT disc_id FROM discs d WHERE "
        "d.set_id = i.set_id AND d.state IN ('verified', 'damaged') ORDER BY disc_id)) AS discs "
        "FROM items i LEFT JOIN disc_sets s ON s.set_id = i.set_id "
        "WHERE i.is_record = 1 AND i.year = :year ORDER BY "
        "CASE WHEN instr(i.archival_code, '-') THEN substr(i.archival_code, 1, "
        " instr(i.archival_code, '-') - 1) ELSE '' END, "
        "CASE s.side WHEN '收' THEN 0 WHEN '支' THEN 1 ELSE 2 END, "
        "ifnull(i.unit_code, ''), "
        "coalesce((SELECT CAST(key AS INTEGER) FROM json_each(:order) "
        " WHERE value = i.category), :n), ifnull(i.category, ''), "
        "CASE WHEN i.item_number GLOB '[0-9]*' AND NOT i.item_number GLOB '*[^0-9]*' "
        " THEN CAST(i.item_number AS INTEGER) ELSE 1 << 40 END, "
        "i.archival_code, coalesce(i.version, 1), i.path, i.id",
        {"year": year, "order": json.dumps(order, ensure_ascii=False), "n": len(order)})
    return count, rows
