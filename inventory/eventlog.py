"""The event log's proof: signed checkpoints, the audit, and the export for an auditor.

Every event in the inventory (PREMIS event types: capture, message digest
calculation, replication, fixity check, migration, deaccession, and the
operator's actions) carries ``sha256``, the SHA-256 of its canonical JSON,
and ``prev_sha256``, the ``sha256`` of the entry before it (64 zeros for the
first): a hash chain, written by :meth:`Inventory._event` and defined by
:func:`inventory.store.entry_sha256`. A changed byte breaks the entry's own
hash; re-hashing the entry breaks the next entry's link; removing or
inserting entries breaks the ids or the links.

A chain alone cannot tell a forged entry appended at its end from a real
one, nor a cut tail from a short log. So at the end of each job
:func:`checkpoint` signs the chain's head with the archive's Ed25519 key
(RFC 8032) into the ``checkpoints`` table:

``id``          1, 2, 3... in the order they were signed
``at``          when, UTC, ISO 8601 (``2026-11-29T08:46:10Z``)
``head_id``     the last event's id at that moment
``head_sha256`` that event's ``sha256``
``key_sha256``  SHA-256 (hex) of the public key's PEM file, byte for byte
``signature``   base64 of the 64-byte signature over :func:`checkpoint_message`

What no audit can prove: the entries after the last checkpoint, and a tail
cut together with the checkpoints that signed it. An auditor who keeps the
last checkpoint of each export closes the second gap (docs/AUDIT.md).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from bisect import bisect_right
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from inventory.store import GENESIS, Inventory, canonical_json, entry_sha256, utcnow
from manifests import signing

CHECKPOINT_PURPOSE = "discarchive event log checkpoint v1"
"""Signed with every checkpoint, so its signature means nothing anywhere else."""

LOG_NAME = "eventlog.jsonl"
KEY_NAME = "public_key.pem"
"""The files :func:`export` writes into a folder."""

EVENT_COLUMNS = ("id", "at", "event_type", "outcome", "set_id", "disc_id", "detail", "agent",
                 "prev_sha256", "sha256")
CHECKPOINT_COLUMNS = ("id", "at", "head_id", "head_sha256", "key_sha256", "signature")

MAX_PROBLEMS = 100
"""At most this many problem lines in a report; then one line says how many more."""


def key_fingerprint(public_key_pem: bytes) -> str:
    """The key fingerprint stored with each checkpoint: SHA-256 (hex) of the PEM bytes."""
    return hashlib.sha256(public_key_pem).hexdigest()


def checkpoint_message(cp: dict[str, Any]) -> bytes:
    """The bytes a checkpoint's signature covers.

    The canonical JSON (see :func:`inventory.store.canonical_json`) of
    ``{"purpose": CHECKPOINT_PURPOSE, "id", "at", "head_id", "head_sha256",
    "key_sha256"}`` with the checkpoint's values, e.g.
    ``{"at":"2026-11-29T08:46:10Z","head_id":42,"head_sha256":"9f2c...",
    "id":7,"key_sha256":"51d0...","purpose":"discarchive event log checkpoint v1"}``.
    Raises ValueError if a value is not text, an integer or null.
    """
    return canonical_json({"purpose": CHECKPOINT_PURPOSE,
                           **{k: cp[k] for k in CHECKPOINT_COLUMNS[:-1]}})


def checkpoint(inv: Inventory, private_key: Ed25519PrivateKey) -> dict[str, Any] | None:
    """Sign the chain's current head; returns the checkpoint row (CHECKPOINT_COLUMNS).

    If the last checkpoint already signs this head with this key, returns it
    and signs nothing. Returns None for an empty log. Reads the head and
    inserts in one write transaction, so no event slips in between.
    Checks nothing: the audit judges the chain, the checkpoint only pins
    its head. Raises sqlite3.Error if the inventory cannot be written.
    """
    fingerprint = key_fingerprint(signing.public_pem(private_key))
    conn = inv.db.conn
    with inv._write():
        head = conn.execute("SELECT id, sha256 FROM events ORDER BY id DESC LIMIT 1").fetchone()
        if head is None:
            return None
        last = _rows(conn, "checkpoints", CHECKPOINT_COLUMNS, "ORDER BY id DESC LIMIT 1")
        if last and (last[0]["head_id"], last[0]["head_sha256"],
                     last[0]["key_sha256"]) == (head[0], head[1], fingerprint):
            return last[0]
        cp = {"id": last[0]["id"] + 1 if last else 1, "at": utcnow(), "head_id": head[0],
              "head_sha256": head[1], "key_sha256": fingerprint}
        cp["signature"] = signing.sign(private_key, checkpoint_message(cp)).decode().strip()
        inv.db["checkpoints"].insert(cp)
        return cp


@dataclass
class AuditReport:
    """What :func:`audit` found.

    ``ok``: no problem at all (entries not yet signed are not a problem).
    ``entries``, ``checkpoints``: how many rows were checked. ``first_break``: the first event that was changed, inserted or removed,
    as (event id, ``"changed"`` | ``"inserted"`` | ``"removed"``); for
    ``"removed"`` the id is the first missing one. ``checkpoint_break``: the
    first bad checkpoint, as (checkpoint id, ``"changed"`` | ``"removed"`` |
    ``"other key"``). ``signed_head``: the last event a good checkpoint
    vouches for (0 if none); the ``unsigned`` events after it are held by
    the chain alone. ``problems``: one line each, in the order found (the
    chain's, walking it in id order, then the checkpoints').
    """

    ok: bool
    entries: int
    checkpoints: int
    first_break: tuple[int, str] | None = None
    checkpoint_break: tuple[int, str] | None = None
    signed_head: int = 0
    unsigned: int = 0
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-able data (tuples become lists)."""
        return asdict(self)


