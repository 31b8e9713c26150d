"""Disc planning benchmark: how full the planned discs are, and how fast planning is.

    python -m bench.planning [--base build/bench] [--gib 32] [--items 365245]

Three measurements (docs/BENCHMARKS.md, "Disc planning"):

1. fill: a bureau-shaped archive of at least 30 GB (``--gib``) of one year
   (an annual handover), written as sparse files (planning reads sizes
   only), planned onto DVD-R, DVD+R DL and BD-R:
   every disc but the last of a set at least 97 % full, and a set uses at
   most ceil(payload / capacity) + 1 discs;
2. speed: ``discarchive plan`` of the seed's 365,245 items (``--items``),
   as sparse files on disk: scan (stat only), arrangement, packing and the
   exact image size of every disc, in under 10 s;
3. growth: arrangement and packing alone (items in memory) at 10k, 100k
   and 1M items, seconds and microseconds per item.

The archive is laid out as ``YEAR/UNITCODE_UNITNAME/NN_CATEGORY/NNNN_TITLE.ext``
with the catalog ``归档文件目录.csv`` (DA/T 22-2015 archival codes), like
bench/corpus.py, from a seeded generator: scans of 0.1-5 MB (TIFF, JPEG,
PDF, OFD, PNG) and about one PDF in a hundred of 20-200 MB; about 25 items
per insured unit and year. A tree is made once under ``--base`` and reused.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from bench.corpus import CATALOG, CATEGORIES, FONDS, MB, SCAN_FORMATS, TITLES, YEARS, _units

VERSION = 1
ITEMS_PER_UNIT_YEAR = 25


def rows(n_items: int, seed: int = 1, years: tuple[str, ...] = tuple(YEARS)):
    """(path, size, catalog row) of ``n_items`` items of ``years``, deterministic; sizes in bytes."""
    rng = random.Random(f"discarchive-plan:{n_items}:{seed}:{','.join(years)}")
    units = _units(rng, max(2, n_items // (ITEMS_PER_UNIT_YEAR * len(years))))
    numbers: dict[tuple[str, str], int] = {}
    out = []
    for _ in range(n_items):
        if rng.random() < 0.01:
            ext, size = "pdf", rng.randint(20 * MB, 200 * MB)
        else:
            ext, size = rng.choice(SCAN_FORMATS), rng.randint(MB // 10, 5 * MB)
        out.append((rng.choice(years), rng.randrange(len(units)), rng.randrange(len(CATEGORIES)),
                    rng.choice(TITLES), ext, size))
    out.sort(key=lambda r: (r[0], r[1], r[2]))          # numbered in archival order
    for year, u, c, title, ext, size in out:
        code, unit = units[u]
        cat, short, retention, ret_code, flow = CATEGORIES[c]
        number = numbers[year, cat] = numbers.get((year, cat), 0) + 1
        path = f"{year}/{code}_{unit}/{c + 1:02d}_{cat}/{number:04d}_{title}.{ext}"
        yield path, size, [f"{number:04d}", f"{FONDS}-SB·{year}-{ret_code}-{short}-{number:04d}",
                           unit, code, title, f"{year}0601", str(max(1, size // 200_000)), "",
                           retention, cat, flow, "", path]


def ensure_tree(base: Path, n_items: int, years: tuple[str, ...] = tuple(YEARS)) -> Path:
    """The sparse archive of ``n_items`` items under ``base``, made once (a marker says so)."""
    name = f"plan-{n_items}-{years[0]}-{years[-1]}-sparse"
    root = base / name
    marker = base / f"{name}.json"
    want = {"items": n_items, "years": list(years), "version": VERSION}
    if root.is_dir() and marker.is_file() and json.loads(marker.read_text()) == want:
        return root
    import shutil
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    made = set()
    with open(root / CATALOG, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["件号", "档号", "责任者", "代码", "题名", "日期", "页数", "密级", "保管期限",
                    "类别", "收支", "备注", "文件"])
        for path, size, row in rows(n_items, years=years):
            parent = path.rpartition("/")[0]
            if parent not in made:
                os.makedirs(root / parent, exist_ok=True)
                made.add(parent)
            fd = os.open(root / path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.ftruncate(fd, size)        # sparse: no data blocks
            os.close(fd)
            w.writerow(row)
    marker.write_text(json.dumps(want))
    return root


def _settings():
    import tomllib

    import config
    from manifests.arrange import Settings
    cfg = config.Config(home=Path("."))
    cfg.retention = tomllib.loads(config.defaults_text())["archive"]["retention"]
    return cfg, Settings.from_config(cfg)


def plan_tree(root: Path, media: str):
    """Scan (stat only), arrange and plan ``root``: (plan, wall seconds, items, CPU seconds)."""
    import config
    from manifests.arrange import arrange
    from manifests.catalog import scan
    from manifests.plan import gc_paused, make_plan
    cfg, settings = _settings()
    t, cpu = time.perf_counter(), time.process_time()
    problems: list = []
    with gc_paused():     # as daemon/jobs.py plan() does
        items = scan(root, cfg.retention, problems=problems, hashing=False)
        plan = make_plan(arrange(items, settings, problems), media, config.media_sectors(media),
                         lambda *k: 1, cfg.source_organization)
    return plan, time.perf_counter() - t, len(items), time.process_time() - cpu


def timed_runs(root: Path, media: str = "bd-r", rounds: int = 3) -> tuple[float, float, int]:
    """Plan ``root`` in ``rounds`` fresh processes after one untimed warm-up run:
    (median wall seconds, median CPU seconds, items).

    As for the other lines of ``make bench`` (docs/BENCHMARKS.md, "Method"),
    each timed run is a child process that times only the work, and the
    input is read once before (here: the tree's folders and inodes, which
    earlier stages may have pushed out of the kernel's caches).
    """
    runs = []
    for n in range(rounds + 1):
        out = subprocess.run([sys.executable, "-m", "bench.planning", "--child", str(root), media],
                             check=True, capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent.parent).stdout
        if n:
            runs.append(json.loads(out))
    mid = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
    return mid["seconds"], mid["cpu"], mid["items"]


def fill_report(plan) -> tuple[bool, list[str]]:
    """Check the fill rules on every set: (all pass, one line per set)."""
    ok, lines = True, []
    for s in plan.sets:
        fills = [d.fill for d in s.discs]
        payload = sum(-(-i.size // 2048) for d in s.discs for i in d.items)
        bound = math.ceil(payload / plan.capacity) + 1
        good = all(f >= 0.97 for f in fills[:-1]) and len(s.discs) <= bound
        ok &= good
        lines.append(f"  {s.group_id}: {len(s.discs)} discs (at most {bound}), fill "
                     f"{', '.join(f'{100 * f:.1f}%' for f in fills)} {'PASS' if good else 'FAIL'}")
    return ok, lines


def growth(n_items: int) -> float:
    """CPU seconds to arrange and plan ``n_items`` items held in memory (onto BD-R)."""
    import config
    from manifests.arrange import arrange
    from manifests.catalog import CATALOG_COLUMNS, Item, _from_row, _row_values
    from manifests.plan import gc_paused, make_plan
    cfg, settings = _settings()
    items = []
    for path, size, row in rows(n_items):
        i = Item(path=path, size=size, sha256="", mtime_ns=0)
        _from_row(i, *_row_values(dict(zip(CATALOG_COLUMNS, row))))
        items.append(i)
    t = time.process_time()
    with gc_paused():
        make_plan(arrange(items, settings), "bd-r", config.media_sectors("bd-r"), lambda *k: 1,
                  cfg.source_organization)
    return time.process_time() - t


def table_lines(t, base: Path, sizes: list[int], gib: float = 32.0,
                items: int = 365_245) -> None:
    """Lines 5 (fill and speed) and 7 (growth of planning) of ``make bench`` (bench/run.py),
    added to its Table ``t``; the trees are made once under ``base``."""
    mean = sum(s for _, s, _ in rows(20_000)) / 20_000
    root = ensure_tree(base, int(gib * 2**30 / mean) + 1, ("2024",))
    for media in ("dvd-r", "bd-r"):
        plan, _, _, _ = plan_tree(root, media)
        ok, _ = fill_report(plan)
        fills = [d.fill for s in plan.sets for d in s.discs[:-1]]
        t.add("5", f"plan fill, {gib:.0f} GiB of one year onto {media}",
              f"{sum(len(s.discs) for s in plan.sets)} discs, lowest {100 * min(fills, default=1):.1f} %",
              ">= 97 %, <= ceil+1 discs", ok)
    seconds, cpu, n = timed_runs(ensure_tree(base, items), "bd-r")
    t.add("5", f"plan {n:,} items onto bd-r (scan by stat, arrange, pack, sizes)",
          f"{seconds:.1f} s ({cpu:.1f} s CPU), median of 3", "< 10 s", seconds < 10)
    figs = [growth(n) for n in sizes]
    label = "/".join(f"{n // 1000:,}k" if n < 10**6 else f"{n // 10**6}M" for n in sizes)
    t.add("7", f"growth: arrange + plan, {label} items",
          " / ".join(f"{1e6 * s / n:.1f}" for s, n in zip(figs, sizes)) + " us/item", "-", None)


def main() -> int:
    if sys.argv[1:2] == ["--child"]:       # one timed run for timed_runs()
        _, seconds, n, cpu = plan_tree(Path(sys.argv[2]), sys.argv[3])
        print(json.dumps({"seconds": seconds, "cpu": cpu, "items": n}))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, default=Path("build/bench"))
    ap.add_argument("--gib", type=float, default=32.0, help="size of the fill archive, GiB")
    ap.add_argument("--items", type=int, default=365_245, help="items of the speed archive")
    ap.add_argument("--growth", default="10000,100000,1000000")
    ap.add_argument("--year", default="2024", help="year of the fill archive")
    a = ap.parse_args()
    failed = False
    print(f"disc planning benchmark, {dt.date.today()}, {os.cpu_count()} cores")
    mean = sum(s for _, s, _ in rows(20_000)) / 20_000
    n_fill = int(a.gib * 2**30 / mean) + 1
    root = ensure_tree(a.base, n_fill, (a.year,))
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    print(f"1. fill: one year's handover, {n_fill} items, {total / 1e9:.1f} GB (sparse) in {root}")
    for media in ("dvd-r", "dvd+r-dl", "bd-r"):
        plan, seconds, _, _ = plan_tree(root, media)
        ok, lines = fill_report(plan)
        failed |= not ok
        print(f" {media}: {sum(len(s.discs) for s in plan.sets)} discs in {len(plan.sets)} sets, "
              f"planned in {seconds:.2f} s: {'PASS' if ok else 'FAIL'} (target: every disc but "
              "the last >= 97 % full, <= ceil(payload/capacity)+1 discs a set)")
        print("\n".join(lines))
    root = ensure_tree(a.base, a.items)
    seconds, cpu, n = timed_runs(root, "bd-r")
    ok = seconds < 10
    failed |= not ok
    print(f"2. speed: plan {n} files ({len(YEARS)} years) onto bd-r: {seconds:.2f} s wall, "
          f"{cpu:.2f} s CPU, median of 3 fresh processes after a warm-up "
          f"(target < 10 s) {'PASS' if ok else 'FAIL'}")
    print("3. growth (arrange + plan, items in memory, bd-r, CPU seconds):")
    for n in (int(x) for x in a.growth.split(",")):
        s = growth(n)
        print(f"  {n:>9} items: {s:7.2f} s  {1e6 * s / n:6.1f} us/item")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
