"""The daemon's schedule and jobs, driven by a fake clock: missed runs, DST, intake, stops."""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
from zoneinfo import ZoneInfo

import pytest

import config
from config import media_sectors
from config.home import locked
from daemon import service
from daemon.log import EventLog
from daemon.service import Daemon
from inventory import lifecycle as lc
from inventory.store import Inventory

BERLIN = ZoneInfo("Europe/Berlin")
UTC = dt.timezone.utc


def append_config(home, text: str) -> None:
    """Append TOML to the home's config."""
    with open(home / config.CONFIG_NAME, "a", encoding="utf-8") as f:
        f.write("\n" + text + "\n")


def configure(home, text: str) -> config.Config:
    """Append TOML to the home's config and load it."""
    append_config(home, text)
    return config.load(home)


class Clock:
    """A settable clock for the daemon."""

    def __init__(self, now: dt.datetime):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def make_daemon(cfg, now: dt.datetime):
    out = io.StringIO()
    clock = Clock(now)
    return Daemon(cfg, log=EventLog(out, journal=False), clock=clock), clock, out


def drive(daemon: Daemon, clock: Clock, start: dt.datetime, end: dt.datetime,
          step: dt.timedelta) -> list[tuple[dt.datetime, str]]:
    """Tick from start to end; return (time, job) for every job that ran."""
    ran, t = [], start
    while t <= end:
        clock.now = t
        ran += [(t, job) for job in daemon.tick(t)]
        t += step
    return ran


QUIET = """
[daemon]
timezone = "Europe/Berlin"
intake = "0 0 1 1 *"
deadline = "0 0 1 1 *"
inspection = "0 0 1 1 *"
digest = "0 0 1 1 *"
"""


def runs_of(inv_path, job):
    inv = Inventory.open(inv_path)
    try:
        return {r["job"]: r for r in inv.db.query("SELECT * FROM daemon_runs")}.get(job)
    finally:
        inv.close()


def test_a_job_first_seen_waits_for_its_time_then_runs_once_a_day(home):
    cfg = configure(home, QUIET + 'due_check = "30 6 * * *"\n')
    start = dt.datetime(2026, 5, 4, 8, 0, tzinfo=BERLIN)
    d, clock, _ = make_daemon(cfg, start)
    ran = drive(d, clock, start, start + dt.timedelta(days=3), dt.timedelta(minutes=30))
    assert [(t.astimezone(BERLIN).strftime("%m-%d %H:%M"), j) for t, j in ran] == [
        ("05-05 06:30", "due_check"), ("05-06 06:30", "due_check"),
        ("05-07 06:30", "due_check")]


def test_runs_missed_while_down_run_once_after_restart(home):
    cfg = configure(home, QUIET + 'due_check = "30 6 * * *"\n')
    start = dt.datetime(2026, 5, 4, 8, 0, tzinfo=BERLIN)
    d, clock, _ = make_daemon(cfg, start)
    assert d.tick(start) == {}                                 # first seen: nothing yet
    later = start + dt.timedelta(days=1)
    assert d.tick(later) == {"due_check": "ok"}
    # the daemon is down for 10 days (10 runs missed), then starts again
    back = later + dt.timedelta(days=10, hours=3)
    d2, clock2, _ = make_daemon(config.load(home), back)
    assert d2.tick(back) == {"due_check": "ok"}
    assert d2.tick(back + dt.timedelta(minutes=5)) == {}
    assert runs_of(cfg.inventory_path, "due_check")["covered_until"] == \
        back.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ran = drive(d2, clock2, back, back + dt.timedelta(days=1), dt.timedelta(hours=1))
    assert len(ran) == 1                                       # then daily again


def test_a_job_killed_while_running_runs_again_once(home, monkeypatch):
    cfg = configure(home, QUIET + 'due_check = "30 6 * * *"\n')
    start = dt.datetime(2026, 5, 4, 8, 0, tzinfo=BERLIN)
    d, _, _ = make_daemon(cfg, start)
    d.tick(start)

    def killed(*args):
        raise SystemExit(137)        # the process dies inside the job: nothing after it runs

    monkeypatch.setattr(Daemon, "job_due_check", killed)
    with pytest.raises(SystemExit):
        d.tick(start + dt.timedelta(days=1))
    row = runs_of(cfg.inventory_path, "due_check")
    assert row["outcome"] == "running" and row["covered_until"] == "2026-05-04T06:00:00Z"
    monkeypatch.undo()
    d2, _, _ = make_daemon(config.load(home), start)
    restart = start + dt.timedelta(days=1, hours=2)
    assert d2.tick(restart) == {"due_check": "ok"}
    assert d2.tick(restart + dt.timedelta(hours=1)) == {}


