"""When each scheduled job is due: crontab triggers, a durable record of runs, any clock.

The daemon's jobs run at the times of their crontab lines in one time zone,
computed by APScheduler's ``CronTrigger``. What has run is kept in the
inventory's ``daemon_runs`` table, not in a pickled job store: each job's
``covered_until`` (UTC) is the time up to which its fire times are done. So

* a job is due at ``now`` when its first fire time after ``covered_until``
  is at or before ``now``; running it sets ``covered_until = now``. Fire
  times missed while the daemon was down (one or fifty) make the job due
  once, not zero times and not fifty;
* a job is recorded ``started_at`` before it runs and covered only after it
  ends, so a daemon killed during a job runs it again after restart (the job
  itself must then finish what was started, not repeat it);
* a job seen for the first time is covered up to ``now``: it waits for its
  next fire time rather than running at once;
* daylight-saving time: fire times are local wall-clock times. In the hour
  that repeats in autumn, a time already passed once is not run again (a
  job at 02:30 runs once that night, not twice); in spring a time that does
  not exist runs at the same instant an hour later on the clock (02:30 ->
  03:30), once.

Nothing here reads the real clock: :meth:`Schedule.due` takes ``now``, so a
test drives years of schedule in seconds.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from apscheduler.triggers.cron import CronTrigger

from inventory.store import Inventory

_SECOND = dt.timedelta(seconds=1)


def iso(t: dt.datetime) -> str:
    """An aware time as UTC ISO 8601 with seconds (``2026-01-31T07:00:00Z``)."""
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> dt.datetime:
    """The aware UTC time of an :func:`iso` text."""
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)


class Schedule:
    """Named jobs with crontab lines in time zone ``zone``; the runs live in ``daemon_runs``.

    ``crontabs``: job name -> crontab line (five fields). Jobs are checked
    in the order given. Raises ValueError for a line APScheduler refuses.
    """

    def __init__(self, zone: dt.tzinfo, crontabs: dict[str, str]):
        self.zone = zone
        self.crontabs = dict(crontabs)
        self.triggers = {name: CronTrigger.from_crontab(line, timezone=zone)
                         for name, line in crontabs.items()}

    def _local(self, t: dt.datetime) -> dt.datetime:
        return t.astimezone(self.zone).replace(tzinfo=None)

    def next_fire(self, name: str, after: dt.datetime) -> dt.datetime | None:
        """The job's first fire time strictly after ``after`` (aware), by the DST rule above."""
        trigger = self.triggers[name]
        probe, local_after = after + _SECOND, self._local(after)
        for _ in range(10_000):
            t = trigger.get_next_fire_time(None, probe)
            if t is None:
                return None
            if t < probe:
                # APScheduler 3 may answer a time before ``probe`` inside the repeated
                # autumn hour: look again a minute (crontab's resolution) later
                probe += dt.timedelta(minutes=1)
            elif self._local(t) <= local_after:
                # in the repeated hour, a wall-clock time already passed is not run again
                probe = t + _SECOND
            else:
                return t
        return None

    def fires_between(self, name: str, start: dt.datetime, end: dt.datetime) -> int:
        """How many times the job fires after ``start`` and up to ``end`` (aware; at most
        10,000), by the DST rule above."""
        n, t = 0, start
        while n < 10_000:
            t = self.next_fire(name, t)
            if t is None or t > end:
                break
            n += 1
        return n

    def runs_left_in_year(self, name: str, now: dt.datetime) -> int:
        """The runs of job ``name`` left in the calendar year of ``now`` (in the schedule's
        zone), counting one for a run at ``now``: at least 1."""
        local = now.astimezone(self.zone)
        year_end = dt.datetime(local.year + 1, 1, 1, tzinfo=self.zone) - _SECOND
        return 1 + self.fires_between(name, now, year_end)

    def state(self, inv: Inventory) -> dict[str, dict[str, Any]]:
        """The ``daemon_runs`` rows, by job name."""
        return {r["job"]: r for r in inv.db.query("SELECT * FROM daemon_runs")}

    def due(self, inv: Inventory, now: dt.datetime) -> list[str]:
        """The jobs due at ``now`` (aware), in schedule order; first-seen jobs are recorded.

        A job first seen is covered up to ``now`` (committed) and not due.
        """
        runs = self.state(inv)
        due = []
        for name in self.crontabs:
            row = runs.get(name)
            if row is None or not row["covered_until"]:
                with inv.transaction():
                    inv.db["daemon_runs"].upsert({"job": name, "covered_until": iso(now)},
                                                 pk="job")
                continue
            nxt = self.next_fire(name, parse_iso(row["covered_until"]))
            if nxt is not None and nxt <= now:
                due.append(name)
        return due

    def next_runs(self, inv: Inventory, now: dt.datetime) -> dict[str, dt.datetime | None]:
        """Each job's next fire time after what is covered (or after ``now`` if never seen)."""
        runs = self.state(inv)
        out = {}
        for name in self.crontabs:
            row = runs.get(name)
            after = parse_iso(row["covered_until"]) if row and row["covered_until"] else now
            out[name] = self.next_fire(name, after)
        return out

    @staticmethod
    def started(inv: Inventory, name: str, now: dt.datetime) -> None:
        """Record that job ``name`` starts at ``now`` (committed before it runs)."""
        with inv.transaction():
            inv.db["daemon_runs"].upsert({"job": name, "started_at": iso(now), "ended_at": None,
                                          "outcome": "running"}, pk="job")

    @staticmethod
    def finished(inv: Inventory, name: str, ended: dt.datetime, outcome: str,
                 detail: Any = None, covered_until: dt.datetime | None = None) -> None:
        """Record how job ``name`` ended at ``ended``; move ``covered_until`` if given.

        The caller covers up to the time the run started, so a fire time
        that passed during a long run makes the job due again. A job that
        could not run (the home was busy) is not covered: it stays due and
        runs on the next look.
        """
        row = {"job": name, "ended_at": iso(ended), "outcome": outcome,
               "detail": None if detail is None else json.dumps(detail, ensure_ascii=False)}
        if covered_until is not None:
            row["covered_until"] = iso(covered_until)
        with inv.transaction():
            inv.db["daemon_runs"].upsert(row, pk="job")