def audit(inv: Inventory, public_key_pem: bytes) -> AuditReport:
    """Check every event's hash and link, the ids, and every checkpoint against the key.

    ``public_key_pem``: the archive's Ed25519 public key, PEM bytes as in
    its file (its SHA-256 must be the checkpoints' ``key_sha256``). Reads
    the whole log in one snapshot, so jobs may keep writing meanwhile.
    Never raises for what it finds (see AuditReport); raises sqlite3.Error
    only if the inventory cannot be read.
    """
    events, cps = _read_log(inv)
    found = _Findings()
    _check_chain(events, found)
    signed_head = _check_checkpoints(cps, events, public_key_pem, found)
    if events and not cps:
        # Every job ends by signing; a log with entries and no signature at all has
        # lost its checkpoints (or only ever had a job killed before its end).
        found.problems.append("no signed checkpoint at all: the checkpoints were removed, or "
                              "the only job was killed before its end (then run "
                              "`discarchive verify` on any disc to sign the log)")
    problems = found.problems
    if len(problems) > MAX_PROBLEMS:
        problems = problems[:MAX_PROBLEMS] + [f"... and {len(problems) - MAX_PROBLEMS} more"]
    return AuditReport(
        ok=not found.problems, entries=len(events), checkpoints=len(cps),
        first_break=min(found.breaks, key=lambda b: b[0]) if found.breaks else None,
        checkpoint_break=found.cp_breaks[0] if found.cp_breaks else None,
        signed_head=signed_head, unsigned=sum(1 for e in events if e["id"] > signed_head),
        problems=problems)


def export(inv: Inventory, out: str | os.PathLike | IO, public_key_pem: bytes) -> dict[str, Any]:
    """Write the log for an outside auditor, checkable with docs/AUDIT.md.

    JSON Lines, ASCII, one object per line: every event (``"record":
    "event"`` and EVENT_COLUMNS) in id order, then every checkpoint
    (``"record": "checkpoint"`` and CHECKPOINT_COLUMNS) in id order, all from
    one snapshot. ``out`` is a folder (made if missing; LOG_NAME and
    KEY_NAME with ``public_key_pem`` are written into it, each replaced
    whole) or an open binary or text file that gets the JSON Lines only.
    Returns ``{"entries", "checkpoints", "head_id", "head_sha256"}``.
    Raises OSError if the folder cannot be written.
    """
    events, cps = _read_log(inv)
    lines = [json.dumps({"record": "event", **e}, sort_keys=True) for e in events]
    lines += [json.dumps({"record": "checkpoint", **c}, sort_keys=True) for c in cps]
    data = "".join(line + "\n" for line in lines).encode("ascii")
    if isinstance(out, (str, os.PathLike)):
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        _replace(folder / LOG_NAME, data)
        _replace(folder / KEY_NAME, public_key_pem)
    elif isinstance(out, io.TextIOBase):
        out.write(data.decode("ascii"))
    else:
        out.write(data)
    return {"entries": len(events), "checkpoints": len(cps),
            "head_id": events[-1]["id"] if events else None,
            "head_sha256": events[-1]["sha256"] if events else None}