@pytest.mark.parametrize("day, expect", [
    # autumn: 02:00-03:00 happens twice on 25 October; the job runs once that night
    (dt.datetime(2026, 10, 24, 0, 0, tzinfo=UTC),
     ["10-24 02:30 +0200", "10-25 02:30 +0200", "10-26 02:30 +0100"]),
    # spring: 02:30 does not exist on 29 March; the job runs once, an hour later on the clock
    (dt.datetime(2026, 3, 28, 0, 0, tzinfo=UTC),
     ["03-28 02:30 +0100", "03-29 03:30 +0200", "03-30 02:30 +0200"]),
])
def test_daylight_saving_changes_neither_skip_nor_repeat_a_run(home, day, expect):
    cfg = configure(home, QUIET + 'due_check = "30 2 * * *"\n')
    d, clock, _ = make_daemon(cfg, day)
    ran = drive(d, clock, day, day + dt.timedelta(days=3), dt.timedelta(minutes=10))
    assert [t.astimezone(BERLIN).strftime("%m-%d %H:%M %z") for t, _ in ran] == expect


def test_a_time_zone_without_dst_counts_days_in_that_zone(home):
    cfg = configure(home, QUIET.replace("Europe/Berlin", "Asia/Shanghai")
                    + 'due_check = "0 1 * * *"\n')
    start = dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    d, clock, _ = make_daemon(cfg, start)
    ran = drive(d, clock, start, start + dt.timedelta(days=2), dt.timedelta(minutes=30))
    # 01:00 in Shanghai is 17:00 UTC the day before
    assert [t.strftime("%d %H:%M") for t, _ in ran] == ["01 17:00", "02 17:00"]


def test_a_retired_inspection_setting_says_what_replaced_it(home, run):
    append_config(home, '[daemon]\ninspection_share = 0.34\n')
    r = run("daemon", "--once")
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "inspection_share is no longer a [daemon] setting" in r.stderr
    assert "[lifecycle] inspect_percent" in r.stderr and "inspect_percent = 34" in r.stderr


def test_a_stall_limit_below_a_minute_is_refused(home, run):
    append_config(home, '[daemon]\nstall_seconds = 5\n')
    r = run("daemon", "--once")
    assert r.exit_code == 2 and "stall_seconds 60 or more" in r.stderr


def test_a_bad_schedule_or_zone_is_one_config_error(home, run):
    append_config(home, '[daemon]\ndue_check = "every day"\n')
    r = run("daemon", "--once")
    assert r.exit_code == 2
    assert "due_check = 'every day' is not a crontab line" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    text = (home / config.CONFIG_NAME).read_text().replace('due_check = "every day"',
                                                          'timezone = "Mars/Olympus"')
    (home / config.CONFIG_NAME).write_text(text)
    r = run("daemon", "--once")
    assert r.exit_code == 2 and "not a time zone name" in r.stderr


# -- intake and packing ------------------------------------------------------

def intake_home(home, tmp_path, archive, batches=("2024",)):
    """Each batch a copy of ``archive`` (one_set_archive: one set of one disc)."""
    incoming = tmp_path / "incoming"
    for name in batches:
        shutil.copytree(archive, incoming / name)
    cfg = configure(home, f"""
[daemon]
timezone = "Asia/Shanghai"
sources = ["{incoming}"]
intake = "0 * * * *"
settle_minutes = 0
deadline = "0 7 31 1 *"
due_check = "0 0 1 1 *"
inspection = "0 0 1 1 *"
digest = "0 0 1 1 *"
""")
    return cfg, incoming


def set_count(cfg) -> int:
    """How many images (``disc_sets`` rows) the inventory holds."""
    inv = Inventory.open(cfg.inventory_path)
    try:
        return inv.db.execute("SELECT count(*) FROM disc_sets").fetchone()[0]
    finally:
        inv.close()


def intake_rows(cfg) -> dict:
    inv = Inventory.open(cfg.inventory_path)
    try:
        return {r["path"]: r for r in inv.db.query("SELECT * FROM intake")}
    finally:
        inv.close()


SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_intake_waits_for_a_full_medium_or_the_deadline_and_packs_once(
        home, tmp_path, demo_archive):
    """The demo archive as one batch: the deadline packs it once, as all the sets it makes."""
    cfg, incoming = intake_home(home, tmp_path, demo_archive)
    start = dt.datetime(2025, 1, 30, 12, 0, tzinfo=SHANGHAI)
    d, clock, log = make_daemon(cfg, start)
    d.tick(start)
    (first,) = [line for line in log.getvalue().splitlines() if "schedule.first_start" in line]
    assert "counted as done up to now" in first and "deadline 2025-01-30T23:00:00Z" in first, \
        "the first start says it runs nothing missed, and when each job runs next"
    assert d.tick(start + dt.timedelta(hours=1)) == {"intake": "ok"}
    (row,) = intake_rows(cfg).values()
    assert row["state"] == "pending" and row["files"] > 0 and row["bytes"] > 0
    assert set_count(cfg) == 0            # far from 90 % of a DVD-R: it waits, and says why
    share = 100 * row["bytes"] / (media_sectors(cfg.media) * 2048)
    assert (f'why="waiting: {share:.0f} % of a {cfg.media}, packs at 90 % or at the deadline '
            f'2025-01-31"') in log.getvalue()
    assert log.getvalue().count("schedule.first_start") == 1
    at_deadline = dt.datetime(2025, 1, 31, 7, 0, tzinfo=SHANGHAI)
    assert d.tick(at_deadline) == {"intake": "ok", "deadline": "ok"}
    (row,) = intake_rows(cfg).values()
    inv = Inventory.open(cfg.inventory_path)
    made = list(inv.db.query("SELECT * FROM disc_sets ORDER BY set_id"))
    groups = sorted({s["group_id"] for s in made})
    assert len(groups) == 4 and len(made) == 4       # 2024 and 2025, 收 and 支: a disc each
    assert row["state"] == "archived" and sorted(row["set_id"].split(",")) == groups
    for group in row["set_id"].split(","):
        for s in inv.group(group):
            assert s["state"] == "archived" and s["source"] == row["path"]
            assert [c["state"] for c in inv.copies(s["set_id"])] == ["verified", "verified"]
    inv.close()
    assert f"event=pack.done batch={row['path']} set_id={row['set_id']}" in log.getvalue()
    # later looks leave an archived batch alone
    assert d.tick(at_deadline + dt.timedelta(hours=1)) == {"intake": "ok"}
    assert set_count(cfg) == 4


def test_a_full_batch_is_packed_at_the_next_look(home, tmp_path, one_set_archive):
    cfg, _ = intake_home(home, tmp_path, one_set_archive)
    cfg.daemon.fill_share = 1e-6      # the demo archive fills this share of a DVD-R
    start = dt.datetime(2025, 6, 1, 12, 0, tzinfo=SHANGHAI)
    d, _, _ = make_daemon(cfg, start)
    d.tick(start)
    assert d.tick(start + dt.timedelta(hours=1)) == {"intake": "ok"}
    assert set_count(cfg) == 1


def test_a_batch_being_written_is_left_until_it_settles(home, tmp_path, one_set_archive):
    cfg, _ = intake_home(home, tmp_path, one_set_archive)
    cfg.daemon.settle_minutes = 60
    now = dt.datetime.now(UTC)
    d, _, log = make_daemon(cfg, now)
    d.tick(now)
    inv = Inventory.open(cfg.inventory_path)
    try:
        d.job_deadline(inv, cfg, now)                          # files changed just now
        assert set_count(cfg) == 0
        d.job_deadline(inv, cfg, now + dt.timedelta(minutes=61))
        assert set_count(cfg) == 1
    finally:
        inv.close()


def _packed_at_the_deadline(home, tmp_path, archive):
    """A daemon home whose one intake batch was packed at the 2025 deadline.

    Returns (config, the batch's path, the daemon's start time)."""
    cfg, _ = intake_home(home, tmp_path, archive)
    start = dt.datetime(2025, 1, 31, 6, 0, tzinfo=SHANGHAI)
    d, _, _ = make_daemon(cfg, start)
    d.tick(start)
    d.tick(start + dt.timedelta(hours=1))                     # deadline: packed
    (path,) = intake_rows(cfg)
    return cfg, path, start


def _restarted_after_a_killed_packing(home, cfg, path, start):
    """Mark batch ``path`` as still packing (the daemon died in the main job), start a new
    daemon and run the deadline job a day later. Returns (the batch's row, the new log)."""
    inv = Inventory.open(cfg.inventory_path)
    with inv.transaction():
        inv.db["intake"].update(path, {"state": "packing", "set_id": None})
    inv.close()
    d2, _, log2 = make_daemon(config.load(home), start)
    inv = Inventory.open(cfg.inventory_path)
    d2.job_deadline(inv, d2.cfg, start + dt.timedelta(days=1))
    inv.close()
    return intake_rows(cfg)[path], log2


