"""discarchive's benchmarks: the real code paths against plain baselines.

    python -m bench.run [--gib 4] [--small 100000] [--rounds 3] [--items 1000000]

Prints one table: per line the figure, its target and PASS / FAIL / not
built yet, with the machine (CPU model, cores) and the date. Exits 1 when a
measured target fails, 2 on an error. docs/BENCHMARKS.md says what each
line measures.

Method. Each timed run is a fresh child process (``--child``) that times
only the work, after its imports, and reports its peak RSS
(``VmHWM``); xorriso is timed as a whole process. The two or three
sides of a comparison run in the same invocation, in rotated order each
round (A B C, B C A, C A B, ...); before every run the output of that side
is deleted, dirty pages are flushed (``sync``) and the input is read once
to warm the page cache, the same for every side. A figure is the median
over the rounds. Throughputs are payload (or image) bytes per second;
MB = 10^6 bytes, KB = 10^3 bytes.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Collection

ROOT = Path(__file__).resolve().parents[1]
MB = 1_000_000
SET_ID = "160-2024-0001"
NOT_BUILT = "not built yet"


# -- the timed operations, each run in a child process ---------------------

def _rss() -> int:
    """Resident set size of this process now, in bytes."""
    import psutil
    return psutil.Process().memory_info().rss


def _peak_rss() -> int:
    """Peak resident set size of this process so far, in bytes.

    Linux: VmHWM from /proc/self/status, the high-water mark of this
    program's own memory. Not ``getrusage``: its ru_maxrss survives exec, so
    a child started by a large parent reports at least the parent's size
    (the bench's own process holds the corpora's file lists, about 200 MB).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # KiB on Linux


def _files(source: Path) -> list[Path]:
    """Every file below ``source``, sorted."""
    return sorted(Path(d, f) for d, _, fs in os.walk(source) for f in fs)


def op_master(job: dict) -> dict:
    """Pack and master as daemon/jobs.py ``_archive`` and ``_master`` do, up to the image check.

    ``scan`` as an archive run of a source with nothing recorded calls it
    (no file recorded with the same size, so none hashed first; every file
    opened once), then ``jobs.pack``: placeholder tag files, Layout,
    capacity check, Layout.write (metadata by pycdlib, every payload file
    read once, hashed as it is written, tag files rendered into the image,
    fsynced). Stages (seconds): scan; tags and layout (until ``pack``'s
    first progress call, when writing starts); write. Then, untimed,
    writes ``<image>.items`` (TSV) for the verify run.
    """
    import tomllib

    import config
    from daemon import incremental, jobs
    from manifests import signing
    from manifests.bag import DiscInfo
    from manifests.catalog import scan

    source, image_path, work = Path(job["source"]), Path(job["image"]), Path(job["work"])
    key, _ = signing.load_keypair(Path(job["key"]), Path(job["pub"]))
    retention = tomllib.loads(config.defaults_text())["archive"]["retention"]
    capacity = config.media_sectors("bd-r-xl")
    writing: list[float] = []

    def progress(done: int, total: int) -> None:     # as cheap as the QuietReporter's
        if not writing:
            writing.append(time.perf_counter())

    base = _rss()
    stages = [time.perf_counter()]
    items = scan(source, retention, lambda done, total: None, [],
                 hashing=incremental.hashed_first({}),
                 check_readable=True)
    stages.append(time.perf_counter())
    packed = jobs.pack(work / "tags", image_path, source, items, DiscInfo(SET_ID, SET_ID),
                       "区社会保险局", "160", "", key, capacity, "bd-r-xl", 0, progress)
    stages.append(time.perf_counter())
    image, tag_files = packed.image, packed.tag_files
    stages[-1:-1] = writing
    seconds = stages[-1] - stages[0]
    peak = _peak_rss()
    with open(str(image_path) + ".items", "w", encoding="utf-8") as f:
        f.write(json.dumps([image.size, image.sectors, tag_files], ensure_ascii=False) + "\n")
        for i in items:
            f.write(f"{i.path}\t{i.size}\t{i.sha256}\t{image.extents['data/' + i.path]}\n")
    return {"seconds": seconds, "bytes": sum(i.size for i in items), "files": len(items),
            "image_bytes": image.size, "base_rss": base, "peak_rss": peak,
            "stages": dict(zip(("scan", "tags+layout", "write"),
                               (b - a for a, b in zip(stages, stages[1:]))))}


