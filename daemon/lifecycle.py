"""Disc lifecycle jobs that read discs: inspections and re-burns (migration, ISO/IEC 29121).

An *inspection* reads one copy back in full with the verify job's reading
(:func:`daemon.jobs.read_recorded`: a disc is called bad only after a second
read in another drive), then records its health signals: unreadable,
retried and slow sectors, the read speed, and whether it verified; a disc
whose signals pass the ``[lifecycle]`` thresholds, or worsen since its last
inspection, is flagged for an early re-burn (see
:func:`inventory.lifecycle.judge`).

A *re-burn* makes a new copy for each copy it replaces: one copy
(``160-2025-S01-02-A``), every current copy of one disc (image,
``160-2025-S01-02``), or every current copy of every disc of a disc set
(``160-2025-S01``), disc by disc. Each disc's new copies come from the best
source there is for that disc, in this order:

1. the retained image, when its SHA-256 and files still match the record;
2. another copy of the set that verifies when read now, read once into
   ``HOME/scratch``;
3. the disc itself (or, for a set, a copy being replaced): as read, if it
   verifies; else repaired, each damaged payload file and each unreadable
   sector taken from a copy that read them intact, and the result verified
   against the record (image SHA-256, every file, the bag, the signature).

The new copies are burned and read back by :func:`daemon.replication.burn_copies`
(the same image, so the disc ID, the set ID and the bag's Bag-Group-Identifier
and Bag-Count "k of n" stay as they were; a copy's ID gains its generation,
``160-2025-S01-02-A2``), then each new copy's lineage is recorded and the copy it
replaces becomes ``superseded``, one transaction per copy
(:func:`inventory.lifecycle.record_replacement`). A kill before that leaves
the old copy current and the new one ``burning``/``burned``/``verified``
without lineage: running the re-burn again burns it afresh under its ID
(or, verified, records its lineage without burning). A whole set's discs
are done one after the other, each settled before the next starts: after
a kill, re-burn the discs not yet done by their own IDs (``discarchive
discs`` shows which), since the set's ID would re-burn the done ones too.
A disc of a set for which no source verifies is reported and the others
go on (:class:`ReburnRun`).
Reading a source copy is recorded as any read-back is
(:func:`daemon.jobs.read_recorded`): a copy whose second read fails too
becomes ``damaged``. No good source for a disc raises :class:`NoSource`.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import burners
from burners import SECTOR, DriveError
from config import Config
from config.home import locked
from inventory import eventlog
from inventory import lifecycle as lc
from inventory.store import Inventory
from manifests import signing
from mastering.iso import Image
from verification.onepass import file_chunks
from verification.readback import Expected, Report, verify

from . import alerts, jobs
from .replication import Copy, burn_copies


class NoSource(jobs.JobError):
    """No source verifies for a disc to re-burn: the job ran and its reads failed (exit 1)."""


def _sectors(ranges) -> int:
    """Sectors in a list of (first LBA, count) ranges."""
    return sum(count for _, count in ranges)


@contextmanager
def signed_session(cfg: Config, lock: bool = True):
    """The inventory for one job or operator's change: yields (Inventory, public key PEM).

    Holds the home's job lock when ``lock`` (jobs that read or burn discs),
    and signs the event log's head when done (a checkpoint, see
    :mod:`inventory.eventlog`), whatever happened. Raises SigningError or
    InventoryError before yielding when the key or inventory cannot be used,
    HomeBusy when another job holds the lock.
    """
    with locked(cfg.home) if lock else nullcontext():
        key, public_pem = signing.load_keypair(cfg.key_path, cfg.public_key_path)
        inv = Inventory.open(cfg.inventory_path)
        try:
            yield inv, public_pem
        finally:
            try:
                eventlog.checkpoint(inv, key)
            finally:
                inv.close()


@dataclass
class Inspection:
    """One inspection's outcome: its ``inspections`` row, the read's Report and the reasons
    for an early re-burn (empty when the disc is healthy)."""

    disc_id: str
    row: dict
    report: Report
    reasons: list[str]

    @property
    def flagged(self) -> bool:
        return bool(self.reasons)


def inspect(cfg: Config, disc_id: str, reporter=None,
            now: dt.datetime | None = None, log=None) -> Inspection:
    """Inspect one current copy: read it back in full, record its signals, judge them.

    The read is a verification like ``discarchive verify`` (fixity check
    events, a second read in another drive when the first fails, a
    ``damaged`` state when both fail). A disc flagged for an early re-burn
    gets its ``reburn-early`` alert at once (:func:`daemon.alerts.flag_alert`,
    written to ``log`` when given), whoever inspected it: the CLI or the
    daemon. Raises JobError for an unknown disc
    or one that is not a current copy (superseded, failed...), DriveError
    when its medium cannot be loaded (nothing is recorded then).
    """
    ui = reporter or jobs.QuietReporter()
    with signed_session(cfg) as (inv, public_pem):
        disc = inv.disc(disc_id)
        if disc is None:
            raise jobs.JobError(lc.not_a_copy(inv, disc_id))
        if disc["state"] not in lc.CURRENT_STATES:
            raise jobs.JobError(f"disc {disc_id} is {disc['state']}: only verified or damaged "
                                "copies are inspected")
        last = inv.db.execute("SELECT max(id) FROM events").fetchone()[0] or 0
        disc, drive = jobs.disc_in_drive(cfg, inv, disc_id)
        started = time.monotonic()
        report = jobs.read_recorded(cfg, inv, disc, drive, public_pem, ui)
        seconds = time.monotonic() - started
        reads = inv.db.execute("SELECT count(*) FROM events WHERE id > ? AND disc_id = ? "
                               "AND event_type = 'fixity check'", [last, disc_id]).fetchone()[0]
        signals = {"drive": drive.name, "reads": reads, "passed": report.passed,
                   "failure": None if report.passed else report.summary(),
                   "bad_sectors": _sectors(report.bad_sectors),
                   "retried_sectors": report.retried_sectors,
                   "slow_sectors": _sectors(report.slow_sectors),
                   "read_bytes": disc["image_bytes"] * max(reads, 1),
                   "read_seconds": round(seconds, 3), "damaged_files": len(report.damaged)}
        row = lc.record_inspection(inv, disc_id, signals, cfg.lifecycle, now)
        done = Inspection(disc_id, row, report, row.pop("reasons"))
        if done.flagged:
            alerts.flag_alert(inv, inv.disc(disc_id), now or dt.datetime.now(dt.timezone.utc),
                              log)
        return done


# -- re-burn --------------------------------------------------------------------------

@dataclass
class Source:
    """Where a re-burn's image comes from: ``kind`` ``image``, ``copy`` or ``disc``,
    the file holding it, and what was tried before it (``passed_over``)."""

    kind: str
    path: Path
    detail: str
    passed_over: list[str] = field(default_factory=list)
    repaired: dict[str, list[str]] = field(default_factory=dict)   # donor disc -> its files

    def to_dict(self) -> dict:
        return {"kind": self.kind, "detail": self.detail, "passed_over": self.passed_over,
                "repaired_from": self.repaired}


@dataclass
class ReburnResult:
    """One disc's (image's) re-burn: its ID (``set_id``), its set (``group_id``, disc
    ``volume`` of ``volumes``), the source, and each new copy: its state, the copy it
    replaces and (for a failed one) why."""

    set_id: str
    source: Source
    copies: dict[str, str] = field(default_factory=dict)      # new disc ID -> verified | failed
    replaces: dict[str, str] = field(default_factory=dict)    # new disc ID -> old disc ID
    failures: dict[str, str] = field(default_factory=dict)
    group_id: str = ""
    volume: int = 1
    volumes: int = 1

    @property
    def ok(self) -> bool:
        return bool(self.copies) and all(v == "verified" for v in self.copies.values())


@dataclass
class ReburnRun:
    """What one ``reburn TARGET`` did: ``kind`` ``set``, ``disc`` or ``copy`` (see
    :func:`inventory.lifecycle.reburn_targets`), each disc's :class:`ReburnResult` in set
    order, and the discs of a set left as they were because no source verified
    (``skipped``: disc ID -> why)."""

    target: str
    kind: str
    images: list[ReburnResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.images) and not self.skipped and all(r.ok for r in self.images)


class _CopyingDrive:
    """A drive whose read-back also writes every byte it yields into ``out`` (a file);
    each load starts the file afresh (a second read replaces the first's bytes)."""

    def __init__(self, drive, out: BinaryIO):
        self._drive, self._out = drive, out
        self.name = drive.name

    def load(self, medium_path):
        self._out.seek(0)
        self._out.truncate()
        self._drive.load(medium_path)

    def read(self, length: int, progress=None):
        return _CopyingReader(self._drive.read(length, progress), self._out)


class _CopyingReader:
    """Passes a MediumReader's chunks on and writes them to a file; ``bad``, ``slow`` and
    ``retried`` are the reader's."""

    def __init__(self, reader, out: BinaryIO):
        self._reader, self._out = reader, out

    def __iter__(self):
        for chunk in self._reader:
            self._out.write(chunk)
            yield chunk

    bad = property(lambda self: self._reader.bad)
    slow = property(lambda self: self._reader.slow)
    retried = property(lambda self: self._reader.retried)


def _read_into(cfg: Config, inv: Inventory, disc_id: str, expected: Expected, public_pem: bytes,
               out: Path, ui) -> Report:
    """Read a copy in its drive as any read-back is, writing the bytes into ``out``.

    The reads and their recording are :func:`daemon.jobs.read_recorded`'s:
    each read is a fixity check event, a failed read is read again in
    another drive, and a copy whose second read fails too becomes
    ``damaged`` (so ``due`` and the alerts show it). ``out`` holds the last
    read's bytes, which the returned Report describes. Raises JobError or
    DriveError as :func:`daemon.jobs.disc_in_drive`.
    """
    disc, drive = jobs.disc_in_drive(cfg, inv, disc_id)
    with open(out, "w+b") as f:
        report = jobs.read_recorded(cfg, inv, disc, drive, public_pem, ui,
                                    wrap=lambda d: _CopyingDrive(d, f))
        f.flush()
        os.fsync(f.fileno())
    return report


def _repair(base: Path, report: Report, donors: list[tuple[str, Path, Report]],
            expected: Expected) -> tuple[dict[str, list[str]], list[str]]:
    """Patch the damaged parts of image file ``base`` with bytes from donor copies.

    A damaged payload file is copied whole from the first donor that read
    it with its recorded SHA-256 (a tag file, which has no recorded hash,
    from the first donor whose check found nothing wrong with it); an
    unreadable sector outside the files from the first donor that read it. Returns ({donor disc: [what it gave]},
    [what no donor had]). The caller verifies the result.
    """
    extents = {e.path: (e, want) for e, want in expected.files}
    used: dict[str, list[str]] = {}
    missing: list[str] = []
    with open(base, "r+b") as f:
        for path, _why in report.damaged:
            extent, want = extents[path]
            for disc_id, donor, dr in donors:
                if path not in {p for p, _ in dr.damaged} and (
                        dr.file_sha256.get(path) == want if want is not None
                        else not any(path in problem for problem in dr.problems)):
                    with open(donor, "rb") as src:
                        src.seek(extent.lba * SECTOR)
                        f.seek(extent.lba * SECTOR)
                        f.write(src.read(extent.size))
                    used.setdefault(disc_id, []).append(path)
                    break
            else:
                missing.append(path)
        in_files = {lba for e, _ in expected.files for lba in e.sectors}
        for first, count in report.bad_sectors:
            for lba in range(first, first + count):
                if lba in in_files or lba * SECTOR >= expected.length:
                    continue
                for disc_id, donor, dr in donors:
                    if not any(a <= lba < a + n for a, n in dr.bad_sectors):
                        with open(donor, "rb") as src:
                            src.seek(lba * SECTOR)
                            f.seek(lba * SECTOR)
                            f.write(src.read(SECTOR))
                        used.setdefault(disc_id, []).append(f"sector {lba}")
                        break
                else:
                    missing.append(f"sector {lba}")
        f.truncate(expected.length)
    return used, missing


def best_source(cfg: Config, inv: Inventory, s: dict, olds: list[dict], expected: Expected,
                public_pem: bytes, work: Path, ui) -> Source:
    """The best source for re-burning set ``s``: kept image, another copy, or the disc itself.

    See the module for the order. Copies are read into files under
    ``work``. Raises JobError, naming what was tried, when nothing verifies.
    """
    tried: list[str] = []
    if s["image_path"] and Path(s["image_path"]).is_file():
        check = verify(file_chunks(s["image_path"], expected.length), expected, public_pem,
                       ui.progress("check image"))
        if check.passed:
            return Source("image", Path(s["image_path"]), "the kept image")
        tried.append(f"the kept image does not match its record ({check.summary()})")
    else:
        tried.append("the image is no longer kept")
    old_ids = [o["disc_id"] for o in olds]
    current = [c["disc_id"] for c in inv.copies(s["set_id"]) if c["state"] in lc.CURRENT_STATES]
    reads: list[tuple[str, Path, Report]] = []
    for disc_id in [c for c in current if c not in old_ids] + old_ids:
        out = work / f"{disc_id}.iso"
        try:
            report = _read_into(cfg, inv, disc_id, expected, public_pem, out, ui)
        except DriveError as exc:
            tried.append(f"{disc_id} cannot be read: {exc}")
            continue
        if report.passed:
            kind = "disc" if disc_id in old_ids else "copy"
            return Source(kind, out, f"{'the disc itself' if kind == 'disc' else 'copy'} "
                          f"{disc_id}, read now", tried)
        tried.append(f"{disc_id} does not verify ({report.summary()})")
        reads.append((disc_id, out, report))
    for disc_id, base, report in [r for r in reads if r[0] in old_ids]:
        donors = [r for r in reads if r[0] != disc_id]
        used, missing = _repair(base, report, donors, expected)
        if missing or not used:
            tried.append(f"{disc_id} cannot be repaired: no copy read "
                         f"{', '.join(missing[:3]) or 'its damaged parts'} intact")
            continue
        check = verify(file_chunks(base, expected.length), expected, public_pem,
                       ui.progress("check repair"))
        if check.passed:
            donors_text = ", ".join(f"{', '.join(v)} from {k}" for k, v in used.items())
            return Source("disc", base, f"the disc itself, {disc_id}, repaired: {donors_text}",
                          tried, used)
        tried.append(f"{disc_id} repaired does not verify ({check.summary()})")
    raise NoSource(f"no good source to re-burn {s['set_id']} from: {'; '.join(tried)}; "
                        "find another copy (off-site?) and put it in a drive")


def _finish_interrupted(inv: Inventory, s: dict, olds: list[dict],
                        now: dt.datetime | None) -> dict[str, str]:
    """Record the lineage of new copies a killed re-burn left verified; {new: old} done.

    Such a copy was burned from this set's image and read back against the
    record (its ``image_sha256`` is the set's), so it replaces its old copy
    now, without burning again.
    """
    done = {}
    for old in olds:
        new_id, generation = lc.next_disc_id(old)
        new = inv.disc(new_id)
        if new and new["state"] == "verified" and new["image_sha256"] == s["image_sha256"]:
            lc.record_replacement(inv, new_id, old, generation, True,
                                  {"kind": "interrupted re-burn",
                                   "detail": "burned and verified before a re-burn was "
                                             "interrupted"}, now)
            done[new_id] = old["disc_id"]
    return done


def reburn(cfg: Config, target: str, reporter=None, now: dt.datetime | None = None) -> ReburnRun:
    """Re-burn a copy, every current copy of a disc, or every current copy of a disc set.

    ``target`` is a copy ID (``160-2025-S01-02-A``), a disc (image) ID
    (``160-2025-S01-02``) or a set ID (``160-2025-S01``): see
    :func:`inventory.lifecycle.reburn_targets`. Each new copy gets the next
    generation's ID (``160-2025-S01-02-A2`` replaces ``160-2025-S01-02-A``),
    is burned from its disc's best source and verified, and its lineage
    recorded; the copy it replaces is ``superseded`` once the new one
    verified. The image is the disc's own, so its set and Bag-Count stay. A
    source image rebuilt from the discs becomes the kept image when
    ``keep_images`` is set. Raises JobError (or LifecycleError) for an
    unknown or finished target, NoSource (a JobError) when no source
    verifies (for a set: for any of its discs, when none was re-burned), DriveError when no drive can
    work; a new copy that fails, or a disc of a set with no good source, is
    recorded and reported in the result.
    """
    ui = reporter or jobs.QuietReporter()
    with signed_session(cfg) as (inv, public_pem):
        kind, todo = lc.reburn_targets(inv, target)
        drives = jobs.open_drives(cfg)
        run = ReburnRun(target, kind)
        errors = []
        for s, olds in todo:
            try:
                run.images.append(_reburn_disc(cfg, inv, s, olds, drives, public_pem, ui, now))
            except jobs.JobError as exc:
                if kind != "set":
                    raise
                errors.append(exc)
                run.skipped[s["set_id"]] = str(exc)
                ui.note(f"{s['set_id']}: not re-burned: {exc}")
        if not run.images:
            raise errors[0]
        return run


def _reburn_disc(cfg: Config, inv: Inventory, s: dict, olds: list[dict], drives: list,
                 public_pem: bytes, ui, now: dt.datetime | None) -> ReburnResult:
    """Re-burn copies ``olds`` of one disc (image row ``s``), in a scratch folder of its own."""
    set_id = s["set_id"]
    expected = jobs.expected_of(inv, set_id)
    work = cfg.work_dir / f"reburn-{set_id}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        result = _reburn(cfg, inv, s, olds, drives, expected, public_pem, work, ui, now)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result.group_id = s.get("group_id") or set_id
    result.volume, result.volumes = s.get("volume") or 1, s.get("volumes") or 1
    return result


def _reburn(cfg: Config, inv: Inventory, s: dict, olds: list[dict], drives: list,
            expected: Expected, public_pem: bytes, work: Path, ui,
            now: dt.datetime | None) -> ReburnResult:
    set_id = s["set_id"]
    finished = _finish_interrupted(inv, s, olds, now)
    olds = [o for o in olds if o["disc_id"] not in finished.values()]
    if not olds:
        return ReburnResult(set_id, Source("interrupted re-burn", Path(s["image_path"] or ""),
                                           "the copies an interrupted re-burn verified"),
                            dict.fromkeys(finished, "verified"), dict(finished))
    source = best_source(cfg, inv, s, olds, expected, public_pem, work, ui)
    ui.note(f"{set_id}: re-burning from {source.detail}")
    image = Image(source.path, s["image_bytes"], s["image_sectors"], s["image_sha256"])
    result = ReburnResult(set_id, source, dict.fromkeys(finished, "verified"), dict(finished))
    plan, lineage = [], []
    for n, old in enumerate(olds):
        new_id, generation = lc.next_disc_id(old)
        second = (n + 1) % len(drives)
        plan.append(Copy(new_id, old["copy_label"], drives[n % len(drives)],
                         lambda i=second: burners.open_drive(cfg.drives[i])))
        lineage.append((old, generation))
        result.replaces[new_id] = old["disc_id"]
    burn_copies(cfg, plan, set_id, s["media"], image, expected, public_pem, ui)
    for c, (old, generation) in zip(plan, lineage):
        result.copies[c.disc_id] = c.state
        if c.why:
            result.failures[c.disc_id] = c.why
        lc.record_replacement(inv, c.disc_id, old, generation, c.state == "verified",
                              source.to_dict(), now)
    if source.kind != "image" and cfg.keep_images:
        kept = cfg.images_dir / f"{set_id}.iso"
        cfg.images_dir.mkdir(parents=True, exist_ok=True)
        os.replace(source.path, kept)       # verified against the record just now
        inv.update_set(set_id, image_path=str(kept))
    copies = [c for c in inv.copies(set_id) if c["state"] != "superseded"]
    if s["state"] != "archived" and copies and all(c["state"] == "verified" for c in copies):
        inv.update_set(set_id, state="archived")
    return result
