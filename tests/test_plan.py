"""Disc planning (manifests/plan.py, manifests/imagesize.py) and multi-disc archive runs."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import bagit
import pytest

import config
from conftest import tree_state
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from daemon import jobs
from inventory.store import Inventory
from manifests.arrange import Group, Settings, arrange
from manifests.bag import DiscInfo, write_tag_files
from manifests.catalog import Item, scan
from manifests.imagesize import Bound, image_sectors
from manifests.plan import make_plan, pack
from mastering.iso import Layout

LONG = "关于职工基本养老保险关系跨统筹地区转移接续的申请报告及所附职工名册、历年缴费明细与身份证明材料"


def _sparse(tmp_path, size: int):
    p = tmp_path / f"sparse-{size}"
    if not p.exists():
        with open(p, "wb") as f:
            f.truncate(size)
    return p


def _tree(kind: str, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    if kind == "small":
        return [(f"data/2024/U{u}_示例单位/0{c}_类/{n:04d}_表.tif", rng.randint(0, 5000))
                for u in range(8) for c in range(1, 4) for n in range(1, 40)]
    if kind == "deep":
        return [("data/" + "/".join(f"层{k}" for k in range(depth)) + f"/f{n}.pdf", 3000)
                for depth in range(1, 12) for n in range(3)]
    if kind == "long":
        return [(f"data/{LONG[:rng.randint(1, 40)]}/{n:04d}_{LONG[:rng.randint(10, 80)]}.pdf",
                 rng.randint(1, 300_000)) for n in range(300)]
    if kind == "mixed":
        names = ["README", "a.txt", "Ab_c.PDF", "x" * 100 + ".tif", f"{LONG}.ofd", "同名.pdf"]
        out = {}
        for n in range(400):
            parts = [rng.choice(["data", "2023", "U_单位", "01_社保登记类", "d" * 30])
                     for _ in range(rng.randint(1, 4))]
            out["/".join(parts + [f"{n}{rng.choice(names)}"])] = rng.choice([0, 1, 2048, 2049, 10**6])
        return list(out.items())
    raise ValueError(kind)


@pytest.mark.parametrize("kind,seed", [("small", 1), ("deep", 2), ("long", 3), ("mixed", 4),
                                       ("mixed", 5)])
def test_predicted_size_matches_the_layout(tmp_path, kind, seed):
    entries = _tree(kind, seed)
    layout = Layout([(p, _sparse(tmp_path, s)) for p, s in entries], "V")
    predicted = image_sectors(entries)
    assert predicted >= layout.sectors
    assert predicted - layout.sectors <= 0.005 * layout.sectors
    if kind != "deep":
        assert predicted == layout.sectors
    bound = Bound()
    for p, s in entries:
        bound.add(p, s)
    assert bound.sectors() >= predicted


def test_big_files_are_an_upper_bound_within_half_a_percent(tmp_path):
    entries = [("data/2024/big.pdf", 5 * 2**30), ("data/2024/small.pdf", 200 * 2**20),
               ("data/2024/n.tif", 1)]
    layout = Layout([(p, _sparse(tmp_path, s)) for p, s in entries], "V")
    assert layout.sectors <= image_sectors(entries) <= layout.sectors * 1.005


def test_prediction_counts_the_tag_files_exactly(tmp_path, sample_archive):
    items = scan(sample_archive)
    key = Ed25519PrivateKey.generate()
    from manifests.plan import predict
    for volume, part in enumerate((items[:20], items[20:]), 1):
        disc = DiscInfo("160-2023-S01", f"160-2023-S01-0{volume}", volume, 2)
        bag = write_tag_files(tmp_path / str(volume), sample_archive, part, disc, "局", "160",
                              key, side="收")
        assert predict(part, disc, "局", "160", "收", key) == Layout(bag.entries, "V").sectors


def _items(unit_sizes: dict[str, list[tuple[str, int]]]) -> Group:
    g = Group("160", "2024", "收")
    n = 0
    for unit, cats in unit_sizes.items():
        for cat, size in cats:
            n += 1
            g.items.append(Item(path=f"2024/{unit}_u/{cat}/{n:04d}_t.pdf", size=size, sha256="",
                                mtime_ns=0, year="2024", unit_code=unit, category=cat,
                                item_number=f"{n:04d}", archival_code=f"160-SB·2024-Y-DJ-{n:04d}"))
    return g


MB = 1_000_000


def test_a_unit_stays_on_one_disc_unless_it_alone_exceeds_it():
    cap = 5_000                  # about 10 MB
    g = _items({"A": [("01_a", 3 * MB)] * 2, "B": [("01_a", 3 * MB)] * 2,
                "C": [("01_a", 2 * MB), ("02_b", 5 * MB), ("03_c", 5 * MB)]})
    discs = pack(g, [], cap, "custom")
    where = {id(i): n for n, d in enumerate(discs) for i in d}
    for unit in "AB":
        assert len({where[id(i)] for i in g.items if i.unit_code == unit}) == 1
    assert len({where[id(i)] for i in g.items if i.unit_code == "C"}) > 1, "C alone exceeds a disc"
    for cat in ("01_a", "02_b", "03_c"):      # ... so it is split on category boundaries
        assert len({where[id(i)] for i in g.items if i.unit_code == "C" and i.category == cat}) == 1


def test_a_category_larger_than_a_disc_splits_between_items():
    g = _items({"A": [("01_a", 3 * MB)] * 7})
    discs = pack(g, [], 5_000, "custom")
    assert len(discs) == 3 and sum(len(d) for d in discs) == 7


def test_later_units_move_up_to_fill_a_disc():
    g = _items({"A": [("01_a", 6 * MB)], "B": [("01_a", 6 * MB)], "C": [("01_a", 3 * MB)],
                "D": [("01_a", 3 * MB)]})
    discs = pack(g, [], 5_000, "custom")
    assert [[i.unit_code for i in d] for d in discs] == [["A", "C"], ["B", "D"]]


def test_an_item_larger_than_the_medium_is_refused(run, source_copy):
    big = next(source_copy.rglob("*.pdf"))
    with open(big, "ab") as f:
        f.truncate(5 * MB)
    res = run("plan", str(source_copy), "--media", "custom:1000")
    assert res.exit_code == 2 and big.name in res.stderr and "larger medium" in res.stderr


def test_plan_refuses_files_larger_than_the_medium_as_archive_does(home, run, source_copy):
    big = next(source_copy.rglob("*.pdf"))
    with open(big, "ab") as f:
        f.truncate(5 * MB)
    with open(source_copy / "说明.bin", "wb") as f:       # not a record: no catalog row
        f.truncate(3 * MB)
    before = tree_state(home)
    planned = run("plan", str(source_copy), "--media", "custom:1000", "--json")
    assert planned.exit_code == 2 and planned.stdout == ""
    assert planned.stderr.startswith("discarchive: error: 2 file(s) are larger than one "
                                     "custom:1000 medium holds") and planned.stderr.count("\n") == 1
    assert tree_state(home) == before, "plan writes nothing, not even the list of files"
    archived = run("archive", str(source_copy), "--media", "custom:1000")
    assert archived.exit_code == 2
    assert archived.stderr.startswith(planned.stderr.rstrip("\n") + "; all 2 are listed in ")
    report = next((home / "reports").iterdir()).read_text(encoding="utf-8")
    assert big.name in report and "说明.bin" in report


def test_plan_writes_nothing_and_hashes_nothing(home, run, demo_archive, monkeypatch):
    before, source_before = tree_state(home), tree_state(demo_archive)

    def no_hashing(*a, **k):
        raise AssertionError("planning hashed a file")

    monkeypatch.setattr("manifests.catalog.hash_file", no_hashing)
    res = run("plan", str(demo_archive), "--media", "dvd-r", "--json")
    assert res.exit_code == 0, res.stderr
    assert tree_state(home) == before and tree_state(demo_archive) == source_before
    data = json.loads(res.stdout)
    assert [s["set_id"] for s in data["sets"]] == ["160-2024-S01", "160-2024-Z01",
                                                   "160-2025-S01", "160-2025-Z01"]
    d = data["sets"][0]["discs"][0]
    assert d["disc"] == "160-2024-S01-01" and d["volume"] == 1 and d["volumes"] == 1
    assert d["first"] == "160-SB·2024-Y-DJ-0001" and d["item_numbers"][0] == "0001"
    assert 0 < d["fill"] < 0.01 and d["sectors"] > d["payload_bytes"] // 2048


def _archive_in_three(home, run, demo_archive):
    cfg = config.load(home)
    plan = jobs.plan(cfg, demo_archive, "custom:360")
    res = run("archive", str(demo_archive), "--media", "custom:360", "--copies", "2")
    assert res.exit_code == 0, res.stderr
    return plan


def test_archive_follows_the_plan_and_each_disc_is_self_contained(home, run, demo_archive,
                                                                  tmp_path):
    plan = _archive_in_three(home, run, demo_archive)
    multi = [s for s in plan.sets if len(s.discs) > 1]
    assert multi, "custom:360 splits a set of the demo archive"
    inv = Inventory.open(home / "inventory.db")
    for s in plan.sets:
        rows = inv.group(s.group_id)
        assert [r["set_id"] for r in rows] == [d.disc_id for d in s.discs]
        for r, d in zip(rows, s.discs):
            assert r["image_sectors"] == d.sectors, "the plan predicted the image exactly"
            assert (r["volume"], r["volumes"], r["side"]) == (d.volume, len(s.discs), s.group.side)
            assert sorted(i["path"] for i in inv.items(r["set_id"])) == sorted(
                i.path for i in d.items)
            assert r["state"] == "archived"
            assert [c["state"] for c in inv.copies(r["set_id"])] == ["verified", "verified"]
    s = multi[0]
    for d in s.discs:
        out = tmp_path / d.disc_id
        out.mkdir()
        subprocess.run(["bsdtar", "-xf", str(home / "images" / f"{d.disc_id}.iso"), "-C",
                        str(out)], check=True)
        for p in out.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        bag = bagit.Bag(str(out))
        bag.validate()
        assert bag.info["Bag-Count"] == f"{d.volume} of {len(s.discs)}"
        assert bag.info["Bag-Group-Identifier"] == s.group_id
        assert bag.info["External-Identifier"] == d.disc_id
        text = (out / "说明文件.txt").read_text(encoding="utf-8")
        assert s.group_id in text and d.disc_id in text
        assert not d.ranges or d.ranges[0][0] in text
        assert "sha256sum -c manifest-sha256.txt" in text
        check = subprocess.run(["sha256sum", "-c", "manifest-sha256.txt"], cwd=out,
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stdout
        with open(out / "归档文件目录.csv", encoding="utf-8") as f:
            assert len(f.read().splitlines()) - 1 == len(d.records)


def test_burn_by_set_redoes_the_failed_copies_of_each_disc(home, run, demo_archive):
    _archive_in_three(home, run, demo_archive)
    inv = Inventory.open(home / "inventory.db")
    group = next(g for (g,) in inv.db.execute(
        "SELECT group_id FROM disc_sets GROUP BY group_id HAVING count(*) > 1"))
    images = [r["set_id"] for r in inv.group(group)]
    for image in images:
        inv.update_disc(f"{image}-B", state="failed")
        inv.update_set(image, state="failed")
    inv.close()
    res = run("burn", group)
    assert res.exit_code == 0, res.stderr
    assert [line.strip() for line in res.stdout.splitlines()] == [
        f"{image}-B: verified" for image in images]
    inv = Inventory.open(home / "inventory.db")
    assert {inv.disc_set(i)["state"] for i in images} == {"archived"}


def test_a_second_run_takes_the_next_set_numbers(home, run, demo_archive, source_copy):
    assert run("archive", str(demo_archive), "--copies", "1").exit_code == 0
    res = run("plan", str(source_copy), "--json")     # the same records, another source
    assert [s["set_id"] for s in json.loads(res.stdout)["sets"]][:2] == [
        "160-2024-S02", "160-2024-Z02"]


def test_arrangement_settings_come_from_the_config(home, demo_archive):
    cfg = config.load(home)
    s = Settings.from_config(cfg)
    assert s.category_order[0] == "社保登记类" and s.sides["待遇类"] == "支"
    assert s.category_codes["保险关系转停类"] == "ZT" and s.class_code == "SB"
    items = scan(demo_archive, cfg.retention, hashing=False)
    assert all(i.sha256 == "" for i in items)
    p = make_plan(arrange(items, s), "dvd-r", 2_298_496, lambda *k: 7, "局")
    assert p.sets[0].group_id == "160-2024-S07"


def test_a_bag_is_planned_as_its_payload_without_hashing(home, run, one_set_archive, tmp_path,
                                                          monkeypatch):
    bag = tmp_path / "incoming"
    import shutil
    shutil.copytree(one_set_archive, bag)
    bagit.make_bag(str(bag), checksums=["sha256"])
    monkeypatch.setattr("manifests.catalog.hash_file", lambda *a, **k: 1 / 0)
    monkeypatch.setattr(bagit.Bag, "_validate_entries", lambda *a, **k: 1 / 0)
    res = run("plan", str(bag), "--json")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    (s,) = out["sets"]
    assert s["set_id"] == "160-2024-S01" and s["discs"][0]["records"] == 14
    assert any("fixity check" in n and "archive" in n for n in out["notes"])
    res = run("plan", str(bag))
    assert res.exit_code == 0 and "fixity check" in res.stdout


from test_validate_bag import _CHECKSUM, SUITE as _SUITE  # noqa: E402


def _invalid_cases() -> list:
    """Conformance bags that do not validate for a reason other than a wrong checksum."""
    from manifests.validate import validate_bag
    cases = sorted(c for c in _SUITE.glob("*/*/*") if c.is_dir() and c.parent.name != "valid")
    return [pytest.param(c, id=c.relative_to(_SUITE).as_posix()) for c in cases
            if any(not _CHECKSUM.fullmatch(p) for p in validate_bag(c).problems)]


@pytest.mark.skipif(not _SUITE.is_dir(), reason="../shared/conformance/bagit is not present")
@pytest.mark.parametrize("case", _invalid_cases() if _SUITE.is_dir() else [])
def test_plan_refuses_a_bag_archive_refuses(home, run, case):
    res = run("plan", "--strict", str(case))
    assert res.exit_code == 2, (res.stdout, res.stderr)
    assert "BagIt bag that does not validate" in res.stderr and res.stdout == ""


def test_an_inventory_made_before_disc_sets_had_groups_is_upgraded(tmp_path):
    import sqlite3
    path = tmp_path / "inventory.db"
    Inventory.create(path).close()
    db = sqlite3.connect(path)
    for column in ("group_id", "volume", "volumes", "side"):
        db.execute(f"ALTER TABLE disc_sets DROP COLUMN {column}")
    db.execute("INSERT INTO disc_sets (set_id, state, copies) VALUES ('160-2023-0001', "
               "'archived', 2)")
    db.commit()
    db.close()
    inv = Inventory.open(path)
    row = inv.disc_set("160-2023-0001")
    assert (row["group_id"], row["volume"], row["volumes"]) == ("160-2023-0001", 1, 1)
    assert [r["set_id"] for r in inv.group("160-2023-0001")] == ["160-2023-0001"]
    assert inv.next_group_number("160", "2023", "S") == 1


def test_every_image_of_a_set_is_recorded_before_its_first_burn(home, run, demo_archive,
                                                                monkeypatch):
    real = jobs.burn_copies
    seen = []

    def burn_copies(cfg, copies, set_id, *a, **k):
        inv = Inventory.open(home / "inventory.db")
        try:
            me = inv.disc_set(set_id)
            volumes = inv.group(me["group_id"])
            seen.append((set_id, len(volumes), me["volumes"]))
            assert all(v["state"] in ("mastered", "archived") for v in volumes)
            assert all(v["image_path"] and Path(v["image_path"]).is_file() for v in volumes)
        finally:
            inv.close()
        return real(cfg, copies, set_id, *a, **k)

    monkeypatch.setattr(jobs, "burn_copies", burn_copies)
    res = run("archive", str(demo_archive), "--media", "custom:360", "--copies", "1")
    assert res.exit_code == 0, res.stderr
    assert seen and all(n == volumes for _, n, volumes in seen)
    assert any(volumes > 1 for _, _, volumes in seen)


def test_a_big_disc_reports_the_bound_within_half_a_percent_of_the_image(tmp_path):
    from manifests.plan import make_plan
    from manifests.arrange import Arrangement
    g = _items({f"U{n}": [("01_a", 150 * MB)] * 3 for n in range(12)})
    p = make_plan(Arrangement([g], [], []), "bd-r", 12_219_392, lambda *k: 1, "局")
    (d,) = p.sets[0].discs
    assert d.exact is False and p.to_dict()["sets"][0]["discs"][0]["sectors_exact"] is False
    key = Ed25519PrivateKey.generate()
    src = tmp_path / "src"
    for i in d.items:
        (src / i.path).parent.mkdir(parents=True, exist_ok=True)
        with open(src / i.path, "wb") as f:
            f.truncate(i.size)
        i.sha256 = "0" * 64
    bag = write_tag_files(tmp_path / "tags", src, d.items, DiscInfo(p.sets[0].group_id, d.disc_id),
                          "局", "160", key, side="收")
    real = Layout(bag.entries, d.disc_id).sectors
    assert real <= d.sectors <= real * 1.005


def test_sizes_counted_for_packing_are_the_written_lengths():
    """The manifest line and catalog row lengths planning counts are those bag.py writes,
    for plain fields and for fields the writers escape (%, CR, LF; comma, quote)."""
    from manifests.bag import catalog_row, csv_bytes, manifest_line
    from manifests.plan import _measure
    items = []
    for n, (path, title) in enumerate([
            ("2024/U1_单位/01_社保登记类/0001_表.pdf", "表"),
            ("2024/U1_单位/01_社保登记类/0002_a,b.pdf", "题名, 含逗号"),
            ('2024/U1_单位/01_社保登记类/0003_"引".pdf', '说"明"'),
            ("2024/U1_单位/01_社保登记类/0004_100%.pdf", "百分之百"),
            ("2024/U1_单位/01_社保登记类/0005_a\nb\r.pdf", "换\n行"),
            ("README", None)]):
        i = Item(path=path, size=10 ** n, sha256="ab" * 32 if n % 2 else "", mtime_ns=0,
                 is_record=title is not None, title=title, archival_code=f"160-SB·2024-Y-DJ-{n:04d}",
                 remarks="备注 " * n, extra={"x": "y"})
        items.append(i)
    for i in items:
        manifest, row, file_cost, cost = _measure(i)
        assert manifest == len(manifest_line(i).encode("utf-8"))
        assert row == (csv_bytes(catalog_row(i)) if i.is_record else 0)
        assert cost == file_cost + (manifest + row) / 2048


@pytest.mark.parametrize("name", ["a.pdf", "0001_申请表.pdf", "Ünïcödé.tif", "x" * 100 + ".tif",
                                  LONG + ".ofd", "a:b;c?.pdf", "𠀀" * 40 + ".pdf", "é" * 200])
@pytest.mark.parametrize("size", [0, 1, 2049, 2 ** 32, 9 * 2 ** 30])
def test_a_files_bound_is_its_name_info_cost(name, size):
    """Bound.file_cost measures the name itself, and equals the cost name_info's
    (UTF-8, Joliet, UDF) lengths give, term for term, as the module docstring says."""
    from manifests.imagesize import _ISO_FILL, _JOLIET_FILL, _MULTI_EXTENT, iso_record, name_info
    nbytes, jol, fid = name_info(name)
    rec, ce = iso_record(14, nbytes)
    extents = max(1, -(-size // _MULTI_EXTENT))
    assert Bound.file_cost(name, size) == (-(-size // 2048) + 1 + extents * rec / _ISO_FILL
                                           + 2 * ce / 2048 + (34 + len(jol)) / _JOLIET_FILL
                                           + fid / 2048 + 2 * (extents - 1))


def test_what_planning_made_leaves_the_pause_in_the_oldest_generation():
    """gc_paused hands what the block made and keeps to the oldest generation, so that
    the next young collection does not walk every item; the collector is on again after
    (or stays off when it was off), and a cycle made inside is still collected."""
    import gc
    import weakref

    from manifests.plan import gc_paused

    class Node:
        pass

    was = gc.isenabled()
    try:
        gc.enable()
        with gc_paused():
            assert not gc.isenabled()
            kept = [Node() for _ in range(1000)]
            cycle = Node()
            cycle.self = cycle
            gone = weakref.ref(cycle)
            del cycle
        assert gc.isenabled()
        young = {id(o) for o in gc.get_objects(generation=0)}
        assert not any(id(n) in young for n in kept)
        oldest = {id(o) for o in gc.get_objects(generation=2)}
        assert all(id(n) in oldest for n in kept)
        assert gone() is not None          # cyclic garbage waits for a full collection...
        gc.collect()
        assert gone() is None              # ...and is freed by it
        gc.disable()
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()


@pytest.mark.parametrize("name", ["申请表", "养老保险关系转移接续申请表.pdf", "Ωμέγα.pdf", "ÿ" * 3 + "Ā",
                                  "表" + "é" * 10, "𠀀.tif", "a\u0800"])
def test_a_files_bound_tells_16_bit_udf_names_by_their_utf8_length(name):
    """Bound.file_cost's shortcuts (an ASCII name; one of over 2 UTF-8 bytes a character,
    so beyond Latin-1) give name_info's cost, as do the names left to the full test."""
    for size in (0, 2049, 2 ** 32):
        test_a_files_bound_is_its_name_info_cost(name, size)