def _publish(inv, part: Path, path: Path) -> Path:
    """Close an inventory made at ``part`` and move it (with its -wal, -shm) to ``path``."""
    inv.close()
    for suffix in ("", "-wal", "-shm"):
        if Path(str(part) + suffix).exists():
            os.replace(str(part) + suffix, str(path) + suffix)
    return path


def image_inventory(image: Path) -> Path:
    """A real inventory next to ``image`` holding its set as ``_archive`` records it.

    The set's row (image length, SHA-256, tag files' places) and one items
    row per payload file (path, size, SHA-256, first sector), from the
    ``.items`` file the master run wrote; made once, outside any timing,
    and reused while it is newer than the image (an image mastered again
    has other dates in its descriptors, so another SHA-256).
    """
    from inventory.store import ITEM_COLUMNS, Inventory

    path = Path(str(image) + ".db")
    if path.is_file() and path.stat().st_mtime_ns > image.stat().st_mtime_ns:
        return path
    part = Path(str(image) + ".db.part")
    for old in image.parent.glob(part.name + "*"):
        old.unlink()
    inv = Inventory.create(part)
    with open(str(image) + ".items", encoding="utf-8") as f:
        size, sectors, tag_files = json.loads(f.readline())
        h = hashlib.sha256()
        with open(image, "rb") as img:
            while chunk := img.read(1 << 20):
                h.update(chunk)
        inv.db["disc_sets"].insert({
            "set_id": SET_ID, "created_at": "2024-12-31T00:00:00Z", "media": "bd-r-xl",
            "fonds": "160", "state": "mastered", "image_bytes": size, "image_sectors": sectors,
            "image_sha256": h.hexdigest(), "tag_files": json.dumps(tag_files, ensure_ascii=False)})
        inv.db["items"].insert_all(
            ({"set_id": SET_ID, "path": rel, "disc_path": "data/" + rel, "size": int(n),
              "sha256": sha, "is_record": 1, "extent_lba": int(lba), **dict.fromkeys(ITEM_COLUMNS)}
             for rel, n, sha, lba in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)),
            batch_size=2000)
    return _publish(inv, part, path)


def op_verify(job: dict) -> dict:
    """Verify an image file as `discarchive verify` does: expected_of, then verify() over file_chunks().

    The image's set is in a real inventory (:func:`image_inventory`, made
    untimed); the timing covers ``daemon.jobs.expected_of`` (the SELECT of
    every file's path, first sector, size and SHA-256, into an Expected)
    and ``verify(file_chunks(image, length), expected, public_pem)``,
    which also compares the image's SHA-256 with the recorded one.
    """
    from daemon.jobs import expected_of
    from inventory.store import Inventory
    from manifests import signing
    from verification.onepass import file_chunks
    from verification.readback import verify

    public_pem = signing.load_public_key(Path(job["pub"]))
    inv = Inventory.open(image_inventory(Path(job["image"])))
    base = _rss()
    t0 = time.perf_counter()
    expected = expected_of(inv, SET_ID)
    check = verify(file_chunks(Path(job["image"]), expected.length), expected, public_pem)
    seconds = time.perf_counter() - t0
    inv.close()
    if not check.passed:
        raise SystemExit(f"the image failed its check: {check.summary()}")
    return {"seconds": seconds, "bytes": expected.length,
            "files": sum(1 for p in expected.files.paths if p.startswith("data/")),
            "base_rss": base, "peak_rss": _peak_rss()}


def _sha256(path: Path) -> int:
    """SHA-256 a file in 1 MiB reads; returns its size in bytes (the digest is not needed)."""
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
    return n


def op_hash_files(job: dict) -> dict:
    """Baseline: list the source (os.walk) and SHA-256 every file once, 1 MiB reads."""
    base = _rss()
    t0 = time.perf_counter()
    n = sum(_sha256(p) for p in _files(Path(job["source"])))
    return {"seconds": time.perf_counter() - t0, "bytes": n, "base_rss": base,
            "peak_rss": _peak_rss()}


def op_hash_image(job: dict) -> dict:
    """Baseline: SHA-256 of the image file, 1 MiB reads."""
    base = _rss()
    t0 = time.perf_counter()
    n = _sha256(Path(job["image"]))
    return {"seconds": time.perf_counter() - t0, "bytes": n, "base_rss": base,
            "peak_rss": _peak_rss()}