def test_packing_killed_after_the_set_was_recorded_burns_nothing_again(
        home, tmp_path, one_set_archive):
    cfg, path, start = _packed_at_the_deadline(home, tmp_path, one_set_archive)
    inv = Inventory.open(cfg.inventory_path)
    burns = inv.db.execute("SELECT count(*) FROM burns").fetchone()[0]
    inv.close()
    row, log2 = _restarted_after_a_killed_packing(home, cfg, path, start)
    inv = Inventory.open(cfg.inventory_path)
    (s,) = inv.db.query("SELECT * FROM disc_sets")
    assert row["state"] == "archived" and row["set_id"] == s["group_id"]
    assert inv.db.execute("SELECT count(*) FROM burns").fetchone()[0] == burns
    inv.close()
    assert set_count(cfg) == 1
    assert "event=intake.interrupted" in log2.getvalue()


def test_an_interrupted_batch_that_cannot_be_finished_names_the_disc_to_burn(
        home, tmp_path, one_set_archive):
    cfg, path, start = _packed_at_the_deadline(home, tmp_path, one_set_archive)
    inv = Inventory.open(cfg.inventory_path)
    (image,) = inv.db.query("SELECT * FROM disc_sets")
    copy = inv.copies(image["set_id"])[1]["disc_id"]
    # as if killed while packing, with copy B failed and the image no longer kept
    inv.update_disc(copy, state="failed", failure="no blank medium")
    inv.update_set(image["set_id"], state="failed", image_path=None)
    inv.close()
    row, log2 = _restarted_after_a_killed_packing(home, cfg, path, start)
    assert row["state"] == "failed" and row["set_id"] == image["group_id"]
    assert row["detail"] == f"a copy failed: burn it with `discarchive burn {image['set_id']}`"
    assert f"event=recover.no_burn set_id={image['set_id']}" in log2.getvalue()
    assert set_count(cfg) == 1                               # not packed again meanwhile


def test_packing_killed_before_anything_was_recorded_packs_again(home, tmp_path,
                                                                 one_set_archive):
    cfg, _ = intake_home(home, tmp_path, one_set_archive)
    start = dt.datetime(2025, 1, 30, 6, 0, tzinfo=SHANGHAI)
    d, _, _ = make_daemon(cfg, start)
    d.tick(start)
    d.tick(start + dt.timedelta(hours=1))                     # scanned, pending
    (path,) = intake_rows(cfg)
    inv = Inventory.open(cfg.inventory_path)
    with inv.transaction():
        inv.db["intake"].update(path, {"state": "packing"})
    inv.close()
    d.tick(dt.datetime(2025, 1, 31, 7, 0, tzinfo=SHANGHAI))   # deadline
    assert intake_rows(cfg)[path]["state"] == "archived"
    assert set_count(cfg) == 1


