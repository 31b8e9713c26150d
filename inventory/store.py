"""The inventory: which record is on which disc, and what happened to each disc.

A plain SQLite file (WAL journal) written through sqlite-utils, meant to be
read with any SQLite tool. Tables:

``disc_sets``
    One row per disc image (one bag, burned as copies A, B...), despite the
    table's name: ``set_id`` is the image's ID, e.g. ``160-2024-S01-02``.
    The disc set it belongs to (what one archive run makes of one fonds,
    year and side) is ``group_id`` (``160-2024-S01``), the image being
    ``volume`` of ``volumes`` (Bag-Count "k of n"); ``side`` is 收 or 支.
    ``tag_files`` is JSON: the bag's tag files as [name, first sector, size,
    SHA-256], so a read-back names a damaged tag file too.
    ``state``: ``mastered`` (image made, copies not yet all verified),
    ``archived`` (every copy verified), ``failed`` (a copy failed).
``discs``
    One row per physical copy: ``disc_id`` is ``<set_id>-<copy label>``.
    ``state``: ``burning`` -> ``burned`` -> ``verified`` | ``failed``; a later
    failed verification makes a verified copy ``damaged``.
    ``due_at`` is the re-burn due date (burn date + the configured years).
``items``
    One row per payload file of a set: 档号 (``archival_code``), 件号
    (``item_number``), title, path in the source and on the disc, size in
    bytes, SHA-256 of its bytes as written into the image, and ``extent_lba``:
    the 2048-byte sector where its data starts in the image (the data is
    contiguous), so a read-back can hash files in one pass and name the
    files an unreadable sector hits. ``version`` counts the versions of one
    path archived from one source (1 first; see daemon.incremental).
``burns``
    One row per burn attempt: the drive, the medium's type and ID, the
    requested and actual speed, the tool's version, and for a coaster its
    failure class and message.
``events``
    PREMIS events (``capture``, ``message digest calculation``,
    ``replication``, ``fixity check``, ``migration``, ``deaccession``...)
    with time (UTC, ISO 8601), outcome (``success`` / ``failure``), detail
    and agent (``discarchive`` or the operator). A hash chain: ``sha256`` is
    :func:`entry_sha256` of the entry, ``prev_sha256`` the ``sha256`` of the
    entry before it (:data:`GENESIS` for the first). Append only.
``checkpoints``
    Signed heads of the event chain: see :mod:`inventory.eventlog` and
    docs/AUDIT.md.
``inspections``, ``checkouts``, ``appraisals``, ``appraisal_entries``
    The disc lifecycle (cabinet places, inspections, lineage, appraisal):
    see :mod:`inventory.lifecycle`, which also owns the discs' lifecycle
    columns (:data:`LIFECYCLE_DISC_COLUMNS`).
``daemon_runs``, ``intake``, ``alerts``, ``requests``
    The daemon's durable state (:meth:`Inventory._add_daemon_tables`): each
    scheduled job's last run, the source batches it has seen, the alerts
    it raised (one per subject and threshold) and its requests to the
    operator (insert a disc, a blank medium).

Crash safety: every method that changes state commits before it returns,
and each state change is one transaction. A job killed at any point leaves
rows that say exactly how far it got: a disc left ``burning`` was never
confirmed written; a set stays ``mastered`` until all its copies verify, so
nothing is ever shown as archived that was not read back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable

import sqlite_utils

ITEM_COLUMNS = ["archival_code", "item_number", "title", "year", "unit_code", "unit_name",
                "category", "retention", "date", "pages", "classification", "responsible",
                "flow", "remarks"]


GENESIS = "0" * 64
"""The ``prev_sha256`` of the first event."""

CHAIN_FIELDS = ("id", "at", "event_type", "outcome", "set_id", "disc_id", "detail", "agent",
                "prev_sha256")
"""The fields of an event that its ``sha256`` covers: all but ``sha256`` itself."""


def canonical_json(fields: dict[str, Any]) -> bytes:
    """A flat object as canonical JSON in UTF-8: keys sorted, no spaces, non-ASCII as is.

    Values may be text, integers of at most 53 bits, or None. For these
    this is the JSON Canonicalization Scheme (RFC 8785) and what Python's
    ``json.dumps(fields, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False).encode()`` writes, so an auditor can rebuild the
    bytes with any JSON library. Raises ValueError for any other value (a
    float, bytes, a nested object) or text that is not valid Unicode.
    """
    for name, value in fields.items():
        if not (value is None or isinstance(value, str)
                or (type(value) is int and abs(value) < 2 ** 53)):
            raise ValueError(f"{name} = {value!r}: only text, integers and null are hashed")
    return json.dumps(fields, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def entry_sha256(event: dict[str, Any]) -> str:
    """An event's hash: SHA-256 (hex, lower case) of the canonical JSON of its CHAIN_FIELDS.

    ``id`` must be an integer and the other fields text or None; ``detail``
    is hashed as the stored text, not re-encoded. Raises ValueError
    otherwise, and KeyError if a field is missing.
    """
    if type(event["id"]) is not int:
        raise ValueError(f"id = {event['id']!r}: an event id is an integer")
    if any(not (event[f] is None or isinstance(event[f], str)) for f in CHAIN_FIELDS[1:]):
        raise ValueError(f"event {event['id']}: its fields other than id are text or null")
    return hashlib.sha256(canonical_json({f: event[f] for f in CHAIN_FIELDS})).hexdigest()


LIFECYCLE_DISC_COLUMNS = {
    "site": "TEXT", "cabinet": "TEXT", "shelf": "INTEGER", "slot": "INTEGER",
    "shelved_at": "TEXT", "out_by": "TEXT", "out_at": "TEXT", "out_reason": "TEXT",
    "replaces": "TEXT", "generation": "INTEGER", "superseded_at": "TEXT",
    "superseded_by": "TEXT", "reburn_reason": "TEXT", "flagged_at": "TEXT",
    "inspected_at": "TEXT",
}
"""Columns of ``discs`` for the disc lifecycle (see :mod:`inventory.lifecycle`): where the
copy is (``site`` NULL = on site, ``cabinet``/``shelf``/``slot``), who has it out, its
lineage (``replaces``, ``generation``: 1 for a first burn, NULL read as 1), when it was
superseded and by which disc, an early re-burn flag's reason and its last inspection."""

