"""Hostile and mistaken input: one line, a non-zero status, nothing half-written."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from config.home import init_home, locked
from conftest import tree_state
from test_main_job import _discs, _nothing_recorded, _one_line_error


def _set_config(home: Path, old: str, new: str) -> None:
    cfg = home / "discarchive.toml"
    text = cfg.read_text(encoding="utf-8")
    assert old in text
    cfg.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_a_second_job_waits_for_the_lock(home, run, demo_archive):
    with locked(home):
        res = run("archive", str(demo_archive))
    _one_line_error(res, 2, f"PID {os.getpid()}", "wait for it")
    _nothing_recorded(home)
    assert run("archive", str(demo_archive), "--copies", "1").exit_code == 0


def test_a_home_inside_the_source_is_refused(tmp_path, demo_archive):
    from conftest import Cli
    source = tmp_path / "source"
    shutil.copytree(demo_archive, source)
    home = init_home(source / "home", file_drives=True)
    before = tree_state(source)
    _one_line_error(Cli(home)("archive", str(source)), 2, "overlap", "private key")
    assert tree_state(source) == before


@pytest.mark.parametrize("old,new,words", [
    ("reburn_years = 4", 'reburn_years = "four"', ["reburn_years must be a whole number"]),
    ("reburn_years = 4", "reburn_years = -4", ["reburn_years must be from 1 to 50"]),
    ("copies = 2", "copies = true", ["copies must be a whole number"]),
    ("copies = 2", "copys = 3", ["unknown setting 'copys'"]),
    ("keep_images = true", 'keep_images = "no"', ["keep_images must be true or false"]),
    ('media = "dvd-r"', "media = 5", ["media must be a quoted text"]),
    ('adapter = "xorriso"', 'adapter = "growisofs"', ["growisofs"]),
    ("timeout = 3600", 'timeout = "1h"', ["timeout must be a number"]),
    ('[[drives]]\nname = "file-a"', 'drives = "sr0"\n[[drivez]]\nname = "file-a"', ["drives"]),
    ('fonds = "160"', 'fonds = ""', ["archive.fonds ''", "letters and digits"]),
    ('fonds = "160"', 'fonds = "1/6"', ["archive.fonds '1/6'", "letters and digits"]),
    ('fonds = "160"', 'fonds = "16 0"', ["archive.fonds", "letters and digits"]),
    ('fonds = "160"', 'fonds = "１６０"', ["archive.fonds", "letters and digits"]),
    ('class_code = "SB"', 'class_code = ""', ["archive.class_code ''", "letters and digits"]),
    ('name = "file-b"', 'name = "file-a"', ["[[drives]] number 2", "'file-a'", "own name"]),
    ('name = "file-b"', 'name = " "', ["[[drives]] number 2", "name ' '"]),
])
def test_config_mistakes_are_caught_before_any_work(home, run, demo_archive, old, new, words):
    _set_config(home, old, new)
    _one_line_error(run("archive", str(demo_archive)), 2, *words)
    _nothing_recorded(home)


def test_a_name_that_is_not_utf8_is_refused(home, run, source_copy):
    gbk = "单据".encode("gbk") + b".pdf"
    folder = next(source_copy.glob("*/*/01_*"))
    with open(os.path.join(os.fsencode(folder), gbk), "wb") as f:
        f.write(b"%PDF-1.4\n")
    res = run("archive", str(source_copy))
    _one_line_error(res, 2, "is not a UTF-8 name", "\\xb5\\xa5", "rename")
    _nothing_recorded(home)


@pytest.mark.parametrize("name,why", [("a.pdf ", "ends with white space ' '"),
                                      ("\u3000a.pdf", "starts with white space '\\u3000'"),
                                      ("a\tb.pdf", "'\\t'"), ("a\x85b.pdf", "'\\x85'"),
                                      ("\x1b[31mred.pdf", "'\\x1b'")])
def test_names_with_controls_or_edge_spaces_are_refused(home, run, source_copy, name, why):
    """docs/NAMES.md: controls other than CR/LF and white space at either end are refused
    (%, CR and LF are percent-encoded instead: tests/test_hostile_names.py)."""
    (source_copy / name).write_bytes(b"x")
    res = run("archive", str(source_copy))
    _one_line_error(res, 2, "cannot go onto a disc", why)
    assert "\x1b" not in res.stderr
    _nothing_recorded(home)


def test_an_empty_inventory_is_not_taken_for_a_new_one(home, run, demo_archive):
    assert run("archive", str(demo_archive), "--copies", "1").exit_code == 0
    (home / "inventory.db").write_bytes(b"")
    for suffix in ("-wal", "-shm"):
        Path(str(home / "inventory.db") + suffix).unlink(missing_ok=True)
    image = next((home / "images").glob("*.iso"))
    before = image.read_bytes()
    _one_line_error(run("discs"), 2, "empty or not discarchive's", "restore")
    _one_line_error(run("archive", str(demo_archive)), 2, "restore")
    assert image.read_bytes() == before
    assert (home / "inventory.db").read_bytes() == b""


def test_an_image_left_by_a_killed_run_is_never_overwritten(home, run, demo_archive):
    orphan = home / "images" / "160-2024-S01-01.iso"
    orphan.write_bytes(b"left by an interrupted run")
    assert run("archive", str(demo_archive), "--copies", "1").exit_code == 0
    assert orphan.read_bytes() == b"left by an interrupted run"
    assert "160-2024-S02-01" in [d["set_id"] for d in _discs(run)]
    assert "160-2024-S01-01" not in [d["set_id"] for d in _discs(run)]


@pytest.mark.parametrize("edit,words", [
    (lambda t: t + "0099,160-SB·2024-Y-DJ-0099\n", ["names no file", "correct the catalog"]),
    (lambda t: t.replace("件号,档号", "件号,编号").replace(",文件\n", ",路径\n", 1), ["no 文件 column"]),
    (lambda t: t + t.splitlines()[1] + "\n", ["both describe", "correct the catalog"]),
    (lambda t: t.replace(",永久,", ",永远,", 1), ["保管期限 '永远'", "correct the catalog"]),
    (lambda t: t.replace("\n", ",extra\n", 2).replace(",extra", "", 1), ["more fields than the header", "line 2"]),
])
def test_catalog_problems_are_reported_with_their_line(home, run, source_copy, edit, words):
    cat = source_copy / "归档文件目录.csv"
    cat.write_text(edit(cat.read_text(encoding="utf-8")), encoding="utf-8")
    _one_line_error(run("archive", str(source_copy), "--strict"), 2, *words)
    _nothing_recorded(home)


def test_an_empty_catalog_is_refused(home, run, source_copy):
    (source_copy / "归档文件目录.csv").write_bytes(b"")
    _one_line_error(run("archive", str(source_copy)), 2, "no 文件 column")
    _nothing_recorded(home)


@pytest.mark.parametrize("copies", ["0", "-1", "10"])
def test_copies_out_of_range(home, run, demo_archive, copies):
    _one_line_error(run("archive", str(demo_archive), "--copies", copies), 2, "from 1 to 9")
    _nothing_recorded(home)


def test_usage_errors_are_one_line(run):
    _one_line_error(run("archive", "--copies", "abc", "x"), 2, "--copies", "--help")
    _one_line_error(run("archive", ""), 2, "SOURCE is empty")


def test_find_takes_wildcards_literally(home, run, demo_archive):
    assert run("archive", str(demo_archive), "--copies", "1").exit_code == 0
    assert run("find", "K8L9M").exit_code == 0
    for text in ("%", "K_L9M", "\\"):
        res = run("find", text)
        assert res.exit_code == 1 and "nothing matches" in res.stderr
    _one_line_error(run("find", " "), 2, "give some text")
    assert json.loads(run("find", "0001", "--json").stdout)


def test_a_public_key_that_does_not_match_is_refused(home, run, demo_archive, tmp_path):
    other = init_home(tmp_path / "other", file_drives=True)
    shutil.copy(other / "keys" / "signing.pub", home / "keys" / "signing.pub")
    _one_line_error(run("archive", str(demo_archive)), 2, "does not belong")
    _nothing_recorded(home)


def test_a_key_folder_others_can_write_is_refused(home, run, demo_archive):
    (home / "keys").chmod(0o777)
    _one_line_error(run("archive", str(demo_archive)), 2, "chmod 700")
    _nothing_recorded(home)


def test_a_copy_that_fails_a_later_check_becomes_damaged_and_recovers(home, run, demo_archive):
    assert run("archive", str(demo_archive)).exit_code == 0
    disc = _discs(run)[0]
    medium = Path(disc["medium_path"])
    good = medium.read_bytes()
    medium.write_bytes(good[:len(good) // 3])
    res = run("verify", disc["disc_id"])
    assert res.exit_code == 1 and ": unreadable sectors " in res.stdout
    assert _discs(run)[0]["state"] == "damaged"
    bad = run("verify", "--json", disc["disc_id"])
    report = json.loads(bad.stdout)
    assert bad.exit_code == 1 and not report["passed"] and report["bad_sectors"], report
    medium.write_bytes(good)
    good_run = run("verify", "--json", disc["disc_id"])
    report = json.loads(good_run.stdout)
    assert good_run.exit_code == 0 and report["passed"] and report["damaged"] == []
    assert report["image_sha256"] == disc["image_sha256"] and report["files_checked"] > 0
    assert _discs(run)[0]["state"] == "verified"


def test_warnings_for_empty_folders_and_files_that_are_not_records(home, run, source_copy):
    (source_copy / "空文件夹").mkdir()
    (source_copy / "notes.txt").write_text("not a record", encoding="utf-8")
    res = run("archive", str(source_copy), "--copies", "1")
    assert res.exit_code == 0, res.stderr
    assert "discarchive: warning: 1 empty folder(s) not archived" in res.stderr
    assert "1 of 34 files are not records" in res.stderr


def test_verify_with_the_medium_gone_records_nothing(home, run, demo_archive):
    assert run("archive", str(demo_archive), "--copies", "1").exit_code == 0
    disc = _discs(run)[0]
    Path(disc["medium_path"]).unlink()
    _one_line_error(run("verify", disc["disc_id"]), 3, "does not exist")
    after = _discs(run)[0]
    assert after["state"] == "verified" and after["verified_at"] == disc["verified_at"]


def test_a_configured_program_path_that_is_wrong_is_named(home, run, demo_archive):
    _set_config(home, "timeout = 3600", 'timeout = 3600\nxorriso = "/nowhere/xorriso"')
    _one_line_error(run("archive", str(demo_archive)), 3, "looked for /nowhere/xorriso")
    _nothing_recorded(home)
