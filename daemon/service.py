"""The daemon (``discarchive daemon``): scheduled jobs over one archive home.

Jobs, each at the crontab line of the ``[daemon]`` setting of its name, in
the configured time zone (see :mod:`daemon.schedule` for missed runs and
daylight-saving time):

``intake``
    scan the source folders (:mod:`daemon.intake`) and pack each settled
    batch that fills ``fill_share`` of a medium (:func:`daemon.jobs.archive`:
    a disc set per fonds, year and side, each of as many discs as it needs).
``deadline``
    the annual handover (default 31 January): pack every settled batch.
``due_check``
    raise the alerts (:func:`daemon.alerts.check`): re-burn lead times,
    failed and damaged discs, inspections overdue, space, drives.
``inspection``
    work through the year's inspection pull list of the disc lifecycle
    (:func:`inventory.lifecycle.due`: ``[lifecycle] inspect_percent`` of the
    discs a year and every disc once per re-burn cycle, least recently
    checked first), spread over the runs left in the year: each run takes
    its share of the discs not yet inspected this year, least recently
    checked first, and inspects them in cabinet, shelf, slot order
    (:func:`daemon.lifecycle.inspect`: read back, signals recorded, an
    early re-burn flagged and alerted at once).
``digest``
    send the alerts not yet sent, in one message per channel.

:meth:`Daemon.tick` runs what is due at a given time, synchronously: the
real daemon calls it from APScheduler's jobs and a test calls it with a
fake clock. One tick runs at a time. Each tick first answers the operator's
requests (:mod:`daemon.queue`: a disc or a blank medium put in a drive).
The work that burns or reads discs (packing, inspections, answered
requests) takes the home's job lock (``HOME/lock``, through
:mod:`daemon.jobs`) only while it runs; the intake scan, the due check and
the digest write only the daemon's own tables, each change in one
transaction, and take no lock. The daemon's own lock is ``HOME/daemon.pid``
(:func:`pid_lock`), held for its whole life.

A batch whose packing was killed is finished at the next intake: each
image recorded for it and not yet archived (:meth:`Daemon.finish_set`:
copies cut short are read back first and kept when good, and only copies
without a good medium are burned again), then the batch is packed again for
the sets not yet recorded at the kill.

The watchdog: under systemd the daemon tells ``WATCHDOG=1`` only while it
is idle or its job makes progress (the reporter's progress callbacks; see
:meth:`Daemon.alive`), so a job hung in a drive gets the service restarted.

Stopping (SIGTERM, SIGINT): the step that runs (one batch's archive, one
disc's read-back) is finished, the next is not started, and the job is not
marked done, so it runs again after the next start; a kill -9 instead
leaves the inventory as consistent as the main job does (see
:mod:`daemon.jobs`). SIGHUP reads the configuration again and rebuilds the
jobs; a configuration that does not load is logged and the old one kept.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import select
import signal
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import config
from burners import DriveError
from config import Config, ConfigError
from config.home import HomeBusy, pid_file_lock
from inventory import lifecycle as lc
from inventory.store import Inventory

from . import alerts, intake, jobs
from . import lifecycle as lifecycle_jobs
from . import queue as requests
from .log import EventLog
from .notify import Notifier, watchdog_seconds
from .schedule import Schedule, iso

JOB_ORDER = ("intake", "deadline", "due_check", "inspection", "digest")


class DaemonRunning(ConfigError):
    """Another daemon holds this home's daemon lock; the message names its PID."""


@contextmanager
def pid_lock(home: Path):
    """Hold ``HOME/daemon.pid`` (an flock, with this PID written in it) while the daemon runs.

    Separate from the job lock ``HOME/lock``, which the daemon takes only
    while a job works. The lock dies with the process. Raises DaemonRunning
    naming the PID of the daemon that holds it.
    """
    with pid_file_lock(Path(home) / "daemon.pid", lambda pid: DaemonRunning(
            f"a discarchive daemon (PID {pid}) is already running for {home}: stop it first "
            f"(systemctl stop discarchive, or kill {pid}); only one may run per archive home"),
            mode=0o644):
        yield