LIFECYCLE_TABLES = """
CREATE TABLE IF NOT EXISTS inspections (
    id INTEGER PRIMARY KEY, disc_id TEXT NOT NULL REFERENCES discs(disc_id), at TEXT NOT NULL,
    drive TEXT, reads INTEGER, passed INTEGER, bad_sectors INTEGER, retried_sectors INTEGER,
    slow_sectors INTEGER, read_bytes INTEGER, read_seconds REAL, speed_kbs REAL,
    damaged_files INTEGER, flag TEXT);
CREATE INDEX IF NOT EXISTS inspections_disc_at ON inspections (disc_id, at);
CREATE TABLE IF NOT EXISTS checkouts (
    id INTEGER PRIMARY KEY, disc_id TEXT NOT NULL REFERENCES discs(disc_id),
    out_by TEXT NOT NULL, reason TEXT NOT NULL, out_at TEXT NOT NULL, in_at TEXT);
CREATE INDEX IF NOT EXISTS checkouts_disc ON checkouts (disc_id);
CREATE TABLE IF NOT EXISTS appraisals (
    id INTEGER PRIMARY KEY, at TEXT NOT NULL, as_of TEXT NOT NULL, approved_by TEXT NOT NULL,
    decision TEXT NOT NULL, register_csv TEXT, register_xlsx TEXT, csv_sha256 TEXT,
    xlsx_sha256 TEXT);
CREATE TABLE IF NOT EXISTS appraisal_entries (
    id INTEGER PRIMARY KEY, appraisal_id INTEGER NOT NULL REFERENCES appraisals(id),
    kind TEXT NOT NULL, item_id INTEGER, disc_id TEXT, ref TEXT NOT NULL, reason TEXT);
CREATE INDEX IF NOT EXISTS appraisal_entries_item ON appraisal_entries (item_id);
CREATE INDEX IF NOT EXISTS appraisal_entries_disc ON appraisal_entries (disc_id);
CREATE INDEX IF NOT EXISTS discs_due ON discs (due_at);
CREATE UNIQUE INDEX IF NOT EXISTS discs_slot ON discs (ifnull(site, ''), cabinet, shelf, slot)
    WHERE cabinet IS NOT NULL;
"""
"""The lifecycle's tables and indexes; ``discs_slot`` lets one disc into a slot."""


def _trigrams(word: str) -> set[str]:
    """The FTS5 trigram tokens of ``word`` (3 or more characters), each quoted for MATCH."""
    return {'"' + word[k:k + 3].replace('"', '""') + '"' for k in range(len(word) - 2)}


