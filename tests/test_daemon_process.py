"""The daemon as a process: sd_notify over a real datagram socket, one instance, signals."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from config.home import locked
from daemon.notify import Notifier, watchdog_seconds

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def notify_socket(tmp_path):
    """A bound AF_UNIX datagram socket standing in for systemd's notify socket."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(20)
    yield sock, str(path)
    sock.close()


def receive_until(sock, wanted: str, seen: list[str]) -> dict[str, str]:
    """Read messages until one holds ``wanted`` (KEY=VALUE); returns it as a dict."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = sock.recv(4096).decode()
        seen.append(text)
        fields = dict(line.split("=", 1) for line in text.splitlines())
        if wanted in text.splitlines():
            return fields
    raise AssertionError(f"no {wanted} in {seen}")


def start_daemon(home, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    env.pop("JOURNAL_STREAM", None)
    return subprocess.Popen([sys.executable, "-c", "import cli; cli.main()", "daemon",
                             "--home", str(home)], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_notifier_sends_datagrams_to_the_socket(notify_socket, monkeypatch):
    sock, path = notify_socket
    n = Notifier(path)
    assert n.ready("idle") and n.status("packing 2024\nsecond line") and n.watchdog()
    assert sock.recv(4096) == b"READY=1\nSTATUS=idle"
    assert sock.recv(4096) == b"STATUS=packing 2024 second line"
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert not Notifier("").send(READY=1)          # not under systemd: nothing to tell
    assert not Notifier(str(path) + ".gone").ready()   # systemd gone: the daemon goes on
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_seconds() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert watchdog_seconds() is None


def test_abstract_socket_names_are_understood(monkeypatch):
    name = f"discarchive-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert Notifier().ready()
        assert sock.recv(100) == b"READY=1"
    finally:
        sock.close()


def test_the_daemon_runs_under_a_notify_socket_alone_reloads_and_stops(home, notify_socket):
    sock, path = notify_socket
    seen: list[str] = []
    first = start_daemon(home, {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
    try:
        ready = receive_until(sock, "READY=1", seen)
        assert ready["STATUS"] == "idle"
        receive_until(sock, "WATCHDOG=1", seen)          # every WATCHDOG_USEC / 2
        # a second daemon on the same home is refused, naming the first
        second = subprocess.run([sys.executable, "-c", "import cli; cli.main()", "daemon",
                                 "--home", str(home)], cwd=ROOT, capture_output=True, text=True,
                                timeout=60)
        assert second.returncode == 2
        assert second.stderr.startswith("discarchive: error: a discarchive daemon "
                                         f"(PID {first.pid}) is already running")
        assert len(second.stderr.strip().splitlines()) == 1
        # idle, it holds no job lock: a clerk's command can run
        with locked(home):
            pass
        # SIGHUP: the configuration is read again
        with open(home / "discarchive.toml", "a") as f:
            f.write('\n[daemon]\ntimezone = "Asia/Shanghai"\n')
        first.send_signal(signal.SIGHUP)
        receive_until(sock, "RELOADING=1", seen)
        receive_until(sock, "READY=1", seen)
        # SIGTERM: it stops, saying so
        first.send_signal(signal.SIGTERM)
        receive_until(sock, "STOPPING=1", seen)
        out, err = first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0
    events = [line.split(" ")[2] for line in err.splitlines()]
    assert events[0] == "event=daemon.started" and events[-1] == "event=daemon.stopped"
    assert "event=config.reloaded" in events
    assert "timezone=Asia/Shanghai" in next(l for l in err.splitlines() if "config.reloaded" in l)
    assert all(line.startswith("at=") and " level=" in line for line in err.splitlines())
    assert out == ""


def test_a_bad_reload_keeps_the_old_configuration(home, notify_socket):
    sock, path = notify_socket
    seen: list[str] = []
    proc = start_daemon(home, {"NOTIFY_SOCKET": path})
    try:
        receive_until(sock, "READY=1", seen)
        with open(home / "discarchive.toml", "a") as f:
            f.write('\n[daemon]\ndigest = "whenever"\n')
        proc.send_signal(signal.SIGHUP)
        msg = receive_until(sock, "READY=1", seen)
        assert "reload failed" in msg["STATUS"]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert "event=config.reload_failed" in err and "not a crontab line" in err


# -- kill -9 at any step of packing, then a restart ---------------------------

KILL_WHEN = {
    "set recorded": "SELECT count(*) FROM disc_sets",
    "burning": "SELECT count(*) FROM burns WHERE ended_at IS NULL",
    "one copy burned": "SELECT count(*) FROM burns WHERE outcome = 'success'",
    # a two-disc set: both copies of its first disc burned (images are burned one by one)
    "one disc of two burned": "SELECT count(*) >= 2 FROM burns WHERE outcome = 'success'",
}


def two_disc_medium(home, batch) -> str:
    """A ``custom:N`` medium on which ``batch`` (records and a large non-record file) makes
    one set of two discs: the smallest that holds the large file alone, so it goes on a
    disc of its own after the records' disc (manifests.plan)."""
    import config
    from daemon import jobs
    from manifests.catalog import ScanError

    cfg = config.load(home)
    bulk = -(-(batch / "2024" / "scan-bulk.tif").stat().st_size // 2048)
    for n in range(bulk, bulk + 2048, 8):
        try:
            plan = jobs.plan(cfg, batch, f"custom:{n}")
        except (jobs.JobError, ScanError):
            continue                    # too small for the large file alone
        assert [len(s.discs) for s in plan.sets] == [2], "the records fit beside the file"
        return f"custom:{n}"
    raise AssertionError("no custom medium splits the batch in two discs")


@pytest.mark.parametrize("step", list(KILL_WHEN))
def test_kill_9_while_packing_then_restart_finishes_the_set_and_repeats_no_burn(
        home, tmp_path, one_set_archive, step):
    import sqlite3

    from inventory.store import Inventory

    batch = tmp_path / "incoming" / "2024"
    shutil.copytree(one_set_archive, batch)
    # a large file, so that each step lasts long enough to be killed in
    (batch / "2024" / "scan-bulk.tif").write_bytes(os.urandom(48 << 20))
    discs = 2 if step == "one disc of two burned" else 1
    if discs == 2:
        text = (home / "discarchive.toml").read_text()
        assert '\nmedia = "dvd-r"\n' in text
        (home / "discarchive.toml").write_text(text.replace(
            '\nmedia = "dvd-r"\n', f'\nmedia = "{two_disc_medium(home, batch)}"\n', 1))
    with open(home / "discarchive.toml", "a") as f:
        f.write(f'\n[daemon]\ntimezone = "UTC"\nsources = ["{tmp_path / "incoming"}"]\n'
                'settle_minutes = 0\ndeadline = "* * * * *"\n')
    inv = Inventory.open(home / "inventory.db")
    with inv.transaction():      # the deadline passed while the daemon was down
        for job in ("intake", "deadline", "due_check", "inspection", "digest"):
            inv.db["daemon_runs"].upsert({"job": job, "covered_until": "2026-01-01T00:00:00Z"
                                          if job == "deadline" else "2099-01-01T00:00:00Z"},
                                         pk="job")
    inv.close()
    cmd = [sys.executable, "-c", "import cli; cli.main()", "daemon", "--once", "--home", str(home)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = sqlite3.connect(f"file:{home / 'inventory.db'}?mode=ro", uri=True, timeout=10)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if db.execute(KILL_WHEN[step]).fetchone()[0]:
                    break
            except sqlite3.OperationalError:
                pass              # the table is being written: look again
            time.sleep(0.001)
        assert proc.poll() is None, f"the daemon ended before the step {step!r}"
        proc.kill()               # kill -9
        proc.wait()
    finally:
        db.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    inv = Inventory.open(home / "inventory.db")
    burns_at_kill = list(inv.db.query("SELECT * FROM burns ORDER BY id"))
    images_at_kill = {r["set_id"]: r["state"] for r in inv.db.query("SELECT * FROM disc_sets")}
    inv.close()
    if discs == 2:                # every image recorded before the first burn; the first
        first, second = sorted(images_at_kill)  # disc's copies burned, the second not archived
        assert {b["disc_id"] for b in burns_at_kill if b["outcome"] == "success"} >= {
            f"{first}-A", f"{first}-B"}
        assert images_at_kill[second] != "archived"
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "event=intake.interrupted" in again.stderr
    for image in images_at_kill:         # each image recorded at the kill is finished
        assert f"event=recover.done set_id={image} state=archived" in again.stderr
    inv = Inventory.open(home / "inventory.db")
    try:
        images = list(inv.db.query("SELECT * FROM disc_sets ORDER BY set_id"))
        assert len(images) == discs and len({s["group_id"] for s in images}) == 1
        assert [(s["volume"], s["volumes"]) for s in images] == [
            (k, discs) for k in range(1, discs + 1)]
        assert set(images_at_kill) <= {s["set_id"] for s in images}
        for s in images:
            assert s["state"] == "archived"
            copies = inv.copies(s["set_id"])
            assert [c["state"] for c in copies] == ["verified", "verified"]
            for c in copies:
                before = [b for b in burns_at_kill if b["disc_id"] == c["disc_id"]]
                after = inv.burns(c["disc_id"])
                assert after[:len(before)] == before                # history kept as it was
                if any(b["outcome"] == "success" for b in before):
                    assert len(after) == len(before)          # a finished burn is not repeated
                # at most one medium written well per copy: a burn cut short whose medium
                # reads back good is kept; otherwise one new burn
                assert sum(b["outcome"] == "success" for b in after) <= 1
                assert len(after) <= len(before) + 1
        (row,) = inv.db.query("SELECT * FROM intake")
        assert row["state"] == "archived" and row["set_id"] == images[0]["group_id"]
    finally:
        inv.close()


def test_the_watchdog_is_told_only_while_the_job_makes_progress(home, notify_socket,
                                                                 monkeypatch):
    """A job that hangs (no progress callbacks) stops the WATCHDOG=1 pings once its silence
    is longer than stall_seconds, or a drive's own timeout and a minute; progress resumes them."""
    import datetime as dt
    import io
    import threading

    import config
    from daemon.log import EventLog
    from daemon.notify import Notifier
    from daemon.service import Daemon, DaemonReporter
    from tests.test_daemon import QUIET, configure

    sock, path = notify_socket
    sock.settimeout(0.5)
    cfg = configure(home, QUIET + 'due_check = "30 6 * * *"\n')
    assert cfg.daemon.stall_seconds == 900
    log = io.StringIO()
    d = Daemon(cfg, log=EventLog(log, journal=False), notifier=Notifier(path))
    clock = [1000.0]
    d.monotonic = lambda: clock[0]
    for spec in cfg.drives:
        spec["timeout"] = 0                      # 0: the drive never stops its program itself
    assert d.stall_seconds() == 900
    cfg.drives[0]["timeout"] = 1200              # the drive stops a hung program itself first
    assert d.stall_seconds() == 1260

    def messages() -> list[str]:
        out = []
        try:
            while True:
                out.append(sock.recv(4096).decode())
        except socket.timeout:
            return out

    reporting, release = threading.Event(), threading.Event()
    callbacks = []

    def hanging_job(self, inv, cfg, now):
        callbacks.append(DaemonReporter(self, "reading").progress("read back"))
        callbacks[0](1, 10)
        reporting.set()
        release.wait(30)                         # hangs: no more progress until released
        return {}

    monkeypatch.setattr(Daemon, "job_due_check", hanging_job)
    start = dt.datetime(2026, 5, 4, 8, 0, tzinfo=dt.timezone.utc)
    d.tick(start)
    worker = threading.Thread(target=d.tick, args=(start + dt.timedelta(days=1),))
    worker.start()
    try:
        assert reporting.wait(30)
        messages()
        assert d.watchdog_ping() and messages() == ["WATCHDOG=1"]
        clock[0] += 1260                         # silent, but within the drive's timeout
        assert d.watchdog_ping() and messages() == ["WATCHDOG=1"]
        clock[0] += 1                            # hung: no ping; systemd will restart it
        assert not d.watchdog_ping()
        (status,) = messages()
        assert status.startswith("STATUS=due_check: no progress for 1261 s")
        assert not d.watchdog_ping() and messages() == []
        assert log.getvalue().count("event=watchdog.withheld") == 1
        assert "job=due_check seconds=1261 limit=1260" in log.getvalue()
        callbacks[0](2, 10)                      # the read goes on
        assert d.watchdog_ping() and messages() == ["WATCHDOG=1"]
        assert "event=watchdog.resumed job=due_check" in log.getvalue()
    finally:
        release.set()
        worker.join(30)
    clock[0] += 100_000                          # idle: alive however long nothing runs
    messages()
    assert d.watchdog_ping() and messages() == ["WATCHDOG=1"]


def test_signals_at_any_moment_of_the_main_loop_never_hang_it(home, notify_socket):
    """Many SIGHUPs while the loop turns every millisecond (a watchdog ping each time): each is
    acted on, and SIGTERM still stops the daemon. A handler that took a lock the main
    thread may hold (an Event's) would hang it now and then."""
    import threading

    sock, path = notify_socket
    seen: list[str] = []
    proc = start_daemon(home, {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000"})
    done = threading.Event()

    def systemd_reads():                 # as systemd does: the daemon's sends never block
        sock.settimeout(0.1)
        while not done.is_set():
            try:
                seen.append(sock.recv(4096).decode())
            except socket.timeout:
                pass

    reader = threading.Thread(target=systemd_reads)
    try:
        receive_until(sock, "READY=1", seen)
        reader.start()
        for _ in range(300):
            proc.send_signal(signal.SIGHUP)
            time.sleep(0.002)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        done.set()
        if reader.is_alive():
            reader.join()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert err.count("event=config.reloaded") >= 1 and "event=daemon.stopped" in err
    assert sum(m.startswith("RELOADING=1") for m in seen) == err.count("event=config.reloaded")
