"""The disc lifecycle end to end: cabinet, inspections, early re-burn flag, re-burns from
each kind of source with lineage, appraisal and the registers, on virtual file drives."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path

import openpyxl
import pycdlib
import pytest

from config import CATEGORY_ORDER
from conftest import flip_byte
from inventory import lifecycle as lc
from inventory import registers
from inventory.store import Inventory
from test_main_job import _discs

DVD = 2_298_496


def _drives(home: Path, v1: str = "", v2: str = "", lifecycle: str = "") -> None:
    """Two virtual drives (each its own media folder), faults as TOML; a [lifecycle] table."""
    cfg = home / "discarchive.toml"
    text = cfg.read_text(encoding="utf-8").split("\n[[drives]]")[0].split("\n[lifecycle]")[0]
    if lifecycle:
        text += f"\n[lifecycle]\n{lifecycle}\n"
    for n, extra in enumerate((v1, v2), 1):
        text += (f'\n[[drives]]\nname = "v{n}"\nadapter = "virtual"\nmedia_dir = "media{n}"\n'
                 f"capacity_sectors = {DVD}\n{extra}\n")
    cfg.write_text(text, encoding="utf-8")


def _ok(res, code: int = 0):
    assert res.exit_code == code, (res.stdout, res.stderr)
    return res


def _json(run, *args):
    return json.loads(_ok(run(*args, "--json")).stdout)


def _db(home: Path) -> Inventory:
    return Inventory.open(home / "inventory.db")


def _query(home: Path, sql: str, params=()) -> list[tuple]:
    inv = _db(home)
    try:
        return inv.db.execute(sql, params).fetchall()
    finally:
        inv.close()


def _slots(run) -> dict[tuple, str]:
    """The storage map as {(site, cabinet, shelf, slot): disc ID}."""
    world = _json(run, "cabinet")
    return {(c["site"], c["cabinet"], sh["shelf"], d["slot"]): d["disc_id"]
            for c in world["cabinets"] for sh in c["shelves"] for d in sh["slots"]}


def _medium(home: Path, disc_id: str) -> Path:
    (path,) = _query(home, "SELECT medium_path FROM discs WHERE disc_id = ?", [disc_id])[0:1]
    return Path(path[0])


def _ids(home: Path) -> tuple[str, str, str]:
    """The home's only disc (image) ID and its copies A and B, as the inventory names them."""
    ((image,),) = _query(home, "SELECT set_id FROM disc_sets")
    copies = dict(_query(home, "SELECT copy_label, disc_id FROM discs WHERE set_id = ?", [image]))
    assert copies == {"A": f"{image}-A", "B": f"{image}-B"}, copies
    return image, copies["A"], copies["B"]


def _payload(home: Path, image: str) -> list[tuple[str, int]]:
    """A disc's payload files (disc path, first LBA), in disc order."""
    return _query(home, "SELECT disc_path, extent_lba FROM items WHERE set_id = ? AND size > 0 "
                        "ORDER BY extent_lba", [image])


def _migration(home: Path, disc_id: str) -> dict:
    (detail,) = _query(home, "SELECT detail FROM events WHERE event_type = 'migration' AND "
                             "outcome = 'success' AND disc_id = ?", [disc_id])[0]
    return json.loads(detail)


def _bag_info(home: Path, disc_id: str) -> bytes:
    """bag-info.txt as burned on a copy's medium, by its disc's recorded extent."""
    ((tags,),) = _query(home, "SELECT s.tag_files FROM disc_sets s JOIN discs d USING (set_id) "
                              "WHERE d.disc_id = ?", [disc_id])
    ((_, lba, length, _),) = [t for t in json.loads(tags) if t[0] == "bag-info.txt"]
    with open(_medium(home, disc_id), "rb") as f:
        f.seek(lba * 2048)
        return f.read(length)


@pytest.fixture
def archived(home, run, one_set_archive):
    """One disc set of one disc, copies A (drive v1) and B (drive v2), verified."""
    _drives(home)
    _ok(run("archive", str(one_set_archive)))
    return home