def _burn_hint(images: list[str]) -> str:
    """What to do about images whose copies are not all verified: one ``burn`` each."""
    return "a copy failed: burn it with " + " and ".join(
        f"`discarchive burn {i}`" for i in images)


class _Stopped(Exception):
    """A stop was asked for between two steps of a job."""


class DaemonReporter(jobs.QuietReporter):
    """The main job's reporter in the daemon: notes to the log, stages to systemd's STATUS."""

    def __init__(self, daemon: "Daemon", what: str):
        self.daemon, self.what = daemon, what

    def progress(self, stage: str):
        """Tell systemd the stage; its callback marks the job as making progress."""
        self.daemon.status(f"{self.what}: {stage}")
        return lambda done, total: self.daemon.progressed()

    def note(self, text: str) -> None:
        self.daemon.log("job.note", text=text)

    def request_blank(self, drive: str, disc_id: str) -> bool:
        """Queue a request for a blank medium in ``drive``; False: the copy waits for it."""
        self.daemon.request_blank(drive, disc_id)
        return False


class Daemon:
    """The scheduled jobs of one archive home; see the module's description.

    ``clock()`` gives the aware current time (the real UTC clock by
    default); ``log`` an :class:`~daemon.log.EventLog`; ``notifier`` a
    :class:`~daemon.notify.Notifier`.
    """

    def __init__(self, cfg: Config, log: EventLog | None = None,
                 notifier: Notifier | None = None,
                 clock: Callable[[], dt.datetime] | None = None):
        self.log = log or EventLog()
        self.notifier = notifier or Notifier()
        self.clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self.stopping = threading.Event()
        self.monotonic: Callable[[], float] = time.monotonic
        self._working: str | None = None       # what a tick runs now; None: idle
        self._progress_at = self.monotonic()
        self._withheld = False
        self._tick_lock = threading.Lock()
        self._wake_w: socket.socket | None = None     # run_forever's wakeup socket
        self._reload_asked = False
        self._stop_asked = False
        self.scheduler = None
        self.configure(cfg)

    # -- configuration ---------------------------------------------------

    def configure(self, cfg: Config) -> None:
        """Take ``cfg`` and rebuild the schedule from it (raises ConfigError, ValueError)."""
        schedule = Schedule(cfg.daemon.zone(),
                            {name: getattr(cfg.daemon, name) for name in JOB_ORDER})
        self.cfg, self.schedule = cfg, schedule

    def reload(self) -> bool:
        """Read the home's configuration again; on failure log it and keep the old one."""
        self.notifier.reloading()
        try:
            self.configure(config.load(self.cfg.home))
        except (ConfigError, ValueError) as exc:
            self.log("config.reload_failed", "error", error=str(exc))
            self.notifier.ready("running (configuration reload failed)")
            return False
        if self.scheduler is not None:
            self._add_jobs()
        self.log("config.reloaded", jobs=",".join(JOB_ORDER), timezone=str(self.schedule.zone))
        self.notifier.ready("idle")
        return True

    def status(self, text: str) -> None:
        """Tell systemd the current step (STATUS=); a new step is progress."""
        self.progressed()
        self.notifier.status(text)

    # -- the watchdog ----------------------------------------------------

    def progressed(self) -> None:
        """Mark that the running job made progress now (any thread: reporters' callbacks)."""
        self._progress_at = self.monotonic()

    def stall_seconds(self) -> float:
        """Seconds without progress after which a job is taken as hung.

        ``[daemon] stall_seconds``, or longer when a configured drive has a
        ``timeout`` of its own (seconds after which its adapter stops a hung
        burning program): that timeout plus a minute, so the drive's own
        timeout fires, and the job goes on, before the watchdog gives up.
        """
        timeouts = [t for t in (d.get("timeout") for d in self.cfg.drives)
                    if isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0]
        return max([float(self.cfg.daemon.stall_seconds)] + [t + 60.0 for t in timeouts])

    def alive(self) -> bool:
        """True when the daemon is idle, or its job made progress within :meth:`stall_seconds`."""
        return (self._working is None
                or self.monotonic() - self._progress_at <= self.stall_seconds())

    def watchdog_ping(self) -> bool:
        """Send ``WATCHDOG=1`` if :meth:`alive`; True if sent.

        A job that makes no progress gets no ping: systemd's ``WatchdogSec``
        then runs out and the service is restarted (``Restart=on-failure``);
        the job, not marked done, runs again after the start. Withholding
        and resuming are logged once each (``watchdog.withheld``,
        ``watchdog.resumed``).
        """
        if self.alive():
            if self._withheld:
                self._withheld = False
                self.log("watchdog.resumed", job=self._working)
            return self.notifier.watchdog()
        if not self._withheld:
            self._withheld = True
            quiet = int(self.monotonic() - self._progress_at)
            self.log("watchdog.withheld", "error", job=self._working, seconds=quiet,
                     limit=int(self.stall_seconds()))
            self.notifier.status(f"{self._working}: no progress for {quiet} s; waiting for "
                                 "the watchdog to restart the service")
        return False

    # -- running what is due ---------------------------------------------

    def tick(self, now: dt.datetime | None = None) -> dict[str, str]:
        """Run every job due at ``now`` (aware; default the clock), one after another.

        Returns job name -> outcome (``ok``, ``busy``, ``stopped``,
        ``failed``) for the jobs that ran. Each job's start is recorded
        before it runs and its end after it (``daemon_runs``).
        """
        with self._tick_lock:
            now = now or self.clock()
            cfg = self.cfg
            done: dict[str, str] = {}
            self._working = "requests"
            self.progressed()
            inv = Inventory.open(cfg.inventory_path)
            try:
                self.answer_requests(inv, cfg, now)
                runs = self.schedule.state(inv)
                new = [n for n in self.schedule.crontabs
                       if not (runs.get(n) or {}).get("covered_until")]
                due = self.schedule.due(inv, now)
                if new:
                    self._first_start(inv, new, now)
                for name in due:
                    if self.stopping.is_set():
                        break
                    self._working = name
                    done[name] = self._run(inv, cfg, name, now)
            finally:
                inv.close()
                self._working = None
            self.status("idle")
            return done

    def _first_start(self, inv: Inventory, new: list[str], now: dt.datetime) -> None:
        """Log, in one line, that jobs seen for the first time are covered up to ``now``
        (nothing missed is run for them) and when each runs next."""
        nxt = self.schedule.next_runs(inv, now)
        self.log("schedule.first_start", covered_until=iso(now),
                 next=", ".join(f"{n} {iso(nxt[n]) if nxt[n] else 'never'}" for n in new),
                 note=f"first start: {len(new)} job(s) counted as done up to now; each runs "
                      "at its next scheduled time")

    def _run(self, inv: Inventory, cfg: Config, name: str, now: dt.datetime) -> str:
        self.schedule.started(inv, name, now)
        self.status(f"running {name}")
        self.log("job.start", job=name, scheduled_at=iso(now))
        covered, detail = now, None
        try:
            detail = getattr(self, f"job_{name}")(inv, cfg, now)
            outcome = "ok"
            alerts.clear_alerts(inv, "job-failed", name, now, self.log)
        except HomeBusy as exc:
            outcome, covered = "busy", None
            self.log("job.busy", "warning", job=name, error=str(exc))
        except _Stopped:
            outcome, covered = "stopped", None
            self.log("job.stopped", "warning", job=name)
        except Exception as exc:  # noqa: BLE001 - a job's failure must not stop the daemon
            outcome = "failed"
            detail = {"error": f"{type(exc).__name__}: {exc}"}
            self.log("job.failed", "error", job=name, error=f"{type(exc).__name__}: {exc}")
            alerts.raise_alert(inv, "job-failed", name, "failed", now,
                               f"the daemon's {name} job failed: {type(exc).__name__}: {exc}",
                               log=self.log)
        self.schedule.finished(inv, name, self.clock(), outcome,
                               detail, covered_until=covered)
        self.log("job.done", job=name, outcome=outcome)
        return outcome

    def _check_stop(self) -> None:
        if self.stopping.is_set():
            raise _Stopped()

    # -- the jobs --------------------------------------------------------

    def job_intake(self, inv: Inventory, cfg: Config, now: dt.datetime, deadline=False):
        """Scan the sources and pack the batches that are ready; returns counts.

        A batch whose packing was killed after images of it were recorded
        (``interrupted``) is finished first: each of those images
        (:meth:`finish_set`), then the batch is packed again, which makes
        the sets not yet recorded at the kill and burns nothing twice (a run
        archives only the files not already on a set: daemon.incremental).
        """
        pending = intake.scan_sources(cfg, inv, now, self.log)
        for row in intake.interrupted(inv):
            self._check_stop()
            images = row["set_id"].split(",")
            failed = [i for i in images if self.finish_set(cfg, i) != "archived"]
            if failed:
                intake.mark(inv, row["path"], state="failed",
                            set_id=",".join(intake.set_ids(inv, row["path"])),
                            detail=_burn_hint(failed))
                continue
            self._check_stop()
            self._pack(inv, cfg, intake.Batch(row["path"], row["source_root"], row["bytes"] or 0,
                                              row["files"] or 0, None), now)
        ready = intake.ready(cfg, pending, now, deadline)
        self.log("intake.scanned", pending=len(pending), ready=len(ready))
        deadline_at = (self.schedule.next_fire("deadline", now)
                       if "deadline" in self.schedule.crontabs else None)
        for batch, why in intake.waiting(cfg, pending, now, deadline, deadline_at):
            self.log("intake.waiting", batch=batch.path, bytes=batch.bytes, why=f"waiting: {why}")
        packed = 0
        for batch in ready:
            self._check_stop()
            self._pack(inv, cfg, batch, now)
            packed += 1
        return {"pending": len(pending), "packed": packed}

    def job_deadline(self, inv: Inventory, cfg: Config, now: dt.datetime):
        """The annual deadline: pack every settled pending batch."""
        return self.job_intake(inv, cfg, now, deadline=True)

    def _pack(self, inv: Inventory, cfg: Config, batch: intake.Batch, now: dt.datetime) -> None:
        """Archive one batch (every set it makes) and record the outcome on its intake row.

        A run that finds nothing new (a batch packed again after its images
        were finished) leaves the batch ``archived`` with the sets made
        before. It is ``archived`` when every image made from it is, else
        ``failed`` with what to burn. The row's ``set_id`` names every set
        made from the batch.
        """
        intake.mark(inv, batch.path, state="packing", detail=None)
        self.log("pack.start", batch=batch.path, bytes=batch.bytes, files=batch.files)
        try:
            result = jobs.archive(cfg, Path(batch.path),
                                  reporter=DaemonReporter(self, f"packing {Path(batch.path).name}"))
        except HomeBusy:
            intake.mark(inv, batch.path, state="pending")
            raise
        except DriveError as exc:
            intake.mark(inv, batch.path, state="pending", detail=str(exc))
            self.log("pack.drive_error", "error", batch=batch.path, error=str(exc),
                     failure_class=exc.failure_class)
            alerts.raise_alert(inv, "drive-error", exc.failure_class or "drive", "failed", now,
                               f"packing a batch stopped at a drive: {exc}", log=self.log)
            return
        except Exception as exc:  # JobError, ScanError, ...: the batch itself is wrong
            intake.mark(inv, batch.path, state="failed", detail=str(exc))
            self.log("pack.failed", "error", batch=batch.path, error=str(exc))
            alerts.raise_alert(inv, "batch-failed", batch.path, "failed", now,
                               f"a batch could not be archived: {exc}", log=self.log)
            return
        images = intake.images(inv, batch.path)
        sets = intake.set_ids(inv, batch.path)
        failed = [r["set_id"] for r in images if r["state"] != "archived"]
        ok = bool(images) and not failed
        detail = None
        if not ok:
            detail = "; ".join([f"{d}: {w}" for d, w in result.failures.items()]
                               + [_burn_hint(failed) if failed else "nothing was archived"])
        intake.mark(inv, batch.path, state="archived" if ok else "failed",
                    set_id=",".join(sets) or None, detail=detail)
        self.log("pack.done", batch=batch.path, set_id=",".join(result.set_ids) or None,
                 images=",".join(r.set_id for r in result.images) or None,
                 outcome="archived" if ok else "failed",
                 copies=",".join(f"{d}={s}" for d, s in result.copies.items()) or None)

    def finish_set(self, cfg: Config, set_id: str) -> str:
        """Finish one image (``disc_sets.set_id``, ``160-2024-S01-02``) whose main job was
        killed; returns its state then, ``archived`` or ``failed``.

        First each copy left ``burning`` or ``burned`` is read back from the
        medium of its last burn attempt (:func:`daemon.jobs.verify_disc`
        settles it, so a good burn is kept, not repeated); then the copies
        still not verified are burned from the kept image
        (:func:`daemon.jobs.burn_set`). A copy that cannot be read now (its
        medium is not in a drive) is left to the burn.
        """
        inv = Inventory.open(cfg.inventory_path)
        try:
            cut = [c["disc_id"] for c in inv.copies(set_id) if c["state"] in ("burning", "burned")]
        finally:
            inv.close()
        for disc_id in cut:
            self._check_stop()
            try:
                report = jobs.verify_disc(cfg, disc_id, DaemonReporter(self, f"settling {disc_id}"))
                self.log("recover.read_back", disc_id=disc_id,
                         outcome="passed" if report.passed else "failed")
            except (DriveError, jobs.JobError) as exc:
                self.log("recover.no_read", "warning", disc_id=disc_id, error=str(exc))
        inv = Inventory.open(cfg.inventory_path)
        try:
            state = jobs.settle_set(inv, set_id)
        finally:
            inv.close()
        if state != "archived":
            self._check_stop()
            try:
                result = jobs.burn_set(cfg, set_id, DaemonReporter(self, f"burning {set_id}"))
                state = "archived" if result.ok else "failed"
            except jobs.JobError as exc:
                self.log("recover.no_burn", "error", set_id=set_id, error=str(exc))
                state = "failed"
        self.log("recover.done", set_id=set_id, state=state)
        return state

    def job_due_check(self, inv: Inventory, cfg: Config, now: dt.datetime):
        """Raise the alerts that are due (see daemon.alerts.check)."""
        return {"raised": alerts.check(cfg, inv, now, self.log)}

    def job_inspection(self, inv: Inventory, cfg: Config, now: dt.datetime):
        """Inspect this run's share of the year's pull list (see the module's description).

        The share is the discs of :func:`inventory.lifecycle.due`'s
        ``inspect`` list (not yet inspected this year) divided by the runs
        of the ``inspection`` schedule left in the year, this one included,
        rounded up: the year's list is done by the earliest runs that can,
        leaving the last ones for discs that could not be read on time.
        """
        today = now.astimezone(self.schedule.zone).date()
        pull = lc.due(inv, today, cfg.lifecycle, cfg.reburn_years)["inspect"]
        runs = self.schedule.runs_left_in_year("inspection", now)
        share = math.ceil(len(pull) / runs)
        chosen = sorted(pull, key=lambda r: (lc.last_checked(r) or "", r["disc_id"]))[:share]
        chosen.sort(key=lc.location_key)           # the operator pulls them shelf by shelf
        checked = failed = flagged = 0
        for row in chosen:
            self._check_stop()
            disc_id = row["disc_id"]
            self.status(f"inspecting {disc_id}")
            try:
                done = self._inspect(inv, disc_id, now, f"inspecting {disc_id}")
            except HomeBusy:
                raise
            except DriveError as exc:
                self.log("inspection.no_read", "warning", disc_id=disc_id, error=str(exc),
                         failure_class=exc.failure_class)
                alerts.disc_unreadable(cfg, inv, disc_id, exc, now, self.log)
                self._request_disc(inv, cfg, disc_id, exc, now)
                continue
            except jobs.JobError as exc:    # no longer a current copy (re-burned meanwhile)
                self.log("inspection.skipped", "warning", disc_id=disc_id, error=str(exc))
                continue
            checked += 1
            failed += not done.report.passed
            flagged += done.flagged
        return {"listed": len(pull), "runs_left": runs, "selected": len(chosen),
                "checked": checked, "failed": failed, "flagged": flagged}

    def _inspect(self, inv: Inventory, disc_id: str, now: dt.datetime,
                 what: str) -> lifecycle_jobs.Inspection:
        """Inspect one disc (:func:`daemon.lifecycle.inspect`, which alerts a flag at once);
        log it.

        Raises what the inspection raises (HomeBusy, DriveError, JobError).
        """
        done = lifecycle_jobs.inspect(self.cfg, disc_id, DaemonReporter(self, what), now,
                                      self.log)
        self.log("inspection.done", disc_id=disc_id,
                 outcome="passed" if done.report.passed else "failed",
                 bad_sectors=done.row["bad_sectors"], retried_sectors=done.row["retried_sectors"],
                 slow_sectors=done.row["slow_sectors"], flag="; ".join(done.reasons) or None)
        return done

    # -- the operator in the loop ------------------------------------------

    def _drive_spec(self, cfg: Config, name: str | None) -> dict | None:
        specs = [d for d in cfg.drives if d.get("name") == name] or cfg.drives[:1]
        return specs[0] if specs else None

    def _request_disc(self, inv: Inventory, cfg: Config, disc_id: str, exc: DriveError,
                      now: dt.datetime) -> None:
        """Queue "insert disc X from <location> into drive Y" when a real drive held none."""
        disc = inv.disc(disc_id)
        spec = self._drive_spec(cfg, disc["drive"] if disc else None)
        if exc.failure_class != "no-medium" or not disc or not spec or spec.get("media_dir"):
            return                   # file-backed media load themselves: nothing to insert
        where = lc.place(disc)
        message = (f"insert copy {disc_id} ({lc.volume_text(disc)}) "
                   f"{f'from {where}' if disc['cabinet'] is not None else f'({where})'} "
                   f"into drive {spec['name']} for its inspection")
        rid, new = requests.add(inv, "disc", spec["name"], message, now, disc_id=disc_id,
                                set_id=disc["set_id"], media=disc["medium"])
        if new:
            self.log("queue.request", id=rid, kind="disc", drive=spec["name"], disc_id=disc_id)

    def request_blank(self, drive: str, disc_id: str) -> None:
        """Queue "insert a blank MEDIA into drive D" for copy ``disc_id`` (any thread).

        The request names the copy and its disc (image, ``set_id``): the
        blank is burned with that image alone (:meth:`_answer_blank`).
        """
        now = self.clock()
        inv = Inventory.open(self.cfg.inventory_path)
        try:
            disc = inv.disc(disc_id)
            set_id = disc["set_id"] if disc else disc_id.rsplit("-", 1)[0]
            media = (disc or {}).get("medium") or self.cfg.media
            which = lc.volume_text(disc or {"set_id": set_id})
            rid, new = requests.add(
                inv, "blank", drive, f"insert a blank {media.upper()} into drive {drive} "
                f"for copy {disc_id} ({which})", now, disc_id=disc_id, set_id=set_id,
                media=media)
        finally:
            inv.close()
        if new:
            self.log("queue.request", id=rid, kind="blank", drive=drive, disc_id=disc_id)

    def answer_requests(self, inv: Inventory, cfg: Config, now: dt.datetime) -> None:
        """Look at the drives of the waiting requests and run what an inserted medium allows.

        See :mod:`daemon.queue`. A drive that cannot answer, or a home busy
        with another job, leaves the request waiting.
        """
        import burners

        for req in requests.waiting(inv):
            if self.stopping.is_set():
                return
            disc = inv.disc(req["disc_id"]) if req["disc_id"] else None
            if req["kind"] == "disc" and disc and disc["state"] not in lc.CURRENT_STATES:
                requests.update(inv, req["id"], now, state="cancelled",
                                outcome=f"the disc is {disc['state']} now")
                continue
            if req["kind"] == "blank" and disc and disc["state"] == "verified":
                requests.update(inv, req["id"], now, state="cancelled",
                                outcome="the copy was burned meanwhile")
                continue
            spec = next((d for d in cfg.drives if d.get("name") == req["drive"]), None)
            if spec is None:
                requests.update(inv, req["id"], now, note=f"drive {req['drive']} is no longer "
                                "configured")
                continue
            try:
                drive = burners.open_drive(spec)
                st = drive.status()
                if st.state in ("no-medium", "tray-open"):
                    continue
                if req["kind"] == "disc":
                    self._answer_disc(inv, cfg, req, drive, now)
                else:
                    self._answer_blank(inv, cfg, req, st, now)
            except HomeBusy:
                return
            except DriveError as exc:
                requests.update(inv, req["id"], now, note=f"drive {req['drive']}: {exc}")
                self.log("queue.drive_error", "warning", id=req["id"], drive=req["drive"],
                         error=str(exc))
            except Exception as exc:  # noqa: BLE001 - JobError...: one request, not the tick
                requests.update(inv, req["id"], now, state="done", outcome=f"failed: {exc}")
                self.log("queue.failed", "error", id=req["id"], error=f"{type(exc).__name__}: "
                         f"{exc}")

    def _answer_disc(self, inv: Inventory, cfg: Config, req: dict, drive,
                     now: dt.datetime) -> None:
        """Inspect the disc inserted for a request if it is the one asked for.

        Recognised by its volume ID (the image's ID, ``set_id``) and its
        description file (:func:`daemon.queue.check_description`); anything
        else gets a note on the request and is neither read back nor recorded.
        """
        found = requests.volume_id(drive)
        if found != req["set_id"]:
            why = (f"it holds {found or 'no ISO 9660 volume (a blank or foreign disc)'}, "
                   f"not a copy of disc {req['set_id']}")
        else:
            ok, why = requests.check_description(drive, inv, req["set_id"])
            why = None if ok else (
                f"{why}, not {req['disc_id']}'s (if it is {req['disc_id']} itself, its "
                f"description file was altered: inspect it with `discarchive inspect "
                f"{req['disc_id']}`)")
        if why:
            note = (f"wrong disc in drive {req['drive']}: {why}: take it out and insert "
                    f"{req['disc_id']}")
            if note != req["note"]:
                requests.update(inv, req["id"], now, note=note)
                self.log("queue.wrong_disc", "warning", id=req["id"], drive=req["drive"],
                         found=found, wanted=req["disc_id"])
            return
        self.status(f"inspecting {req['disc_id']} (inserted)")
        done = self._inspect(inv, req["disc_id"], now, f"inspecting {req['disc_id']}")
        outcome = "passed" if done.report.passed else "failed"
        if done.flagged:
            outcome += f"; flagged for an early re-burn: {'; '.join(done.reasons)}"
        requests.update(inv, req["id"], now, state="done", outcome=outcome, note=None)
        self.log("queue.done", id=req["id"], kind="disc", disc_id=req["disc_id"],
                 outcome="passed" if done.report.passed else "failed")

    def _answer_blank(self, inv: Inventory, cfg: Config, req: dict, st, now) -> None:
        if st.state != "blank":
            note = (f"the medium in drive {req['drive']} is not blank ({st.state}): take it out "
                    f"and insert a blank {(req['media'] or cfg.media).upper()}; nothing was "
                    "written")
            if note != req["note"]:
                requests.update(inv, req["id"], now, note=note)
                self.log("queue.not_blank", "warning", id=req["id"], drive=req["drive"])
            return
        self.status(f"burning {req['set_id']} (blank inserted)")   # this image only
        result = jobs.burn_set(cfg, req["set_id"],
                               reporter=DaemonReporter(self, f"burning {req['set_id']}"))
        outcome = "burned and verified" if result.ok else "; ".join(
            f"{d}: {w}" for d, w in result.failures.items()) or "failed"
        requests.update(inv, req["id"], now, state="done", outcome=outcome, note=None)
        self.log("queue.done", id=req["id"], kind="blank", set_id=req["set_id"],
                 outcome="ok" if result.ok else "failed")

    def job_digest(self, inv: Inventory, cfg: Config, now: dt.datetime):
        """Send the alerts not yet sent (one digest per channel)."""
        return alerts.send_digest(cfg, inv, now, self.log)

    # -- the real-time daemon --------------------------------------------

    def _add_jobs(self) -> None:
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        self.scheduler.remove_all_jobs()
        for name in JOB_ORDER:
            self.scheduler.add_job(self._fire, CronTrigger.from_crontab(
                getattr(self.cfg.daemon, name), timezone=self.schedule.zone),
                id=name, name=name, replace_existing=True)
        self.scheduler.add_job(self._fire, IntervalTrigger(seconds=self.cfg.daemon.poll_seconds),
                               id="poll", name="poll", replace_existing=True)

    def _fire(self) -> None:
        """APScheduler's job: run whatever is due now (each job's record says what)."""
        try:
            self.tick()
        except Exception as exc:  # noqa: BLE001 - logged, the daemon goes on
            self.log("tick.failed", "error", error=f"{type(exc).__name__}: {exc}")

    def request_stop(self, *_args) -> None:
        """Ask the daemon to stop after the current step (what SIGTERM does); any thread."""
        self.stopping.set()
        self._poke()

    def request_reload(self, *_args) -> None:
        """Ask the daemon to read its configuration again (what SIGHUP does); any thread."""
        self._reload_asked = True
        self._poke()

    def _poke(self) -> None:
        """Wake :meth:`run_forever`'s loop (a byte on its wakeup socket), if it runs."""
        if self._wake_w is not None:
            try:
                self._wake_w.send(b"\0")
            except OSError:
                pass                 # the socket is full: the loop is awake already

    def _on_signal(self, signum: int, _frame) -> None:
        """The SIGTERM, SIGINT and SIGHUP handler: it only sets a flag.

        A handler runs in the main thread between any two of its steps,
        perhaps while it holds a lock (a threading.Event's, say): taking one
        here could deadlock the daemon. The signal's own byte on the wakeup
        socket (:func:`signal.set_wakeup_fd`) wakes the loop, which acts on
        the flag.
        """
        if signum == signal.SIGHUP:
            self._reload_asked = True
        else:
            self._stop_asked = True

    @contextmanager
    def _wakeup_socket(self):
        """A socket pair whose reading end wakes the main loop: signals write their number
        to the other end (signal.set_wakeup_fd), :meth:`_poke` a zero byte."""
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        old = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        self._wake_w = writer
        try:
            yield reader
        finally:
            signal.set_wakeup_fd(old)
            self._wake_w = None
            reader.close()
            writer.close()

    def run_forever(self) -> int:
        """Hold the daemon lock, run the schedule until SIGTERM/SIGINT; returns 0.

        Raises DaemonRunning when another daemon serves this home. Missed
        runs are caught up at once; then APScheduler fires the jobs at their
        times in a single worker thread, and ``poll_seconds`` later looks
        again for a job left due (the home was busy).
        """
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        with pid_lock(self.cfg.home), self._wakeup_socket() as wake:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(signum, self._on_signal)
            self.scheduler = BackgroundScheduler(
                timezone=self.schedule.zone,
                executors={"default": ThreadPoolExecutor(max_workers=1)},
                job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})
            self._add_jobs()
            self.scheduler.start()
            self.scheduler.add_job(self._fire, id="catch-up", name="catch-up")
            self.log("daemon.started", pid=os.getpid(), home=str(self.cfg.home),
                     timezone=str(self.schedule.zone))
            self.notifier.ready("idle")
            ping = watchdog_seconds()
            while not self.stopping.is_set():
                select.select([wake], [], [], ping or 60)
                try:
                    while wake.recv(4096):
                        pass
                except OSError:      # drained (BlockingIOError)
                    pass
                if self._stop_asked:
                    self.request_stop()
                    break
                if ping:
                    self.watchdog_ping()
                if self._reload_asked and not self.stopping.is_set():
                    self._reload_asked = False
                    self.reload()
            self.notifier.stopping("stopping: finishing the current step")
            self.log("daemon.stopping")
            self.scheduler.shutdown(wait=True)
            self.log("daemon.stopped")
        return 0
