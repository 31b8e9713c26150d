"""Trust, end to end: one-byte changes are named, the four-property check, the audit."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from inventory.store import Inventory
from conftest import extract_bag, flip_byte
from test_main_job import _discs


@pytest.fixture
def archived(home, run, one_set_archive):
    assert run("archive", str(one_set_archive), "--copies", "1").exit_code == 0
    (disc,) = _discs(run)
    return disc


def _flip_in_file(home: Path, disc: dict, name: str) -> None:
    """Flip one byte in the middle of the file ``name`` (path in the bag) on the medium."""
    inv = Inventory.open(home / "inventory.db")
    s = inv.disc_set(disc["set_id"])
    places = {n: (lba, size) for n, lba, size, _ in json.loads(s["tag_files"])}
    places.update({i["disc_path"]: (i["extent_lba"], i["size"]) for i in inv.items(disc["set_id"])})
    inv.close()
    lba, size = places[name]
    flip_byte(disc["medium_path"], lba * 2048 + size // 2)


@pytest.mark.parametrize("name", ["manifest-sha256.txt", "bag-info.txt", "归档文件目录.csv",
                                  "tagmanifest-sha256.txt", "data/归档文件目录.csv"])
def test_a_one_byte_change_in_any_bag_file_is_named(home, run, archived, name):
    _flip_in_file(home, archived, name)
    res = run("verify", archived["disc_id"])
    assert res.exit_code == 1
    assert f"damaged: {name}: SHA-256 differs from the record" in res.stdout


def test_a_one_byte_change_in_the_file_system_is_named_as_such(home, run, archived):
    flip_byte(archived["medium_path"], 16 * 2048 + 100)   # the primary volume descriptor
    res = run("verify", archived["disc_id"])
    assert res.exit_code == 1
    assert "file system structures are damaged" in res.stdout and "damaged: data/" not in res.stdout


def test_check_reports_the_four_properties_and_logs_its_digest(home, run, archived):
    res = run("check", archived["disc_id"], "--json")
    assert res.exit_code == 0, res.stdout + res.stderr
    report = json.loads(res.stdout)
    assert report["passed"] is True
    for prop in ("authenticity", "integrity", "usability", "security"):
        assert report["properties"][prop], prop
    stored = sorted((home / "reports").glob(f"{archived['disc_id']}-*.json"))
    assert len(stored) == 1
    inv = Inventory.open(home / "inventory.db")
    event = [e for e in inv.events(disc_id=archived["disc_id"]) if e["event_type"] == "validation"]
    assert len(event) == 1 and event[0]["outcome"] == "success"
    assert json.loads(event[0]["detail"])["sha256"] == hashlib.sha256(stored[0].read_bytes()).hexdigest()


def test_check_fails_and_names_a_changed_record(home, run, archived, one_set_archive):
    victim = "data/" + str(next(one_set_archive.rglob("*.pdf")).relative_to(one_set_archive))
    _flip_in_file(home, archived, victim)
    res = run("check", archived["disc_id"])
    assert res.exit_code == 1
    assert any(line.startswith("authenticity") and "fail" in line and victim in line
               for line in res.stdout.splitlines())


def test_check_bag_on_an_extracted_disc(home, run, archived, tmp_path):
    out = extract_bag(home, tmp_path / "bag")
    res = run("check-bag", str(out), "--json")
    assert res.exit_code == 0, res.stdout
    report = json.loads(res.stdout)
    assert any("verifies with the archive's own key" in f["reason"]
               for f in report["properties"]["authenticity"]["findings"])
    (out / "data" / "extra.exe").write_bytes(b"MZ\x90\x00")
    res = run("check-bag", str(out))
    assert res.exit_code == 1 and "extra.exe" in res.stdout


def test_audit_passes_then_names_a_changed_entry(home, run, archived, tmp_path):
    res = run("audit")
    assert res.exit_code == 0 and "event log intact" in res.stdout
    db = sqlite3.connect(home / "inventory.db")
    (eid,) = db.execute("SELECT id FROM events WHERE event_type = 'replication'").fetchone()
    db.execute("UPDATE events SET outcome = 'failure' WHERE id = ?", [eid])
    db.commit()
    db.close()
    res = run("audit")
    assert res.exit_code == 1
    assert f"first break: event {eid} (changed)" in res.stdout


def test_export_log_writes_what_an_auditor_needs(home, run, archived, tmp_path):
    res = run("export-log", str(tmp_path / "out"))
    assert res.exit_code == 0, res.stderr
    lines = (tmp_path / "out" / "eventlog.jsonl").read_text().splitlines()
    assert len(lines) >= 5 and all(json.loads(line) for line in lines)
    assert (tmp_path / "out" / "public_key.pem").read_bytes() == \
        (home / "keys" / "signing.pub").read_bytes()
    again = run("export-log", str(tmp_path / "out"))      # an earlier export: replaced
    assert again.exit_code == 0 and "the earlier export in" in again.stdout
    (tmp_path / "out" / "notes.txt").write_text("mine")
    refused = run("export-log", str(tmp_path / "out"))
    assert refused.exit_code == 2 and "is not empty (1 other entries, e.g. notes.txt)" in \
        refused.stderr and refused.stderr.count("\n") == 1
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"