# -- reading -------------------------------------------------------------------

def _rows(conn, table: str, columns: tuple[str, ...], tail: str) -> list[dict[str, Any]]:
    """Rows as dicts; a BLOB smuggled into a column reads as (lossy) text."""
    cursor = conn.execute(f"SELECT {', '.join(columns)} FROM {table} {tail}")
    return [{k: v.decode("utf-8", "replace") if isinstance(v, bytes) else v
             for k, v in zip(columns, row)} for row in cursor]


def _read_log(inv: Inventory) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(events, checkpoints), each in id order, read in one transaction (one snapshot)."""
    with _snapshot(inv.db.conn) as conn:
        return (_rows(conn, "events", EVENT_COLUMNS, "ORDER BY id"),
                _rows(conn, "checkpoints", CHECKPOINT_COLUMNS, "ORDER BY id"))


@contextmanager
def _snapshot(conn):
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("ROLLBACK")


def _replace(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (temporary file, fsync, rename)."""
    part = path.with_name(path.name + ".part")
    with open(part, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, path)


# -- checking ------------------------------------------------------------------

class _Findings:
    def __init__(self):
        self.breaks: list[tuple[int, str]] = []
        self.cp_breaks: list[tuple[int, str]] = []
        self.problems: list[str] = []

    def event(self, event_id: int, kind: str, text: str) -> None:
        if (event_id, kind) not in self.breaks:
            self.breaks.append((event_id, kind))
        self.problems.append(text)

    def checkpoint(self, cp_id: int, kind: str, text: str) -> None:
        self.cp_breaks.append((cp_id, kind))
        self.problems.append(text)


def _own_hash(e: dict[str, Any]) -> str | None:
    try:
        return entry_sha256(e)
    except ValueError:
        return None


def _span(first: int, last: int) -> str:
    return f"entry {first}" if first == last else f"entries {first}-{last}"


def _check_chain(events: list[dict[str, Any]], found: _Findings) -> None:
    """Walk the events in id order and name each break.

    For each entry: its own hash must hold (else it was changed), its id
    must follow the previous one's (else those between were removed), and
    its ``prev_sha256`` must be the previous entry's hash. A link that does
    not hold is explained, in this order, as: this entry was moved (its id
    changed: an earlier entry links to it), or the one it links to was (it
    sits later); entries inserted (a later entry links back to the previous
    one, or this one links back past the entries just before it); entries
    removed (ids skip); else the previous entry was changed and re-hashed
    (this entry's own hash holds) or this one was changed (it does not).
    """
    at_sha = {GENESIS: -1}                       # stored sha256 -> position
    linked_from: dict[str, list[int]] = defaultdict(list)   # prev_sha256 -> positions
    for n, e in enumerate(events):
        at_sha.setdefault(e["sha256"], n)
        linked_from[e["prev_sha256"]].append(n)

    prev_sha, prev_id, n = GENESIS, 0, 0
    while n < len(events):
        e = events[n]
        eid = e["id"]
        own_ok = _own_hash(e) == e["sha256"]
        if not own_ok:
            found.event(eid, "changed", f"entry {eid}: does not match its own hash: changed "
                        "after it was written")
        if e["prev_sha256"] != prev_sha:
            earlier = [m for m in linked_from.get(e["sha256"], ()) if m < n]
            if not own_ok and earlier:
                found.event(eid, "changed", f"entry {eid}: its id was changed: it belongs "
                            f"before entry {events[earlier[0]]['id']}")
                n += 1
                continue                       # an outlier: the chain goes on around it
            back = at_sha.get(e["prev_sha256"])
            later = linked_from.get(prev_sha, [])
            k = bisect_right(later, n)
            if back is not None and back > n:
                pass                           # it links to a moved entry, named when reached
            elif k < len(later):
                last = events[later[k] - 1]["id"]
                found.event(eid, "inserted", f"{_span(eid, last)}: inserted after entry "
                            f"{prev_id} (entry {events[later[k]]['id']} links to {prev_id})")
                prev_id, n = last, later[k]
                continue
            elif back is not None and back < n - 1:
                first = events[back + 1]["id"]
                target = "the start" if back < 0 else f"entry {events[back]['id']}"
                found.event(first, "inserted", f"{_span(first, prev_id)}: inserted (entry "
                            f"{eid} links to {target}, before them)")
            elif eid > prev_id + 1:
                pass                           # reported below: ids skip
            elif own_ok and n > 0:
                found.event(prev_id, "changed", f"entry {prev_id}: is not the entry that "
                            f"entry {eid} was chained to: changed and re-hashed (or an entry "
                            "after it removed and the rest renumbered)")
            elif own_ok:
                found.event(eid, "changed", f"entry {eid}: the first entry, but it does not "
                            "start from 64 zeros: entries before it removed or it was changed")
        if eid > prev_id + 1:
            found.event(prev_id + 1, "removed", f"{_span(prev_id + 1, eid - 1)}: removed "
                        f"(ids jump from {prev_id} to {eid})")
        prev_sha, prev_id = e["sha256"], eid
        n += 1