def test_packing_killed_between_two_sets_recorded_finishes_the_first_and_makes_the_rest(
        home, tmp_path, demo_archive, monkeypatch):
    """A run records each set's images in its own transaction, all before the first burn:
    killed after the first set was recorded, the next start burns that set's images, then
    packs the batch again, which makes the sets never recorded and nothing twice."""
    cfg, _ = intake_home(home, tmp_path, demo_archive)
    start = dt.datetime(2025, 1, 31, 6, 0, tzinfo=SHANGHAI)
    d, _, _ = make_daemon(cfg, start)
    d.tick(start)
    real = Inventory.record_sets
    calls = []

    def killed_after_the_first_set(self, sets):
        if calls:
            raise SystemExit(137)     # the process dies here: nothing after it runs
        calls.append([row["set_id"] for row, _, _ in sets])
        return real(self, sets)

    monkeypatch.setattr(Inventory, "record_sets", killed_after_the_first_set)
    with pytest.raises(SystemExit):
        d.tick(start + dt.timedelta(hours=1))                 # the deadline
    monkeypatch.undo()
    (path,) = intake_rows(cfg)
    assert intake_rows(cfg)[path]["state"] == "packing"
    inv = Inventory.open(cfg.inventory_path)
    assert [s["set_id"] for s in inv.db.query("SELECT * FROM disc_sets")] == calls[0]
    assert inv.db.execute("SELECT count(*) FROM burns").fetchone()[0] == 0
    inv.close()
    d2, _, log2 = make_daemon(config.load(home), start)
    inv = Inventory.open(cfg.inventory_path)
    d2.job_deadline(inv, d2.cfg, start + dt.timedelta(days=1))
    inv.close()
    assert f"event=intake.interrupted batch={path} state=interrupted set_id=" \
        f"{','.join(calls[0])}" in log2.getvalue()
    row = intake_rows(cfg)[path]
    inv = Inventory.open(cfg.inventory_path)
    try:
        made = list(inv.db.query("SELECT * FROM disc_sets ORDER BY created_at"))
        assert [s["set_id"] for s in made][:len(calls[0])] == calls[0]
        assert len({s["group_id"] for s in made}) == 4 and len(made) == 4
        assert row["state"] == "archived" and row["set_id"] == ",".join(
            dict.fromkeys(s["group_id"] for s in made))
        assert {s["state"] for s in made} == {"archived"}
        # every file of the batch is on exactly one disc, each copy burned once
        on_discs = [r[0] for r in inv.db.execute("SELECT path FROM items")]
        files = [p for p in (tmp_path / "incoming" / "2024").rglob("*") if p.is_file()]
        assert len(on_discs) == len(set(on_discs)) == len(files)
        burns = [r[0] for r in inv.db.execute("SELECT disc_id FROM burns")]
        assert len(burns) == len(set(burns)) == 2 * len(made)
    finally:
        inv.close()


def test_a_stop_finishes_the_current_batch_and_leaves_the_rest_for_the_next_start(
        home, tmp_path, one_set_archive, monkeypatch):
    cfg, _ = intake_home(home, tmp_path, one_set_archive, batches=("2023", "2024"))
    start = dt.datetime(2025, 1, 31, 6, 0, tzinfo=SHANGHAI)
    d, _, log = make_daemon(cfg, start)
    d.tick(start)
    real_pack = Daemon._pack

    def pack_then_sigterm(self, *args):
        real_pack(self, *args)
        self.request_stop()          # what the SIGTERM handler does

    monkeypatch.setattr(Daemon, "_pack", pack_then_sigterm)
    assert d.tick(start + dt.timedelta(hours=1)) == {"intake": "ok", "deadline": "stopped"}
    states = sorted(r["state"] for r in intake_rows(cfg).values())
    assert states == ["archived", "pending"] and set_count(cfg) == 1
    assert runs_of(cfg.inventory_path, "deadline")["outcome"] == "stopped"
    monkeypatch.undo()
    d2, _, _ = make_daemon(config.load(home), start)
    assert d2.tick(start + dt.timedelta(hours=2))["deadline"] == "ok"    # once, after restart
    assert sorted(r["state"] for r in intake_rows(cfg).values()) == ["archived", "archived"]
    assert set_count(cfg) == 2


def test_a_busy_home_leaves_the_job_due_for_the_next_look(home, tmp_path, one_set_archive):
    cfg, _ = intake_home(home, tmp_path, one_set_archive)
    start = dt.datetime(2025, 1, 31, 6, 0, tzinfo=SHANGHAI)
    d, _, log = make_daemon(cfg, start)
    d.tick(start)
    with locked(home):                 # a clerk's `discarchive archive` runs
        assert d.tick(start + dt.timedelta(hours=1, minutes=5))["deadline"] == "busy"
    assert intake_rows(cfg) and all(r["state"] == "pending" for r in intake_rows(cfg).values())
    assert d.tick(start + dt.timedelta(hours=1, minutes=10)) == {"deadline": "ok"}
    assert set_count(cfg) == 1


# -- inspections -------------------------------------------------------------

