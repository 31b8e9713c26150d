"""The main job, stage by stage: scan -> arrange -> plan -> bags -> images -> burn -> read back -> record.

Used by the CLI now and by the scheduler later. One run makes every disc
of every set the plan shows (manifests.plan: one set per fonds, year and
side 收/支, its discs k of n, each a self-contained bag). What is durable
at each step (the inventory commits before the next step starts):

1. scan, arrangement, plan, and for every disc its tag files, image and
   image check: nothing in the inventory yet. A failure or a kill here
   leaves at most a scratch folder, images and a ``.part`` image; the
   images of a failed run are deleted, those of a killed one only hold
   their IDs (the next run takes the next free ones).
2. ``record_sets``: per set, every image of it (``mastered``), its items
   and the capture and message digest calculation events, in one
   transaction: so every image is recorded before any of its burns.
3. per image, per copy, in its drive, the drives side by side: see
   :mod:`daemon.replication` (disc row, burn attempts, read-back).
4. an image becomes ``archived`` only when every copy verified, else
   ``failed``; a set is archived when all its images are.

A kill during 3 leaves a disc ``burning`` or ``burned`` and its image
``mastered``: never anything shown as archived that was not read back.
``discarchive verify`` then settles such a copy from its medium (and the set
once every copy verified); ``discarchive burn`` burns again the copies that
have no good medium, from the kept image.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Protocol

import burners
from config import Config, media_sectors
from config.home import locked
from inventory import eventlog
from inventory import lifecycle as lc
from inventory.store import ITEM_COLUMNS, Inventory, utcnow
from manifests import signing
from manifests.arrange import Settings, arrange
from manifests.bag import DiscInfo, item_range, tag_file_parts, write_tag_files
from manifests.catalog import CATALOG_NAME, Item, scan
from manifests.plan import DiscPlan, Plan, PlanError, SetPlan, gc_paused, make_plan
from manifests.validate import validate_bag
from mastering.iso import SECTOR, Image, Layout, max_file_bytes
from verification.onepass import Extent, file_chunks
from verification.readback import Expected, LazyFileTable, Report, verify

from . import incremental
from .incremental import only
from .replication import Copy, burn_copies, due_date, read_back, record_fixity

COPY_LABELS = "ABCDEFGHI"


class JobError(Exception):
    """The job cannot run with this input; the message says what to do. Nothing was recorded."""


class Reporter(Protocol):
    """Where a job tells the operator how it is going."""

    def progress(self, stage: str) -> Callable[[int, int], None]:
        """A ``progress(done, total)`` callback for a long stage (``scan``, ``master``...)."""

    def note(self, text: str) -> None:
        """One line of news."""

    def request_blank(self, drive: str, disc_id: str) -> bool:
        """Ask the operator for a new blank medium in ``drive``; False if nobody can."""


class QuietReporter:
    """A reporter that says nothing (the daemon's log takes events instead)."""

    def progress(self, stage: str) -> Callable[[int, int], None]:
        return lambda done, total: None

    def note(self, text: str) -> None:
        pass

    def request_blank(self, drive: str, disc_id: str) -> bool:
        return False


@dataclass
class ArchiveResult:
    """One image's outcome: its ID (``disc_sets.set_id``), image and each copy's outcome."""

    set_id: str
    image: Image
    records: int
    files: int
    copies: dict[str, str] = field(default_factory=dict)   # disc_id -> verified | failed
    warnings: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)  # disc_id -> reason
    group_id: str = ""
    volume: int = 1
    volumes: int = 1
    first: str = "-"
    last: str = "-"

    @property
    def ok(self) -> bool:
        return bool(self.copies) and all(v == "verified" for v in self.copies.values())


