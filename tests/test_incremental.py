"""Incremental runs (issue 3, point 4): a second archive of a source takes only new or
changed items, by SHA-256; a changed item is a new version and the old one stays."""

from __future__ import annotations

import csv
import json
import os
import shutil
import sqlite3

import pytest

from test_replication import _virtual_drives


@pytest.fixture
def source(one_set_archive, tmp_path):
    """A private copy of a one-set archive that the test may change."""
    dest = tmp_path / "src"
    shutil.copytree(one_set_archive, dest)
    return dest


def _rows(home, sql, args=()):
    with sqlite3.connect(home / "inventory.db") as db:
        return db.execute(sql, args).fetchall()


def _records(source):
    with open(source / "归档文件目录.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _add_record(source, like: dict, number: int, content: bytes) -> str:
    """A new record beside ``like`` (next 件号 of its class), with its catalog row."""
    rows = _records(source)
    path = like["文件"].rsplit("/", 1)[0] + f"/{number:04d}_新增材料.pdf"
    (source / path).write_bytes(b"%PDF-1.4\n" + content + b"\n%%EOF\n")
    row = dict(like, 件号=f"{number:04d}", 档号=like["档号"].rsplit("-", 1)[0] + f"-{number:04d}",
               题名="新增材料", 文件=path)
    with open(source / "归档文件目录.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows + [row])
    return path


def _ok(result):
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def test_a_second_run_of_an_unchanged_source_archives_nothing(run, home, source):
    _ok(run("archive", str(source)))
    sets, discs, events = (_rows(home, f"SELECT count(*) FROM {t}")[0][0]
                           for t in ("disc_sets", "discs", "events"))
    os.utime(source / _records(source)[0]["文件"], ns=(1, 1))  # touched, not changed
    res = _ok(run("archive", str(source)))
    assert "nothing new to archive" in res.stdout
    assert f"{len(_records(source)) + 1} file(s) unchanged" in res.stdout
    assert _rows(home, "SELECT count(*) FROM disc_sets")[0][0] == sets
    assert _rows(home, "SELECT count(*) FROM discs")[0][0] == discs
    # nothing recorded but the job's signed checkpoint
    assert _rows(home, "SELECT count(*) FROM events")[0][0] == events


def test_new_and_changed_items_are_archived_and_the_old_version_stays(run, home, source):
    _ok(run("archive", str(source)))
    (first_set,) = [r[0] for r in _rows(home, "SELECT set_id FROM disc_sets")]
    old_discs = _rows(home, "SELECT disc_id, state, image_sha256 FROM discs ORDER BY disc_id")
    rows = _records(source)
    changed = rows[1]["文件"]
    old_sha = _rows(home, "SELECT sha256 FROM items WHERE path = ?", [changed])[0][0]
    with open(source / changed, "ab") as f:
        f.write(b"\n% corrected scan\n")
    added = _add_record(source, rows[-1], len(rows) + 1, b"new record")

    res = _ok(run("archive", str(source)))
    assert "2 changed file(s) archived as new versions" in res.stdout   # and the catalog
    new_sets = [r[0] for r in _rows(home, "SELECT set_id FROM disc_sets WHERE set_id != ?",
                                    [first_set])]
    assert len(new_sets) == 1
    got = {p: v for p, v in _rows(home, "SELECT path, version FROM items WHERE set_id = ?",
                                  new_sets)}
    # the new record, the changed one (version 2) and the source's catalog, which changed too
    assert got == {added: 1, changed: 2, "归档文件目录.csv": 2}
    versions = _rows(home, "SELECT set_id, COALESCE(version, 1), sha256 FROM items "
                           "WHERE path = ? ORDER BY version", [changed])
    assert versions[0] == (first_set, 1, old_sha)
    assert versions[1][:2] == (new_sets[0], 2) and versions[1][2] != old_sha
    # the first set's discs are untouched
    assert _rows(home, "SELECT disc_id, state, image_sha256 FROM discs WHERE set_id = ? "
                       "ORDER BY disc_id", [first_set]) == old_discs
    # find shows both versions, each with its copies
    found = json.loads(_ok(run("find", changed, "--json")).stdout)
    assert sorted((f["set_id"], f["version"] or 1) for f in found) == [(first_set, 1),
                                                                        (new_sets[0], 2)]
    heads = [line for line in _ok(run("find", changed)).stdout.splitlines()
             if not line.startswith(" ")]
    assert sorted(" v2  " in h for h in heads) == [False, True], heads   # the text says which
    # and a third run finds nothing new again
    assert "nothing new to archive" in _ok(run("archive", str(source))).stdout


def test_the_plan_of_a_second_run_shows_only_what_is_new(run, home, source):
    _ok(run("archive", str(source)))
    rows = _records(source)
    added = _add_record(source, rows[-1], len(rows) + 1, b"planned")
    plan = json.loads(_ok(run("plan", str(source), "--json")).stdout)
    assert plan["unchanged_files"] == len(rows)          # every file but the two changed
    (s,) = plan["sets"]
    (d,) = s["discs"]
    assert d["files"] == 2 and d["records"] == 1          # the new record and the catalog
    assert d["first"] == d["last"] and d["first"].endswith(f"-{len(rows) + 1:04d}")
    assert added


def test_items_of_an_unfinished_set_are_not_archived_twice(run, home, source):
    _virtual_drives(home, "", "[drives.faults]\nwrite_error_at = 48")   # copy B fails
    assert run("archive", str(source)).exit_code == 1
    assert _rows(home, "SELECT state FROM disc_sets") == [("failed",)]
    res = _ok(run("archive", str(source)))
    assert "nothing new to archive" in res.stdout
    assert "not archived yet" in res.stderr and "discarchive burn" in res.stderr
    assert _rows(home, "SELECT count(*) FROM disc_sets")[0][0] == 1


def test_split_sorts_items_against_the_latest_version(home):
    from daemon.incremental import split
    from inventory.store import Inventory
    from manifests.catalog import Item

    inv = Inventory.open(home / "inventory.db")
    try:
        for n, (sha, version) in enumerate([("a" * 64, 1), ("b" * 64, 2)], 1):
            inv.record_set({"set_id": f"S{n}", "source": "/src", "state": "archived"},
                           [{"set_id": f"S{n}", "path": "x.pdf", "sha256": sha, "size": 1,
                             "version": version}], [])
        items = [Item("x.pdf", 1, "a" * 64, 0), Item("y.pdf", 1, "c" * 64, 0)]
        delta = split(inv, "/src", items)
        # x.pdf reverted to its first content: still a change against version 2
        assert [i.path for i in delta.changed] == ["x.pdf"]
        assert delta.versions == {"x.pdf": 3, "y.pdf": 1}
        assert [i.path for i in delta.to_archive] == ["x.pdf", "y.pdf"]
        assert split(inv, "/elsewhere", items).versions == {"x.pdf": 1, "y.pdf": 1}
        same = split(inv, "/src", [Item("x.pdf", 1, "b" * 64, 0)])
        assert (same.unchanged, same.versions, same.unfinished) == (1, {}, [])
    finally:
        inv.close()


def test_discs_lists_the_copies_of_an_image_recorded_but_never_burned(run, home):
    from inventory.store import Inventory
    inv = Inventory.open(home / "inventory.db")
    try:    # as a kill between recording a set's images and the first burn leaves it
        inv.record_set({"set_id": "160-2024-S01-01", "source": "/src", "state": "mastered",
                        "media": "dvd-r", "copies": 2, "record_count": 3}, [], [])
    finally:
        inv.close()
    res = _ok(run("discs"))
    lines = [line.split() for line in res.stdout.splitlines()[1:3]]
    assert [(w[0], w[1], w[2]) for w in lines] == [
        ("160-2024-S01-01-A", "not", "burned"), ("160-2024-S01-01-B", "not", "burned")]
    assert "`discarchive burn 160-2024-S01-01`" in res.stdout
    listed = json.loads(_ok(run("discs", "--json")).stdout)
    assert [(d["disc_id"], d["state"]) for d in listed] == [
        ("160-2024-S01-01-A", "not burned"), ("160-2024-S01-01-B", "not burned")]


def test_a_second_run_finishes_the_images_a_stopped_run_recorded(run, home, source,
                                                                   monkeypatch):
    import daemon.jobs

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt      # as a kill between recording the images and the burns

    monkeypatch.setattr(daemon.jobs, "_burn", stopped)
    assert run("archive", str(source)).exit_code == 130
    assert _rows(home, "SELECT state FROM disc_sets") == [("mastered",)]
    assert _rows(home, "SELECT count(*) FROM discs") == [(0,)]
    monkeypatch.undo()
    res = _ok(run("archive", str(source)))
    assert "recorded but not all burned (that run was stopped): finished now" in res.stderr
    assert "nothing new to archive" not in res.stdout
    assert _rows(home, "SELECT state FROM disc_sets") == [("archived",)]
    assert _rows(home, "SELECT count(*), min(state), max(state) FROM discs") == [
        (2, "verified", "verified")]