class InventoryError(Exception):
    """The inventory is missing or cannot be used; the message says what to do."""


_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def utcnow() -> str:
    """The current time in UTC, ISO 8601 with seconds, e.g. ``2026-11-29T08:46:10Z``."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Inventory:
    """The inventory in one SQLite file. Use :meth:`create` or :meth:`open`."""

    def __init__(self, db: sqlite_utils.Database):
        self.db = db

    @classmethod
    def create(cls, path: Path) -> "Inventory":
        """Make a new, empty inventory at ``path`` (WAL mode)."""
        db = sqlite_utils.Database(path)
        db.enable_wal()
        inv = cls(db)
        inv._schema()
        return inv

    @classmethod
    def open(cls, path: Path) -> "Inventory":
        """Open an existing inventory; raises InventoryError if it is not there."""
        if not path.is_file():
            raise InventoryError(f"the inventory {path} is missing: restore it from its backup")
        try:
            db = sqlite_utils.Database(path)
            db.execute("PRAGMA busy_timeout = 10000")
            tables = set(db.table_names())
        except sqlite3.DatabaseError as exc:
            raise InventoryError(f"the inventory {path} cannot be read ({exc}): restore it "
                                 "from its backup") from None
        if not {"disc_sets", "discs", "items", "events"} <= tables:
            db.close()
            raise InventoryError(f"the inventory {path} is empty or not discarchive's: restore "
                                 "it from its backup")
        inv = cls(db)
        if "burns" not in tables:
            inv._add_burns_table()
        if "appraisal_entries" not in tables or "inspected_at" not in {
                c.name for c in db["discs"].columns}:
            inv._add_lifecycle()
        if not {"alerts", "requests"} <= tables:
            inv._add_daemon_tables()
        inv._add_group_columns()
        inv._add_item_versions()
        inv._add_extent_index()
        if "items_text" not in tables:
            inv._add_text_index()
        if ("checkpoints" not in tables
                or not {"prev_sha256", "sha256"} <= {c.name for c in db["events"].columns}):
            try:
                inv._chain_events()
            except BaseException:
                db.close()
                raise
        return inv

    def close(self) -> None:
        """Close the SQLite connection (everything is already committed)."""
        self.db.close()

    def _schema(self) -> None:
        db = self.db
        with db.atomic():
            db["disc_sets"].create({
                "set_id": str, "created_at": str, "source": str, "media": str,
                "medium_sectors": int, "fonds": str, "years": str, "retention": str,
                "record_count": int, "file_count": int, "payload_bytes": int,
                "payload_oxum": str, "image_sha256": str, "image_bytes": int,
                "image_sectors": int, "image_path": str, "copies": int, "state": str,
                "tag_files": str, "group_id": str, "volume": int, "volumes": int, "side": str,
            }, pk="set_id")
            db["discs"].create({
                "disc_id": str, "set_id": str, "copy_label": str, "medium": str,
                "drive": str, "adapter": str, "medium_path": str, "state": str,
                "burned_at": str, "burn_seconds": float, "speed": str,
                "image_sha256": str, "image_sectors": int, "verified_at": str,
                "verification": str, "failure": str, "failure_class": str, "due_at": str,
            }, pk="disc_id", foreign_keys=[("set_id", "disc_sets", "set_id")])
            db["items"].create({
                "id": int, "set_id": str, "path": str, "disc_path": str, "size": int,
                "sha256": str, "is_record": int, "extent_lba": int, "version": int,
                **{c: str for c in ITEM_COLUMNS},
            }, pk="id", foreign_keys=[("set_id", "disc_sets", "set_id")])
            db["events"].create({
                "id": int, "at": str, "event_type": str, "outcome": str, "set_id": str,
                "disc_id": str, "detail": str, "agent": str, "prev_sha256": str, "sha256": str,
            }, pk="id")
            self._add_checkpoints_table()
            db["discs"].create_index(["set_id"])
            db["items"].create_index(["set_id"])
            db["items"].create_index(["archival_code"])
            db["items"].create_index(["sha256"])
            db["events"].create_index(["disc_id"])
        self._add_burns_table()
        self._add_extent_index()
        self._add_lifecycle()
        self._add_daemon_tables()
        self._add_text_index()

    def _add_extent_index(self) -> None:
        """The index on items (set_id, extent_lba): an image's first file without reading
        its items (daemon.jobs.expected_of). Made once; idempotent."""
        if self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' "
                           "AND name = 'items_set_extent'").fetchone():
            return
        with self._write():
            self.db.conn.execute("CREATE INDEX IF NOT EXISTS items_set_extent "
                                 "ON items (set_id, extent_lba)")

    def _add_lifecycle(self) -> None:
        """The lifecycle's discs columns, tables and indexes, in one transaction.

        Idempotent: columns another process added first are left alone.
        """
        conn = self.db.conn
        with self._write():
            have = {row[1] for row in conn.execute("PRAGMA table_info(discs)")}
            for name, kind in LIFECYCLE_DISC_COLUMNS.items():
                if name not in have:
                    conn.execute(f"ALTER TABLE discs ADD COLUMN [{name}] {kind}")
            for statement in LIFECYCLE_TABLES.split(";"):
                if statement.strip():
                    conn.execute(statement)

    def _add_group_columns(self) -> None:
        """``disc_sets.group_id``, ``volume``, ``volumes``, ``side`` for an inventory made before them.

        An image recorded before is its own set of one disc.
        """
        columns = {c.name for c in self.db["disc_sets"].columns}
        if "group_id" in columns:
            return
        with self._write():
            columns = {r[1] for r in self.db.conn.execute("PRAGMA table_info(disc_sets)")}
            for name, kind in (("group_id", "TEXT"), ("volume", "INTEGER"),
                               ("volumes", "INTEGER"), ("side", "TEXT")):
                if name not in columns:
                    self.db.conn.execute(f"ALTER TABLE disc_sets ADD COLUMN [{name}] {kind}")
            self.db.conn.execute("UPDATE disc_sets SET group_id = set_id, volume = 1, volumes = 1 "
                                 "WHERE group_id IS NULL")

    def _add_item_versions(self) -> None:
        """``items.version`` (1, 2...: see daemon.incremental) for an inventory made before it.

        Rows recorded before it stay NULL, read as version 1.
        """
        if "version" in {c.name for c in self.db["items"].columns}:
            return
        with self._write():
            if "version" not in {r[1] for r in self.db.conn.execute("PRAGMA table_info(items)")}:
                self.db.conn.execute("ALTER TABLE items ADD COLUMN [version] INTEGER")

    def _add_burns_table(self) -> None:
        """The ``burns`` table: one row per burn attempt, coasters included."""
        with self.db.atomic():
            self.db["burns"].create({
                "id": int, "disc_id": str, "set_id": str, "attempt": int, "drive": str,
                "adapter": str, "medium_path": str, "medium_type": str, "medium_id": str,
                "requested_speed": str, "speed": str, "tool_version": str,
                "started_at": str, "ended_at": str, "seconds": float, "outcome": str,
                "failure_class": str, "message": str,
            }, pk="id", foreign_keys=[("disc_id", "discs", "disc_id")])
            self.db["burns"].create_index(["disc_id"])

    def _add_text_index(self) -> None:
        """``items_text``: a full-text index of the items' 档号, title and path, for ``find``.

        An SQLite FTS5 table with the ``trigram`` tokenizer (SQLite >= 3.34):
        any run of three or more characters is found by the index, in any
        script, Chinese included. It stores no text of its own (external
        content: the ``items`` rows) and triggers keep it in step with
        every insert, update and delete of ``items``. An inventory made
        before it gets it here, filled from its items, in one transaction
        (about 25 s for 1,000,000 items). Without FTS5 in the SQLite
        library nothing is added and ``find`` reads every item.
        """
        conn = self.db.conn
        try:
            with self._write():
                if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'items_text'").fetchone():
                    return   # another process made it first
                conn.execute(
                    "CREATE VIRTUAL TABLE items_text USING fts5(archival_code, title, path, "
                    "content='items', content_rowid='id', tokenize='trigram', detail='none')")
                old = "INSERT INTO items_text(items_text, rowid, archival_code, title, path) " \
                      "VALUES ('delete', old.id, old.archival_code, old.title, old.path)"
                new = "INSERT INTO items_text(rowid, archival_code, title, path) " \
                      "VALUES (new.id, new.archival_code, new.title, new.path)"
                for name, when, body in (("items_text_ai", "AFTER INSERT", new),
                                         ("items_text_ad", "AFTER DELETE", old),
                                         ("items_text_au", "AFTER UPDATE", f"{old}; {new}")):
                    conn.execute(f"CREATE TRIGGER {name} {when} ON items BEGIN {body}; END")
                conn.execute("INSERT INTO items_text(items_text) VALUES ('rebuild')")
                conn.execute("CREATE INDEX IF NOT EXISTS idx_items_item_number "
                             "ON items (item_number)")
        except sqlite3.OperationalError as exc:
            if "fts5" not in str(exc) and "tokenizer" not in str(exc):
                raise

    def _add_checkpoints_table(self) -> None:
        """The ``checkpoints`` table: signed heads of the event chain (inventory.eventlog)."""
        self.db["checkpoints"].create({
            "id": int, "at": str, "head_id": int, "head_sha256": str, "key_sha256": str,
            "signature": str,
        }, pk="id")

    def _add_daemon_tables(self) -> None:
        """The daemon's tables: ``daemon_runs``, ``intake`` and ``alerts`` (one transaction).

        ``daemon_runs``: one row per scheduled job (``job``); ``covered_until``
        is the UTC time up to which its fire times are done, so a run missed
        while the daemon was down runs once after a restart.
        ``intake``: one row per source batch folder (``path``), with its size
        in bytes, file count, newest change (UTC) and ``state``: ``pending``
        -> ``packing`` -> ``archived`` | ``failed`` (``set_id`` once known).
        ``alerts``: one row per ``kind``, ``subject`` (a disc ID, a drive's
        name, ``images``) and ``threshold`` (``90d``, ``due``...), unique;
        ``state`` ``open`` | ``acked`` | ``cleared``; ``notified_at`` is set
        when a digest carried it.
        ``requests``: the operator's to-do list (:mod:`daemon.queue`): ``kind``
        ``disc`` | ``blank``, the ``drive``, ``disc_id``/``set_id``/``media``,
        the ``message``, ``state`` ``waiting`` | ``done`` | ``cancelled``,
        ``note`` (e.g. a wrong disc inserted) and ``outcome``.
        """
        with self._write():
            db = self.db
            if not db["daemon_runs"].exists():
                db["daemon_runs"].create({
                    "job": str, "covered_until": str, "started_at": str, "ended_at": str,
                    "outcome": str, "detail": str,
                }, pk="job")
            if not db["intake"].exists():
                db["intake"].create({
                    "path": str, "source_root": str, "bytes": int, "files": int,
                    "newest_at": str, "first_seen": str, "last_scan": str, "state": str,
                    "set_id": str, "detail": str,
                }, pk="path")
            if not db["alerts"].exists():
                db["alerts"].create({
                    "id": int, "kind": str, "subject": str, "threshold": str, "state": str,
                    "raised_at": str, "due_at": str, "location": str, "message": str,
                    "notified_at": str, "acked_at": str, "acked_by": str, "cleared_at": str,
                }, pk="id")
                db["alerts"].create_index(["kind", "subject", "threshold"], unique=True)
            if not db["requests"].exists():
                db["requests"].create({
                    "id": int, "kind": str, "drive": str, "disc_id": str, "set_id": str,
                    "media": str, "message": str, "state": str, "created_at": str,
                    "updated_at": str, "note": str, "outcome": str,
                }, pk="id")

    def transaction(self):
        """One write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``), for callers' own tables.

        A context manager; an exception rolls it back. Used by the daemon for
        its tables (``daemon_runs``, ``intake``, ``alerts``).
        """
        return self._write()

    def _chain_events(self) -> None:
        """Chain the events of an inventory made before the log was chained.

        Adds ``prev_sha256`` and ``sha256``, hashes the events found in id
        order and adds the ``checkpoints`` table, all in one transaction;
        another process that did it first leaves nothing to do. The chain
        vouches for those events as they are now, not as they were written.
        Raises InventoryError if an event holds a value that cannot be hashed.
        """
        conn = self.db.conn
        with self._write():
            columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
            if "sha256" not in columns:
                for name in ("prev_sha256", "sha256"):
                    if name not in columns:
                        conn.execute(f"ALTER TABLE events ADD COLUMN [{name}] TEXT")
                cursor = conn.execute("SELECT * FROM events ORDER BY id")
                names = [d[0] for d in cursor.description]
                prev = GENESIS
                for row in [dict(zip(names, r)) for r in cursor.fetchall()]:
                    row["prev_sha256"] = prev
                    try:
                        digest = entry_sha256(row)
                    except ValueError as exc:
                        raise InventoryError(f"cannot chain the event log ({exc}): restore the "
                                             "inventory from its backup") from None
                    conn.execute("UPDATE events SET prev_sha256 = ?, sha256 = ? WHERE id = ?",
                                 [prev, digest, row["id"]])
                    prev = digest
            if not self.db["checkpoints"].exists():
                self._add_checkpoints_table()

    # -- writing ---------------------------------------------------------

    @contextmanager
    def _write(self):
        """One write transaction, taking the write lock at its start.

        ``BEGIN IMMEDIATE`` rather than sqlite-utils' deferred ``BEGIN``: with
        several drives' threads writing at once, a deferred transaction that
        read first could not upgrade to a write (SQLITE_BUSY at once, the busy
        timeout notwithstanding); an immediate one waits its turn.
        """
        self.db.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self.db.conn.in_transaction:
                self.db.conn.execute("ROLLBACK")
            raise
        self.db.conn.execute("COMMIT")

    def next_set_id(self, fonds: str, year: str,
                    taken: Callable[[str], bool] = lambda set_id: False) -> str:
        """The next free disc set ID ``<fonds>-<year>-<NNNN>``, e.g. ``160-2023-0001``.

        ``taken(set_id)`` may veto an ID that the inventory does not know but
        something else uses (an image left by an interrupted run).
        """
        prefix = f"{fonds}-{year}-"
        rows = self.db.execute("SELECT set_id FROM disc_sets WHERE substr(set_id, 1, ?) = ?",
                               [len(prefix), prefix]).fetchall()
        used = [int(r[0][len(prefix):]) for r in rows if r[0][len(prefix):].isdigit()]
        n = max(used, default=0) + 1
        while taken(f"{prefix}{n:04d}"):
            n += 1
        return f"{prefix}{n:04d}"

    def next_group_number(self, fonds: str, year: str, letter: str,
                          taken: Callable[[str], bool] = lambda group_id: False) -> int:
        """The next free number NN of a disc set ``<fonds>-<year>-<letter><NN>``.

        ``taken(group_id)`` may veto a number the inventory does not know
        but something else uses (images left by an interrupted run).
        """
        prefix = f"{fonds}-{year}-{letter}"
        rows = self.db.execute("SELECT group_id FROM disc_sets WHERE substr(group_id, 1, ?) = ?",
                               [len(prefix), prefix]).fetchall()
        used = [int(r[0][len(prefix):]) for r in rows if r[0][len(prefix):].isdigit()]
        n = max(used, default=0) + 1
        while taken(f"{prefix}{n:02d}"):
            n += 1
        return n

    def group(self, group_id: str) -> list[dict[str, Any]]:
        """The image rows of one disc set, volume 1 first."""
        return list(self.db.query("SELECT * FROM disc_sets WHERE group_id = ? ORDER BY volume",
                                  [group_id]))

    def record_sets(self, sets: list[tuple[dict[str, Any], Iterable[dict[str, Any]],
                                           Iterable[dict[str, Any]]]]) -> None:
        """Insert several images (row, items, events), e.g. a whole disc set, in one transaction."""
        with self._write():
            for row, items, events in sets:
                self.db["disc_sets"].insert(row)
                self.db["items"].insert_all(items)
                for e in events:
                    self._event(**e)

    def record_set(self, row: dict[str, Any], items: Iterable[dict[str, Any]],
                   events: Iterable[dict[str, Any]]) -> None:
        """Insert a disc set, its items and its first events in one transaction."""
        with self._write():
            self.db["disc_sets"].insert(row)
            self.db["items"].insert_all(items)
            for e in events:
                self._event(**e)

    def add_disc(self, row: dict[str, Any]) -> None:
        """Insert one copy's row, or start it afresh for a new burn (committed on return).

        A copy burned again keeps its disc ID; its earlier attempts stay in
        ``burns`` and ``events``.
        """
        with self._write():
            self.db["discs"].insert(row, replace=True)

    def update_disc(self, disc_id: str, event: dict[str, Any] | None = None, **fields) -> None:
        """Change a copy's fields, with the event that says why, in one transaction."""
        with self._write():
            self.db["discs"].update(disc_id, fields)
            if event:
                self._event(disc_id=disc_id, **event)

    def start_burn(self, row: dict[str, Any]) -> int:
        """Record that a burn attempt starts (committed); returns its row ID."""
        with self._write():
            return self.db["burns"].insert(dict(row, started_at=utcnow())).last_pk

    def end_burn(self, burn_id: int, **fields) -> None:
        """Record how a burn attempt ended (committed)."""
        with self._write():
            self.db["burns"].update(burn_id, dict(fields, ended_at=utcnow()))

    def burns(self, disc_id: str) -> list[dict[str, Any]]:
        """The burn attempts of one copy, first first."""
        return list(self.db.query("SELECT * FROM burns WHERE disc_id = ? ORDER BY id", [disc_id]))

    def update_set(self, set_id: str, **fields) -> None:
        """Change a disc set's fields (committed on return)."""
        with self._write():
            self.db["disc_sets"].update(set_id, fields)

    def add_event(self, event_type: str, outcome: str, set_id: str | None = None,
                  disc_id: str | None = None, detail: Any = None,
                  agent: str = "discarchive") -> None:
        """Append one PREMIS event to the chained log (committed on return).

        ``agent`` is who acted: ``discarchive``, or the operator for an
        operator's action. Raises ValueError for a field that is not text.
        """
        with self._write():
            self._event(event_type, outcome, set_id, disc_id, detail, agent)

    def _event(self, event_type: str, outcome: str, set_id: str | None = None,
               disc_id: str | None = None, detail: Any = None,
               agent: str = "discarchive") -> None:
        """Append one event after the chain's head; only inside :meth:`_write`.

        The head is read in the caller's write transaction, and BEGIN
        IMMEDIATE lets one writer in at a time, so events written by several
        threads or processes at once still form one chain. A ``detail`` that
        is not text is stored as JSON with sorted keys.
        """
        if not self.db.conn.in_transaction:
            raise RuntimeError("an event is appended only inside a write transaction")
        if detail is not None and not isinstance(detail, str):
            detail = json.dumps(detail, ensure_ascii=False, sort_keys=True)
        head = self.db.conn.execute(
            "SELECT id, sha256 FROM events ORDER BY id DESC LIMIT 1").fetchone()
        row = {"id": head[0] + 1 if head else 1, "at": utcnow(), "event_type": event_type,
               "outcome": outcome, "set_id": set_id, "disc_id": disc_id, "detail": detail,
               "agent": agent, "prev_sha256": head[1] if head else GENESIS}
        row["sha256"] = entry_sha256(row)
        self.db["events"].insert(row)

    # -- reading ---------------------------------------------------------

    def discs(self) -> list[dict[str, Any]]:
        """Every copy, newest set first, with its set's record count and state."""
        return list(self.db.query(
            "SELECT d.*, s.record_count, s.file_count, s.payload_bytes, s.state AS set_state "
            "FROM discs d JOIN disc_sets s USING (set_id) ORDER BY d.set_id DESC, d.copy_label"))

    def unburned(self) -> list[dict[str, Any]]:
        """Copies a recorded image still waits for: no ``discs`` row yet (its job was killed
        between recording the image and starting that copy's burn).

        Rows as :meth:`discs` gives them, ``state`` ``not burned``, ``copy_label``
        A, B... up to the set's ``copies``; newest image first.
        """
        labels = "ABCDEFGHI"
        have: dict[str, set[str]] = {}
        for set_id, label in self.db.execute("SELECT set_id, copy_label FROM discs"):
            have.setdefault(set_id, set()).add(label)
        rows = []
        for s in self.db.query("SELECT set_id, media, copies, record_count, file_count, "
                               "payload_bytes, state FROM disc_sets ORDER BY set_id DESC"):
            for label in labels[:s["copies"] or 0]:
                if label not in have.get(s["set_id"], ()):
                    rows.append({"disc_id": f"{s['set_id']}-{label}", "set_id": s["set_id"],
                                 "copy_label": label, "state": "not burned",
                                 "medium": s["media"], "record_count": s["record_count"],
                                 "file_count": s["file_count"],
                                 "payload_bytes": s["payload_bytes"], "set_state": s["state"]})
        return rows

    def disc(self, disc_id: str) -> dict[str, Any] | None:
        """One copy with its set's fields, or None."""
        rows = list(self.db.query("SELECT * FROM discs WHERE disc_id = ?", [disc_id]))
        if not rows:
            return None
        disc = rows[0]
        for k, v in self.disc_set(disc["set_id"]).items():
            disc.setdefault("set_state" if k == "state" else k, v)
        return disc

    def disc_set(self, set_id: str) -> dict[str, Any] | None:
        """One disc set's row, or None."""
        rows = list(self.db.query("SELECT * FROM disc_sets WHERE set_id = ?", [set_id]))
        return rows[0] if rows else None

    def copies(self, set_id: str) -> list[dict[str, Any]]:
        """The copies (disc rows) of one set, A first."""
        return list(self.db.query("SELECT * FROM discs WHERE set_id = ? ORDER BY copy_label",
                                  [set_id]))

    def items(self, set_id: str) -> list[dict[str, Any]]:
        """The items of one set, in disc path order."""
        return list(self.db.query("SELECT * FROM items WHERE set_id = ? ORDER BY disc_path",
                                  [set_id]))

    def events(self, disc_id: str | None = None, set_id: str | None = None) -> list[dict[str, Any]]:
        """Events in the order they happened, for one disc and/or one set (all when None)."""
        return list(self.db.query(
            "SELECT * FROM events WHERE (? IS NULL OR disc_id = ?) AND (? IS NULL OR set_id = ?) "
            "ORDER BY id", [disc_id, disc_id, set_id, set_id]))

    def find(self, text: str, limit: int = 200) -> list[dict[str, Any]]:
        """Items matching ``text``, each with every copy that holds it.

        A whole 档号 or SHA-256 is looked up by its index first; otherwise
        (or when nothing matches exactly) ``text`` is split on white space
        and an item matches when it matches every word: the 档号 or path
        holds the word, or the title does, ASCII letters in any case, or the
        word is its 件号. For words of three or more characters the items
        holding all their trigrams are taken from ``items_text`` and then
        held to the same test, so the index changes only the speed. At most
        ``limit`` rows, ordered by set and path on the disc. Returns dicts
        with the item's fields and ``copies``: a list of {disc_id, state,
        verification, medium_path}.
        """
        select = ("SELECT i.*, s.state AS set_state FROM items i JOIN disc_sets s "
                  "USING (set_id) WHERE ")
        order = " ORDER BY i.set_id, i.disc_path LIMIT :limit"
        whole = text.strip() or text
        # A whole archival code or SHA-256 is answered by its index, without a scan.
        exact = "i.sha256 = lower(:text)" if _SHA256.fullmatch(whole) else "i.archival_code = :text"
        rows = list(self.db.query(select + exact + order, {"text": whole, "limit": limit}))
        if not rows:
            words = list(dict.fromkeys(text.split())) or [text]
            params: dict[str, Any] = {"limit": limit}
            tests, grams = [], {}
            for n, word in enumerate(words):
                params[f"w{n}"] = word
                params[f"like{n}"] = "%" + word.replace("\\", "\\\\").replace(
                    "%", "\\%").replace("_", "\\_") + "%"
                tests.append(f"(i.archival_code LIKE :like{n} ESCAPE '\\' OR i.item_number = :w{n} "
                             f"OR i.title LIKE :like{n} ESCAPE '\\' OR i.path LIKE :like{n} ESCAPE '\\')")
                if len(word) >= 3:
                    grams[n] = _trigrams(word)
            test = " AND ".join(tests)
            if grams and self._has_text_index():
                # Every item holding a word holds each of its trigrams (the index folds case).
                params["grams"] = " AND ".join(sorted(set().union(*grams.values())))
                # Few candidates: fetch and sort them. Many: walking the items in order
                # finds `limit` of them sooner. The two cost the same at about
                # sqrt(32 * items) candidates (13 ms with 1,000,000 items).
                items = self.db.execute("SELECT max(id) FROM items").fetchone()[0] or 0
                cap = max(limit, math.isqrt(32 * items))
                (many,) = self.db.execute(
                    "SELECT count(*) >= :cap FROM (SELECT rowid FROM items_text "
                    "WHERE items_text MATCH :grams LIMIT :cap)", {**params, "cap": cap}).fetchone()
                if not many:
                    # the 件号 is not in the index: a word may match it instead
                    ins = []
                    for n, word_grams in grams.items():
                        params[f"g{n}"] = " AND ".join(sorted(word_grams))
                        ins.append(f"i.id IN (SELECT rowid FROM items_text WHERE items_text "
                                   f"MATCH :g{n} UNION ALL SELECT id FROM items WHERE "
                                   f"item_number = :w{n})")
                    test = " AND ".join(ins) + " AND " + test
            rows = list(self.db.query(select + test + order, params))
        for r in rows:
            r["copies"] = [
                {k: c[k] for k in ("disc_id", "state", "verification", "medium_path")}
                for c in self.copies(r["set_id"])]
        return rows

    def _has_text_index(self) -> bool:
        if getattr(self, "_text_index", None) is None:
            self._text_index = bool(self.db.conn.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'items_text'").fetchone())
        return self._text_index
