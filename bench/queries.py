"""The lifecycle's queries at scale: ``due``, ``cabinet`` and ``find`` on big inventories.

    python -m bench.queries [--items 1000000] [--base build/bench] [--reps 5]

For 10,000 / 100,000 / 1,000,000 items (sets of 200 items, two copies
each: 100 / 1,000 / 10,000 discs) it makes an archive home whose inventory
is filled straight through sqlite3 (``executemany`` in one transaction,
``synchronous = OFF``: under a minute for 1M items on 2 cores), with every disc shelved
(copy A on site, copy B off-site, 10 shelves of 50 slots per cabinet), a
share of them inspected once to three times, a few superseded, flagged or
checked out. Homes are kept in ``base`` and remade when inventory/store.py,
inventory/lifecycle.py or this file change.

Timed, median of ``reps`` after one warm-up: the query function on an open
inventory (``lifecycle.due``, ``lifecycle.storage_map``, ``Inventory.find``
by 档号 and by a title word), and the whole command in-process through
click (config load, inventory open, the query, the text printed), which is
what an operator waits for less the interpreter's start. Target: < 100 ms
each at 10,000 discs (issue 7, point 6).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import random
import sqlite3
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERSION = 1   # bump when the synthetic rows change
TITLE_WORD = "工伤认定"
TARGET = 0.1   # seconds
FIRST_BURN = dt.date(2022, 12, 1)
AT = dt.date(2026, 11, 30)
LATER = dt.timedelta(days=20)   # a superseded copy's successor was burned this much later
"""Copies were burned from FIRST_BURN on, four years long, as a bureau re-burning every four
years has them; the queries ask about AT, when the oldest ones come due."""


def _tag() -> str:
    h = hashlib.sha256(bytes([VERSION]))
    for rel in ("inventory/store.py", "inventory/lifecycle.py", "bench/queries.py"):
        h.update((ROOT / rel).read_bytes())
    return h.hexdigest()[:12]


def fill(db_path: Path, n_items: int, seed: str = "queries") -> None:
    """Fill an empty inventory (made by ``Inventory.create``) with ``n_items`` items.

    Sets of 200 items formed 2019-2024 (bench.corpus categories and titles),
    two copies each burned over the four years from :data:`FIRST_BURN` and
    due four years later; every copy
    shelved; about 60 % inspected, 2 % superseded (by a generation-2 copy
    with no place yet), 1 % flagged, 1 % checked out. One transaction.
    """
    from bench.corpus import CATEGORIES, TITLES, YEARS
    from bench.run import GIVEN, SURNAMES
    from inventory.lifecycle import add_years

    rng = random.Random(f"{seed}:{n_items}")
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA synchronous = OFF")
    n_sets = max(1, n_items // 200)
    sets = [f"160-{YEARS[s % len(YEARS)]}-{s:05d}" for s in range(n_sets)]
    with conn:
        conn.executemany(
            "INSERT INTO disc_sets (set_id, created_at, media, fonds, years, retention, "
            "record_count, file_count, state, tag_files, copies, image_bytes) "
            "VALUES (?, '2025-01-01T00:00:00Z', 'bd-r', '160', ?, '永久', 200, 200, 'archived', "
            "'[]', 2, 25000000000)", ((sid, sid[4:8]) for sid in sets))
        discs, inspections = [], []
        for s, sid in enumerate(sets):
            burned = FIRST_BURN + dt.timedelta(days=s * 1450 // n_sets)   # 4 years of burns
            for c, label in enumerate("AB"):
                disc_id = f"{sid}-{label}"
                slot_no = s
                cab, shelf, slot = slot_no // 500 + 1, slot_no % 500 // 50 + 1, slot_no % 50 + 1
                roll = rng.random()
                state = "superseded" if roll < 0.02 else "damaged" if roll < 0.025 else "verified"
                inspected = None
                if rng.random() < 0.6:
                    span = max(31, (AT - burned).days)
                    times = sorted(burned + dt.timedelta(days=rng.randrange(30, span))
                                   for _ in range(rng.randint(1, 3)))
                    for t in times:
                        inspections.append((disc_id, f"{t}T09:00:00Z", "sr0", 1, 1,
                                            rng.choice((0, 0, 0, 1)), rng.randint(0, 20),
                                            rng.randint(0, 40), 25_000_000_000, 2000.0,
                                            12_500.0, 0))
                    inspected = f"{times[-1]}T09:00:00Z"
                discs.append((
                    disc_id, sid, label, state, "bd-r", f"{burned}T10:00:00Z",
                    add_years(burned, 4).isoformat(), "passed",
                    None if c == 0 else "异地库", f"防磁柜{cab}", shelf, slot, inspected,
                    "slow sectors rose from 0 to 30" if rng.random() < 0.01 else None,
                    "张三" if rng.random() < 0.01 else None,
                    f"{sid}-{label}2" if state == "superseded" else None,
                    f"{burned + LATER}T10:00:00Z" if state == "superseded" else None))
                if state == "superseded":
                    discs.append((f"{sid}-{label}2", sid, label, "verified", "bd-r",
                                  f"{burned + LATER}T10:00:00Z",
                                  add_years(burned + LATER, 4).isoformat(), "passed",
                                  None, None, None, None, None, None, None, None, None))
        conn.executemany(
            "INSERT INTO discs (disc_id, set_id, copy_label, state, medium, burned_at, due_at, "
            "verification, site, cabinet, shelf, slot, inspected_at, reburn_reason, out_by, "
            "superseded_by, superseded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "?, ?)", discs)
        conn.execute("UPDATE discs SET out_at = '2026-11-01T09:00:00Z', out_reason = '查阅' "
                     "WHERE out_by IS NOT NULL")
        conn.executemany(
            "INSERT INTO inspections (disc_id, at, drive, reads, passed, bad_sectors, "
            "retried_sectors, slow_sectors, read_bytes, read_seconds, speed_kbs, damaged_files) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", inspections)

        def items():
            numbers: dict[tuple, int] = {}
            for s, sid in enumerate(sets):
                year = sid[4:8]
                for k in range(200):
                    c = rng.randrange(len(CATEGORIES))
                    cat, short, retention, code, flow = CATEGORIES[c]
                    no = numbers[year, c] = numbers.get((year, c), 0) + 1
                    title = (f"{rng.choice(TITLES)}（{rng.choice(SURNAMES)}"
                             f"{rng.choice(GIVEN)}{rng.choice(GIVEN)}）")
                    rel = f"{year}/UNIT{s % 400:06d}/{c + 1:02d}_{cat}/{no:05d}_{title}.pdf"
                    yield (sid, rel, "data/" + rel, 1_000_000,
                           hashlib.sha256(f"{sid}/{k}".encode()).hexdigest(), 1,
                           600 + k * 500, f"160-SB·{year}-{code}-{short}-{no:05d}",
                           f"{no:05d}", title, year, cat, retention, f"{year}0{1 + k % 9}15",
                           flow)
        conn.executemany(
            "INSERT INTO items (set_id, path, disc_path, size, sha256, is_record, extent_lba, "
            "archival_code, item_number, title, year, category, retention, date, flow) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", items())
    conn.execute("ANALYZE")
    conn.close()


def home(base: Path, n_items: int) -> Path:
    """An archive home with a filled inventory of ``n_items`` items, made once and kept."""
    import shutil

    from config.home import init_home

    path = base / f"lifecycle-{n_items}-{_tag()}"
    if (path / "ready").is_file():
        return path
    for old in base.glob(f"lifecycle-{n_items}-*"):
        shutil.rmtree(old)
    init_home(path)
    fill(path / "inventory.db", n_items)
    (path / "ready").write_text("filled\n")
    return path


def _median(fn, reps: int) -> float:
    fn()   # warm-up: the page cache and SQLite's
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(path: Path, reps: int = 5) -> dict[str, float]:
    """Median seconds of each query (function, and command in-process) in home ``path``."""
    from click.testing import CliRunner

    import cli
    import config
    from inventory import lifecycle
    from inventory.store import Inventory

    cfg = config.load(path)
    at = AT
    runner = CliRunner()

    def command(*args):
        res = runner.invoke(cli.main, [args[0], "--home", str(path), *args[1:]],
                            catch_exceptions=False)
        if res.exit_code not in (0, 1):
            raise RuntimeError(f"{args}: {res.stderr}")

    inv = Inventory.open(cfg.inventory_path)
    try:
        code = inv.db.execute("SELECT archival_code FROM items WHERE id = "
                              "(SELECT max(id) / 2 FROM items)").fetchone()[0]
        out = {
            "due": _median(lambda: lifecycle.due(inv, at, cfg.lifecycle, cfg.reburn_years), reps),
            "cabinet": _median(lambda: lifecycle.storage_map(inv), reps),
            "find 档号": _median(lambda: inv.find(code), reps),
            "find word": _median(lambda: inv.find(TITLE_WORD), reps),
        }
        counts = {"discs": inv.db.execute("SELECT count(*) FROM discs").fetchone()[0],
                  "pull list": len(lifecycle.due(inv, at, cfg.lifecycle, cfg.reburn_years)["inspect"])}
    finally:
        inv.close()
    out["due command"] = _median(lambda: command("due", "--at", at.isoformat()), reps)
    out["cabinet command"] = _median(lambda: command("cabinet"), reps)
    out["find command"] = _median(lambda: command("find", code), reps)
    out.update(counts)
    return out


def table_lines(t, base: Path, sizes: list[int], reps: int = 5) -> None:
    """Add bench/run.py's lines 6 and 7 for due, cabinet and find to its Table ``t``."""
    found = {}
    for n in sizes:
        t0 = time.perf_counter()
        path = home(base, n)
        print(f"lifecycle home {n:,} items: {time.perf_counter() - t0:.0f} s to make or reuse",
              file=sys.stderr, flush=True)
        found[n] = measure(path, reps)
    top = sizes[-1]
    discs = found[top]["discs"]
    for what in ("due", "due command", "cabinet", "cabinet command", "find command"):
        s = found[top][what]
        t.add("6", f"{what} ({top:,} items, {discs:,} discs)", f"{s * 1000:,.1f} ms",
              "< 100 ms", s < TARGET)
    label = "/".join(f"{n // 1000:,}k" if n < 10**6 else f"{n // 10**6}M" for n in sizes)
    for what in ("due", "cabinet"):
        figs = [found[n][what] for n in sizes]
        t.add("7", f"growth: {what}, {label} items", " / ".join(f"{s * 1000:,.1f}" for s in figs)
              + " ms", "< 100 ms each", all(s < TARGET for s in figs))


def main() -> int:
    ap = argparse.ArgumentParser(description="due, cabinet and find at scale (issue 7 point 6)")
    ap.add_argument("--items", type=int, default=1_000_000, help="largest inventory")
    ap.add_argument("--base", type=Path, default=ROOT / "build" / "bench")
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    a.base.mkdir(parents=True, exist_ok=True)
    sizes = [n for n in (10_000, 100_000, 1_000_000) if n <= a.items] or [a.items]
    print(f"{'items':>10} {'discs':>7} " + " ".join(
        f"{k:>16}" for k in ("due", "due command", "cabinet", "cabinet command", "find 档号",
                             "find word", "find command")) + "   (ms, median)")
    for n in sizes:
        r = measure(home(a.base.resolve(), n), a.reps)
        print(f"{n:>10,} {r['discs']:>7,} " + " ".join(
            f"{r[k] * 1000:>16.1f}" for k in ("due", "due command", "cabinet", "cabinet command",
                                             "find 档号", "find word", "find command")),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
