"""`Inventory.find` by a part of a name: the trigram index answers as the plain search would."""

from __future__ import annotations

import random
import sqlite3

import pytest

from inventory.store import ITEM_COLUMNS, Inventory

NAMES = ["王建国", "李秀英", "张伟", "刘丽华", "陈志强"]
TITLES = ["职工参保登记表", "工伤认定决定书", "增员花名册", "Annual_Report 100%"]


def _items(rng: random.Random, set_id: str, n: int, start: int = 0) -> list[dict]:
    rows = []
    for k in range(start, start + n):
        title = f"{rng.choice(TITLES)}（{rng.choice(NAMES)}）"
        row = dict.fromkeys(ITEM_COLUMNS)
        row.update(archival_code=f"160-SB·2023-Y-DJ-{k:05d}", item_number=f"{k:05d}", title=title)
        rows.append({"set_id": set_id, "path": f"2023/U{k % 7}_示例单位/01_社保登记类/{k:05d}_{title}.pdf",
                     "disc_path": f"data/{k:05d}", "size": 1, "sha256": f"{k:064x}",
                     "is_record": 1, "extent_lba": 100 + k, **row})
    return rows


def _fill(inv: Inventory, rng: random.Random, sets: int = 3, per_set: int = 60) -> None:
    for s in range(sets):
        set_id = f"160-2023-{s + 1:04d}"
        inv.db["disc_sets"].insert({"set_id": set_id, "state": "archived"})
        inv.db["items"].insert_all(_items(rng, set_id, per_set, s * per_set))


def _plain(inv: Inventory, text: str, limit: int) -> list[int]:
    """The items a plain search finds: for every word of text, 档号, title or path holding it
    (ASCII in any case), or 件号 equal to it."""
    def holds(r: dict, word: str) -> bool:
        return r["item_number"] == word or any(
            word.lower() in (r[c] or "").lower() for c in ("archival_code", "title", "path"))

    rows = [r for r in inv.db["items"].rows if all(holds(r, w) for w in text.split())]
    return [r["id"] for r in sorted(rows, key=lambda r: (r["set_id"], r["disc_path"]))][:limit]


QUERIES = ["王建国", "建国）", "认定决", "工伤认定决定书", "秀英", "张", "00042", "00007",
           "annual_report", "ANNUAL", "100%", "_Re", "示例单位/01", "160-SB·2023-Y-DJ-0004",
           "不在任何地方", "王建国）x", '"引号"',
           # several words: every one must match, each by the index or the walk
           "参保 登记表", "职工参保登记表 王建国", "登记表 王建国 U3", "王 登记表", "张 伟",
           "00042 王建国", "00042 张伟", "annual 100%", " 王建国  ", "登记表\t示例单位",
           "王建国 不在任何地方", "登记表 登记表"]


@pytest.mark.parametrize("limit", [200, 5])
def test_find_by_part_of_a_name_gives_what_the_plain_search_gives(tmp_path, limit):
    inv = Inventory.create(tmp_path / "inventory.db")
    _fill(inv, random.Random(3))
    for text in QUERIES:
        assert [r["id"] for r in inv.find(text, limit=limit)] == _plain(inv, text, limit), text
    assert inv.find("王建国")[0]["copies"] == []


def test_the_index_follows_inserts_updates_and_deletes(tmp_path):
    inv = Inventory.create(tmp_path / "inventory.db")
    _fill(inv, random.Random(5), sets=1, per_set=20)
    first = inv.db["items"].get(1)
    inv.db["items"].update(1, {"title": "退休人员基本养老金核定表"})
    inv.db["items"].delete(2)
    matched = lambda text: sorted(r[0] for r in inv.db.execute(
        "SELECT rowid FROM items_text WHERE items_text MATCH ?", [f'"{text}"']))
    assert matched("养老金") == [1]
    assert 2 not in matched("示例单") and 3 in matched("示例单")
    assert [r["id"] for r in inv.find("养老金核定")] == [1]
    assert inv.find(first["archival_code"])[0]["id"] == 1


def test_an_inventory_without_the_index_gets_it_when_opened(tmp_path):
    path = tmp_path / "inventory.db"
    inv = Inventory.create(path)
    conn = inv.db.conn
    for trigger in ("items_text_ai", "items_text_ad", "items_text_au"):
        conn.execute(f"DROP TRIGGER {trigger}")
    conn.execute("DROP TABLE items_text")
    conn.execute("DROP INDEX idx_items_item_number")
    conn.commit()
    _fill(inv, random.Random(7), sets=2, per_set=30)     # written as an older version would
    inv.close()
    with sqlite3.connect(path) as old:
        assert not old.execute("SELECT 1 FROM sqlite_master WHERE name = 'items_text'").fetchone()
    inv = Inventory.open(path)
    assert [r["id"] for r in inv.find("刘丽华")] == _plain(inv, "刘丽华", 200) != []
    inv.db["disc_sets"].insert({"set_id": "160-2024-0001", "state": "archived"})
    inv.db["items"].insert_all(_items(random.Random(8), "160-2024-0001", 5, 1000))
    found = inv.find("DJ-01003")                         # indexed as it is inserted
    assert [r["id"] for r in found] == _plain(inv, "DJ-01003", 200)
    assert [r["set_id"] for r in found] == ["160-2024-0001"]
    inv.close()
    Inventory.open(path).close()                        # a second open adds nothing


def test_several_words_each_match_somewhere_else(tmp_path):
    """'参保单位 登记表': one word in the path, one in the title, neither side by side."""
    inv = Inventory.create(tmp_path / "inventory.db")
    _fill(inv, random.Random(7), sets=1, per_set=30)
    inv.db["items"].update(3, {"path": "2024/91110000_参保单位/01_社保登记类/0003_x.pdf",
                               "title": "职工参保登记表"})
    assert [r["id"] for r in inv.find("参保单位 登记表")] == [3]
    assert inv.find("登记表 参保单位") == inv.find("参保单位 登记表")
    assert inv.find("参保单位 决定书") == []
