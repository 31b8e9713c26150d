"""Arrangement (manifests/arrange.py): order, 收支 sides, retention, 档号 and 件号 problems."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from manifests.arrange import ARCHIVAL_CODE, Settings, arrange
from manifests.catalog import CATALOG_NAME, Item, scan


def _item(path, **kw) -> Item:
    i = Item(path=path, size=kw.pop("size", 10), sha256="", mtime_ns=0)
    for k, v in kw.items():
        setattr(i, k, v)
    return i


def _rows(source: Path) -> list[dict]:
    with open(source / CATALOG_NAME, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _write_rows(source: Path, rows: list[dict]) -> None:
    with open(source / CATALOG_NAME, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def _arranged(source: Path, settings: Settings | None = None):
    problems: list = []
    items = scan(source, None, problems=problems, hashing=False)
    return arrange(items, settings or Settings(), problems)


def test_order_is_year_unit_category_number_and_sides_never_mix(demo_archive):
    a = _arranged(demo_archive)
    assert [(g.year, g.side) for g in a.groups] == [("2024", "收"), ("2024", "支"),
                                                     ("2025", "收"), ("2025", "支")]
    order = ["社保登记类", "参保人员类", "申报结算类", "保险关系转停类", "待遇类"]
    for g in a.groups:
        assert {i.year for i in g.items} == {g.year}
        assert {"收": {"社保登记类", "参保人员类", "申报结算类", "保险关系转停类"},
                "支": {"待遇类"}}[g.side] >= {i.category for i in g.items}
        keys = [(i.unit_code, order.index(i.category), int(i.item_number)) for i in g.items]
        assert keys == sorted(keys)
    assert a.problems == [] and a.assigned == 0
    assert [i.path for i in a.others] == [CATALOG_NAME]


def test_category_order_and_sides_are_configurable():
    def item(cat, n):
        return _item(f"2024/U_x/{cat}/{n}_a.pdf", year="2024", unit_code="U", category=cat,
                     item_number=n, retention="永久")
    items = [item("社保登记类", "0001"), item("待遇类", "0001"), item("申报结算类", "0001")]
    s = Settings(category_order=("待遇类", "社保登记类"),
                 sides={"待遇类": "收", "申报结算类": "支"},
                 category_codes={"社保登记类": "DJ", "待遇类": "DY", "申报结算类": "JS"})
    a = arrange(items, s)
    assert [(g.side, [i.category for i in g.items]) for g in a.groups] == [
        ("收", ["待遇类", "社保登记类"]), ("支", ["申报结算类"])]


def test_the_catalog_side_wins_over_the_category_map():
    items = [_item("2024/U1_a/01_社保登记类/0001_x.pdf", year="2024", unit_code="U1",
                   category="社保登记类", item_number="0001", retention="永久", flow="支"),
             _item("2024/U1_a/01_社保登记类/0002_x.pdf", year="2024", unit_code="U1",
                   category="社保登记类", item_number="0002", retention="永久")]
    a = arrange(items, Settings())
    assert [(g.side, [i.item_number for i in g.items]) for g in a.groups] == [
        ("收", ["0002"]), ("支", ["0001"])]


def test_retention_from_the_row_else_the_category_map():
    items = [_item("2024/U/03_申报结算类/0001_a.pdf", year="2024", unit_code="U",
                   category="申报结算类", item_number="0001", retention="10年"),
             _item("2024/U/03_申报结算类/0002_b.pdf", year="2024", unit_code="U",
                   category="申报结算类", item_number="0002")]
    a = arrange(items, Settings(retention={"申报结算类": "30年"}))
    assert [i.retention for i in a.groups[0].items] == ["10年", "30年"]
    assert [i.archival_code for i in a.groups[0].items] == [
        "160-SB·2024-D10-JS-0001", "160-SB·2024-D30-JS-0002"]
    assert a.assigned == 2


def test_missing_codes_are_assigned_and_missing_numbers_continue_the_class():
    items = [_item(f"2023/U{u}_x/01_社保登记类/{n}", year="2023", unit_code=f"U{u}",
                   category="社保登记类", item_number=num, retention="永久")
             for u, n, num in [(1, "0001_a.pdf", "0001"), (2, "b.pdf", None), (3, "0002_c.pdf", "0002")]]
    a = arrange(items, Settings(fonds="161", class_code="SX"))
    codes = {i.path: i.archival_code for i in a.groups[0].items}
    assert codes == {"2023/U1_x/01_社保登记类/0001_a.pdf": "161-SX·2023-Y-DJ-0001",
                     "2023/U2_x/01_社保登记类/b.pdf": "161-SX·2023-Y-DJ-0003",
                     "2023/U3_x/01_社保登记类/0002_c.pdf": "161-SX·2023-Y-DJ-0002"}
    assert all(ARCHIVAL_CODE.match(c) for c in codes.values())
    assert a.problems == []


def test_every_problem_is_reported_at_once_with_its_row_or_path(source_copy):
    rows = _rows(source_copy)
    rows[0]["档号"] = "160-SB-2024-Y-DJ-0001"                   # line 2: malformed
    rows[1]["档号"] = rows[1]["档号"].replace("·2024-Y", "·2024-D30")   # line 3: contradicts 保管期限
    gone = rows[5]["文件"]
    (source_copy / gone).unlink()                               # line 7: its file is gone
    dup = rows[3]                                               # line 5 -> a second 0003 in RY
    dup["件号"], dup["档号"] = "0001", dup["档号"][:-4] + "0001"
    extra = source_copy / "2024" / "stray.pdf"
    extra.write_bytes(b"%PDF-1.4\n")                            # a file without a row
    _write_rows(source_copy, rows)
    a = _arranged(source_copy)
    got = {(p.kind, p.where) for p in a.problems}
    assert ("malformed-code", f"{CATALOG_NAME} line 2") in got
    assert ("malformed-code", f"{CATALOG_NAME} line 3") in got
    assert ("row-without-file", f"{CATALOG_NAME} line 7") in got
    assert ("file-without-row", "2024/stray.pdf") in got
    (dup,) = [p for p in a.problems if p.kind == "duplicate-number"]
    assert dup.where == f"{CATALOG_NAME} line 5" and "line 4" in dup.text
    gaps = [p for p in a.problems if p.kind == "number-gap"]
    assert gaps and all("missing" in p.text for p in gaps)
    assert all(str(p).startswith(p.where) for p in a.problems)


def test_a_gap_names_its_class_and_the_missing_numbers():
    items = [_item(f"2024/U_x/02_参保人员类/{n:04d}_a.pdf", year="2024", unit_code="U",
                   category="参保人员类", item_number=f"{n:04d}", retention="100年")
             for n in (1, 2, 5)]
    (gap,) = arrange(items, Settings()).problems
    assert gap.kind == "number-gap" and gap.where == "160-SB·2024-D100-RY"
    assert "0003, 0004 missing" in gap.text


@pytest.mark.parametrize("code,ok", [
    ("160-SB·2023-Y-DJ-0001", True), ("J001-SB·2023-D100-RY-0012", True),
    ("160-SB.2023-Y-DJ-0001", False), ("160-SB·2023-D20-DJ-0001", False),
    ("160-SB·23-Y-DJ-0001", False), ("160-SB·2023-Y-DJ-1", False)])
def test_archival_code_form(code, ok):
    assert bool(ARCHIVAL_CODE.match(code)) is ok


def test_strict_plan_and_archive_refuse_while_problems_remain(run, source_copy, home):
    rows = _rows(source_copy)
    (source_copy / rows[2]["文件"]).unlink()
    res = run("plan", str(source_copy), "--strict")
    assert res.exit_code == 2 and "line 4" in res.stderr and "--strict" in res.stderr
    res = run("archive", str(source_copy), "--strict")
    assert res.exit_code == 2 and "line 4" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert list((home / "images").iterdir()) == []
    res = run("plan", str(source_copy))
    assert res.exit_code == 0 and "warning" in res.stderr and "line 4" in res.stderr


def test_many_problems_are_shown_with_a_count_of_the_rest():
    from daemon.jobs import problem_lines
    from manifests.catalog import Problem
    problems = [Problem("row-without-file", f"{CATALOG_NAME} line {n}", "names x")
                for n in range(2, 27)]
    lines = problem_lines(problems, 20)
    assert lines[:20] == [str(p) for p in problems[:20]]
    assert lines[20].startswith("and 5 more") and "--json" in lines[20] and len(lines) == 21
    assert problem_lines(problems[:3], 20) == [str(p) for p in problems[:3]]


@pytest.mark.parametrize("old,new,words", [
    ('"待遇类" = "支"', '"待遇类" = "付"', ["[archive.sides]", "收"]),
    ('"待遇类" = "DY"', '"待遇类" = "D-Y"', ["[archive.category_codes]"]),
    ('class_code = "SB"', 'class_code = "S·B"', ["class_code"]),
])
def test_wrong_arrangement_settings_are_refused(home, run, demo_archive, old, new, words):
    cfg = home / "discarchive.toml"
    text = cfg.read_text(encoding="utf-8")
    assert old in text
    cfg.write_text(text.replace(old, new), encoding="utf-8")
    res = run("plan", str(demo_archive))
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1
    assert all(w in res.stderr for w in words)


def test_a_number_0000_does_not_hide_the_gap_before_0002():
    """Numbers 0000, 0002, 0003: as many as the highest, yet 0001 is missing."""
    items = [_item(f"2024/U_x/02_参保人员类/{n:04d}_a.pdf", year="2024", unit_code="U",
                   category="参保人员类", item_number=f"{n:04d}", retention="100年")
             for n in (0, 2, 3)]
    (gap,) = arrange(items, Settings()).problems
    assert gap.kind == "number-gap" and "0001 missing (1 in all" in gap.text
    assert "before 2024/U_x/02_参保人员类/0002_a.pdf" in gap.text


def test_a_number_given_three_times_names_the_others_once():
    items = [_item(f"2024/U_x/01_社保登记类/{k}_a.pdf", year="2024", unit_code="U",
                   category="社保登记类", archival_code="160-SB·2024-Y-DJ-0001", retention="永久")
             for k in "abc"]
    (dup,) = arrange(items, Settings()).problems
    assert dup.kind == "duplicate-number" and dup.where == "2024/U_x/01_社保登记类/b_a.pdf"
    assert dup.text.endswith("2024/U_x/01_社保登记类/a_a.pdf, 2024/U_x/01_社保登记类/c_a.pdf")
@pytest.mark.parametrize("odd", ["换行\n名", "回车\r名", "结尾\n", "\n开头"])
def test_a_line_break_in_a_name_keeps_its_item_number_and_title(tmp_path, odd):
    """No catalog: 件号 and title come from the path, whatever the name holds."""
    folder = tmp_path / "2024" / "91110000_测试公司" / "01_社保登记类"
    folder.mkdir(parents=True)
    for name in ("0001_甲.pdf", f"0002_{odd}.pdf", "0003_丙.pdf"):
        (folder / name).write_bytes(name.encode())
    problems: list = []
    items = scan(tmp_path, {"社保登记类": "永久"}, problems=problems, hashing=False)
    a = arrange(items, Settings(), problems)
    (g,) = a.groups
    assert [(i.item_number, i.title) for i in g.items] == [
        ("0001", "甲"), ("0002", odd), ("0003", "丙")]
    assert [i.archival_code[-4:] for i in g.items] == ["0001", "0002", "0003"]
    assert a.problems == []


def test_a_year_folder_with_a_line_break_is_not_a_year(tmp_path):
    folder = tmp_path / "2024\n" / "U_x" / "01_社保登记类"
    folder.mkdir(parents=True)
    (folder / "0001_a.pdf").write_bytes(b"a")
    a = _arranged(tmp_path)
    assert [i.path for i in a.others] == ["2024\n/U_x/01_社保登记类/0001_a.pdf"]


@pytest.mark.parametrize("column,value,words", [
    ("件号", "abc", ["件号 'abc' is not a number"]),
    ("件号", "０００１", ["件号 '０００１' is not a number"]),
    ("日期", "2024-13-45", ["日期 '2024-13-45'", "YYYYMMDD"]),
    ("日期", "20240230", ["日期 '20240230'", "YYYYMMDD"]),
    ("日期", "2024011", ["日期 '2024011'"]),
    ("页数", "x", ["页数 'x'", "number of pages"]),
    ("页数", "0", ["页数 '0'"]),
])
def test_a_bad_catalog_value_is_a_problem_with_its_line(run, source_copy, column, value, words):
    rows = _rows(source_copy)
    rows[2][column] = value                                     # catalog line 4
    _write_rows(source_copy, rows)
    a = _arranged(source_copy)
    bad = [p for p in a.problems if p.kind == "bad-value"]
    assert [p.where for p in bad] == [f"{CATALOG_NAME} line 4"]
    assert all(w in bad[0].text for w in words), bad[0].text
    res = run("plan", str(source_copy), "--strict")
    assert res.exit_code == 2 and "line 4" in res.stderr and words[0] in res.stderr


def test_good_catalog_values_are_no_problem(demo_archive):
    assert not [p for p in _arranged(demo_archive).problems if p.kind == "bad-value"]


def test_an_item_number_that_is_not_a_number_is_named_before_one_is_given(source_copy):
    rows = _rows(source_copy)
    rows[0]["件号"], rows[0]["档号"] = "abc", ""
    _write_rows(source_copy, rows)
    a = _arranged(source_copy)
    (bad,) = [p for p in a.problems if p.kind == "bad-value"]
    assert bad.where == f"{CATALOG_NAME} line 2" and "next free 件号" in bad.text
    (item,) = [i for g in a.groups for i in g.items if i.path == rows[0]["文件"]]
    assert item.item_number.isdigit() and item.archival_code.endswith(item.item_number)


@pytest.mark.parametrize("form,other", [("NFC", "NFD"), ("NFD", "NFC")])
def test_a_row_and_a_file_in_two_unicode_forms_are_named_as_such(source_copy, form, other):
    import unicodedata
    rows = _rows(source_copy)
    old = rows[0]["文件"]
    folder, _, name = old.rpartition("/")
    new = f"{folder}/0001_Café résumé.pdf"
    (source_copy / old).rename(source_copy / unicodedata.normalize(other, new))
    rows[0]["文件"] = unicodedata.normalize(form, new)
    _write_rows(source_copy, rows)
    a = _arranged(source_copy)
    (row,) = [p for p in a.problems if p.kind == "row-without-file"]
    (file,) = [p for p in a.problems if p.kind == "file-without-row"]
    assert row.where == f"{CATALOG_NAME} line 2"
    assert "only in Unicode normalization" in row.text and f"this row is {form}" in row.text
    assert file.where == unicodedata.normalize(other, new)
    assert f"{CATALOG_NAME} line 2 names it in another Unicode normalization" in file.text


@pytest.mark.parametrize("header", [
    ["文件", "档号", "件号", "题名", "日期", "保管期限", "馆藏位置"],        # reordered, one other
    ["件号", "档号", "责任者", "代码", "题名", "日期", "页数", "密级",         # the 13, in order
     "保管期限", "类别", "收支", "备注", "文件"],
    ["文件", "件号", "题名", "题名", "日期", "保管期限", "档号"],              # a column twice
])
def test_catalog_values_are_read_by_column_name_whatever_the_header(tmp_path, header):
    """A row's value goes to its column's field, however the header orders its columns;
    a short row leaves the rest blank; a column named twice takes its last value; other
    columns' values are kept in ``extra``. (read_catalog keeps rows as tuples by position.)"""
    folder = tmp_path / "2024" / "U_x" / "01_社保登记类"
    folder.mkdir(parents=True)
    for name in ("0001_a.pdf", "0002_b.pdf"):
        (folder / name).write_bytes(name.encode())
    given = {"文件": "2024/U_x/01_社保登记类/0001_a.pdf", "档号": "160-SB·2024-Y-DJ-0001",
             "件号": "0001", "题名": "登记表", "日期": "20240105", "保管期限": "永久",
             "馆藏位置": "库房三", "责任者": "某局", "页数": "3"}
    row = [given.get(c, "") for c in header]
    if header.count("题名") == 2:
        row[header.index("题名")] = "先写的题名"        # the first of two: not taken
    short = [("2024/U_x/01_社保登记类/0002_b.pdf" if c == "文件" else "")
             for c in header][:header.index("文件") + 1]
    with open(tmp_path / CATALOG_NAME, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([header, row, short])
    problems: list = []
    items = {i.path: i for i in scan(tmp_path, None, problems=problems, hashing=False)}
    a, b = items[given["文件"]], items["2024/U_x/01_社保登记类/0002_b.pdf"]
    assert (a.archival_code, a.item_number, a.title, a.date, a.retention, a.row) == (
        "160-SB·2024-Y-DJ-0001", "0001", "登记表", "20240105", "永久", 2)
    assert a.responsible == ("某局" if "责任者" in header else None)
    assert a.pages == ("3" if "页数" in header else None)
    assert a.extra == ({"馆藏位置": "库房三"} if "馆藏位置" in header else {})
    assert (b.archival_code, b.item_number, b.title, b.date, b.row) == (None, "0002", "b", None, 3)
    assert problems == []


def test_row_fields_follow_the_item_fields_order():
    """scan makes a catalog row's Item by position from _row_fields: their orders agree."""
    import dataclasses
    from manifests.catalog import _ROW_FIELDS
    names = [f.name for f in dataclasses.fields(Item)]
    assert names[4:4 + len(_ROW_FIELDS)] == list(_ROW_FIELDS)
    assert names[4 + len(_ROW_FIELDS):] == ["extra", "row"]
