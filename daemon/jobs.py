"""The main job, stage by stage: scan -> bag -> image -> burn -> read back -> record.

Used by the CLI now and by the scheduler later. What is durable at each step
(the inventory commits before the next step starts):

1. scan, tag files, image, image check: nothing in the inventory yet. A
   failure or a kill here leaves at most a scratch folder and a ``.part``
   image, both remade by the next run.
2. ``record_set``: the set (``mastered``), its items and the capture and
   message digest calculation events, in one transaction.
3. per copy, in its drive, the drives side by side: see
   :mod:`daemon.replication` (disc row, burn attempts, read-back).
4. the set becomes ``archived`` only when every copy verified, else ``failed``.

A kill during 3 leaves a disc ``burning`` or ``burned`` and the set
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
from inventory.store import ITEM_COLUMNS, Inventory, utcnow
from manifests import signing
from manifests.bag import write_tag_files
from manifests.catalog import CATALOG_NAME, Item, scan
from manifests.validate import validate_bag
from mastering.iso import Image, Layout, sha256_file
from verification.onepass import Extent, file_chunks
from verification.readback import Expected, Report, verify

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
    """What one archive run made: the set ID, its image and each copy's outcome."""

    set_id: str
    image: Image
    records: int
    files: int
    copies: dict[str, str] = field(default_factory=dict)   # disc_id -> verified | failed
    warnings: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)  # disc_id -> reason

    @property
    def ok(self) -> bool:
        return bool(self.copies) and all(v == "verified" for v in self.copies.values())


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
    """What the inventory says a set's image holds: its length, hash and files' places."""
    s = inv.disc_set(set_id)
    rows = inv.db.execute("SELECT disc_path, extent_lba, size, sha256 FROM items "
                          "WHERE set_id = ?", [set_id])
    return Expected.of_rows(s["image_bytes"], s["image_sha256"],
                            itertools.chain(json.loads(s["tag_files"]), rows))


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