OPS = {"master": op_master, "verify": op_verify, "hash_files": op_hash_files,
       "hash_image": op_hash_image}


def child(op: str, **job) -> dict:
    """Run ``OPS[op]`` in a fresh interpreter and return what it reports."""
    cmd = [sys.executable, "-m", "bench.run", "--child", json.dumps({"op": op, **job})]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{op} failed: {p.stderr.strip()[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def xorriso(source: Path, image: Path) -> dict:
    """Master ``source`` under /data with xorriso's native -md5 on (Rock Ridge + Joliet).

    ``-stdio_sync end`` forces the image to disk once at the end, as
    Layout.write's fsync does. Timed as a whole process, in seconds.
    """
    cmd = ["xorriso", "-no_rc", "-report_about", "SORRY", "-md5", "on", "-joliet", "on",
           "-volid", SET_ID, "-stdio_sync", "end", "-outdev", f"stdio:{image}",
           "-map", str(source), "/data", "-commit"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"xorriso failed: {p.stderr.strip()[-2000:]}")
    return {"seconds": seconds, "bytes": sum(f.stat().st_size for f in _files(source)),
            "image_bytes": image.stat().st_size}


# -- running sides fairly ------------------------------------------------------

def warm(paths: list[Path]) -> None:
    """Flush dirty pages, then read every file once so it sits in the page cache."""
    os.sync()
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.read(8 << 20):
                pass


def compare(sides: dict, rounds: int) -> dict[str, list[dict]]:
    """Run each side ``rounds`` times, order rotated every round.

    ``sides`` maps a name to (inputs to warm, outputs to delete first, run()).
    Returns each side's results in run order.
    """
    names = list(sides)
    out: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            inputs, outputs, run = sides[name]
            for o in outputs:
                Path(o).unlink(missing_ok=True)
            warm(inputs)
            out[name].append(run())
            print(f"    {name}: {out[name][-1]['seconds']:.2f} s", file=sys.stderr, flush=True)
    return out


def median(runs: list[dict], key: str = "seconds") -> float:
    return statistics.median(r[key] for r in runs)


def rate(runs: list[dict]) -> float:
    """Median throughput in MB/s."""
    return statistics.median(r["bytes"] / r["seconds"] for r in runs) / MB


def stages(runs: list[dict]) -> str:
    """Median seconds of each pack+master stage, as text."""
    return ", ".join(f"{k} {statistics.median(r['stages'][k] for r in runs):.1f}"
                     for k in runs[0]["stages"]) + " s"


def per_file(runs: list[dict]) -> float:
    """Median of (peak RSS - baseline) / files, in KB."""
    return statistics.median((r["peak_rss"] - r["base_rss"]) / r["files"] for r in runs) / 1000


# -- the inventory --------------------------------------------------------------

TITLE_WORD = "工伤认定"   # in 1 title of 16: find stops at its 200-row limit early
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "建国志明秀英丽华伟强敏静磊洋勇军杰娟涛超"   # titles end in a person's name: 8,000 names
INVENTORY_VERSION = 2   # bump when the synthetic rows change


def inventory(base: Path, n_items: int) -> Path:
    """A synthetic inventory of ``n_items`` items on ``n_items / 100`` discs.

    Sets of 200 items, two copies (discs) each, made by Inventory.create and
    filled with sqlite-utils bulk inserts. Kept in ``base`` and reused while
    inventory/store.py is unchanged.
    """
    from bench.corpus import CATEGORIES, TITLES, YEARS
    from inventory.store import ITEM_COLUMNS, Inventory

    tag = hashlib.sha256((ROOT / "inventory" / "store.py").read_bytes()
                         + bytes([INVENTORY_VERSION])).hexdigest()[:12]
    path = base / f"inventory-{n_items}-{tag}.db"
    if path.is_file():
        return path
    for old in base.glob(f"inventory-{n_items}-*.db*"):
        old.unlink()
    part = path.with_suffix(".part")
    for old in base.glob(part.name + "*"):
        old.unlink()
    inv = Inventory.create(part)
    db = inv.db
    db.execute("PRAGMA synchronous = OFF")
    rng = random.Random(f"inventory:{n_items}")
    numbers: dict[tuple, int] = {}
    n_sets = n_items // 200

    def items(s: int, set_id: str):
        for k in range(200):
            year, c = rng.choice(YEARS), rng.randrange(len(CATEGORIES))
            cat, short, retention, code, flow = CATEGORIES[c]
            person = rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN)
            title = f"{rng.choice(TITLES)}（{person}）"
            no = numbers[year, c] = numbers.get((year, c), 0) + 1
            unit = f"91500103UNIT{s % 400:06d}_示例单位{s % 400}"
            rel = f"{year}/{unit}/{c + 1:02d}_{cat}/{no:05d}_{title}.pdf"
            row = dict.fromkeys(ITEM_COLUMNS)
            row.update(archival_code=f"160-SB·{year}-{code}-{short}-{no:05d}",
                       item_number=f"{no:05d}", title=title, year=year, category=cat, retention=retention, flow=flow)
            yield {"set_id": set_id, "path": rel, "disc_path": "data/" + rel,
                   "size": rng.randint(100_000, 5_000_000),
                   "sha256": hashlib.sha256(f"{set_id}/{k}".encode()).hexdigest(),
                   "is_record": 1, "extent_lba": 600 + k * 2500, **row}

    sets = [f"160-{2019 + s % 6}-{s:05d}" for s in range(n_sets)]
    db["disc_sets"].insert_all(({"set_id": sid, "created_at": "2025-01-01T00:00:00Z",
                                 "media": "bd-r", "fonds": "160", "state": "archived", "record_count": 200,
                                 "file_count": 200, "tag_files": "[]"} for sid in sets),
                                batch_size=1000)
    db["discs"].insert_all(({"disc_id": f"{sid}-{c}", "set_id": sid, "copy_label": c,
                             "state": "verified", "burned_at": "2025-01-02T00:00:00Z",
                             "due_at": f"{2029 + s % 4}-01-02", "verification": "passed"}
                            for s, sid in enumerate(sets) for c in "AB"), batch_size=1000)
    db["items"].insert_all((row for s, sid in enumerate(sets) for row in items(s, sid)),
                           batch_size=2000)
    return _publish(inv, part, path)


def time_find(path: Path, reps: int = 5) -> dict[str, tuple[float, int]]:
    """Median seconds of Inventory.find, and rows it returned, by what was searched.

    ``档号``: the middle item's archival code; ``name``: the person's name
    in its title (a rare word: about one item in 8,000); ``word``: a title
    word in one item of 16; ``sha256``: its whole SHA-256.
    """
    from inventory.store import Inventory

    inv = Inventory.open(path)
    try:
        code, title, sha = inv.db.execute(
            "SELECT archival_code, title, sha256 FROM items WHERE id = "
            "(SELECT max(id) / 2 FROM items)").fetchone()
        name = title[title.index("（") + 1:-1]
        out = {}
        for what, text in (("档号", code), ("name", name), ("word", TITLE_WORD), ("sha256", sha)):
            found = inv.find(text)   # warm-up
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                inv.find(text)
                times.append(time.perf_counter() - t0)
            out[what] = (statistics.median(times), len(found))
        return out
    finally:
        inv.close()


# -- the report -------------------------------------------------------------------

class Table:
    """Rows of (number, measure, figure, target, result).

    ``result`` is PASS, FAIL, info (no target) or not built yet.
    """

    def __init__(self):
        self.rows: list[tuple[str, str, str, str, str]] = []

    def add(self, no: str, measure: str, figure: str, target: str, ok: bool | None | str) -> None:
        result = ok if isinstance(ok, str) else {True: "PASS", False: "FAIL", None: "info"}[ok]
        self.rows.append((no, measure, figure, target, result))
        print(f"  {no:<4}{measure}: {figure} [{result}]", file=sys.stderr, flush=True)

    def not_built(self, no: str, measure: str, target: str) -> None:
        self.add(no, measure, "-", target, NOT_BUILT)

    def render(self) -> str:
        head = ("#", "measure", "figure", "target", "result")
        widths = [max(_width(r[i]) for r in self.rows + [head]) for i in range(5)]
        lines = [" | ".join(_pad(c, w) for c, w in zip(row, widths)).rstrip()
                 for row in [head] + self.rows]
        lines.insert(1, "-+-".join("-" * w for w in widths))
        return "\n".join(lines)

    @property
    def failed(self) -> bool:
        return any(r[4] == "FAIL" for r in self.rows)


def _width(text: str) -> int:
    """Display width: CJK characters take two columns."""
    return sum(2 if ord(c) > 0x2E7F else 1 for c in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def machine() -> str:
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    xv = subprocess.run(["xorriso", "-version"], capture_output=True, text=True).stdout.split()
    return (f"CPU {model}, {os.cpu_count()} cores, {ram:.0f} GiB RAM; Python "
            f"{platform.python_version()}; xorriso {xv[1] if len(xv) > 1 else '?'}")


def disk_write_rate(base: Path, size: int = 1 << 30) -> float:
    """Sequential write of ``size`` bytes, fsynced, into ``base``: MB/s (context for line 1)."""
    path, block = base / "disk-write.tmp", os.urandom(1 << 20)
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(size >> 20):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    seconds = time.perf_counter() - t0
    path.unlink()
    return size / seconds / MB


def hash_rate() -> float:
    """hashlib SHA-256 over 512 MiB in memory, MB/s (one thread)."""
    block = os.urandom(1 << 20)
    h, t0 = hashlib.sha256(), time.perf_counter()
    for _ in range(512):
        h.update(block)
    return 512 * (1 << 20) / (time.perf_counter() - t0) / MB


# -- the benchmarks ----------------------------------------------------------

def bench_pack(t: Table, base: Path, corpora: dict, rounds: int, keys: dict,
               skip: Collection[str] = ()) -> dict:
    """Lines 1, 2 and (unless ``verify`` is in ``skip``) 3: pack+master vs hashlib and xorriso; verify vs hashlib."""
    out = base / "out"
    out.mkdir(exist_ok=True)
    images = {}
    for label, (source, files) in corpora.items():
        image, ximage = out / f"{label}.iso", out / f"{label}-xorriso.iso"
        work = out / f"work-{label}"
        sides = {"master": (files, [image], lambda: child("master", source=str(source),
                                                          image=str(image), work=str(work), **keys)),
                 "xorriso": (files, [ximage], lambda: xorriso(source, ximage))}
        if label == "bureau":
            sides["hash"] = (files, [], lambda: child("hash_files", source=str(source)))
        print(f"{label}: {', '.join(sides)} x {rounds} rounds", file=sys.stderr, flush=True)
        runs = compare(sides, rounds)
        ximage.unlink(missing_ok=True)
        images[label] = (image, runs["master"])
        m, x = rate(runs["master"]), rate(runs["xorriso"])
        if label == "bureau":
            h = rate(runs["hash"])
            t.add("1", "pack+master / hash files (bureau)",
                  f"{m / h:.2f} ({m:,.0f} vs {h:,.0f} MB/s)", ">= 0.5", m / h >= 0.5)
            t.add("1s", "pack+master stages (bureau)", stages(runs["master"]), "-", None)
            t.add("2a", "pack+master / xorriso -md5 on (bureau)",
                  f"{m / x:.2f} ({m:,.0f} vs {x:,.0f} MB/s)", ">= 1.0", m / x >= 1.0)
        else:
            n = runs["master"][0]["files"]
            t.add("2b", f"pack+master / xorriso -md5 on ({n:,} small files)",
                  f"{m / x:.2f} ({median(runs['master']):.1f} vs {median(runs['xorriso']):.1f} s)",
                  ">= 0.4", m / x >= 0.4)
            t.add("2s", "pack+master stages (small files)", stages(runs["master"]), "-", None)
            t.add("2c", "image size, discarchive vs xorriso (small files)",
                  f"{runs['master'][0]['image_bytes'] / MB:,.0f} vs "
                  f"{runs['xorriso'][0]['image_bytes'] / MB:,.0f} MB", "-", None)
    if "verify" not in skip:
        bench_verify(t, {label: image for label, (image, _) in images.items()}, rounds, keys)
    for image, _ in images.values():
        image.unlink(missing_ok=True)
        for suffix in (".items", ".db", ".db-wal", ".db-shm"):
            Path(str(image) + suffix).unlink(missing_ok=True)
    return images


def made_images(base: Path, corpora: dict, keys: dict) -> dict[str, Path]:
    """The images of line 3 without line 1-2's timed runs: each mastered once, untimed.

    For ``--skip pack``: an image already in ``base/out`` (with its
    ``.items``) is reused and kept, so that verify can be measured again
    and again; delete ``base/out`` to make them anew.
    """
    out = base / "out"
    out.mkdir(exist_ok=True)
    images = {}
    for label, (source, files) in corpora.items():
        image = out / f"{label}.iso"
        if not (image.is_file() and Path(str(image) + ".items").is_file()):
            print(f"{label}: mastering the image once (untimed)", file=sys.stderr, flush=True)
            warm(files)
            child("master", source=str(source), image=str(image), work=str(out / f"work-{label}"),
                  **keys)
        images[label] = image
    return images


def bench_verify(t: Table, images: dict[str, Path], rounds: int, keys: dict) -> None:
    """Lines 3 and 4a: verifying each image vs hashing it with hashlib; the verify's peak RSS."""
    for label, image in images.items():
        image_inventory(image)   # made once, untimed
        sides = {"verify": ([image], [], lambda: child("verify", image=str(image), **keys)),
                 "hash": ([image], [], lambda: child("hash_image", image=str(image)))}
        print(f"{label} image: verify, hash x {rounds} rounds", file=sys.stderr, flush=True)
        runs = compare(sides, rounds)
        v, h = rate(runs["verify"]), rate(runs["hash"])
        n = runs["verify"][0]["files"]
        no, what = ("3a", "bureau image") if label == "bureau" else ("3b", f"{n:,}-file image")
        t.add(no, f"verify / hash image ({what})", f"{v / h:.2f} ({v:,.0f} vs {h:,.0f} MB/s)",
              ">= 0.8", v / h >= 0.8)
        if label == "small":
            peak = median(runs["verify"], "peak_rss") / MB
            t.add("4a", f"verify peak RSS ({n:,}-file image)",
                  f"{peak:,.0f} MB ({per_file(runs['verify']):.2f} KB/file over baseline)",
                  "< 200 MB", peak < 200)


def bench_memory(t: Table, base: Path, small_runs: list[dict], twin: tuple, keys: dict) -> None:
    """Lines 4b-d: mastering's memory per file, and whether it grows with payload bytes.

    ``small_runs`` are the pack+master runs of the small corpus; ``twin``
    (source, files) has as many files, each about four times larger.
    """
    source, files = twin
    image = base / "out" / "twin.iso"
    warm(files)
    run = child("master", source=str(source), image=str(image),
                work=str(base / "out" / "work-twin"), **keys)
    image.unlink(missing_ok=True)
    Path(str(image) + ".items").unlink(missing_ok=True)
    a, b = per_file(small_runs), per_file([run])
    n = small_runs[0]["files"]
    t.add("4b", f"master RSS per file ({n:,} files, {small_runs[0]['bytes'] / MB:,.0f} MB)",
          f"{a:.1f} KB (peak {median(small_runs, 'peak_rss') / MB:,.0f} MB)", "< 8 KB", a < 8)
    t.add("4c", f"master RSS per file ({run['files']:,} files, {run['bytes'] / MB:,.0f} MB)",
          f"{b:.1f} KB (peak {run['peak_rss'] / MB:,.0f} MB)", "< 8 KB", b < 8)
    t.add("4d", "master RSS per file, growth with payload (4c / 4b)", f"{b / a:.2f}x", "<= 1.10x",
          b / a <= 1.10)


def bench_inventory(t: Table, base: Path, largest: int) -> None:
    """Lines 5-7: planning, inventory queries, growth."""
    sizes = [n for n in (10_000, 100_000, 1_000_000) if n <= largest] or [largest]
    found = {}
    for n in sizes:
        t0 = time.perf_counter()
        path = inventory(base, n)
        print(f"inventory {n:,} items: {time.perf_counter() - t0:.0f} s to make or reuse",
              file=sys.stderr, flush=True)
        found[n] = time_find(path)
    top = sizes[-1]
    for what, label in (("档号", "by 档号"), ("name", "by a name in titles"),
                        ("word", f"by title word {TITLE_WORD}"), ("sha256", "by SHA-256")):
        s, hits = found[top][what]
        t.add("6", f"find {label} ({top:,} items, {top // 100:,} discs)",
              f"{s * 1000:,.0f} ms ({hits} shown)", "< 100 ms", s < 0.1)
    from bench import queries
    queries.table_lines(t, base, sizes)   # due, cabinet, find commands (bench/queries.py)
    label = "/".join(f"{n // 1000:,}k" if n < 10**6 else f"{n // 10**6}M" for n in sizes)
    for what, name in (("档号", "档号"), ("name", "a name in titles"), ("word", "title word"),
                       ("sha256", "SHA-256")):
        figs = [found[n][what][0] for n in sizes]
        t.add("7", f"growth: find by {name}, {label} items",
              " / ".join(f"{s * 1000:,.1f}" for s in figs) + " ms", "< 100 ms each",
              all(s < 0.1 for s in figs))
    from bench import planning
    planning.table_lines(t, base, sizes)   # fill, speed and growth of planning


def main() -> int:
    ap = argparse.ArgumentParser(description="discarchive benchmarks (docs/BENCHMARKS.md)")
    ap.add_argument("--gib", type=float, default=4.0, help="bureau corpus size, GiB (default 4)")
    ap.add_argument("--small", type=int, default=100_000, help="files in the small-file corpora")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each side (median)")
    ap.add_argument("--items", type=int, default=1_000_000, help="largest synthetic inventory")
    ap.add_argument("--base", type=Path, default=ROOT / "build" / "bench")
    ap.add_argument("--skip", action="append", default=[],
                    choices=["pack", "verify", "memory", "inventory"],
                    help="leave a group out (for trying things; the table says so); with pack "
                         "left out, verify masters its images once, untimed, and keeps them")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if "pack" in a.skip and "memory" not in a.skip:
        a.skip.append("memory")   # it reuses the small corpus' pack+master runs
    if a.child:
        job = json.loads(a.child)
        print(json.dumps(OPS[job.pop("op")](job)))
        return 0

    from bench import corpus
    from manifests import signing

    base = a.base.resolve()
    base.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.timezone.utc)
    keys = {"key": str(base / "keys" / "signing.key"), "pub": str(base / "keys" / "signing.pub")}
    if not Path(keys["key"]).exists():
        signing.generate_key(Path(keys["key"]), Path(keys["pub"]))
    specs = {"bureau": corpus.bureau(int(a.gib * 2**30)), "small": corpus.small(a.small),
             "twin": corpus.small(a.small, 12 * 1024, 20 * 1024)}
    trees = {}
    for label, spec in specs.items():
        if (label == "twin" and "memory" in a.skip
                or label != "twin" and "pack" in a.skip and "verify" in a.skip):
            continue
        print(f"corpus {spec.name}...", file=sys.stderr, flush=True)
        root = corpus.ensure(base, spec).resolve()   # xorriso -map would take a link as it is
        trees[label] = (root, _files(root))
    t = Table()
    t.add("0", "hashlib SHA-256 in memory, one thread", f"{hash_rate():,.0f} MB/s", "-", None)
    t.add("0", "disk: 1 GiB sequential write + fsync", f"{disk_write_rate(base):,.0f} MB/s",
          "-", None)
    images = {}
    if "pack" not in a.skip:
        images = bench_pack(t, base, {k: trees[k] for k in ("bureau", "small")}, a.rounds, keys,
                            a.skip)
    elif "verify" not in a.skip:
        bench_verify(t, made_images(base, {k: trees[k] for k in ("bureau", "small")}, keys),
                     a.rounds, keys)
    if "memory" not in a.skip and "small" in images:
        bench_memory(t, base, images["small"][1], trees["twin"], keys)
    if "inventory" not in a.skip:
        bench_inventory(t, base, a.items)
    minutes = (dt.datetime.now(dt.timezone.utc) - started).total_seconds() / 60
    print(f"\ndiscarchive benchmarks, {started:%Y-%m-%d %H:%M} UTC, {minutes:.1f} min")
    print(machine())
    bureau_files = len(trees["bureau"][1]) if "bureau" in trees else 0
    print(f"corpora: bureau {a.gib:g} GiB ({bureau_files:,} files), "
          f"small {a.small:,} x 2-6 KiB, twin {a.small:,} x 12-20 KiB; {a.rounds} rounds, median; "
          f"skipped: {', '.join(a.skip) or 'nothing'}\n")
    print(t.render())
    return 1 if t.failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (RuntimeError, OSError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        sys.exit(2)