def _check_checkpoints(cps: list[dict[str, Any]], events: list[dict[str, Any]],
                       public_key_pem: bytes, found: _Findings) -> int:
    """Check each checkpoint's id, key and signature, then the event it names.

    Returns the id of the last event a good checkpoint vouches for (0 if none).
    """
    fingerprint = key_fingerprint(public_key_pem)
    by_id = {e["id"]: e for e in events}
    last_id = events[-1]["id"] if events else 0
    signed_head, expected = 0, 1
    for cp in cps:
        cid = cp["id"]
        if cid > expected:
            found.checkpoint(expected, "removed", f"checkpoints {expected}-{cid - 1}: removed "
                             f"(ids jump from {expected - 1} to {cid})")
        expected = cid + 1
        if not _signed(cp, public_key_pem):
            if cp["key_sha256"] != fingerprint and _signed(dict(cp, key_sha256=fingerprint),
                                                           public_key_pem):
                found.checkpoint(cid, "changed", f"checkpoint {cid}: its key fingerprint was "
                                 "changed")
            elif cp["key_sha256"] != fingerprint:
                found.checkpoint(cid, "other key", f"checkpoint {cid}: signed by another key "
                                 f"({str(cp['key_sha256'])[:16]}..., not {fingerprint[:16]}...)")
            else:
                found.checkpoint(cid, "changed", f"checkpoint {cid}: its signature does not "
                                 "verify: changed or forged")
            continue
        head_id = cp["head_id"]
        head = by_id.get(head_id)
        if head is None and head_id > last_id:
            found.event(last_id + 1, "removed", f"{_span(last_id + 1, head_id)}: removed from "
                        f"the end (checkpoint {cid} signed entry {head_id}, the log ends at "
                        f"{last_id})")
        elif head is None:
            found.event(head_id, "removed", f"entry {head_id}: removed (checkpoint {cid} "
                        "signed it)")
        elif head["sha256"] != cp["head_sha256"]:
            found.event(head_id, "changed", f"entry {head_id}: not the entry checkpoint {cid} "
                        f"signed: it or an entry after {signed_head} was changed and the chain "
                        "re-hashed from there")
        else:
            signed_head = max(signed_head, head_id)
    return signed_head


def _signed(cp: dict[str, Any], public_key_pem: bytes) -> bool:
    """True if the checkpoint's signature verifies over its message with this key."""
    try:
        message = checkpoint_message(cp)
    except ValueError:
        return False
    sig = cp["signature"]
    return isinstance(sig, str) and signing.verify(public_key_pem, message, sig.encode())