def _item_row(set_id: str, item: Item, lba: int) -> dict:
    row = {"set_id": set_id, "path": item.path, "disc_path": "data/" + item.path,
           "size": item.size, "sha256": item.sha256, "is_record": int(item.is_record),
           "extent_lba": lba}
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
            reporter: Reporter | None = None) -> ArchiveResult:
    """Run the main job once on ``source``: one disc set, ``copies`` verified copies.

    Raises JobError, ScanError, MasteringError, ConfigError, SigningError or
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
        result = _archive(cfg, source, media, capacity, copies, ui)
    result.warnings[:0] = notes
    return result


def _looks_like_a_bag(source: Path) -> bool:
    """A bag declaration, or a payload folder beside a manifest (a bag that lost its bagit.txt)."""
    return (source / "bagit.txt").is_file() or (
        (source / "data").is_dir() and any(source.glob("manifest-*.txt")))


def _payload_of_bag(bag: Path, notes: list[str]) -> Path:
    """The payload folder of a source that is itself a BagIt bag, once it validates.

    An incoming bag is checked first (RFC 8493, see manifests.validate) and
    refused with its first problems when it does not validate; a valid one
    is archived as its payload (``data/``), whose files the new bag's
    manifest records again. Raises JobError naming the problems.
    """
    report = validate_bag(bag)
    if not report.valid:
        more = f" (and {len(report.problems) - 1} more)" if len(report.problems) > 1 else ""
        raise JobError(f"{bag} is a BagIt bag that does not validate: {report.problems[0]}{more}; "
                       "fix the bag, or see `discarchive validate-bag` for every problem")
    notes.append(f"{bag} is a valid BagIt bag: its payload (data/) is archived; its tag files "
                 "were checked, not archived")
    return bag / "data"


def _check_apart(source: Path, home: Path) -> None:
    """Refuse a source inside the home or a home inside the source (JobError)."""
    src, hom = source.resolve(), home.resolve()
    if src == hom or hom in src.parents or src in hom.parents:
        raise JobError(f"the source {source} and the archive home {home} overlap: keep the "
                       "home outside the records (it holds the private key)")


def _archive(cfg: Config, source: Path, media: str, capacity: int, copies: int,
             ui: Reporter) -> ArchiveResult:
    key, public_pem = signing.load_keypair(cfg.key_path, cfg.public_key_path)
    drives = open_drives(cfg)
    inv = Inventory.open(cfg.inventory_path)
    try:
        warnings: list[str] = []
        items = scan(source, cfg.retention, ui.progress("scan"), warnings)
        records = [i for i in items if i.is_record]
        years = sorted({i.year for i in records if i.year}) or [str(dt.date.today().year)]
        fonds = next((i.fonds for i in records if i.fonds), None) or cfg.fonds
        set_id = inv.next_set_id(fonds, years[0],
                                 taken=lambda sid: (cfg.images_dir / f"{sid}.iso").exists())
        work = cfg.work_dir / set_id
        shutil.rmtree(work, ignore_errors=True)
        bag = write_tag_files(work / "tags", source, items, set_id, cfg.source_organization,
                              fonds, key)
        layout = Layout(bag.entries, set_id)
        if layout.sectors > capacity:
            raise JobError(
                f"the disc would need {layout.sectors} sectors but a {media} medium holds "
                f"{capacity}: archive fewer records per run or use a larger medium (--media)")
        cfg.images_dir.mkdir(parents=True, exist_ok=True)
        image = layout.write(cfg.images_dir / f"{set_id}.iso", ui.progress("master"))
        tag_files = [[name, image.extents[name], host.stat().st_size, sha256_file(host)]
                     for name, host in bag.entries if not name.startswith("data/")]
        expected = Expected(image.size, None, tuple(
            [(Extent(name, lba, size), sha) for name, lba, size, sha in tag_files]
            + [(Extent("data/" + i.path, image.extents["data/" + i.path], i.size), i.sha256)
               for i in items]))
        changed = _changed_files(source, items)
        check = verify(file_chunks(image.path, image.size), expected, public_pem,
                       ui.progress("check image"))
        image = replace(image, sha256=check.image_sha256)
        expected = replace(expected, sha256=image.sha256)
        changed += [p[len("data/"):] for p, _ in check.damaged if p.startswith("data/")]
        if changed or not check.passed:
            image.path.unlink(missing_ok=True)
            shutil.rmtree(work, ignore_errors=True)
            if changed:
                raise JobError(f"{sorted(set(changed))[0]} changed while it was packed"
                               f"{f' (and {len(set(changed)) - 1} more)' if len(set(changed)) > 1 else ''}: "
                               "run again when nothing is writing to the source")
            raise JobError(f"the new image failed its check ({check.summary()}): "
                           "nothing was burned; report this as a bug")
        inv.record_set(
            {"set_id": set_id, "created_at": utcnow(), "source": str(source.resolve()),
             "media": media, "medium_sectors": capacity, "fonds": fonds,
             "years": bag.info["Record-Years"], "retention": bag.info["Retention-Period"],
             "record_count": len(records), "file_count": len(items),
             "payload_bytes": sum(i.size for i in items), "payload_oxum": bag.info["Payload-Oxum"],
             "image_sha256": image.sha256, "image_bytes": image.size,
             "image_sectors": image.sectors, "image_path": str(image.path), "copies": copies,
             "state": "mastered", "tag_files": json.dumps(tag_files, ensure_ascii=False)},
            (_item_row(set_id, i, image.extents["data/" + i.path]) for i in items),
            [{"event_type": "capture", "outcome": "success", "set_id": set_id,
              "detail": {"source": str(source.resolve()), "files": len(items)}},
             {"event_type": "message digest calculation", "outcome": "success",
              "set_id": set_id,
              "detail": {"algorithm": "SHA-256", "files": len(items),
                         "image_sha256": image.sha256, "image_sectors": image.sectors}}])
        result = ArchiveResult(set_id, image, len(records), len(items), warnings=warnings)
        others = [i for i in items if not i.is_record and i.path != CATALOG_NAME]
        if others:
            result.warnings.append(
                f"{len(others)} of {len(items)} files are not records (no catalog row, not laid "
                "out as YEAR/UNIT/CATEGORY/ITEM): archived without archival codes")
        plan = [Copy(f"{set_id}-{COPY_LABELS[n]}", COPY_LABELS[n], drives[n % len(drives)],
                     _second_reader(cfg, (n + 1) % len(drives)))
                for n in range(copies)]
        burn_copies(cfg, plan, set_id, media, image, expected, public_pem, ui)
        for c in plan:
            result.copies[c.disc_id] = c.state
            if c.why:
                result.failures[c.disc_id] = c.why
        inv.update_set(set_id, state="archived" if result.ok else "failed")
        if result.ok and not cfg.keep_images:
            image.path.unlink(missing_ok=True)
            inv.update_set(set_id, image_path=None)
        shutil.rmtree(work, ignore_errors=True)
        return result
    finally:
        try:
            eventlog.checkpoint(inv, key)   # sign the chain's head at the end of the job
        finally:
            inv.close()


def verify_disc(cfg: Config, disc_id: str, reporter: Reporter | None = None) -> Report:
    """Read one recorded copy back again and check it; records a fixity check event.

    Raises JobError if the disc is unknown or was never burned, DriveError if
    no drive can read it or its medium is not in the drive (nothing is
    recorded then).
    """
    ui = reporter or QuietReporter()
    with locked(cfg.home):
        return _verify_disc(cfg, disc_id, ui)


def burn_set(cfg: Config, set_id: str, reporter: Reporter | None = None) -> ArchiveResult:
    """Burn the copies of a set that are not verified, from its retained image.

    Copies that failed, were interrupted or were never made are burned again
    under their own disc IDs; verified copies are left alone. The image is
    checked against the record first. Raises JobError for an unknown set, a
    set with nothing to burn, or an image that is gone or no longer matches.
    """
    ui = reporter or QuietReporter()
    with locked(cfg.home):
        key, public_pem = signing.load_keypair(cfg.key_path, cfg.public_key_path)
        inv = Inventory.open(cfg.inventory_path)
        try:
            s = inv.disc_set(set_id)
            if s is None:
                raise JobError(f"no disc set {set_id} in the inventory: see `discarchive discs`")
            done = {c["copy_label"] for c in inv.copies(set_id) if c["state"] == "verified"}
            labels = [COPY_LABELS[n] for n in range(s["copies"]) if COPY_LABELS[n] not in done]
            if not labels:
                raise JobError(f"every copy of {set_id} is verified: nothing to burn")
            path = Path(s["image_path"] or "")
            if not s["image_path"] or not path.is_file():
                raise JobError(f"the image of {set_id} is no longer kept: burn from a good copy "
                               "instead")
            drives = open_drives(cfg)
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
            result = ArchiveResult(set_id, image, s["record_count"], s["file_count"])
            for c in plan:
                result.copies[c.disc_id] = c.state
                if c.why:
                    result.failures[c.disc_id] = c.why
            if settle_set(inv, set_id) != "archived":
                inv.update_set(set_id, state="failed")
            return result
        finally:
            try:
                eventlog.checkpoint(inv, key)
            finally:
                inv.close()


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
        raise JobError(f"no disc {disc_id} in the inventory: see `discarchive discs`")
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
                  ui: Reporter, keep_catalog: bool = False) -> Report:
    """Read a recorded copy back, record the outcome, and settle its state.

    A disc is called bad only after a second read, in another configured
    drive for a file-backed medium; each read is its own fixity check event.
    A copy whose job was interrupted (``burning`` or ``burned``) becomes
    ``verified`` or ``failed`` as after a burn; a ``verified`` copy that
    fails becomes ``damaged``. The set becomes ``archived`` once all its
    copies are verified.
    """
    disc_id, set_id = disc["disc_id"], disc["set_id"]
    expected = expected_of(inv, set_id)
    names = [d.get("name") for d in cfg.drives]
    first = disc["state"] in ("burning", "burned") or bool(disc.get("interrupted_burn"))
    report = read_back(drive, disc["medium_path"], expected, public_pem, ui.progress("read back"),
                       keep_catalog)
    reader = drive
    if not report.passed and disc["medium_path"] and len(names) > 1 and drive.name in names:
        record_fixity(inv, disc_id, set_id, drive.name, report, first=False, read=1)
        reader = burners.open_drive(cfg.drives[(names.index(drive.name) + 1) % len(names)])
        report = read_back(reader, disc["medium_path"], expected, public_pem,
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
