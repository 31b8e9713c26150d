"""The daemon as a process: sd_notify over a real datagram socket, one instance, signals."""

from __future__ import annotations

import os
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