def test_a_disc_set_walks_through_its_lifecycle(archived, run):
    home = archived
    SET, A, B = _ids(home)
    today = dt.datetime.now(dt.timezone.utc).date()

    # -- shelving: a slot holds one disc; off-site copies keep their site ----------------
    assert _ok(run("shelve", A, "--cabinet", "防磁柜1", "--shelf", "1", "--slot", "1")).stdout
    taken = _ok(run("shelve", B, "--cabinet", "防磁柜1", "--shelf", "1", "--slot", "1"), 2)
    assert taken.stderr.startswith("discarchive: error: cabinet 防磁柜1, shelf 1, slot 1 holds "
                                   f"disc {A}") and taken.stderr.count("\n") == 1
    _ok(run("shelve", B, "--cabinet", "2", "--shelf", "3", "--slot", "7", "--site", "异地库"))
    assert _slots(run) == {(None, "防磁柜1", 1, 1): A, ("异地库", "2", 3, 7): B}
    _ok(run("checkout", A, "--by", "张三", "--reason", "查阅 2024 年登记表"))
    again = _ok(run("checkout", A, "--by", "李四", "--reason", "x"), 2)
    assert "already out with 张三" in again.stderr
    (slot,) = [d for c in _json(run, "cabinet")["cabinets"] for sh in c["shelves"]
               for d in sh["slots"] if d["disc_id"] == A]
    assert (slot["out_by"], slot["out_reason"]) == ("张三", "查阅 2024 年登记表")
    text = _ok(run("cabinet")).stdout
    assert "存放示意图" in text and "OUT with 张三" in text and "off-site 异地库, cabinet 2" in text
    _ok(run("checkin", A))
    assert _slots(run)[(None, "防磁柜1", 1, 1)] == A, "a checked-out disc keeps its slot"
    assert _query(home, "SELECT out_by, in_at IS NOT NULL FROM checkouts") == [("张三", 1)]
    moves = _query(home, "SELECT json_extract(detail, '$.action') FROM events WHERE "
                         "event_type = 'transfer' ORDER BY id")
    assert [m[0] for m in moves] == ["shelve", "shelve", "checkout", "checkin"]

    # -- two inspections, the second worse: the disc is flagged for an early re-burn ------
    first = _json(run, "inspect", A)[0]
    assert (first["passed"], first["bad_sectors"], first["slow_sectors"], first["reasons"]) == (
        1, 0, 0, [])
    assert first["read_bytes"] > 0 and first["speed_kbs"] > 0
    slow = [lba for _, lba in _payload(home, SET)[:10]]
    _drives(home, v1=f"[drives.faults]\nslow = {slow}")
    worse = run("inspect", A)
    assert worse.exit_code == 1 and f"reburn {A}" in worse.stderr
    assert "slow sectors rose from 0 to 10 since the inspection of" in worse.stdout
    rows = _query(home, "SELECT slow_sectors, flag FROM inspections WHERE disc_id = ? ORDER BY id",
                  [A])
    assert [r[0] for r in rows] == [0, 10] and rows[0][1] is None and "rose" in rows[1][1]
    due = _json(run, "due")
    (early,) = due["reburn"]
    assert early["disc_id"] == A and early["why"].startswith("early re-burn: slow sectors rose")
    assert early["place"] == "cabinet 防磁柜1, shelf 1, slot 1"
    assert [d["disc_id"] for d in due["inspect"]] == [], "10 % of 2 discs: the 1 done this year"
    _drives(home)

    # -- re-burn 1: from the kept image --------------------------------------------------
    out = _ok(run("reburn", A)).stdout
    assert "source image: the kept image" in out and f"{SET}-A2 replaces {A}: verified" in out
    discs = {d["disc_id"]: d for d in _discs(run)}
    assert discs[A]["state"] == "superseded" and discs[f"{SET}-A2"]["state"] == "verified"
    assert _migration(home, f"{SET}-A2")["source"]["kind"] == "image"
    assert not _json(run, "due")["reburn"], "the flag went with the superseded disc"
    world = _json(run, "cabinet")
    assert [d["disc_id"] for d in world["not_shelved"]] == [f"{SET}-A2"]
    assert world["cabinets"][0]["shelves"][0]["slots"][0]["superseded_by"] == f"{SET}-A2"
    _ok(run("shelve", f"{SET}-A2", "--cabinet", "防磁柜1", "--shelf", "1", "--slot", "2"))

    # -- re-burn 2: the kept image is damaged, so from another copy that verifies ---------
    image = home / "images" / f"{SET}.iso"
    flip_byte(image, _payload(home, SET)[0][1] * 2048 + 10)
    out = _ok(run("reburn", B)).stdout
    assert f"source copy: copy {SET}-A2, read now" in out
    assert "passed over: the kept image does not match its record" in out
    assert _migration(home, f"{SET}-B2")["source"]["kind"] == "copy"
    assert _query(home, "SELECT state FROM discs WHERE disc_id = ?", [B]) == [("superseded",)]

    # -- re-burn 3: image and the other copy damaged: the disc itself, repaired -----------
    (x_path, x), (y_path, y) = _payload(home, SET)[:2]
    flip_byte(image, x * 2048 + 10)
    flip_byte(_medium(home, f"{SET}-A2"), x * 2048 + 10)    # A2: file X damaged
    flip_byte(_medium(home, f"{SET}-B2"), y * 2048 + 10)    # B2: file Y damaged
    out = _ok(run("reburn", f"{SET}-A2")).stdout
    assert f"source disc: the disc itself, {SET}-A2, repaired: {x_path} from {SET}-B2" in out
    source = _migration(home, f"{SET}-A3")["source"]
    assert source["kind"] == "disc" and source["repaired_from"] == {f"{SET}-B2": [x_path]}
    assert len(source["passed_over"]) == 3

    # -- re-burn the whole set: same set ID, same bag (Bag-Count), byte for byte ---------
    ((group, volumes),) = _query(home, "SELECT group_id, volumes FROM disc_sets")
    assert group != SET and SET.startswith(f"{group}-") and volumes == 1
    out = _ok(run("reburn", group)).stdout
    assert f"disc {SET} (1 of 1 of set {group}): source image" in out
    assert f"{SET}-A4 replaces {SET}-A3: verified" in out and f"{SET}-B3 replaces {SET}-B2" in out
    info = _bag_info(home, f"{SET}-A4")
    assert info == _bag_info(home, A) and b"Bag-Count: 1 of 1\n" in info
    assert f"Bag-Group-Identifier: {group}\n".encode() in info
    size = _query(home, "SELECT image_bytes FROM disc_sets")[0][0]
    assert (_medium(home, f"{SET}-B3").read_bytes()[:size]
            == _medium(home, A).read_bytes()[:size])
    inv = _db(home)
    try:
        assert [(d["disc_id"], d["generation"] or 1) for d in lc.lineage(inv, f"{SET}-A4")] == [
            (f"{SET}-A4", 4), (f"{SET}-A3", 3), (f"{SET}-A2", 2), (A, 1)]
    finally:
        inv.close()
    current = {d["disc_id"] for d in _discs(run) if d["state"] == "verified"}
    assert current == {f"{SET}-A4", f"{SET}-B3"}
    assert _query(home, "SELECT state FROM disc_sets") == [("archived",)]
    assert _slots(run) == {(None, "防磁柜1", 1, 1): A, (None, "防磁柜1", 1, 2): f"{SET}-A2",
                           ("异地库", "2", 3, 7): B}

    # -- appraisal after the keeping time: superseded discs, then the register -----------
    keep = lc.add_years(today, 3)
    early_list = _json(run, "appraisal", "--at", (keep - dt.timedelta(days=1)).isoformat())
    assert early_list["discs"] == [] and early_list["items"] == []
    listing = _json(run, "appraisal", "--at", keep.isoformat())
    assert {d["disc_id"] for d in listing["discs"]} == {A, B, f"{SET}-A2", f"{SET}-A3",
                                                        f"{SET}-B2"}
    assert all(d["reason"] == "superseded" for d in listing["discs"])
    future = _ok(run("appraisal", "--at", keep.isoformat(), "--approve", A, "--by", "赵六"), 2)
    assert "an approval is judged at today's date" in future.stderr
    assert future.stderr.count("\n") == 1, "one line: a future date approves nothing"
    _drives(home, lifecycle="keep_superseded_years = 0")    # due today: approvable today
    refused = _ok(run("appraisal", "--approve", f"{SET}-A4", "--by", "鉴定小组"), 2)
    assert "is not on the appraisal list" in refused.stderr
    assert not (home / "registers").exists(), "nothing is exported for a refused decision"
    done = _ok(run("appraisal", "--approve", A, "--approve", B, "--by", "鉴定小组 王五"))
    assert "nothing was deleted" in done.stdout
    (csv_path,) = (home / "registers").glob("销毁清册-*.csv")
    (xlsx_path,) = (home / "registers").glob("销毁清册-*.xlsx")
    with open(csv_path, encoding="utf-8-sig", newline="") as f:
        table = list(csv.reader(f))
    assert table[0][:3] == ["序号", "类别", "档号/光盘编号"]
    assert table[0][8:10] == ["存放位置", "鉴定意见"]
    assert [(r[0], r[2], r[8], r[10]) for r in table[1:]] == [
        ("1", A, "防磁柜1 第1层 第1位", "鉴定小组 王五"),
        ("2", B, "异地 异地库：2号柜 第3层 第7位", "鉴定小组 王五")]
    assert [r[9] for r in table[1:]] == [
        f"已于{today}由{SET}-A2替代，保留0年至{today}期满，拟销毁",
        f"已于{today}由{SET}-B2替代，保留0年至{today}期满，拟销毁"], "the opinion in Chinese"
    sheet = openpyxl.load_workbook(xlsx_path).active
    cells = [[("" if v is None else str(v)) for v in r] for r in sheet.iter_rows(values_only=True)]
    assert cells[0][0] == "销毁清册" and table == cells[-3:], "the XLSX holds the CSV's table"
    left = _json(run, "appraisal", "--at", keep.isoformat())
    assert {d["disc_id"] for d in left["discs"]} == {f"{SET}-A2", f"{SET}-A3", f"{SET}-B2"}
    (decision,) = _query(home, "SELECT detail, agent FROM events WHERE event_type = 'appraisal'")
    detail = json.loads(decision[0])
    assert detail["discs"] == [A, B] and decision[1] == "鉴定小组 王五"
    import hashlib
    assert detail["csv_sha256"] == hashlib.sha256(csv_path.read_bytes()).hexdigest()
    (slot,) = [d for c in _json(run, "cabinet")["cabinets"] for sh in c["shelves"]
               for d in sh["slots"] if d["disc_id"] == A]
    assert slot["destruction_approved"] and _medium(home, A).exists(), "nothing is deleted"

    # -- the handover list of a year, and the log is intact and signed -------------------
    hand = _json(run, "handover", "2024")
    with open(hand["register_csv"], encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    records = _query(home, "SELECT archival_code, unit_code, category, item_number FROM items "
                           "WHERE is_record = 1 AND year = '2024'")
    rank = {c: n for n, c in enumerate(CATEGORY_ORDER)}     # archival order, not 档号 text
    records.sort(key=lambda r: (r[1], rank[r[2]], int(r[3])))
    assert [r["档号"] for r in rows] == [r[0] for r in records] and hand["records"] == len(rows)
    assert [r["档号"] for r in rows] != sorted(r["档号"] for r in rows), "the test can tell"
    assert {r["光盘"] for r in rows} == {f"{SET}-A4 {SET}-B3"}
    assert _ok(run("audit")).stdout.startswith("event log intact")
    assert "0 entries after the last checkpoint" in run("audit").stdout


def _bag_info_read(medium: Path) -> dict[str, str]:
    """bag-info.txt of a copy as an independent reader finds it: pycdlib, through Rock Ridge."""
    iso = pycdlib.PyCdlib()
    iso.open(str(medium))
    try:
        buf = io.BytesIO()
        iso.get_file_from_iso_fp(buf, rr_path="/bag-info.txt")
    finally:
        iso.close()
    return dict(line.split(": ", 1) for line in buf.getvalue().decode("utf-8").splitlines())


@pytest.fixture
def two_discs(home, run, one_set_archive):
    """One disc set of two discs (a small custom medium), copies A (v1) and B (v2), verified."""
    _drives(home)
    _ok(run("archive", str(one_set_archive), "--media", "custom:400", "--copies", "2"))
    return home


def test_a_two_disc_set_is_shelved_reburned_whole_and_registered(two_discs, run):
    home = two_discs
    rows = _query(home, "SELECT set_id, group_id, volume, volumes FROM disc_sets ORDER BY volume")
    assert [(r[2], r[3]) for r in rows] == [(1, 2), (2, 2)] and rows[0][1] == rows[1][1]
    (d1, group, _, _), (d2, _, _, _) = rows
    first = {(s, label): c for s, label, c in _query(home, "SELECT set_id, copy_label, disc_id "
                                                           "FROM discs")}
    assert set(first) == {(d, c) for d in (d1, d2) for c in "AB"}
    originals = sorted(first.values())
    before = {c: _bag_info_read(_medium(home, c)) for c in originals}
    for (disc, label), copy in first.items():
        assert before[copy]["Bag-Count"] == f"{1 if disc == d1 else 2} of 2"
        assert before[copy]["Bag-Group-Identifier"] == group

    # -- shelving: copies A on site, B off-site; the map names each disc of the set ---------
    for n, disc in enumerate((d1, d2), 1):
        _ok(run("shelve", first[disc, "A"], "--cabinet", "1", "--shelf", "1", "--slot", str(n)))
        _ok(run("shelve", first[disc, "B"], "--cabinet", "2", "--shelf", "1", "--slot", str(n),
                "--site", "异地库"))
    world = _json(run, "cabinet")
    slots = {d["disc_id"]: d for c in world["cabinets"] for sh in c["shelves"]
             for d in sh["slots"]}
    assert {c: (d["group_id"], d["volume"], d["volumes"]) for c, d in slots.items()} == {
        first[disc, label]: (group, k, 2) for k, disc in enumerate((d1, d2), 1) for label in "AB"}
    text = _ok(run("cabinet")).stdout
    assert f"slot 2    {first[d2, 'A']:<21} disc 2 of 2  verified" in text

    # -- due: the whole set at once, as one command; a part of it, by disc and copy --------
    due_at = dt.datetime.now(dt.timezone.utc).date().isoformat()
    inv = _db(home)
    try:        # as if burned four years ago: the new copies are due four years from now
        inv.db.execute("UPDATE discs SET due_at = ?", [due_at])
        inv.db.conn.commit()
    finally:
        inv.close()
    due = _json(run, "due", "--at", due_at)
    assert sorted(d["disc_id"] for d in due["reburn"]) == originals
    assert all(d["group_id"] == group and d["volumes"] == 2 for d in due["reburn"])
    assert due["commands"] == [{"target": group, "copies": originals,
                                "what": "the whole set: 2 disc(s), 4 copies"}]
    text = _ok(run("due", "--at", due_at)).stdout
    assert f"to re-burn the whole set: 2 disc(s), 4 copies: discarchive reburn {group}" in text
    assert f"{first[d2, 'B']:<21} disc 2 of 2 of set {group}; off-site at 异地库" in text

    # -- a copy ID re-burns that copy; a disc ID every copy of that disc, and no other ------
    out = _ok(run("reburn", first[d1, "A"])).stdout
    assert f"disc {d1} (1 of 2 of set {group}): source image" in out
    assert f"{d1}-A2 replaces {first[d1, 'A']}: verified" in out and d2 not in out
    due = _json(run, "due", "--at", due_at)
    assert due["commands"] == [
        {"target": first[d1, "B"], "copies": [first[d1, "B"]], "what": "this copy"},
        {"target": d2, "copies": [first[d2, "A"], first[d2, "B"]],
         "what": "every copy of the disc (2)"}]
    out = _ok(run("reburn", d2)).stdout
    assert f"{d2}-A2 replaces {first[d2, 'A']}: verified" in out
    assert f"{d2}-B2 replaces {first[d2, 'B']}: verified" in out and f"{d1}-" not in out

    # -- the whole set: every disc, each from its own image, each keeping its bag --------
    out = _ok(run("reburn", group)).stdout
    for k, disc in enumerate((d1, d2), 1):
        assert f"disc {disc} ({k} of 2 of set {group}): source image: the kept image" in out
    news = {f"{d1}-A3": f"{d1}-A2", f"{d1}-B2": first[d1, "B"], f"{d2}-A3": f"{d2}-A2",
            f"{d2}-B3": f"{d2}-B2"}
    for new, old in news.items():
        assert f"{new} replaces {old}: verified" in out
    discs = {d["disc_id"]: d["state"] for d in _discs(run)}
    assert {c for c, s in discs.items() if s == "verified"} == set(news)
    assert _query(home, "SELECT set_id, group_id, volume, volumes, state FROM disc_sets "
                        "ORDER BY volume") == [(d1, group, 1, 2, "archived"),
                                               (d2, group, 2, 2, "archived")]
    for new, old in news.items():
        disc = d1 if new.startswith(d1) else d2
        assert _bag_info_read(_medium(home, new)) == before[first[disc, "A"]], \
            "the same bag: Bag-Count, Bag-Group-Identifier, Payload-Oxum, External-Identifier"
        assert _query(home, "SELECT generation, replaces FROM discs WHERE disc_id = ?",
                      [new]) == [(int(new[len(disc) + 2:] or 1), old)]
    assert _bag_info_read(_medium(home, f"{d2}-B3"))["Bag-Count"] == "2 of 2"
    assert _bag_info_read(_medium(home, f"{d1}-A3"))["External-Identifier"] == d1
    assert _json(run, "due", "--at", due_at)["reburn"] == []

    # -- the registers: superseded copies after their keeping time, the handover list ------
    keep = lc.add_years(dt.datetime.now(dt.timezone.utc).date(), 3).isoformat()
    listing = _json(run, "appraisal", "--at", keep)
    assert {d["disc_id"] for d in listing["discs"]} == set(discs) - set(news)
    assert {(d["disc_id"], d["volume"], d["volumes"], d["group_id"]) for d in listing["discs"]
            if d["disc_id"] == first[d2, "B"]} == {(first[d2, "B"], 2, 2, group)}
    _drives(home, lifecycle="keep_superseded_years = 0")
    _ok(run("appraisal", "--approve", first[d1, "A"], "--approve", first[d2, "B"],
            "--by", "鉴定小组"))
    (csv_path,) = (home / "registers").glob("销毁清册-*.csv")
    with open(csv_path, encoding="utf-8-sig", newline="") as f:
        table = list(csv.reader(f))
    assert [(r[2], r[3], r[8]) for r in table[1:]] == [
        (first[d1, "A"], f"光盘套 {group} 第1盘/共2盘 副本 A", "1号柜 第1层 第1位"),
        (first[d2, "B"], f"光盘套 {group} 第2盘/共2盘 副本 B", "异地 异地库：2号柜 第1层 第2位")]
    hand = _json(run, "handover", "2024")
    with open(hand["register_csv"], encoding="utf-8-sig", newline="") as f:
        listed = {r["档号"]: (r["光盘套"], r["套内盘次"], r["光盘"]) for r in csv.DictReader(f)}
    on = dict(_query(home, "SELECT archival_code, set_id FROM items WHERE is_record = 1"))
    assert set(on.values()) == {d1, d2} and set(listed) == set(on)
    now = {d1: f"{d1}-A3 {d1}-B2", d2: f"{d2}-A3 {d2}-B3"}
    assert listed == {code: (group, "1/2" if disc == d1 else "2/2", now[disc])
                      for code, disc in on.items()}
    assert _ok(run("audit")).stdout.startswith("event log intact")


def test_a_set_reburn_goes_on_past_a_disc_without_a_good_source(two_discs, run):
    home = two_discs
    ((d1, group), (d2, _)) = _query(home, "SELECT set_id, group_id FROM disc_sets ORDER BY volume")
    (home / "images" / f"{d1}.iso").unlink()
    lba = _payload(home, d1)[0][1]
    for label in "AB":                      # the same file damaged on both copies of disc 1
        flip_byte(_medium(home, f"{d1}-{label}"), lba * 2048 + 3)
    res = run("reburn", group)
    assert res.exit_code == 1, res.stderr
    assert f"disc {d1}: not re-burned: no good source to re-burn {d1}" in res.stdout
    assert f"{d2}-A2 replaces {d2}-A: verified" in res.stdout
    assert res.stderr == (f"discarchive: error: 1 re-burn(s) not done (the copies they were to "
                          f"replace stay current): put a good source or a new blank medium in a "
                          f"drive and run `discarchive reburn {d1}`\n")
    states = {d["disc_id"]: d["state"] for d in _discs(run)}
    assert states == {f"{d1}-A": "damaged", f"{d1}-B": "damaged", f"{d2}-A": "superseded",
                      f"{d2}-B": "superseded", f"{d2}-A2": "verified", f"{d2}-B2": "verified"}


def test_a_disc_is_past_retention_when_every_record_on_it_is(tmp_path):
    inv = Inventory.create(tmp_path / "i.db")
    _fill(inv, [{"disc_id": f"g-0{k}-A", "set_id": f"g-0{k}"} for k in (1, 2)], [
        {"set_id": "g-01", "archival_code": "c1", "retention": "10年", "year": "2020"},
        {"set_id": "g-02", "archival_code": "c2", "retention": "10年", "year": "2020"},
        {"set_id": "g-02", "archival_code": "c3", "retention": "30年", "year": "2020"}])
    inv.db.execute("UPDATE disc_sets SET group_id = 'g', volumes = 2, volume = "
                   "CAST(substr(set_id, 4) AS INTEGER)")
    inv.db.conn.commit()
    got = lc.appraisal_list(inv, dt.date(2031, 1, 1), lc.LifecycleSettings())
    assert [i["archival_code"] for i in got["items"]] == ["c1", "c2"]
    (disc,) = got["discs"]
    assert (disc["disc_id"], disc["group_id"], disc["volume"], disc["volumes"]) == (
        "g-01-A", "g", 1, 2), "disc 2 holds c3 (30 years): it waits, though c2 on it ended"
    assert disc["why"] == "every record on disc 1 of 2 of set g ended its retention by 2031-01-01"
    inv.close()


def test_an_unreadable_sector_fails_the_inspection_and_flags_by_threshold(archived, run):
    home = archived
    SET, A, B = _ids(home)
    lba = _payload(home, SET)[3][1]
    faults = f"[drives.faults]\nunreadable = [{lba}]"
    _drives(home, v1=faults, v2=faults)          # the second read, in v2, fails too
    res = run("inspect", B)
    assert res.exit_code == 1
    raised = [(a["kind"], a["subject"], a["state"]) for a in _json(run, "alerts")]
    assert raised == [("reburn-early", B, "open")], "the flag is alerted at once, not next day"
    (row,) = json.loads(run("inspect", "--json", A).stdout)
    assert row["reads"] == 2 and row["bad_sectors"] == 1 and not row["passed"]
    assert "1 unreadable sectors (more than 0)" in row["reasons"]
    assert any(r.startswith("failed verification: damaged: data/") for r in row["reasons"])
    assert {d["disc_id"]: d["state"] for d in _discs(run)} == {A: "damaged", B: "damaged"}
    _drives(home)
    _ok(run("verify", B))                      # B reads well in a sound drive: verified again
    due = _json(run, "due")["reburn"]
    assert [(d["disc_id"], d["why"][:14]) for d in due] == [(A, "early re-burn:"),
                                                           (B, "early re-burn:")]
    inv = _db(home)
    try:
        inv.db.execute("UPDATE discs SET reburn_reason = NULL")     # only damaged now
        inv.db.conn.commit()
    finally:
        inv.close()
    (left,) = _json(run, "due")["reburn"]
    assert left["disc_id"] == A and left["why"].startswith("damaged: it failed verification")


def test_a_failed_new_copy_leaves_the_old_one_current(archived, run):
    home = archived
    SET, A, B = _ids(home)
    _drives(home, v1="[drives.faults]\nwrite_error_at = 48")
    res = run("reburn", A)
    assert res.exit_code == 1 and f"{SET}-A2 replaces {A}: failed" in res.stdout
    discs = {d["disc_id"]: d["state"] for d in _discs(run)}
    assert discs == {A: "verified", B: "verified", f"{SET}-A2": "failed"}
    assert _query(home, "SELECT replaces, generation FROM discs WHERE disc_id = ?",
                  [f"{SET}-A2"]) == [(A, 2)]
    _drives(home)
    _ok(run("reburn", A))                      # again: the same new ID, burned afresh
    assert {d["disc_id"]: d["state"] for d in _discs(run)}[f"{SET}-A2"] == "verified"


def test_a_reburn_killed_before_its_lineage_is_finished_by_the_next_run(archived, run,
                                                                         monkeypatch):
    home = archived
    SET, A, B = _ids(home)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(lc, "record_replacement", killed)
        assert run("reburn", A).exit_code == 130
    discs = {d["disc_id"]: d["state"] for d in _discs(run)}
    assert discs == {A: "verified", B: "verified", f"{SET}-A2": "verified"}
    out = _ok(run("reburn", A)).stdout
    assert f"{SET}-A2 replaces {A}: verified" in out and "interrupted re-burn" in out
    assert sorted(p.name for p in (home / "media1").iterdir()) == [
        f"{A}.medium", f"{SET}-A2.medium"], "nothing burned twice"
    assert {d["disc_id"]: d["state"] for d in _discs(run)}[A] == "superseded"
    assert _migration(home, f"{SET}-A2")["source"]["kind"] == "interrupted re-burn"


def test_an_unreadable_structure_sector_is_repaired_from_the_other_copy(archived, run):
    home = archived
    SET, A, B = _ids(home)
    (home / "images" / f"{SET}.iso").unlink()
    x_path, x = _payload(home, SET)[0]
    flip_byte(_medium(home, B), x * 2048 + 3)              # B: a payload file damaged
    # A's drive v1 and the next one (v3, which reads a failed read again) cannot read its
    # volume descriptor (sector 16); B's v2 and v4 read it; the new copy is burned in v2.
    _drives(home)
    cfg = home / "discarchive.toml"
    text = cfg.read_text(encoding="utf-8").split("\n[[drives]]")[0]
    for name, fault in (("v2", ""), ("v4", ""), ("v1", "unreadable = [16]"),
                        ("v3", "unreadable = [16]")):
        text += (f'\n[[drives]]\nname = "{name}"\nadapter = "virtual"\nmedia_dir = '
                 f'"media{name[1]}"\ncapacity_sectors = {DVD}\n[drives.faults]\n{fault}\n')
    cfg.write_text(text, encoding="utf-8")
    out = _ok(run("reburn", A)).stdout
    assert f"source disc: the disc itself, {A}, repaired: sector 16 from {B}" in out
    assert f"{SET}-A2 replaces {A}: verified" in out
    assert (home / "images" / f"{SET}.iso").is_file(), "the repaired image is kept again"
    _drives(home)
    _ok(run("verify", f"{SET}-A2"))


def test_no_good_source_is_refused_naming_what_was_tried(archived, run):
    home = archived
    SET, A, B = _ids(home)
    lba = _payload(home, SET)[0][1]
    (home / "images" / f"{SET}.iso").unlink()
    for disc in (A, B):
        flip_byte(_medium(home, disc), lba * 2048 + 3)      # the same file, on both copies
    res = _ok(run("reburn", A), 1)          # the job ran; its reads failed (README: exit 1)
    assert "no good source to re-burn" in res.stderr and "the image is no longer kept" in res.stderr
    assert f"{A} cannot be repaired" in res.stderr
    assert {d["disc_id"]: d["state"] for d in _discs(run)} == {A: "damaged", B: "damaged"}, \
        "each copy failed two reads, in two drives: damaged, as any read-back records it"
    reads = _query(home, "SELECT disc_id, outcome, json_extract(detail, '$.read'), "
                         "json_extract(detail, '$.drive') FROM events WHERE event_type = "
                         "'fixity check' AND id > (SELECT max(id) FROM events WHERE "
                         "event_type = 'fixity check' AND outcome = 'success')")
    assert sorted(r[:3] for r in reads) == [(d, "failure", n) for d in (A, B) for n in (1, 2)]
    assert all(first[3] != second[3] for first, second in zip(reads[::2], reads[1::2])), \
        "the second read is in another drive"
    due = _json(run, "due")
    assert {r["disc_id"] for r in due["reburn"]} == {A, B}, "due lists the damaged copies"
    assert all("damaged" in r["why"] for r in due["reburn"]), due["reburn"]


@pytest.mark.parametrize("args, message", [
    (["shelve", "160-1999-S01-01-A", "--cabinet", "1", "--shelf", "1", "--slot", "1"],
     "no disc 160-1999-S01-01-A"),
    (["shelve", "{A}", "--cabinet", " ", "--shelf", "1", "--slot", "1"], "give a cabinet name"),
    (["shelve", "{A}", "--cabinet", "1", "--shelf", "0", "--slot", "1"], "--shelf"),
    (["shelve", "{A}", "--cabinet", "柜1\n柜2", "--shelf", "1", "--slot", "1"],
     "holds a line break or control character"),
    (["shelve", "{A}", "--cabinet", "1", "--shelf", "1", "--slot", "1", "--site", "a\x1bb"],
     "the site name"),
    (["checkin", "{A}"], "is not checked out"),
    (["checkout", "{A}", "--by", "", "--reason", "x"], "give who takes the disc"),
    (["reburn", "160-1999-S01"], "no disc set, disc or copy 160-1999-S01"),
    (["due", "--at", "2027-13-01"], "--at"),
    (["due", "--at", "2130-02-30"], "2130-02-30 is not a date"),
    (["due", "--at", "9999-12-31"], "give a date from 1900 to 9899"),
    (["appraisal", "--at", "31.12.2030"], "is not written YYYY-MM-DD"),
    (["due", "--at"], "'--at' requires an argument"),
    (["shelve", "{A}", "--cabinet", "1", "--shelf", "1", "--slot", "99999999999999999999"],
     "--slot"),
    (["alerts", "--ack", "99999999999999999999"], "no alert 99999999999999999999"),
    (["show", "{SET}"], "{SET} is a disc; give one of its copies: {SET}-A, -B"),
    (["verify", "{SET}"], "{SET} is a disc; give one of its copies: {SET}-A, -B"),
    (["check", "{SET}"], "{SET} is a disc; give one of its copies: {SET}-A, -B"),
    (["inspect", "{SET}"], "{SET} is a disc; give one of its copies: {SET}-A, -B"),
    (["shelve", "{SET}", "--cabinet", "1", "--shelf", "1", "--slot", "1"],
     "{SET} is a disc; give one of its copies: {SET}-A, -B"),
    (["show", "{GROUP}"], "{GROUP} is a disc set of 1 disc(s); give one disc copy, e.g. {SET}-A"),
    (["burn", "{A}"], "{A} is a disc copy; give its disc {SET} (or its set {GROUP})"),
    (["burn", "160-1999-S01"], "no disc set 160-1999-S01 in the inventory: give a disc set ID"),
    (["appraisal", "--approve", "{A}"], "--approve needs who approved it"),
    (["handover", "24"], "is not a year"),
    (["handover", "1990"], "no records of 1990"),
])
def test_bad_requests_get_one_line_and_exit_2(archived, run, args, message):
    SET, A, _ = _ids(archived)  # the disc and its copy A the archive run made
    ((GROUP,),) = _query(archived, "SELECT group_id FROM disc_sets")
    ids = {"A": A, "SET": SET, "GROUP": GROUP}
    res = run(*[a.format(**ids) for a in args])
    message = message.format(**ids)
    assert res.exit_code == 2 and message in res.stderr, res.stderr
    assert res.stderr.startswith("discarchive: error: ") and res.stderr.count("\n") == 1


def test_a_wrong_lifecycle_setting_is_refused(archived, run):
    _drives(archived, lifecycle="inspect_percent = 0")
    res = run("due")
    assert res.exit_code == 2 and "[lifecycle]: inspect_percent must be more than 0" in res.stderr
    _drives(archived, lifecycle="keep_years = 3")
    assert "unknown setting 'keep_years'" in run("due").stderr


def test_an_inventory_from_before_the_lifecycle_is_upgraded_on_open(tmp_path):
    path = tmp_path / "inventory.db"
    Inventory.create(path).close()
    import sqlite3
    conn = sqlite3.connect(path)
    conn.execute("DROP INDEX discs_slot")
    conn.execute("DROP INDEX discs_due")
    for table in ("inspections", "checkouts", "appraisal_entries", "appraisals"):
        conn.execute(f"DROP TABLE {table}")
    from inventory.store import LIFECYCLE_DISC_COLUMNS
    for name in LIFECYCLE_DISC_COLUMNS:
        conn.execute(f"ALTER TABLE discs DROP COLUMN {name}")
    conn.commit()
    conn.close()
    inv = Inventory.open(path)
    try:
        assert {"inspections", "checkouts", "appraisals", "appraisal_entries"} <= set(
            inv.db.table_names())
        assert set(LIFECYCLE_DISC_COLUMNS) <= {c.name for c in inv.db["discs"].columns}
        assert "discs_slot" in {i.name for i in inv.db["discs"].indexes}
    finally:
        inv.close()


# -- the pull list, the judge and retention, on inventories written directly ---------------

def _fill(inv: Inventory, discs: list[dict], items: list[dict] = ()) -> None:
    sets = sorted({d["set_id"] for d in discs} | {i["set_id"] for i in items})
    inv.db["disc_sets"].insert_all({"set_id": s, "media": "dvd-r", "state": "archived",
                                    "tag_files": "[]"} for s in sets)
    inv.db["discs"].insert_all(dict({"state": "verified", "copy_label": "A"}, **d) for d in discs)
    inv.db["items"].insert_all(dict({"is_record": 1}, **i) for i in items)


def test_the_handover_list_is_in_archival_order_and_marks_versions(tmp_path):
    inv = Inventory.create(tmp_path / "i.db")
    code = "160-SB·2024-{}-{}-{:04d}".format
    rows = [  # (unit, category, retention, category code, 件号, version): not in 档号 text order
        ("U2", "社保登记类", "Y", "DJ", 1, 1),
        ("U1", "待遇类", "D30", "DY", 2, 1),
        ("U1", "待遇类", "D30", "DY", 10, 1),
        ("U1", "社保登记类", "Y", "DJ", 3, 1),
        ("U1", "参保人员类", "D30", "CB", 1, 1),
        ("U1", "社保登记类", "Y", "DJ", 3, 2),        # 件号 3 changed and archived again
        ("U1", "待遇类", "D30", "DY", 9, 1)]
    _fill(inv, [{"disc_id": "g-01-A", "set_id": "g-01"}], [
        {"set_id": "g-01", "archival_code": code(ret, cc, n), "item_number": str(n),
         "unit_code": unit, "category": cat, "year": "2024", "retention": "永久",
         "version": v, "path": f"p{k}"} for k, (unit, cat, ret, cc, n, v) in enumerate(rows)])
    count, got = lc.handover_rows(inv, "2024", ["社保登记类", "参保人员类", "待遇类"])
    got = list(got)
    assert count == 7 and [(r["unit_code"], r["category"], int(r["item_number"]), r["version"])
                           for r in got] == [
        ("U1", "社保登记类", 3, 1), ("U1", "社保登记类", 3, 2), ("U1", "参保人员类", 1, 1),
        ("U1", "待遇类", 2, 1), ("U1", "待遇类", 9, 1), ("U1", "待遇类", 10, 1),
        ("U2", "社保登记类", 1, 1)], "year -> unit -> configured category order -> 件号 by value"
    table = list(registers.handover_table(got))
    at = registers.HANDOVER_COLUMNS.index("版本")
    assert [r[at] for r in table] == ["第1版", "第2版", "", "", "", "", ""]
    assert [r[0] for r in table] == list(range(1, 8))
    inv.close()


def test_a_register_place_is_in_chinese_words_without_paths():
    assert lc.place_cn({"cabinet": None, "medium_path": "/srv/media/x.medium",
                        "drive": "v1"}) == "未上架"
    assert lc.place_cn({"cabinet": "防磁柜3", "shelf": 2, "slot": 14}) == "防磁柜3 第2层 第14位"
    assert lc.place_cn({"cabinet": "7", "shelf": 1, "slot": 1, "site": "市档案馆",
                        "out_by": "张三", "out_at": "2026-03-01T08:00:00Z"}) == \
        "异地 市档案馆：7号柜 第1层 第1位（2026-03-01起借出：张三）"


def test_the_pull_list_takes_the_share_least_recently_checked_and_every_disc_per_cycle(tmp_path):
    inv = Inventory.create(tmp_path / "i.db")
    discs = []
    for n in range(40):
        d = {"disc_id": f"d{n:02d}", "set_id": f"s{n:02d}", "burned_at": "2023-03-01T00:00:00Z",
             "due_at": "2027-03-01", "cabinet": f"柜{n % 12}", "shelf": 1 + n % 3, "slot": n}
        if n < 3:
            d["inspected_at"] = f"2026-01-1{n}T00:00:00Z"
        elif n < 20:
            d["inspected_at"] = f"2025-{1 + n % 9:02d}-01T00:00:00Z"
        elif n < 30:
            d["inspected_at"] = "2024-05-01T00:00:00Z"
        discs.append(d)
    _fill(inv, discs + [{"disc_id": "old", "set_id": "s00", "state": "superseded"}])
    settings = lc.LifecycleSettings()
    due = lc.due(inv, dt.date(2026, 6, 1), settings, 4)
    assert (due["current"], due["quota"], due["inspected_this_year"]) == (40, 4, 3)
    (pick,) = due["inspect"]
    assert pick["disc_id"] == "d30" and pick["why"] == "never inspected; 10 % a year"
    # the cycle: in 2027 every disc not checked since 2023 must be, whatever the share
    due = lc.due(inv, dt.date(2027, 6, 1), settings, 4)
    assert {d["disc_id"] for d in due["inspect"]} == {f"d{n}" for n in range(30, 40)}
    assert all("once per re-burn cycle" in d["why"] for d in due["inspect"])
    keys = [lc.location_key(d) for d in due["inspect"]]
    assert keys == sorted(keys) and keys[0][3] < lc.location_key({"cabinet": "柜10",
                                                                  "disc_id": ""})[3]
    due = lc.due(inv, dt.date(2028, 2, 1), settings, 4)
    assert {d["disc_id"] for d in due["inspect"]} == {f"d{n}" for n in range(20, 40)}
    # what was inspected this year counts; next year the 2025 ones are pressing
    inv.db.execute("UPDATE discs SET inspected_at = '2028-01-01T00:00:00Z' WHERE disc_id >= 'd20'")
    inv.db.conn.commit()
    due = lc.due(inv, dt.date(2028, 2, 1), settings, 4)
    assert due["inspected_this_year"] == 20 and due["inspect"] == []
    due = lc.due(inv, dt.date(2029, 2, 1), settings, 4)
    assert {d["disc_id"] for d in due["inspect"]} == {f"d{n:02d}" for n in range(3, 20)}, \
        "checked in 2025: their cycle ends in 2029; those of 2026 wait"
    assert {d["disc_id"] for d in lc.due(inv, dt.date(2027, 3, 1), settings, 4)["reburn"]} == {
        d["disc_id"] for d in discs}
    assert lc.due(inv, dt.date(2027, 2, 28), settings, 4)["reburn"] == []
    inv.close()


def test_judge_thresholds_worsening_and_speed():
    s = lc.LifecycleSettings()
    base = {"passed": True, "bad_sectors": 0, "retried_sectors": 0, "slow_sectors": 0,
            "speed_kbs": 20_000.0, "read_seconds": 200, "at": "2027-01-01T00:00:00Z"}
    assert lc.judge(base, None, s, "dvd-r") == []
    assert lc.judge(dict(base, retried_sectors=17), None, s, "dvd-r") == [
        "17 retried sectors (more than 16)"]
    assert lc.judge(dict(base, speed_kbs=1000.0), None, s, "dvd-r") == [
        "read at 0.72x (below 1x)"]
    assert lc.judge(dict(base, speed_kbs=1000.0, read_seconds=2), None, s, "dvd-r") == [], \
        "a short read's speed says nothing"
    assert lc.judge(dict(base, speed_kbs=3000.0), None, s, "bd-r") == ["read at 0.67x (below 1x)"]
    worse = lc.judge(dict(base, slow_sectors=7, speed_kbs=9000.0), base, s, "dvd-r")
    assert worse == ["read speed fell from 20000 to 9000 kB/s since the inspection of 2027-01-01"]
    assert lc.judge(dict(base, slow_sectors=8), base, s, "dvd-r") == [
        "slow sectors rose from 0 to 8 since the inspection of 2027-01-01"]


def test_retention_runs_from_1_january_after_the_record_was_formed(tmp_path):
    inv = Inventory.create(tmp_path / "i.db")
    _fill(inv, [{"disc_id": "s1-A", "set_id": "s1"}, {"disc_id": "s2-A", "set_id": "s2"}], [
        {"set_id": "s1", "archival_code": "c1", "retention": "10年", "year": "2020",
         "date": "20201231"},
        {"set_id": "s1", "archival_code": "c2", "retention": "10年", "year": "2020",
         "date": ""},                              # no date: the year counts
        {"set_id": "s1", "archival_code": "c5", "retention": "10年", "year": "2020",
         "date": "20210105"},                      # formed in 2021 (its date rules)
        {"set_id": "s2", "archival_code": "c3", "retention": "30年", "year": "2020"},
        {"set_id": "s2", "archival_code": "c4", "retention": "永久", "year": "1990"}])
    s = lc.LifecycleSettings()
    assert lc.appraisal_list(inv, dt.date(2030, 12, 31), s)["items"] == []
    got = lc.appraisal_list(inv, dt.date(2031, 1, 1), s)
    assert [(i["archival_code"], i["retention_ends"]) for i in got["items"]] == [
        ("c1", "2031-01-01"), ("c2", "2031-01-01")]
    assert got["discs"] == [], "c5 on the same disc runs a year longer"
    nxt = lc.appraisal_list(inv, dt.date(2032, 1, 1), s)
    assert [(i["archival_code"], i["retention_ends"]) for i in nxt["items"]][-1] == (
        "c5", "2032-01-01")
    assert [(d["disc_id"], d["reason"]) for d in nxt["discs"]] == [("s1-A", "retention")]
    later = lc.appraisal_list(inv, dt.date(3000, 1, 1), s)
    assert "c4" not in {i["archival_code"] for i in later["items"]}, "永久 never ends"
    assert [d["disc_id"] for d in later["discs"]] == ["s1-A"], "a disc keeps its longest period"
    inv.close()


def test_a_register_is_written_as_csv_and_xlsx_with_progress(tmp_path):
    from inventory.registers import write_register

    seen = []
    rows = ([n, f"题名{n}", None] for n in range(1, 2501))
    files = write_register(tmp_path / "out", "清册", "销毁清册", ["批准人: 王五"],
                           ["序号", "题名", "备注"], rows, 2500,
                           lambda done, total: seen.append((done, total)))
    assert seen == [(1000, 2500), (2000, 2500), (2500, 2500)]
    with open(files["register_csv"], encoding="utf-8-sig", newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == ["序号", "题名", "备注"] and table[-1] == ["2500", "题名2500", ""]
    sheet = openpyxl.load_workbook(files["register_xlsx"], read_only=True).active
    cells = list(sheet.iter_rows(values_only=True))
    assert cells[:2] == [("销毁清册",), ("批准人: 王五",)]
    assert [[("" if v is None else str(v)) for v in r] for r in cells[3:]] == table
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["清册.csv", "清册.xlsx"]


def test_due_and_appraisal_count_today_in_the_archives_time_zone(home, run):
    """Without --at, "today" is the day in [daemon] timezone, as the daemon's alerts count it."""
    from test_daemon import append_config
    now = dt.datetime.now(dt.timezone.utc)
    # a zone whose date differs from UTC's right now (UTC+14 late in the UTC day, UTC-12 early)
    zone = "Pacific/Kiritimati" if now.hour >= 10 else "Etc/GMT+12"
    append_config(home, f'[daemon]\ntimezone = "{zone}"\n')
    import zoneinfo
    local = dt.datetime.now(dt.timezone.utc).astimezone(zoneinfo.ZoneInfo(zone)).date()
    assert local != dt.datetime.now(dt.timezone.utc).date()
    for cmd in (("due", "--json"), ("appraisal", "--json")):
        r = run(*cmd)
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["at"] == local.isoformat(), cmd


def test_an_approval_is_judged_at_the_archives_local_date(home):
    """A listing dated today in a zone ahead of UTC is not "in the future" (it is today there)."""
    from config import INVENTORY_NAME
    inv = Inventory.open(home / INVENTORY_NAME)
    try:
        utc_now = dt.datetime(2030, 3, 1, 20, 0, tzinfo=dt.timezone.utc)
        local = dt.date(2030, 3, 2)                 # e.g. Asia/Shanghai, UTC+8, at 04:00
        listing = {"at": local.isoformat(), "items": [], "discs": []}
        with pytest.raises(lc.LifecycleError, match="in the future"):
            lc.approve(inv, listing, ["all"], "鉴定小组", now=utc_now)
        with pytest.raises(lc.LifecycleError, match="nothing to approve"):
            lc.approve(inv, listing, ["all"], "鉴定小组", now=utc_now, today=local)
    finally:
        inv.close()
