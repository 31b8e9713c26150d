"""The chained event log: written through the Inventory, tampered with plain SQL, audited.

Every tampering test changes the inventory file the way someone with the
file and the sqlite3 shell would, then checks that the audit fails and names
the first entry at fault with the right kind.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import config
from daemon import jobs
from inventory import eventlog
from inventory.store import GENESIS, Inventory, canonical_json, entry_sha256, utcnow
from manifests import signing

AUDIT_DOC = Path(__file__).resolve().parents[1] / "docs" / "AUDIT.md"
SET = "160-2023-0001"
DISC = f"{SET}-A"
HASHED = ("at", "event_type", "outcome", "set_id", "disc_id", "detail", "agent", "prev_sha256",
          "sha256")


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def pem(key) -> bytes:
    return signing.public_pem(key)


@pytest.fixture
def log(tmp_path, key) -> Path:
    """An inventory with 10 events written by the Inventory's own methods.

    Checkpoint 1 signs entry 6, checkpoint 2 entry 10.
    """
    path = tmp_path / "inventory.db"
    inv = Inventory.create(path)
    inv.record_set({"set_id": SET, "created_at": utcnow(), "state": "mastered", "copies": 1}, [],
                   [{"event_type": "capture", "outcome": "success", "set_id": SET,
                     "detail": {"source": "/srv/档案/2023", "files": 12}},
                    {"event_type": "message digest calculation", "outcome": "success",
                     "set_id": SET, "detail": {"algorithm": "SHA-256", "files": 12}}])
    inv.add_disc({"disc_id": DISC, "set_id": SET, "copy_label": "A", "state": "burning"})
    inv.add_event("replication", "failure", SET, DISC,
                  {"drive": "d0", "attempt": 1, "class": "calibration", "message": "OPC failed"})
    inv.add_event("replication", "success", SET, DISC, {"drive": "d0", "attempt": 2})
    inv.update_disc(DISC, event={"event_type": "fixity check", "outcome": "success",
                                 "set_id": SET, "detail": {"files_checked": 12, "damaged": []}},
                    state="verified")
    inv.add_event("fixity check", "success", SET, DISC,
                  "read in drive d1\n\t\"second\" read: 档号 160-2023-0001 \x01 ok")
    eventlog.checkpoint(inv, key)
    inv.add_event("migration", "success", SET, None, {"from": "DVD-R", "to": "BD-R"},
                  agent="operator:王敏")
    inv.add_event("deaccession", "success", SET, None, {"reason": "retention ended"},
                  agent="operator:王敏")
    inv.add_event("fixity check", "failure", SET, DISC, {"damaged": ["data/2023/a.ofd"]})
    inv.add_event("metadata modification", "success", SET, None, "title corrected",
                  agent="operator:李强")
    eventlog.checkpoint(inv, key)
    inv.close()
    return path


def audit(path: Path, pem: bytes) -> eventlog.AuditReport:
    inv = Inventory.open(path)
    try:
        return eventlog.audit(inv, pem)
    finally:
        inv.close()


def sql(path: Path, statement: str, params=()) -> None:
    """Change the inventory file the way the sqlite3 shell would."""
    db = sqlite3.connect(path)
    db.execute(statement, params)
    db.commit()
    db.close()


def rows(path: Path, table: str = "events") -> list[dict]:
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    out = [dict(r) for r in db.execute(f"SELECT * FROM {table} ORDER BY id")]
    db.close()
    return out


def flip(value: str) -> str:
    """``value`` with one byte changed: the first ASCII letter or digit, low bit flipped."""
    data = bytearray(value.encode("utf-8"))
    i = next(i for i, b in enumerate(data) if chr(b).isalnum() and b < 0x80)
    data[i] ^= 1
    return data.decode("utf-8")


def forged(**fields) -> dict:
    """An event with its hash computed correctly, as a forger who read this code would."""
    e = {"at": utcnow(), "event_type": "fixity check", "outcome": "success", "set_id": SET,
         "disc_id": DISC, "detail": "{}", "agent": "discarchive", **fields}
    e["sha256"] = entry_sha256(e)
    return e


def insert(path: Path, event: dict) -> None:
    sql(path, f"INSERT INTO events ({', '.join(event)}) VALUES ({', '.join('?' * len(event))})",
        list(event.values()))


# -- a good log ----------------------------------------------------------------

def test_clean_log_audits_ok(log, pem):
    report = audit(log, pem)
    assert report.ok, report.problems
    assert (report.entries, report.checkpoints) == (10, 2)
    assert report.first_break is None and report.checkpoint_break is None
    assert (report.signed_head, report.unsigned) == (10, 0)
    json.dumps(report.to_dict())


def test_entries_are_chained_as_documented(log):
    events = rows(log)
    assert [e["id"] for e in events] == list(range(1, 11))
    assert events[0]["prev_sha256"] == GENESIS == "0" * 64
    for before, e in zip([None] + events, events):
        assert e["prev_sha256"] == (before["sha256"] if before else GENESIS)
        fields = {k: e[k] for k in ("id", "at", "event_type", "outcome", "set_id", "disc_id",
                                    "detail", "agent", "prev_sha256")}
        text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert e["sha256"] == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert events[6]["agent"] == "operator:王敏"


def test_two_threads_writing_at_once_make_one_chain(tmp_path, key, pem):
    path = tmp_path / "inventory.db"
    Inventory.create(path).close()
    start = threading.Barrier(2)
    errors = []

    def write(drive: str) -> None:
        inv = Inventory.open(path)
        try:
            start.wait()
            for n in range(40):
                inv.add_event("replication", "success", SET, f"{SET}-{drive}", {"n": n})
        except BaseException as exc:  # noqa: BLE001 - checked below
            errors.append(exc)
        finally:
            inv.close()

    threads = [threading.Thread(target=write, args=(d,)) for d in "AB"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    inv = Inventory.open(path)
    eventlog.checkpoint(inv, key)
    inv.close()
    report = audit(path, pem)
    assert report.ok, report.problems
    assert report.entries == 80 and report.signed_head == 80


def test_a_real_job_with_two_drives_writes_one_chain(home, demo_archive):
    cfg = config.load(home)
    assert jobs.archive(cfg, demo_archive, copies=2).ok
    key, pem = signing.load_keypair(cfg.key_path, cfg.public_key_path)
    inv = Inventory.open(cfg.inventory_path)
    cp = eventlog.checkpoint(inv, key)
    report = eventlog.audit(inv, pem)
    inv.close()
    assert report.ok, report.problems
    assert report.entries >= 6 and cp["head_id"] == report.signed_head == report.entries


def test_checkpoint_signs_only_a_moved_head(tmp_path, key, pem):
    inv = Inventory.create(tmp_path / "inventory.db")
    assert eventlog.checkpoint(inv, key) is None
    inv.add_event("capture", "success", SET)
    first = eventlog.checkpoint(inv, key)
    assert first["id"] == 1 and first["head_id"] == 1
    assert first["key_sha256"] == hashlib.sha256(pem).hexdigest()
    assert eventlog.checkpoint(inv, key) == first
    assert inv.db["checkpoints"].count == 1
    inv.add_event("fixity check", "success", SET)
    second = eventlog.checkpoint(inv, key)
    assert (second["id"], second["head_id"]) == (2, 2)
    assert signing.verify(pem, eventlog.checkpoint_message(second), second["signature"].encode())
    inv.close()


def test_an_event_field_that_is_not_text_is_refused(tmp_path):
    inv = Inventory.create(tmp_path / "inventory.db")
    with pytest.raises(ValueError):
        inv.add_event("capture", "success", set_id=2023)
    assert inv.db["events"].count == 0
    inv.close()


def test_an_inventory_from_before_the_chain_is_chained_on_open(tmp_path, key, pem):
    path = tmp_path / "inventory.db"
    Inventory.create(path).close()
    db = sqlite3.connect(path)
    db.executescript("""
        DROP TABLE checkpoints;
        ALTER TABLE events DROP COLUMN sha256;
        ALTER TABLE events DROP COLUMN prev_sha256;
        INSERT INTO events (at, event_type, outcome, set_id, detail, agent) VALUES
            ('2025-01-02T03:04:05Z', 'capture', 'success', '160-2022-0001', '{"files": 3}',
             'discarchive'),
            ('2025-01-02T03:09:00Z', 'fixity check', 'failure', '160-2022-0001', NULL,
             'discarchive');
    """)
    db.commit()
    db.close()
    inv = Inventory.open(path)
    assert inv.db["checkpoints"].exists()
    inv.add_event("replication", "success", "160-2022-0001")
    inv.close()
    events = rows(path)
    assert events[0]["prev_sha256"] == GENESIS
    assert all(e["sha256"] == entry_sha256(e) for e in events)
    Inventory.open(path).close()                       # a second open changes nothing
    assert rows(path) == events
    unsigned = audit(path, pem)
    assert not unsigned.ok and "no signed checkpoint at all" in unsigned.problems[0]
    inv = Inventory.open(path)
    eventlog.checkpoint(inv, key)
    inv.close()
    assert audit(path, pem).ok


def test_removing_every_checkpoint_is_not_intact(log, pem):
    db = sqlite3.connect(log)
    db.execute("DELETE FROM checkpoints")
    db.commit()
    db.close()
    report = audit(log, pem)
    assert not report.ok and "no signed checkpoint at all" in report.problems[-1]


# -- changed entries -------------------------------------------------------------

@pytest.mark.parametrize("column", HASHED)
def test_a_one_byte_change_in_any_entry_is_named(log, pem, column):
    for e in rows(log):
        if e[column] is None:
            continue
        sql(log, f"UPDATE events SET {column} = ? WHERE id = ?", [flip(e[column]), e["id"]])
        report = audit(log, pem)
        assert not report.ok
        assert report.first_break == (e["id"], "changed"), (column, report.problems)
        sql(log, f"UPDATE events SET {column} = ? WHERE id = ?", [e[column], e["id"]])
    assert audit(log, pem).ok


def test_changed_detail_outcome_and_time_are_named(log, pem):
    sql(log, "UPDATE events SET detail = replace(detail, '12', '13') WHERE id = 5")
    sql(log, "UPDATE events SET outcome = 'success' WHERE id = 9")
    report = audit(log, pem)
    assert report.first_break == (5, "changed")
    assert report.problems == ["entry 5: does not match its own hash: changed after it was "
                               "written", "entry 9: does not match its own hash: changed after "
                               "it was written"]
    sql(log, "UPDATE events SET detail = replace(detail, '13', '12') WHERE id = 5")
    sql(log, "UPDATE events SET at = '2020-01-01T00:00:00Z' WHERE id = 3")
    assert audit(log, pem).first_break == (3, "changed")


def test_a_null_made_text_is_named(log, pem):
    sql(log, "UPDATE events SET disc_id = ? WHERE id = 7", [DISC])
    assert audit(log, pem).first_break == (7, "changed")


def test_a_changed_entry_with_its_hash_recomputed_is_named(log, pem):
    e = rows(log)[3]
    e["detail"] = flip(e["detail"])
    sql(log, "UPDATE events SET detail = ?, sha256 = ? WHERE id = 4",
        [e["detail"], entry_sha256(e)])
    report = audit(log, pem)
    assert report.first_break == (4, "changed")
    assert "changed and re-hashed" in report.problems[0]


def test_a_chain_rehashed_after_a_change_is_caught_by_the_checkpoints(log, pem):
    events = rows(log)
    events[3]["detail"] = flip(events[3]["detail"])
    prev = events[2]["sha256"]
    for e in events[3:]:
        e["prev_sha256"] = prev
        prev = entry_sha256(e)
        sql(log, "UPDATE events SET detail = ?, prev_sha256 = ?, sha256 = ? WHERE id = ?",
            [e["detail"], e["prev_sha256"], prev, e["id"]])
    report = audit(log, pem)
    assert report.first_break == (6, "changed")
    assert report.signed_head == 0
    assert "not the entry checkpoint 1 signed" in report.problems[0]


def test_an_entry_given_another_id_is_named(log, pem):
    sql(log, "UPDATE events SET id = 50 WHERE id = 5")
    report = audit(log, pem)
    assert report.first_break == (5, "removed")
    assert "entry 50: its id was changed: it belongs before entry 6" in report.problems


# -- removed entries -------------------------------------------------------------

def test_a_deleted_middle_entry_is_named(log, pem):
    sql(log, "DELETE FROM events WHERE id = 5")
    report = audit(log, pem)
    assert report.first_break == (5, "removed")
    assert report.problems == ["entry 5: removed (ids jump from 4 to 6)"]


def test_deleted_middle_entries_are_named_from_the_first(log, pem):
    sql(log, "DELETE FROM events WHERE id IN (3, 4, 8)")
    report = audit(log, pem)
    assert report.first_break == (3, "removed")
    assert report.problems == ["entries 3-4: removed (ids jump from 2 to 5)",
                               "entry 8: removed (ids jump from 7 to 9)"]


def test_deleted_last_entries_are_named_by_the_checkpoint(log, pem):
    sql(log, "DELETE FROM events WHERE id >= 9")
    report = audit(log, pem)
    assert not report.ok
    assert report.first_break == (9, "removed")
    assert report.problems == ["entries 9-10: removed from the end (checkpoint 2 signed entry "
                               "10, the log ends at 8)"]


def test_the_first_entries_deleted_are_named(log, pem):
    sql(log, "DELETE FROM events WHERE id <= 2")
    assert audit(log, pem).first_break == (1, "removed")


def test_entries_after_the_last_checkpoint_are_only_counted(log, key, pem):
    """The documented limit: a cut after the last checkpoint shows only as fewer unsigned."""
    inv = Inventory.open(log)
    inv.add_event("fixity check", "success", SET, DISC)
    inv.add_event("fixity check", "success", SET, DISC)
    inv.close()
    assert audit(log, pem).unsigned == 2
    sql(log, "DELETE FROM events WHERE id = 12")
    report = audit(log, pem)
    assert report.ok and report.unsigned == 1


# -- inserted entries ------------------------------------------------------------

def make_room_after(path: Path, event_id: int) -> None:
    """Renumber the entries after ``event_id`` one up (as a forger must, ids being unique)."""
    sql(path, "UPDATE events SET id = -id WHERE id > ?", [event_id])
    sql(path, "UPDATE events SET id = 1 - id WHERE id < 0")


def test_a_forged_entry_inserted_with_a_correct_hash_is_named(log, pem):
    make_room_after(log, 5)
    insert(log, forged(id=6, prev_sha256=rows(log)[4]["sha256"]))
    report = audit(log, pem)
    assert report.first_break == (6, "inserted")
    assert "entry 6: inserted (entry 7 links to entry 5, before them)" in report.problems


def test_a_forged_entry_with_a_wrong_link_is_named(log, pem):
    make_room_after(log, 5)
    insert(log, forged(id=6, prev_sha256="ab" * 32))
    report = audit(log, pem)
    assert report.first_break == (6, "inserted")
    assert report.problems[0] == "entry 6: inserted after entry 5 (entry 7 links to 5)"


def test_a_forged_first_entry_is_named(log, pem):
    make_room_after(log, 0)
    insert(log, forged(id=1, prev_sha256=GENESIS))
    assert audit(log, pem).first_break == (1, "inserted")


def test_an_entry_replaced_by_a_forgery_is_named(log, pem):
    before = rows(log)[3]["sha256"]
    sql(log, "DELETE FROM events WHERE id = 5")
    insert(log, forged(id=5, prev_sha256=before))
    assert audit(log, pem).first_break == (5, "changed")


def test_a_forgery_appended_after_the_last_checkpoint_is_only_counted(log, pem):
    """The documented limit: the chain alone cannot tell it; the next checkpoint signs it."""
    insert(log, forged(id=11, prev_sha256=rows(log)[-1]["sha256"]))
    report = audit(log, pem)
    assert report.ok and report.unsigned == 1


# -- checkpoints -----------------------------------------------------------------

@pytest.mark.parametrize("column", ["at", "head_sha256", "key_sha256", "signature"])
def test_a_one_byte_change_in_a_checkpoint_is_named(log, pem, column):
    cp = rows(log, "checkpoints")[0]
    sql(log, f"UPDATE checkpoints SET {column} = ? WHERE id = 1", [flip(cp[column])])
    report = audit(log, pem)
    assert not report.ok
    assert report.checkpoint_break == (1, "changed"), report.problems
    assert report.first_break is None


def test_a_checkpoint_moved_to_another_entry_is_named(log, pem):
    sql(log, "UPDATE checkpoints SET head_id = 7 WHERE id = 1")
    assert audit(log, pem).checkpoint_break == (1, "changed")


def test_a_deleted_checkpoint_is_named(log, pem):
    sql(log, "DELETE FROM checkpoints WHERE id = 1")
    report = audit(log, pem)
    assert report.checkpoint_break == (1, "removed")
    assert report.signed_head == 10


def test_a_checkpoint_by_another_key_is_named(log, pem):
    inv = Inventory.open(log)
    inv.add_event("fixity check", "success", SET, DISC)
    eventlog.checkpoint(inv, Ed25519PrivateKey.generate())
    inv.close()
    report = audit(log, pem)
    assert report.checkpoint_break == (3, "other key")
    assert report.signed_head == 10 and report.unsigned == 1


def test_a_forged_checkpoint_is_named(log, pem):
    sql(log, "INSERT INTO checkpoints VALUES (3, ?, 10, ?, ?, ?)",
        [utcnow(), rows(log)[-1]["sha256"], hashlib.sha256(pem).hexdigest(),
         "A" * 86 + "=="])
    assert audit(log, pem).checkpoint_break == (3, "changed")


# -- export ----------------------------------------------------------------------

def test_export_round_trip(log, pem, tmp_path):
    inv = Inventory.open(log)
    summary = eventlog.export(inv, tmp_path / "out", pem)
    stream, text = io.BytesIO(), io.StringIO()
    eventlog.export(inv, stream, pem)
    eventlog.export(inv, text, pem)
    inv.close()
    data = (tmp_path / "out" / eventlog.LOG_NAME).read_bytes()
    assert stream.getvalue() == data == text.getvalue().encode()
    assert (tmp_path / "out" / eventlog.KEY_NAME).read_bytes() == pem
    assert summary == {"entries": 10, "checkpoints": 2, "head_id": 10,
                       "head_sha256": rows(log)[-1]["sha256"]}
    lines = [json.loads(line) for line in data.decode("ascii").splitlines()]
    assert [r.pop("record") for r in lines] == ["event"] * 10 + ["checkpoint"] * 2
    assert lines[:10] == rows(log)
    assert lines[10:] == rows(log, "checkpoints")


def doc_procedure(tmp_path: Path) -> Path:
    blocks = re.findall(r"```python\n(.*?)```", AUDIT_DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1
    script = tmp_path / "check_eventlog.py"
    script.write_text(blocks[0], encoding="utf-8")
    return script


def run_check(script: Path, folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), str(folder)], capture_output=True,
                          text=True, timeout=60)


def test_the_documented_procedure_checks_an_export(log, pem, tmp_path):
    script = doc_procedure(tmp_path)
    assert len(script.read_text().splitlines()) <= 40
    inv = Inventory.open(log)
    eventlog.export(inv, tmp_path / "out", pem)
    inv.close()
    good = run_check(script, tmp_path / "out")
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith(f"OK: 10 entries, 2 checkpoints, key SHA-256 "
                                  f"{hashlib.sha256(pem).hexdigest()}")
    export = tmp_path / "out" / eventlog.LOG_NAME
    lines = export.read_text().splitlines()

    def rejects(changed: list[str], words: str) -> None:
        export.write_text("".join(line + "\n" for line in changed))
        res = run_check(script, tmp_path / "out")
        assert res.returncode == 1 and words in res.stderr, res.stderr
        assert "Traceback" not in res.stderr

    def edit(n: int, **fields) -> list[str]:
        changed = list(lines)
        changed[n] = json.dumps({**json.loads(lines[n]), **fields}, sort_keys=True)
        return changed

    rejects(edit(4, detail=flip(json.loads(lines[4])["detail"])), "BROKEN: entry 5: changed")
    rejects(edit(2, outcome="success"), "BROKEN: entry 3: changed")
    rejects(lines[:4] + lines[5:], "BROKEN: entry 6: out of place")
    rejects(lines[:8] + lines[10:], "BROKEN: checkpoint 2: a checkpoint before it, or entry "
                                    "10, is missing or changed")
    rejects(edit(10, head_sha256=flip(json.loads(lines[10])["head_sha256"])),
            "BROKEN: checkpoint 1: changed")
    rejects(lines[:10] + lines[11:], "BROKEN: checkpoint 2: a checkpoint before it")
    export.write_text("".join(line + "\n" for line in lines))
    (tmp_path / "out" / eventlog.KEY_NAME).write_bytes(
        signing.public_pem(Ed25519PrivateKey.generate()))
    res = run_check(script, tmp_path / "out")
    assert res.returncode == 1 and "BROKEN: checkpoint 1: changed, or signed by another key" \
        in res.stderr


def test_the_documented_example_hash(pem):
    doc = AUDIT_DOC.read_text(encoding="utf-8")
    (line,) = re.findall(r"```json\n(.*?)\n```", doc, re.S)
    stated = re.search(r"Its `sha256`: `([0-9a-f]{64})`", doc).group(1)
    assert canonical_json(json.loads(line)) == line.encode("utf-8")
    assert entry_sha256(json.loads(line)) == stated


def test_audit_of_an_unsigned_but_intact_chain_says_how_to_sign_it(home, run, one_set_archive):
    assert run("archive", str(one_set_archive)).exit_code == 0
    db = sqlite3.connect(home / "inventory.db")
    db.execute("DELETE FROM checkpoints")          # as after a job killed before its end
    db.commit()
    db.close()
    res = run("audit")
    assert res.exit_code == 1
    assert "chain is intact but nothing signs it" in res.stderr
    assert "has been changed" not in res.stderr