def test_inspection_spreads_the_lifecycle_pull_list_over_the_runs_left_in_the_year(
        home, run, one_set_archive, tmp_path):
    cfg = configure(home, QUIET.replace('inspection = "0 0 1 1 *"', 'inspection = "0 9 1 * *"')
                    + 'due_check = "0 0 1 1 *"\n\n[lifecycle]\ninspect_percent = 100\n')
    for n in range(3):               # three deliveries: three sets of one disc, two copies each
        shutil.copytree(one_set_archive, tmp_path / f"delivery-{n}")
        assert run("archive", str(tmp_path / f"delivery-{n}")).exit_code == 0
    year = dt.date.today().year + 1
    inv = Inventory.open(cfg.inventory_path)
    ids = sorted(r["disc_id"] for r in inv.discs())
    assert len(ids) == 6
    oldest = ids[3]
    inv.update_disc(oldest, inspected_at="2020-01-01T00:00:00Z")
    inv.close()
    start = dt.datetime(year, 5, 31, 12, 0, tzinfo=BERLIN)
    d, _, log = make_daemon(cfg, start)
    d.tick(start)

    def inspected() -> dict[str, list[str]]:
        inv = Inventory.open(cfg.inventory_path)
        try:
            return {i: [r["at"][:10] for r in lc.inspections(inv, i)] for i in ids}
        finally:
            inv.close()

    # 100 % a year, 6 discs, 7 runs left (June to December): one now, the least recently
    # checked; each inspection is recorded with its signals and the disc's inspected_at
    assert d.tick(dt.datetime(year, 6, 1, 9, 0, tzinfo=BERLIN)) == {"inspection": "ok"}
    assert {i: v for i, v in inspected().items() if v} == {oldest: [f"{year}-06-01"]}
    assert f"event=inspection.done disc_id={oldest} outcome=passed" in log.getvalue()
    assert runs_of(cfg.inventory_path, "inspection")["detail"] == json.dumps(
        {"listed": 6, "runs_left": 7, "selected": 1, "checked": 1, "failed": 0, "flagged": 0})
    # skip to November: 5 left for 2 runs: 3 now, 2 in December; all six once this year
    assert d.tick(dt.datetime(year, 11, 1, 9, 0, tzinfo=BERLIN)) == {"inspection": "ok"}
    assert sum(len(v) for v in inspected().values()) == 4
    assert d.tick(dt.datetime(year, 12, 1, 9, 0, tzinfo=BERLIN)) == {"inspection": "ok"}
    assert all(len(v) == 1 for v in inspected().values())
    # the year's list is done: the next year starts a new one
    assert d.tick(dt.datetime(year + 1, 1, 1, 9, 0, tzinfo=BERLIN))["inspection"] == "ok"
    assert sum(len(v) for v in inspected().values()) == 7
    inv = Inventory.open(cfg.inventory_path)
    n = inv.db.execute("SELECT count(*) FROM events WHERE event_type = 'validation'").fetchone()
    inv.close()
    assert n[0] == 7


def test_the_daemon_holds_no_job_lock_while_idle(home):
    cfg = configure(home, QUIET + 'due_check = "30 6 * * *"\n')
    d, _, _ = make_daemon(cfg, dt.datetime(2026, 1, 1, tzinfo=UTC))
    with service.pid_lock(home):
        d.tick(dt.datetime(2026, 1, 2, tzinfo=UTC))
        with locked(home):             # a clerk's command can take the job lock
            pass


def test_a_second_daemon_lock_names_the_first_pid(home):
    import os
    with service.pid_lock(home):
        with pytest.raises(service.DaemonRunning, match=f"PID {os.getpid()}"):
            with service.pid_lock(home):
                pass


def test_a_disc_superseded_while_the_inspection_runs_is_skipped(home, run, one_set_archive,
                                                                monkeypatch):
    from daemon import lifecycle as lifecycle_jobs

    cfg = configure(home, QUIET + 'due_check = "0 0 1 1 *"\n\n[lifecycle]\n'
                    'inspect_percent = 100\n')
    assert run("archive", str(one_set_archive)).exit_code == 0      # two copies of one disc
    real = lifecycle_jobs.inspect
    seen = []

    def clerk_reburns_the_other(cfg, disc_id, reporter=None, now=None, log=None):
        if not seen:                 # meanwhile a clerk's re-burn supersedes the other copy
            inv = Inventory.open(cfg.inventory_path)
            other = next(r["disc_id"] for r in inv.discs() if r["disc_id"] != disc_id)
            inv.update_disc(other, state="superseded")
            inv.close()
        seen.append(disc_id)
        return real(cfg, disc_id, reporter, now, log)

    monkeypatch.setattr(lifecycle_jobs, "inspect", clerk_reburns_the_other)
    d, _, log = make_daemon(cfg, dt.datetime.now(UTC))
    inv = Inventory.open(cfg.inventory_path)
    result = d.job_inspection(inv, cfg, dt.datetime.now(UTC))
    inv.close()
    assert len(seen) == 2 and result["checked"] == 1
    assert f"event=inspection.skipped disc_id={seen[1]}" in log.getvalue()
    assert "is superseded: only verified or damaged copies are inspected" in log.getvalue()