def _folders_of_notes(source: Path, depth: int, files: int = 6) -> None:
    for n in range(files):
        folder = source.joinpath(*[f"第{k}层-{n}" for k in range(1, depth + 1)])
        folder.mkdir(parents=True)
        (folder / f"说明{n}.txt").write_bytes(b"not a record\n" * (n + 1))


def _planned_discs(run, source: Path, media: str) -> list[dict]:
    res = run("plan", str(source), "--media", media, "--json")
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)["sets"][0]["discs"]


def test_a_tree_on_a_small_medium_is_refused_by_its_exact_size_only(home, run, tmp_path):
    """The packing bound's margin for folders is large beside a tiny medium; a block it
    would refuse is measured exactly: it is planned and archived on a medium of exactly
    its image's sectors, and refused one sector below."""
    source = tmp_path / "notes"
    _folders_of_notes(source, depth=6)
    (disc,) = _planned_discs(run, source, "cd-r")
    sectors = disc["sectors"]
    assert disc["sectors_exact"]
    bound = Bound()
    for p in source.rglob("*.txt"):
        bound.add("data/" + p.relative_to(source).as_posix(), p.stat().st_size)
    assert bound.sectors() > sectors, "the bound alone would refuse this tree at its size"
    tight = f"custom:{sectors}"
    assert [d["sectors"] for d in _planned_discs(run, source, tight)] == [sectors]
    refused = run("plan", str(source), "--media", f"custom:{sectors - 1}")
    assert refused.exit_code == 2 and "do not fit on a custom:" in refused.stderr
    archived = run("archive", str(source), "--media", tight, "--copies", "1")
    assert archived.exit_code == 0, archived.stderr
    (image,) = (home / "images").glob("*.iso")
    assert image.stat().st_size == sectors * 2048


