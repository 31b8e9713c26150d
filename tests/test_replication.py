"""Burning copies: drives side by side, coasters recorded, the retry policy, `drives`."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from burners.base import DriveError
from burners.virtual import VirtualDrive
from inventory.store import Inventory
from test_main_job import _discs

DVD = 2_298_496


def _virtual_drives(home: Path, *tables: str, capacity: int = DVD) -> None:
    """Replace the home's drives by virtual ones; each extra TOML goes into one drive's table."""
    cfg = home / "discarchive.toml"
    text = cfg.read_text(encoding="utf-8").split("\n[[drives]]")[0]
    for n, extra in enumerate(tables, 1):
        text += (f'\n[[drives]]\nname = "v{n}"\nadapter = "virtual"\nmedia_dir = "media{n}"\n'
                 f"capacity_sectors = {capacity}\n{extra}\n")
    cfg.write_text(text, encoding="utf-8")


def _burns(home: Path, disc_id: str) -> list[dict]:
    inv = Inventory.open(home / "inventory.db")
    try:
        return inv.burns(disc_id)
    finally:
        inv.close()


def test_two_drives_burn_their_copies_at_the_same_time(home, run, one_set_archive, monkeypatch):
    _virtual_drives(home, "", "")
    both_burning = threading.Barrier(2, timeout=20)
    real_burn = VirtualDrive.burn

    def burn(self, *a, **k):
        both_burning.wait()          # breaks (and the burn fails) unless the other drive burns too
        return real_burn(self, *a, **k)

    monkeypatch.setattr(VirtualDrive, "burn", burn)
    res = run("archive", str(one_set_archive))
    assert res.exit_code == 0, res.stderr
    discs = _discs(run)
    assert [(d["drive"], d["state"]) for d in discs] == [("v1", "verified"), ("v2", "verified")]


def test_a_failing_drive_does_not_stop_the_other(home, run, one_set_archive):
    _virtual_drives(home, "[drives.faults]\nwrite_error_at = 48", "")
    res = run("archive", str(one_set_archive))
    assert res.exit_code == 1
    assert "not archived" in res.stderr
    a, b = _discs(run)
    assert a["state"] == "failed" and a["failure_class"] == "write-error"
    assert b["state"] == "verified"
    coasters = _burns(home, a["disc_id"])
    assert [c["outcome"] for c in coasters] == ["failed", "failed"], "burn_attempts = 2"
    assert all("WRITE@LBA=30h failed with SK=3h/ASC=0Ch/ACQ=00h" in c["message"] for c in coasters)
    assert coasters[0]["medium_path"] != coasters[1]["medium_path"], "a new blank each time"
    inv = Inventory.open(home / "inventory.db")
    (s,) = list(inv.db.query("SELECT state FROM disc_sets"))
    assert s["state"] == "failed"


def test_a_coaster_is_followed_by_the_next_blank_medium(home, run, one_set_archive, monkeypatch):
    _virtual_drives(home, "", "")
    real_burn = VirtualDrive.burn
    failed = []

    def burn(self, image, progress=None, speed=None):
        if self.name == "v1" and not failed:      # the drive's first medium turns out bad
            failed.append(1)
            Path(self._slot.current).write_bytes(b"\0" * 2048 * 40)   # written part-way
            raise DriveError("drive v1: WRITE@LBA=330h failed with SK=3h/ASC=0Ch/ACQ=00h",
                             "write-error")
        return real_burn(self, image, progress, speed=speed)

    monkeypatch.setattr(VirtualDrive, "burn", burn)
    res = run("archive", str(one_set_archive))
    assert res.exit_code == 0, res.stderr
    a = _discs(run)[0]
    assert a["state"] == "verified" and a["medium_path"].endswith("-A~2.medium")
    assert [(b["outcome"], b["failure_class"]) for b in _burns(home, a["disc_id"])] == [
        ("failed", "write-error"), ("success", None)]


def test_a_calibration_failure_is_retried_once_at_the_lowest_speed(home, run, one_set_archive):
    _virtual_drives(home, "[drives.faults]\nopc_failure = true")
    res = run("archive", str(one_set_archive), "--copies", "1")
    assert res.exit_code == 0, res.stderr
    (a,) = _discs(run)
    burns = _burns(home, a["disc_id"])
    assert [(b["outcome"], b["failure_class"], b["requested_speed"]) for b in burns] == [
        ("failed", "calibration", None), ("success", None, "min")]
    assert burns[0]["medium_path"] == burns[1]["medium_path"], "the same medium, still blank"


def test_the_wrong_kind_of_medium_is_refused(home, run, one_set_archive):
    _virtual_drives(home, 'medium_type = "CD-R"')
    res = run("archive", str(one_set_archive), "--copies", "1", "--media", "dvd-r")
    assert res.exit_code == 1
    (a,) = _discs(run)
    assert a["failure_class"] == "incompatible-medium"
    assert "insert a blank DVD-R" in a["failure"]


def test_a_drive_held_by_another_process_is_named(home, run, one_set_archive):
    _virtual_drives(home, "")
    media = home / "media1"
    media.mkdir()
    medium = media / "160-2024-S01-01-A.medium"
    medium.touch()
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; f = open(sys.argv[1], 'rb'); "
                               "print('ready', flush=True); time.sleep(60)", str(medium)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        res = run("archive", str(one_set_archive), "--copies", "1")
    finally:
        holder.kill()
        holder.wait()
    assert res.exit_code == 1
    (a,) = _discs(run)
    assert a["failure_class"] == "drive-busy" and str(holder.pid) in a["failure"]
    assert len(_burns(home, a["disc_id"])) <= 1, "a busy drive is not fed new media"


def test_unreadable_sectors_name_exactly_the_damaged_items(home, run, one_set_archive):
    _virtual_drives(home, "", "")
    assert run("archive", str(one_set_archive), "--copies", "1").exit_code == 0
    (a,) = _discs(run)
    inv = Inventory.open(home / "inventory.db")
    x, y = sorted(inv.items(a["set_id"]), key=lambda i: -i["size"])[:2]
    assert x["size"] > 2048 and y["extent_lba"] > x["extent_lba"] + 1
    bad = [x["extent_lba"] + 1, y["extent_lba"]]
    inv.close()
    faults = f"[drives.faults]\nunreadable = {bad}"
    _virtual_drives(home, faults, faults)
    res = run("verify", a["disc_id"])
    assert res.exit_code == 1
    damaged = sorted(line.split("damaged: ")[1].split(": ")[0]
                     for line in res.stdout.splitlines() if "damaged: " in line)
    assert damaged == sorted([x["disc_path"], y["disc_path"]])
    assert f"unreadable sectors {bad[0]}" in res.stdout
    assert _discs(run)[0]["state"] == "damaged"
    inv = Inventory.open(home / "inventory.db")
    checks = [json.loads(e["detail"]) for e in inv.events(disc_id=a["disc_id"])
              if e["event_type"] == "fixity check"][1:]
    assert [(c["drive"], c["read"]) for c in checks] == [("v1", 1), ("v2", 2)]
    assert checks[1]["bad_sectors"] == [[bad[0], 1], [bad[1], 1]]


def test_unreadable_sectors_in_one_drive_only_do_not_condemn_the_disc(home, run, one_set_archive):
    _virtual_drives(home, "[drives.faults]\nunreadable = [40, 41, 42]", "")
    res = run("archive", str(one_set_archive))
    assert res.exit_code == 0, res.stderr
    a = _discs(run)[0]
    assert a["state"] == "verified"
    inv = Inventory.open(home / "inventory.db")
    checks = [json.loads(e["detail"]) for e in inv.events(disc_id=a["disc_id"])
              if e["event_type"] == "fixity check"]
    assert [(c["drive"], c["read"], c["bad_sectors"]) for c in checks] == [
        ("v1", 1, [[40, 3]]), ("v2", 2, [])]


def test_every_burn_records_drive_medium_speed_and_tool(home, run, one_set_archive):
    res = run("archive", str(one_set_archive), "--copies", "1")
    assert res.exit_code == 0, res.stderr
    (a,) = _discs(run)
    (b,) = _burns(home, a["disc_id"])
    assert b["drive"] == "file-a" and b["adapter"] == "xorriso" and b["outcome"] == "success"
    assert b["tool_version"].startswith("xorriso") and b["medium_type"]
    assert b["started_at"] <= b["ended_at"] and b["seconds"] >= 0


def test_drives_lists_configured_drives_and_their_media(home, run):
    res = run("drives", "--json")
    assert res.exit_code == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [(r["name"], r["adapter"], r["state"], r["configured"]) for r in rows
            if r["configured"]] == [("file-a", "xorriso", "no-medium", True),
                                    ("file-b", "xorriso", "no-medium", True)]
    text = run("drives").stdout.splitlines()
    assert text[0].split()[:3] == ["DRIVE", "ADAPTER", "STATE"] and "file-a" in text[1]


def test_drives_exits_3_when_a_configured_drive_cannot_answer(home, run, tmp_path):
    res = run("drives", "--json", env={"PATH": str(tmp_path)})
    assert res.exit_code == 3
    rows = json.loads(res.stdout)
    assert {r["failure_class"] for r in rows if r["configured"]} == {"tool-missing"}


@pytest.mark.parametrize("fault,failure_class,words", [
    ("close_session_error = true", "medium-error", "CLOSE SESSION failed with SK=5h/ASC=72h/ACQ=03h"),
    ("power_loss_at = 100", "power-loss", ""),
    ("not_blank = true", "medium-not-blank", ""),
    ('busy = "cdrecord"', "drive-busy", "cdrecord"),
    ("write_error_at = 48", "write-error", "WRITE@LBA=30h failed with SK=3h/ASC=0Ch/ACQ=00h"),
])
def test_each_failure_class_ends_as_a_recorded_failed_burn(home, run, one_set_archive, fault,
                                                          failure_class, words):
    _virtual_drives(home, f"[drives.faults]\n{fault}")
    res = run("archive", str(one_set_archive), "--copies", "1", "--media", "custom:4000")
    assert res.exit_code == 1
    assert "not archived" in res.stderr
    (a,) = _discs(run)
    assert a["state"] == "failed" and a["failure_class"] == failure_class
    assert words in a["failure"] and words in res.stdout
    burns = _burns(home, a["disc_id"])
    assert all(b["outcome"] == "failed" and b["failure_class"] == failure_class for b in burns)
    inv = Inventory.open(home / "inventory.db")
    failures = [json.loads(e["detail"]) for e in inv.events(disc_id=a["disc_id"])
                if e["event_type"] == "replication"]
    assert failures and all(f["class"] == failure_class for f in failures)
    assert [s["state"] for s in inv.db.query("SELECT state FROM disc_sets")] == ["failed"]


def test_a_hung_burner_is_stopped_and_recorded(home, run, one_set_archive, tmp_path):
    fake = tmp_path / "xorriso"
    fake.write_text("#!/bin/sh\n"
                    'case " $* " in *" -as cdrecord "*) exec sleep 60 ;; esac\n'
                    'exec xorriso "$@"\n')
    fake.chmod(0o755)
    _set_drive = (home / "discarchive.toml").read_text(encoding="utf-8")
    _set_drive = _set_drive.replace('timeout = 3600', f'timeout = 1\nxorriso = "{fake}"', 1)
    (home / "discarchive.toml").write_text(_set_drive, encoding="utf-8")
    res = run("archive", str(one_set_archive), "--copies", "1")
    assert res.exit_code == 1
    (a,) = _discs(run)
    assert a["failure_class"] == "timeout" and a["state"] == "failed"