@dataclass
class RunResult:
    """What one archive run made: every image of every set, in plan order."""

    images: list[ArchiveResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list = field(default_factory=list)      # manifests.catalog.Problem
    unchanged: int = 0     # files already on disc sets from earlier runs (not archived again)
    changed: int = 0       # files archived as a new version of an earlier one

    @property
    def ok(self) -> bool:
        return bool(self.images) and all(r.ok for r in self.images)

    @property
    def set_ids(self) -> list[str]:
        """The IDs of the sets (``group_id``) this run made or burned, in plan order."""
        return list(dict.fromkeys(r.group_id or r.set_id for r in self.images))

    @property
    def copies(self) -> dict[str, str]:
        """Every copy's outcome, ``{disc_id: verified | failed}``, over all images."""
        return {d: s for r in self.images for d, s in r.copies.items()}

    @property
    def failures(self) -> dict[str, str]:
        """Why each failed copy failed, ``{disc_id: reason}``, over all images."""
        return {d: w for r in self.images for d, w in r.failures.items()}


def open_drives(cfg: Config) -> list:
    """Every configured drive, each checked to have its program installed.

    Raises JobError when none is configured, DriveError ``tool-missing`` or
    ``config`` when one can never work; a drive that is only busy or empty
    now is left for its copy to record as a failed burn.
    """
    if not cfg.drives:
        raise JobError(f"no drive is configured: add a [[drives]] table to {cfg.home}/discarchive.toml")
    drives = [burners.open_drive(spec) for spec in cfg.drives]
    for d in drives:
        device = getattr(d, "device", None)
        if isinstance(device, str) and device.startswith("/dev/") and not os.path.exists(device):
            raise burners.DriveError(f"drive {d.name}: {device} does not exist: connect the "
                                     "drive, or fix its device in discarchive.toml "
                                     "(`discarchive drives` lists the drives found)", "not-ready")
        try:
            d.status()
        except burners.DriveError as exc:
            if exc.failure_class in ("tool-missing", "config"):
                raise
            # busy, no medium...: the copy meant for this drive records it as a failed burn
    return drives


def _second_reader(cfg: Config, index: int):
    """A factory of a fresh drive object for configured drive ``index`` (second reads)."""
    return lambda: burners.open_drive(cfg.drives[index])


def expected_of(inv: Inventory, set_id: str) -> Expected:
    """What the inventory says a set's image holds: its length, hash and files' places.

    The files' rows are read when the table is first used: :func:`verify`
    starts reading and hashing the image first, up to the first file's
    sector (``first_byte``, from the index on items (set_id, extent_lba)),
    so that loading 100,000 rows overlaps hashing the file system
    structures.
    """
    s = inv.disc_set(set_id)
    tags = json.loads(s["tag_files"])
    first = inv.db.execute("SELECT min(extent_lba) FROM items WHERE set_id = ?",
                           [set_id]).fetchone()[0]
    lbas = [t[1] for t in tags] + ([first] if first is not None else [])

    def rows():
        return itertools.chain(tags, inv.db.execute(
            "SELECT disc_path, extent_lba, size, sha256 FROM items WHERE set_id = ? "
            "ORDER BY id", [set_id]))     # the manifest's order (the bag's), as recorded
    return Expected(s["image_bytes"], s["image_sha256"], LazyFileTable(rows),
                    min(lbas, default=0) * SECTOR)


def drive_report(cfg: Config) -> list[dict]:
    """Every configured drive with its status, then drives found but not configured.

    Each row: ``name``, ``adapter``, ``device``, ``configured`` and either the
    status fields (``state``, ``medium_type``, ``free_sectors``, ``vendor``,
    ``model``, ``firmware``, ``medium_id``, ``tool_version``) or, for a drive
    that cannot answer, ``state`` ``error`` with ``failure_class`` and
    ``message``. Never raises for a drive's failure.
    """
    rows, seen = [], set()
    for spec in cfg.drives:
        device = spec.get("device") or spec.get("media_dir")
        seen.add(device)
        row = {"name": spec.get("name"), "adapter": spec.get("adapter"), "device": device,
               "configured": True}
        try:
            st = burners.open_drive(spec).status()
            row.update(state=st.state, medium_type=st.medium_type,
                       free_sectors=st.free_sectors, vendor=st.vendor, model=st.model,
                       firmware=st.firmware, medium_id=st.medium_id,
                       tool_version=st.tool_version)
        except burners.DriveError as exc:
            row.update(state="error", failure_class=exc.failure_class, message=str(exc))
        rows.append(row)
    for info in burners.discover():
        if info.device not in seen:
            seen.add(info.device)
            rows.append({"name": None, "adapter": info.adapter, "device": info.device,
                         "configured": False, "state": "not configured", "vendor": info.vendor,
                         "model": info.model, "firmware": info.firmware})
    return rows


def _item_row(set_id: str, item: Item, lba: int, version: int = 1) -> dict:
    row = {"set_id": set_id, "path": item.path, "disc_path": "data/" + item.path,
           "size": item.size, "sha256": item.sha256, "is_record": int(item.is_record),
           "extent_lba": lba, "version": version}
    row.update({c: getattr(item, c) for c in ITEM_COLUMNS})
    return row


def _changed_files(source: Path, items: list[Item]) -> list[str]:
    changed = []
    for i in items:
        try:
            st = os.stat(source / i.path)
        except OSError:
            changed.append(i.path)
            continue
        if st.st_size != i.size or st.st_mtime_ns != i.mtime_ns:
            changed.append(i.path)
    return changed


def archive(cfg: Config, source: Path, media: str | None = None, copies: int | None = None,
            reporter: Reporter | None = None, strict: bool = False) -> RunResult:
    """Run the main job once on ``source``: every planned disc, ``copies`` verified copies each.

    ``strict`` refuses (JobError) while the arrangement has problems
    (manifests.arrange); otherwise they come back as warnings. Raises
    JobError, ScanError, MasteringError, ConfigError, SigningError or
    DriveError before anything is recorded when the input cannot be
    archived; a copy that fails to burn or verify is recorded as failed and
    reported in the result (``ok`` is then False).
    """
    ui = reporter or QuietReporter()
    media = (media or cfg.media).strip().lower()
    capacity = media_sectors(media)
    copies = cfg.copies if copies is None else copies
    if not 1 <= copies <= len(COPY_LABELS):
        raise JobError(f"--copies must be from 1 to {len(COPY_LABELS)}")
    source = Path(source)
    _check_apart(source, cfg.home)
    notes: list[str] = []
    if _looks_like_a_bag(source):
        source = _payload_of_bag(source, notes)
    with locked(cfg.home):
        result = _archive(cfg, source, media, capacity, copies, ui, strict)
    result.warnings[:0] = notes
    return result


def plan(cfg: Config, source: Path, media: str | None = None) -> Plan:
    """The disc sets an ``archive`` of ``source`` would make now, writing nothing.

    Reads the file sizes (no hashing) and the inventory (read-only, for the
    next set numbers); the home is not written. A source that is a BagIt
    bag is checked without hashing (:func:`manifests.validate.validate_bag`
    with ``hashing=False``) and refused (JobError) as ``archive`` refuses
    it; a bag that passes is planned as its payload (``data/``), with a note
    in ``Plan.notes`` that its checksums are checked at ``archive``. A file larger
    than one medium can hold (:func:`mastering.iso.max_file_bytes`) is
    refused as ``archive`` refuses it: one ScanError naming every such file.
    Raises what :func:`archive` raises before its first write (ScanError,
    JobError, ConfigError).
    """
    media = (media or cfg.media).strip().lower()
    capacity = media_sectors(media)
    source = Path(source)
    _check_apart(source, cfg.home)
    notes: list[str] = []
    if _looks_like_a_bag(source):
        source = _payload_of_bag(source, notes, hashing=False)
    problems: list = []
    warnings: list[str] = []
    ro = _ReadOnlyNumbers(cfg)
    try:
        with gc_paused():
            items = scan(source, cfg.retention, None, warnings, problems, hashing=False,
                         max_file_bytes=max_file_bytes(capacity), medium=media)
            wanted, unchanged = incremental.likely(ro.db, str(source.resolve()), items)
            plan = plan_source(cfg, source, media, capacity, items, problems, ro,
                               wanted=wanted if unchanged else None)
            plan.unchanged = unchanged
            plan.notes[:0] = notes
            plan.warnings[:0] = warnings + not_records_warning(items)
            return plan
    finally:
        ro.close()


class _ReadOnlyNumbers:
    """Next set numbers from the inventory opened read-only (SQLite ``mode=ro``)."""

    def __init__(self, cfg: Config):
        import sqlite3
        self.cfg = cfg
        self.db = None
        if cfg.inventory_path.is_file():
            # without a WAL file every row is in the main file: open it immutable, so not
            # even the -shm index is made; with one, read-only (SQLite then needs its -shm)
            wal = Path(str(cfg.inventory_path) + "-wal").exists()
            self.db = sqlite3.connect(f"file:{cfg.inventory_path}?mode=ro"
                                      f"{'' if wal else '&immutable=1'}", uri=True)

    def next_group_number(self, fonds: str, year: str, letter: str, taken=None) -> int:
        prefix = f"{fonds}-{year}-{letter}"
        used = []
        if self.db is not None:
            cols = {r[1] for r in self.db.execute("PRAGMA table_info(disc_sets)")}
            if "group_id" in cols:
                used = [r[0][len(prefix):] for r in self.db.execute(
                    "SELECT group_id FROM disc_sets WHERE substr(group_id, 1, ?) = ?",
                    [len(prefix), prefix])]
        n = max((int(u) for u in used if u.isdigit()), default=0) + 1
        while taken is not None and taken(f"{prefix}{n:02d}"):
            n += 1
        return n

    def close(self) -> None:
        if self.db is not None:
            self.db.close()


SHOWN_PROBLEMS = 20
"""Arrangement problems shown one a line; the rest are counted (``plan --json`` lists all)."""


def problem_lines(problems: list, shown: int = SHOWN_PROBLEMS) -> list[str]:
    """One warning line per problem, the first ``shown`` of them, then how many more."""
    lines = [str(p) for p in problems[:shown]]
    if len(problems) > shown:
        lines.append(f"and {len(problems) - shown} more arrangement problem(s): "
                     "`discarchive plan SOURCE --json` lists them all")
    return lines


def not_records_warning(items: list[Item]) -> list[str]:
    """The warning that some scanned files are not records (no 档号), or none."""
    others = [i for i in items if not i.is_record and i.path != CATALOG_NAME]
    if not others:
        return []
    return [f"{len(others)} of {len(items)} files are not records (no catalog row, not laid "
            "out as YEAR/UNIT/CATEGORY/ITEM): archived without archival codes, on the "
            "first disc of every set"]


def strict_refusal(problems: list) -> JobError:
    """The one-line refusal of ``--strict`` while arrangement problems remain."""
    return JobError(f"{len(problems)} arrangement problem(s) (--strict): {problems[0]}"
                    f"{' (and more: see the warnings of `discarchive plan`)' if len(problems) > 1 else ''}"
                    "; correct the catalog, or run without --strict")


def plan_source(cfg: Config, source: Path, media: str, capacity: int, items: list[Item],
                problems: list, inv, wanted: set[str] | None = None) -> Plan:
    """Arrange scanned ``items`` and plan their discs, set numbers from ``inv`` (1 when None).

    The whole source is arranged (so its 件号 are checked and its missing
    档号 assigned the same way every run); only the items whose paths are in
    ``wanted`` (all when None: see :mod:`daemon.incremental`) are planned
    onto discs. Raises JobError when a record cannot fit on the medium.
    """
    arrangement = arrange(items, Settings.from_config(cfg), problems)
    if wanted is not None:
        arrangement = only(arrangement, wanted)

    def next_number(fonds: str, year: str, letter: str) -> int:
        if inv is None:
            return 1
        return inv.next_group_number(fonds, year, letter, taken=lambda gid: any(
            cfg.images_dir.glob(f"{gid}-*.iso")))

    try:
        return make_plan(arrangement, media, capacity, next_number, cfg.source_organization)
    except PlanError as exc:
        raise JobError(str(exc)) from None


def _looks_like_a_bag(source: Path) -> bool:
    """A bag declaration, or a payload folder beside a manifest (a bag that lost its bagit.txt)."""
    return (source / "bagit.txt").is_file() or (
        (source / "data").is_dir() and any(source.glob("manifest-*.txt")))


def _payload_of_bag(bag: Path, notes: list[str], hashing: bool = True) -> Path:
    """The payload folder of a source that is itself a BagIt bag, once it validates.

    An incoming bag is checked first (RFC 8493, see manifests.validate) and
    refused with its first problems when it does not validate; a valid one
    is archived as its payload (``data/``), whose files the new bag's
    manifest records again. ``hashing=False`` (``plan``) makes every check
    but the checksums and says so in ``notes``. Raises JobError naming the problems.
    """
    report = validate_bag(bag, hashing=hashing)
    if not report.valid:
        more = f" (and {len(report.problems) - 1} more)" if len(report.problems) > 1 else ""
        raise JobError(f"{bag} is a BagIt bag that does not validate: {report.problems[0]}"
                       f"{more}; fix the bag, or see `discarchive validate-bag` for every problem")
    if hashing:
        notes.append(f"{bag} is a valid BagIt bag: its payload (data/) is archived; its tag files "
                     "were checked, not archived")
    else:
        notes.append(f"{bag} is a BagIt bag whose tag files, Payload-Oxum and file lists check out; "
                     "its checksums (the fixity check) are verified by `discarchive archive`")
    return bag / "data"


def _check_apart(source: Path, home: Path) -> None:
    """Refuse a source inside the home or a home inside the source (JobError)."""
    src, hom = source.resolve(), home.resolve()
    if src == hom or hom in src.parents or src in hom.parents:
        raise JobError(f"the source {source} and the archive home {home} overlap: keep the "
                       "home outside the records (it holds the private key)")


@dataclass
class _Made:
    """An image made and checked, not yet recorded."""

    plan: SetPlan
    disc: DiscPlan
    image: Image
    expected: Expected
    tag_files: list
    info: dict


def _archive(cfg: Config, source: Path, media: str, capacity: int, copies: int,
             ui: Reporter, strict: bool = False) -> RunResult:
    key, public_pem = signing.load_keypair(cfg.key_path, cfg.public_key_path)
    drives = open_drives(cfg)
    inv = Inventory.open(cfg.inventory_path)
    made: list[_Made] = []
    try:
        warnings: list[str] = []
        problems: list = []
        latest = incremental.recorded_versions(inv.db, str(source.resolve()))
        # Only files recorded from this source with the same size are hashed now (to tell
        # unchanged from changed); the rest are hashed once, as they are written (_master).
        items = scan(source, cfg.retention, ui.progress("scan"), warnings, problems,
                     hashing=incremental.hashed_first(latest), check_readable=True,
                     max_file_bytes=max_file_bytes(capacity), medium=media)
        # The scanned item list is final here: arrangement and planning start from `items`;
        # only what is new or changed since earlier runs of this source goes onto discs.
        delta = incremental.split(inv, str(source.resolve()), items, latest)
        del latest
        with gc_paused():
            plan = plan_source(cfg, source, media, capacity, items, problems, inv,
                               wanted=set(delta.versions))
        if strict and plan.problems:
            raise strict_refusal(plan.problems)
        warnings += problem_lines(plan.problems)
        resumed = _resume(cfg, inv, delta.unfinished, drives, public_pem, ui, warnings)
        if not plan.sets:
            return RunResult(images=resumed, warnings=warnings, problems=list(plan.problems),
                             unchanged=delta.unchanged)
        try:
            for sp in plan.sets:
                for dp in sp.discs:
                    made.append(_master(cfg, source, sp, dp, media, capacity, key, public_pem, ui))
        except BaseException:
            for m in made:
                m.image.path.unlink(missing_ok=True)
            raise
        finally:
            shutil.rmtree(cfg.work_dir / "run", ignore_errors=True)
        result = RunResult(images=resumed, warnings=warnings, problems=list(plan.problems),
                           unchanged=delta.unchanged, changed=len(delta.changed))
        result.warnings += not_records_warning(items)
        by_set: dict[str, list[_Made]] = {}
        for m in made:
            by_set.setdefault(m.plan.group_id, []).append(m)
        for group in by_set.values():     # each set's images recorded before any burn
            inv.record_sets([_record(source, m, media, capacity, copies, delta.versions)
                             for m in group])
        for m in made:
            result.images.append(_burn(cfg, inv, m, media, copies, drives, public_pem, ui))
        return result
    finally:
        try:
            eventlog.checkpoint(inv, key)   # sign the chain's head at the end of the job
        finally:
            inv.close()


@dataclass
class Packed:
    """One disc packed and mastered, not yet checked: see :func:`pack`.

    ``tag_files`` lists each tag file as [path in the bag, first sector,
    bytes, SHA-256 hex] (the ``disc_sets.tag_files`` column); ``info`` is
    bag-info.txt's fields; ``changed`` the paths of items hashed before
    (incremental runs) whose bytes in the image have another SHA-256.
    """

    image: Image
    tag_files: list
    info: dict
    changed: list[str]


def pack(tag_dir: Path, out: Path, source: Path, items: list[Item], disc: DiscInfo,
         organization: str, fonds: str, side: str, key, capacity: int, media: str,
         predicted: int, progress: Callable[[int, int], None] | None = None) -> Packed:
    """Bag and master one planned disc into the image file ``out``; nothing recorded.

    The tag files' exact sizes are known before any payload hash (a hash
    is always 64 hex digits): they are written into ``tag_dir`` as
    placeholders (zeros) of those sizes, laid out with the payload
    (:class:`mastering.iso.Layout`) and the image's sectors checked against
    ``capacity``; :meth:`Layout.write` then reads every payload file once,
    hashing it as it is written, and the tag files (manifest, catalog, tag
    manifest, signature: RFC 8493) are rendered from those hashes straight
    into their places in the image before it is fsynced and renamed (the
    scratch copies in ``tag_dir`` stay placeholders).
    Every item's ``sha256`` becomes that of its bytes in the image (an
    earlier value that differs is listed in ``Packed.changed``). The image
    is not checked here (see :func:`_master`). ``predicted`` is the plan's
    sectors, for the message. Raises JobError when the image would not fit,
    MasteringError when it cannot be written.
    """
    bag = write_tag_files(tag_dir, source, items, disc, organization, fonds, key, side=side,
                          placeholders=True)
    layout = Layout(bag.entries, disc.disc_id)
    if layout.sectors > capacity:
        layout.iso.close()        # gives its records back to the collector (Layout: gc.freeze)
        raise JobError(
            f"disc {disc.disc_id} would need {layout.sectors} sectors but a {media} medium holds "
            f"{capacity} (the plan predicted {predicted}): report this as a bug, and "
            "archive with a larger medium (--media) meanwhile")
    changed: list[str] = []

    def finish(digests: dict[str, str]):
        for i in items:
            digest = digests["data/" + i.path]
            if i.sha256 and i.sha256 != digest:
                changed.append(i.path)
            i.sha256 = digest
        return tag_file_parts(items, bag.info, key)

    image = layout.write(out, progress, finish)
    tag_files = [[name, image.extents[name], host.stat().st_size, image.digests[name]]
                 for name, host in bag.entries if not name.startswith("data/")]
    return Packed(image, tag_files, bag.info, changed)


def _master(cfg: Config, source: Path, sp: SetPlan, dp: DiscPlan, media: str, capacity: int,
            key, public_pem: bytes, ui: Reporter) -> _Made:
    """Tag files, image and image check of one planned disc; nothing recorded. Raises JobError.

    The check reads the whole image once (verification.onepass): it gives the
    image's SHA-256 and proves the image holds the bytes :func:`pack` hashed.
    A file whose size or modification time changed since the scan, or whose
    bytes differ from an earlier hash of this run, changed while it was packed.
    """
    set_id, items = dp.disc_id, dp.items
    work = cfg.work_dir / "run" / set_id
    shutil.rmtree(work, ignore_errors=True)
    cfg.images_dir.mkdir(parents=True, exist_ok=True)
    packed = pack(work / "tags", cfg.images_dir / f"{set_id}.iso", source, items,
                  DiscInfo(sp.group_id, set_id, dp.volume, len(sp.discs)),
                  cfg.source_organization, sp.group.fonds, sp.group.side, key, capacity, media,
                  dp.sectors, ui.progress("master"))
    try:
        return _check_made(source, sp, dp, items, packed, public_pem, ui)
    except BaseException:            # an interrupt too: an image is kept only once recorded
        packed.image.path.unlink(missing_ok=True)
        raise


def _check_made(source: Path, sp: SetPlan, dp: DiscPlan, items: list[Item], packed: Packed,
                public_pem: bytes, ui: Reporter) -> _Made:
    """The image check of :func:`_master` (see there). Raises JobError."""
    set_id = dp.disc_id
    image, tag_files = packed.image, packed.tag_files
    expected = Expected(image.size, None, tuple(
        [(Extent(name, lba, size), sha) for name, lba, size, sha in tag_files]
        + [(Extent("data/" + i.path, image.extents["data/" + i.path], i.size), i.sha256)
           for i in items]))
    changed = packed.changed + _changed_files(source, items)
    check = verify(file_chunks(image.path, image.size), expected, public_pem,
                   ui.progress("check image"))
    image = replace(image, sha256=check.image_sha256)
    expected = replace(expected, sha256=image.sha256)
    changed += [p[len("data/"):] for p, _ in check.damaged if p.startswith("data/")]
    if changed or not check.passed:           # _master removes the image
        if changed:
            raise JobError(f"{sorted(set(changed))[0]} changed while it was packed"
                           f"{f' (and {len(set(changed)) - 1} more)' if len(set(changed)) > 1 else ''}: "
                           "run again when nothing is writing to the source")
        raise JobError(f"the new image {set_id} failed its check ({check.summary()}): "
                       "nothing was burned; report this as a bug")
    return _Made(sp, dp, image, expected, tag_files, packed.info)


def _record(source: Path, m: _Made, media: str, capacity: int, copies: int,
            versions: dict[str, int]) -> tuple:
    """The inventory rows of one made image: (disc_sets row, item rows, events).

    ``versions`` gives each item's version number (daemon.incremental).
    """
    set_id, items, image = m.disc.disc_id, m.disc.items, m.image
    records = [i for i in items if i.is_record]
    return (
        {"set_id": set_id, "created_at": utcnow(), "source": str(source.resolve()),
         "media": media, "medium_sectors": capacity, "fonds": m.plan.group.fonds,
         "years": m.info["Record-Years"], "retention": m.info["Retention-Period"],
         "record_count": len(records), "file_count": len(items),
         "payload_bytes": sum(i.size for i in items), "payload_oxum": m.info["Payload-Oxum"],
         "image_sha256": image.sha256, "image_bytes": image.size,
         "image_sectors": image.sectors, "image_path": str(image.path), "copies": copies,
         "state": "mastered", "tag_files": json.dumps(m.tag_files, ensure_ascii=False),
         "group_id": m.plan.group_id, "volume": m.disc.volume, "volumes": len(m.plan.discs),
         "side": m.plan.group.side},
        [_item_row(set_id, i, image.extents["data/" + i.path], versions.get(i.path, 1))
         for i in items],
        [{"event_type": "capture", "outcome": "success", "set_id": set_id,
          "detail": {"source": str(source.resolve()), "files": len(items),
                     "new_versions": sum(versions.get(i.path, 1) > 1 for i in items),
                     "set": m.plan.group_id, "disc": m.info["Bag-Count"]}},
         {"event_type": "message digest calculation", "outcome": "success", "set_id": set_id,
          "detail": {"algorithm": "SHA-256", "files": len(items),
                     "image_sha256": image.sha256, "image_sectors": image.sectors,
                     "predicted_sectors": m.disc.sectors}}])


def _burn(cfg: Config, inv: Inventory, m: _Made, media: str, copies: int, drives: list,
          public_pem: bytes, ui: Reporter) -> ArchiveResult:
    """Burn and read back one recorded image's copies; settle its state."""
    set_id, image = m.disc.disc_id, m.image
    first, last = item_range(m.disc.items)
    result = ArchiveResult(set_id, image, len(m.disc.records), len(m.disc.items),
                           group_id=m.plan.group_id, volume=m.disc.volume,
                           volumes=len(m.plan.discs), first=first, last=last)
    plan = [Copy(f"{set_id}-{COPY_LABELS[n]}", COPY_LABELS[n], drives[n % len(drives)],
                 _second_reader(cfg, (n + 1) % len(drives)))
            for n in range(copies)]
    burn_copies(cfg, plan, set_id, media, image, m.expected, public_pem, ui)
    for c in plan:
        result.copies[c.disc_id] = c.state
        if c.why:
            result.failures[c.disc_id] = c.why
    inv.update_set(set_id, state="archived" if result.ok else "failed")
    if result.ok and not cfg.keep_images:
        image.path.unlink(missing_ok=True)
        inv.update_set(set_id, image_path=None)
    return result


def verify_disc(cfg: Config, disc_id: str, reporter: Reporter | None = None) -> Report:
    """Read one recorded copy back again and check it; records a fixity check event.

    Raises JobError if the disc is unknown or was never burned, DriveError if
    no drive can read it or its medium is not in the drive (nothing is
    recorded then).
    """
    ui = reporter or QuietReporter()
    with locked(cfg.home):
        return _verify_disc(cfg, disc_id, ui)


def burn_set(cfg: Config, set_id: str, reporter: Reporter | None = None) -> RunResult:
    """Burn the copies that are not verified, from the retained images.

    ``set_id`` is one image (``160-2024-S01-02``) or a whole disc set
    (``160-2024-S01``: each of its images with copies to burn). Copies
    that failed, were interrupted or were never made are burned again under
    their own disc IDs; verified copies are left alone. Each image is
    checked against its record first. Raises JobError for an unknown ID,
    nothing to burn, or an image that is gone or no longer matches.
    """
    ui = reporter or QuietReporter()
    with locked(cfg.home):
        key, public_pem = signing.load_keypair(cfg.key_path, cfg.public_key_path)
        inv = Inventory.open(cfg.inventory_path)
        try:
            one = inv.disc_set(set_id)
            rows = [one] if one is not None else inv.group(set_id)
            if not rows:
                raise JobError(lc.not_a_set(inv, set_id))
            todo = [(s, _unverified(inv, s)) for s in rows]
            todo = [(s, labels) for s, labels in todo if labels]
            if not todo:
                raise JobError(f"every copy of {set_id} is verified: nothing to burn")
            for s, _ in todo:
                path = Path(s["image_path"] or "")
                if not s["image_path"] or not path.is_file():
                    raise JobError(f"the image of {s['set_id']} is no longer kept: burn from a "
                                   "good copy instead")
            drives = open_drives(cfg)
            result = RunResult()
            for s, labels in todo:
                result.images.append(_burn_again(cfg, inv, s, labels, drives, public_pem, ui))
            return result
        finally:
            try:
                eventlog.checkpoint(inv, key)
            finally:
                inv.close()


def _resume(cfg: Config, inv: Inventory, unfinished: list[str], drives: list,
            public_pem: bytes, ui: Reporter, warnings: list[str]) -> list[ArchiveResult]:
    """Finish the images of an earlier run of the same source that was stopped (killed).

    ``unfinished`` are their IDs (daemon.incremental). An image still
    ``mastered`` whose image file is kept is finished as the daemon does
    after a restart: each copy left ``burning`` or ``burned`` is read back
    from its medium first (a good burn is kept, not repeated), then the
    copies with no verified medium are burned from the image. An image
    that ``failed`` (a copy failed for a reason the operator must see to)
    or whose image is gone gets a warning naming ``discarchive burn``.
    Returns one ArchiveResult per finished image.
    """
    done, left = [], []
    for set_id in unfinished:
        s = inv.disc_set(set_id)
        if s["state"] != "mastered" or not s["image_path"] or not Path(s["image_path"]).is_file():
            left.append(set_id)
            continue
        for c in inv.copies(set_id):
            if c["state"] in ("burning", "burned"):
                try:
                    disc, drive = disc_in_drive(cfg, inv, c["disc_id"])
                    read_recorded(cfg, inv, disc, drive, public_pem, ui)
                except (JobError, burners.DriveError):
                    pass                      # not readable now: burned again below
        s = inv.disc_set(set_id)
        labels = _unverified(inv, s)
        if labels:
            done.append(_burn_again(cfg, inv, s, labels, drives, public_pem, ui))
        else:
            settle_set(inv, set_id)
    if done:
        warnings.append(f"{len(done)} image(s) of an earlier run of this source were recorded "
                        "but not all burned (that run was stopped): finished now")
    if left:
        warnings.append(f"{len(left)} earlier image(s) of this source are not archived yet "
                        f"({', '.join(left[:3])}{', ...' if len(left) > 3 else ''}): their "
                        "files are not archived again; finish them with `discarchive burn ID`")
    return done


def _unverified(inv: Inventory, s: dict) -> list[str]:
    """Copy labels of an image that have no verified copy."""
    done = {c["copy_label"] for c in inv.copies(s["set_id"]) if c["state"] == "verified"}
    return [COPY_LABELS[n] for n in range(s["copies"]) if COPY_LABELS[n] not in done]


def _burn_again(cfg: Config, inv: Inventory, s: dict, labels: list[str], drives: list,
                public_pem: bytes, ui: Reporter) -> ArchiveResult:
    """Check one kept image against its record, then burn its copies ``labels``."""
    set_id, path = s["set_id"], Path(s["image_path"])
    expected = expected_of(inv, set_id)
    check = verify(file_chunks(path, expected.length), expected, public_pem,
                   ui.progress("check image"))
    if not check.passed:
        raise JobError(f"the kept image of {set_id} no longer matches its record "
                       f"({check.summary()}): burn from a good copy instead")
    image = Image(path, s["image_bytes"], s["image_sectors"], s["image_sha256"])
    plan = [Copy(f"{set_id}-{label}", label, drives[n % len(drives)],
                 _second_reader(cfg, (n + 1) % len(drives)))
            for n, label in enumerate(labels)]
    burn_copies(cfg, plan, set_id, s["media"], image, expected, public_pem, ui)
    result = ArchiveResult(set_id, image, s["record_count"], s["file_count"],
                           group_id=s.get("group_id") or set_id, volume=s.get("volume") or 1,
                           volumes=s.get("volumes") or 1)
    for c in plan:
        result.copies[c.disc_id] = c.state
        if c.why:
            result.failures[c.disc_id] = c.why
    if settle_set(inv, set_id) != "archived":
        inv.update_set(set_id, state="failed")
    return result


def disc_in_drive(cfg: Config, inv: Inventory, disc_id: str):
    """A recorded copy and the drive holding its medium: (disc row, drive).

    The drive is the one that burned it if still configured, else the
    first. A copy whose job was killed before its burn or read-back was
    recorded is read from the medium of its last burn attempt (file-backed
    drives record it when the attempt starts). Raises JobError for an
    unknown disc or one with no medium at all; DriveError ``no-medium`` when
    its medium is not in the drive or its file is gone (the operator's to
    fix: nothing is recorded).
    """
    disc = inv.disc(disc_id)
    if disc is None:
        raise JobError(lc.not_a_copy(inv, disc_id))
    if not disc["burned_at"]:
        attempts = [b for b in inv.burns(disc_id) if b["outcome"] != "failed"]
        if not attempts:
            raise JobError(f"disc {disc_id} has no medium ({disc['state']}): burn it with "
                           f"`discarchive burn {disc['set_id']}`")
        disc["medium_path"], disc["interrupted_burn"] = attempts[-1]["medium_path"], attempts[-1]
    drives = open_drives(cfg)
    drive = next((d for d in drives if d.name == disc["drive"]), drives[0])
    try:
        drive.load(disc["medium_path"])
    except burners.DriveError as exc:
        raise burners.DriveError(f"{exc}: disc {disc_id} cannot be read here; if its medium is "
                                 "lost, re-burn it from a good copy", exc.failure_class) from None
    if drive.status().state in ("no-medium", "tray-open"):
        raise burners.DriveError(f"no medium in drive {drive.name}: insert disc {disc_id} "
                                 "and run the command again", "no-medium")
    return disc, drive


def read_recorded(cfg: Config, inv: Inventory, disc: dict, drive, public_pem: bytes,
                  ui: Reporter, keep_catalog: bool = False, wrap=None) -> Report:
    """Read a recorded copy back, record the outcome, and settle its state.

    A disc is called bad only after a second read, in another configured
    drive for a file-backed medium; each read is its own fixity check event.
    A copy whose job was interrupted (``burning`` or ``burned``) becomes
    ``verified`` or ``failed`` as after a burn; a ``verified`` copy that
    fails becomes ``damaged``. The set becomes ``archived`` once all its
    copies are verified. ``wrap`` (optional) maps each drive to the one to
    read through (a re-burn's source search keeps the bytes read); the
    returned Report is the last read's.
    """
    disc_id, set_id = disc["disc_id"], disc["set_id"]
    expected = expected_of(inv, set_id)
    names = [d.get("name") for d in cfg.drives]
    wrap = wrap or (lambda d: d)
    first = disc["state"] in ("burning", "burned") or bool(disc.get("interrupted_burn"))
    report = read_back(wrap(drive), disc["medium_path"], expected, public_pem,
                       ui.progress("read back"), keep_catalog)
    reader = drive
    if not report.passed and disc["medium_path"] and len(names) > 1 and drive.name in names:
        record_fixity(inv, disc_id, set_id, drive.name, report, first=False, read=1)
        reader = burners.open_drive(cfg.drives[(names.index(drive.name) + 1) % len(names)])
        report = read_back(wrap(reader), disc["medium_path"], expected, public_pem,
                           ui.progress("read again"), keep_catalog)
        record_fixity(inv, disc_id, set_id, reader.name, report, first=first,
                      state=disc["state"], read=2)
    else:
        record_fixity(inv, disc_id, set_id, reader.name, report, first=first, state=disc["state"])
    if first and report.passed and not disc["burned_at"]:
        started = disc["interrupted_burn"]["started_at"]
        inv.update_disc(disc_id, burned_at=started, medium_path=disc["medium_path"],
                        due_at=due_date(dt.date.fromisoformat(started[:10]),
                                        cfg.reburn_years).isoformat())
    settle_set(inv, set_id)
    return report


def settle_set(inv: Inventory, set_id: str) -> str:
    """Make a set ``archived`` when every copy is verified (else leave it); return its state."""
    s = inv.disc_set(set_id)
    copies = inv.copies(set_id)
    if (s["state"] != "archived" and len(copies) >= s["copies"]
            and all(c["state"] == "verified" for c in copies)):
        inv.update_set(set_id, state="archived")
        return "archived"
    return s["state"]


def _verify_disc(cfg: Config, disc_id: str, ui: Reporter) -> Report:
    key, public_pem = signing.load_keypair(cfg.key_path, cfg.public_key_path)
    inv = Inventory.open(cfg.inventory_path)
    try:
        disc, drive = disc_in_drive(cfg, inv, disc_id)
        return read_recorded(cfg, inv, disc, drive, public_pem, ui)
    finally:
        try:
            eventlog.checkpoint(inv, key)
        finally:
            inv.close()