def test_a_deep_trees_size_is_called_an_upper_bound(home, run, tmp_path):
    """Past 8 folder levels (Rock Ridge relocation) the prediction carries a margin:
    the plan says the size is not exact, and the image is not larger."""
    source = tmp_path / "deep"
    _folders_of_notes(source, depth=11)
    (disc,) = _planned_discs(run, source, "cd-r")
    assert disc["sectors_exact"] is False
    archived = run("archive", str(source), "--media", f"custom:{disc['sectors']}", "--copies", "1")
    assert archived.exit_code == 0, archived.stderr
    (image,) = (home / "images").glob("*.iso")
    assert image.stat().st_size <= disc["sectors"] * 2048


def test_a_custom_medium_beyond_iso9660s_count_is_refused(home, run, source_copy):
    """ISO 9660 counts a volume's sectors in 32 bits: a larger custom medium is bad input
    (exit 2, one line), for plan and archive alike, and nothing is written."""
    for cmd in ("plan", "archive"):
        res = run(cmd, str(source_copy), "--media", "custom:99999999999999999999")
        assert res.exit_code == 2, (cmd, res.output)
        assert "give at most custom:4294967295" in res.stderr and res.stderr.count("\n") == 1
    assert list(home.glob("images/*")) == []
    assert config.media_sectors("custom:4294967295") == 2**32 - 1
    with pytest.raises(config.ConfigError):
        config.media_sectors("custom:١٢٣")        # Arabic-Indic digits are not a number here
