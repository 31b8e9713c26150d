"""Five simulated years of the daemon in seconds: the clock is moved, everything else is real.

time-machine moves the process's clock (datetime.now, date.today, time.time)
from 1 December 2026 to 1 December 2031, one day at a time; the daemon ticks
once a day at 10:00 Shanghai time and runs what its schedule makes due. Each
year on 1 December a new batch (the demo archive's 2024 collection records,
one_set_archive: one disc set of one disc) arrives in the intake folder. Virtual drives burn and read the media (files), the inventory is a
real SQLite file and the digests go to a local HTTP server. In March 2029
the daemon dies and comes back 26 days later, and from then on drive v1
reads 70 sectors of every disc slowly (a fault of the virtual drive): the
copies it burned (A) are flagged for an early re-burn at their next
inspection, and the flag is alerted.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import shutil
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, HTTPServer
from zoneinfo import ZoneInfo

import pytest

time_machine = pytest.importorskip("time_machine")

import config  # noqa: E402
from config.home import init_home  # noqa: E402
from daemon.log import EventLog  # noqa: E402
from daemon.service import Daemon  # noqa: E402
from inventory import eventlog  # noqa: E402
from inventory.store import Inventory  # noqa: E402
from manifests import signing  # noqa: E402

ZONE = ZoneInfo("Asia/Shanghai")
START = dt.datetime(2026, 12, 1, 10, 0, tzinfo=ZONE)
END = dt.datetime(2031, 12, 1, 10, 0, tzinfo=ZONE)
DOWN = (dt.date(2029, 3, 10), dt.date(2029, 4, 5))   # last day up, first day back
SLOW = list(range(100, 170))       # sectors v1 reads slowly once the daemon is back (70 > 64)


def local_date(iso_utc: str) -> dt.date:
    return dt.datetime.fromisoformat(iso_utc.replace("Z", "+00:00")).astimezone(ZONE).date()


@pytest.fixture
def webhook():
    calls: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            calls.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/", calls
    server.shutdown()
    server.server_close()


def make_home(tmp_path, url):
    home = init_home(tmp_path / "home")
    text = (home / config.CONFIG_NAME).read_text()
    text = text[:text.index("\n[[drives]]")]             # the drives below replace /dev/sr0
    text += f"""
[[drives]]
name = "v1"
adapter = "virtual"
media_dir = "media"
capacity_sectors = 2298496

[[drives]]
name = "v2"
adapter = "virtual"
media_dir = "media"
capacity_sectors = 2298496

[daemon]
timezone = "Asia/Shanghai"
sources = ["{tmp_path / 'incoming'}"]
intake = "0 6 * * mon"
settle_minutes = 0
deadline = "0 7 31 1 *"
due_check = "30 7 * * *"
inspection = "0 8 1 * *"
digest = "0 9 * * mon"

[lifecycle]
inspect_percent = 50

