"""Finishing what was interrupted or failed: verify settles a killed job, burn redoes a copy."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from click.testing import CliRunner

import cli
from conftest import extract_bag, flip_byte
from test_main_job import _discs, _nothing_recorded, _one_line_error
from test_replication import _burns, _virtual_drives


def _set_state(home: Path) -> str:
    db = sqlite3.connect(home / "inventory.db")
    try:
        return db.execute("SELECT state FROM disc_sets").fetchone()[0]
    finally:
        db.close()


def test_a_relative_home_works_from_any_folder(tmp_path, one_set_archive, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(cli.main, ["init", "--home", "rel/home", "--file-drives"]).exit_code == 0
    res = runner.invoke(cli.main, ["archive", "--home", "rel/home", str(one_set_archive),
                                   "--copies", "1"])
    assert res.exit_code == 0, res.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    res = runner.invoke(cli.main, ["verify", "--home", str(tmp_path / "rel" / "home"),
                                   "160-2024-S01-01-A"])
    assert res.exit_code == 0, res.stderr


def test_verify_settles_a_copy_whose_job_was_killed_after_the_burn(home, run, one_set_archive):
    assert run("archive", str(one_set_archive)).exit_code == 0
    a, b = _discs(run)
    db = sqlite3.connect(home / "inventory.db")     # as a kill -9 right after writing A leaves it
    db.execute("UPDATE discs SET state = 'burning', burned_at = NULL, medium_path = NULL, "
               "due_at = NULL, verification = NULL WHERE disc_id = ?", [a["disc_id"]])
    db.execute("UPDATE burns SET outcome = 'started', ended_at = NULL WHERE disc_id = ?",
               [a["disc_id"]])
    db.execute("UPDATE disc_sets SET state = 'mastered'")
    db.commit()
    db.close()
    res = run("verify", a["disc_id"])
    assert res.exit_code == 0, res.stdout + res.stderr
    after = {d["copy_label"]: d for d in _discs(run)}["A"]
    assert after["state"] == "verified" and after["medium_path"] == a["medium_path"]
    assert after["burned_at"] and after["due_at"] == a["due_at"]
    assert _set_state(home) == "archived"


def test_burn_redoes_the_failed_copy_under_its_own_id(home, run, one_set_archive):
    _virtual_drives(home, "[drives.faults]\nwrite_error_at = 48", "")
    assert run("archive", str(one_set_archive)).exit_code == 1
    a = _discs(run)[0]
    assert a["state"] == "failed" and _set_state(home) == "failed"
    _virtual_drives(home, "", "")
    res = run("burn", a["set_id"])
    assert res.exit_code == 0, res.stdout + res.stderr
    discs = {d["copy_label"]: d for d in _discs(run)}
    assert discs["A"]["state"] == "verified" and discs["A"]["medium_path"].endswith("-A~3.medium")
    assert [b["outcome"] for b in _burns(home, a["disc_id"])] == ["failed", "failed", "success"]
    assert _set_state(home) == "archived"
    _one_line_error(run("burn", a["set_id"]), 2, "nothing to burn")
    _one_line_error(run("burn", "160-1999-0001"), 2, "no disc set")


def test_burn_refuses_a_kept_image_that_changed(home, run, one_set_archive):
    _virtual_drives(home, "[drives.faults]\nwrite_error_at = 48", "")
    assert run("archive", str(one_set_archive)).exit_code == 1
    image = next((home / "images").glob("*.iso"))
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 1
    image.write_bytes(bytes(data))
    _virtual_drives(home, "", "")
    _one_line_error(run("burn", _discs(run)[0]["set_id"]), 2, "no longer matches")


def test_a_drive_that_is_not_there_stops_the_job_before_any_work(home, run, one_set_archive):
    cfg = home / "discarchive.toml"
    text = cfg.read_text(encoding="utf-8").split("\n[[drives]]")[0]
    cfg.write_text(text + '\n[[drives]]\nname = "sr9"\nadapter = "xorriso"\n'
                   'device = "/dev/no-such-sr9"\n', encoding="utf-8")
    _one_line_error(run("archive", str(one_set_archive)), 3, "/dev/no-such-sr9 does not exist")
    _nothing_recorded(home)


def test_check_fails_a_disc_whose_file_system_is_damaged(home, run, one_set_archive):
    assert run("archive", str(one_set_archive), "--copies", "1").exit_code == 0
    disc = _discs(run)[0]
    flip_byte(disc["medium_path"], 16 * 2048 + 40)
    res = run("check", disc["disc_id"])
    assert res.exit_code == 1
    assert "file system structures are damaged" in res.stdout
    assert res.stderr.startswith("discarchive: error: the four-property check failed")


def test_drives_with_a_broken_config_is_a_config_error(home, run):
    cfg = home / "discarchive.toml"
    text = cfg.read_text(encoding="utf-8").split("\n[[drives]]")[0]
    cfg.write_text(text + '\n[[drives]]\nname = "x"\n', encoding="utf-8")
    res = run("drives", "--json")
    assert res.exit_code == 2 and "discarchive: error:" in res.stderr
    assert json.loads(res.stdout)[0]["failure_class"] == "config"


def test_check_bag_uses_the_bags_manifest_for_fixity(home, run, one_set_archive, tmp_path):
    assert run("archive", str(one_set_archive), "--copies", "1").exit_code == 0
    out = extract_bag(home, tmp_path / "bag")
    report = json.loads(run("check-bag", str(out), "--json").stdout)
    fixity = [f for f in report["properties"]["authenticity"]["findings"] if f["check"] == "fixity"]
    assert fixity and all(f["status"] == "pass" for f in fixity)
    _one_line_error(run("check-bag", str(tmp_path)), 2, "no bagit.txt")
    _one_line_error(CliRunner().invoke(cli.main, ["validate-bag", str(out / "bagit.txt")]), 2,
                    "not a folder")