[alerts]
webhook_url = "{url}"
"""
    (home / config.CONFIG_NAME).write_text(text)
    (home / "media").mkdir()
    return home


@pytest.fixture
def fast_tmp(tmp_path):
    """A scratch folder in memory (tmpfs) when there is one: the years commit ~4,000
    transactions, and each commit's fsync on a disk would take most of the test's time."""
    import tempfile
    from pathlib import Path

    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="discarchive-years-", dir=shm))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_five_simulated_years(fast_tmp, one_set_archive, webhook):
    tmp_path = fast_tmp
    url, calls = webhook
    home = make_home(tmp_path, url)
    log = io.StringIO()
    ran: list[tuple[dt.date, str]] = []
    with time_machine.travel(START, tick=False) as clock:
        daemon = Daemon(config.load(home), log=EventLog(log, journal=False))
        day = START
        while day <= END:
            clock.move_to(day)
            if (day.month, day.day) == (12, 1):
                shutil.copytree(one_set_archive, tmp_path / "incoming" / str(day.year))
            if DOWN[0] < day.date() < DOWN[1]:
                daemon = None                          # down: nothing runs
            else:
                if daemon is None:                     # a new process starts; v1 has aged
                    text = (home / config.CONFIG_NAME).read_text().replace(
                        "capacity_sectors = 2298496\n\n[[drives]]",
                        f"capacity_sectors = 2298496\n\n[drives.faults]\nslow = {SLOW}\n\n"
                        "[[drives]]", 1)
                    (home / config.CONFIG_NAME).write_text(text)
                    daemon = Daemon(config.load(home), log=EventLog(log, journal=False))
                    assert daemon.cfg.drives[0]["faults"] == {"slow": SLOW}
                    back = daemon.tick()
                    ran += [(day.date(), j) for j in back]
                    # every job whose time passed while down runs once
                    assert back == {"intake": "ok", "due_check": "ok", "inspection": "ok",
                                    "digest": "ok"}
                else:
                    ran += [(day.date(), j) for j in daemon.tick()]
            day = (day + dt.timedelta(days=1)).replace(hour=10)

    inv = Inventory.open(home / "inventory.db")
    try:
        # the yearly deadline packed each year's batch: five sets of one disc, burned once each
        sets = list(inv.db.query("SELECT * FROM disc_sets ORDER BY created_at"))
        assert [local_date(s["created_at"]) for s in sets] == \
            [dt.date(y, 1, 31) for y in range(2027, 2032)]
        assert len({s["group_id"] for s in sets}) == 5 and {s["volumes"] for s in sets} == {1}
        batches = {r["path"]: r for r in inv.db.query("SELECT * FROM intake")}
        assert sorted(r["state"] for r in batches.values()) == ["archived"] * 5 + ["pending"]
        assert sorted(r["set_id"] for r in batches.values() if r["state"] == "archived") == \
            sorted(s["group_id"] for s in sets)          # the last one came on the last day
        assert {s["state"] for s in sets} == {"archived"}
        discs = inv.discs()
        assert len(discs) == 10
        burns = Counter(b[0] for b in inv.db.execute("SELECT disc_id FROM burns"))
        assert set(burns.values()) == {1}                 # no burn repeated
        assert [d for d, j in ran if j == "deadline"] == [dt.date(y, 1, 31)
                                                          for y in range(2027, 2032)]

        # inspections on the 1st of each month (and once on the day back), from the lifecycle's
        # pull list: at least half the discs each year, each recorded with its signals
        inspections = [d for d, j in ran if j == "inspection"]
        assert len(inspections) == 60 and dt.date(2029, 4, 5) in inspections
        rows = list(inv.db.query("SELECT * FROM inspections ORDER BY at, id"))
        done = log.getvalue().count("event=inspection.done")
        assert len(rows) == done > 0
        reads = Counter(e["disc_id"] for e in inv.events() if e["event_type"] == "fixity check")
        assert sum(reads.values()) == 10 + done           # each inspection one full read
        for year in range(2027, 2031):
            current = sum(1 for d in discs if local_date(d["burned_at"]).year <= year)
            inspected = {r["disc_id"] for r in rows if local_date(r["at"]).year == year}
            assert len(inspected) >= -(-current // 2), (year, inspected)
        first_set = [d["disc_id"] for d in discs if d["set_id"] == sets[0]["set_id"]]
        assert all(sum(r["disc_id"] == d for r in rows) >= 2 for d in first_set)

        # v1's slow sectors: each A copy inspected after the restart is flagged, none before,
        # no B copy; the flag is alerted once, with its reason
        by_disc = {d["disc_id"]: d for d in discs}
        after = {r["disc_id"] for r in rows if local_date(r["at"]) >= DOWN[1]}
        flagged = {d for d, row in by_disc.items() if row["reburn_reason"]}
        assert flagged and flagged == {d for d in after if by_disc[d]["copy_label"] == "A"}
        assert all(r["drive"] == "v1" and r["slow_sectors"] == len(SLOW) and r["flag"]
                   for r in rows if r["disc_id"] in flagged and local_date(r["at"]) >= DOWN[1])
        assert not any(r["flag"] for r in rows if local_date(r["at"]) < DOWN[1])
        early = {r["subject"]: r for r in inv.db.query(
            "SELECT * FROM alerts WHERE kind = 'reburn-early'")}
        assert set(early) == flagged
        assert all("70 slow sectors (more than 64)" in r["message"] for r in early.values())

        # re-burn alerts 90, 30 and 7 days before the due date and on the day, once each
        raised = {(r["subject"], r["threshold"]): r for r in inv.db.query(
            "SELECT * FROM alerts WHERE kind = 'reburn-due'")}
        expected = {}
        for d in discs:
            due = dt.date.fromisoformat(d["due_at"])
            for t, n in (("90d", 90), ("30d", 30), ("7d", 7), ("due", 0)):
                if due - dt.timedelta(days=n) <= END.date():
                    expected[(d["disc_id"], t)] = due - dt.timedelta(days=n)
        assert {k: local_date(r["raised_at"]) for k, r in raised.items()} == expected
        assert len(expected) == 8 + 2                     # the first set in full, the second at 90d
        other = list(inv.db.query("SELECT kind, subject FROM alerts WHERE kind NOT IN "
                                  "('reburn-due', 'reburn-early')"))
        assert other == []                                # no overdue inspection, no failure

        # the Monday digests carried every alert once, with its disc, place and due date
        sent = [a for call in calls for a in call["alerts"]]
        assert sorted(a["id"] for a in sent) == sorted(
            [r["id"] for r in raised.values()] + [r["id"] for r in early.values()])
        assert all(a["disc_id"] and a["location"] and a["due_at"] for a in sent)
        assert all(local_date(c["sent_at"]).weekday() == 0 for c in calls)

        # nothing ran twice on a day, and the signed log is whole
        assert not [k for k, n in Counter(ran).items() if n > 1]
        report = eventlog.audit(inv, signing.load_public_key(home / "keys" / "signing.pub"))
        assert report.ok, report.problems
    finally:
        inv.close()
