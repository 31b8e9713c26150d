"""kill -9 at any point leaves the inventory consistent, and the next run works."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def check_consistent(db_path: Path) -> dict[str, int]:
    """The inventory's invariants; returns a count of sets per state."""
    db = sqlite3.connect(db_path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    states: dict[str, int] = {}
    for set_id, state, file_count in db.execute("SELECT set_id, state, file_count FROM disc_sets"):
        states[state] = states.get(state, 0) + 1
        n_items = db.execute("SELECT count(*) FROM items WHERE set_id = ?", [set_id]).fetchone()[0]
        assert n_items == file_count, "a set was recorded without all its items"
        events = {r[0] for r in db.execute("SELECT event_type FROM events WHERE set_id = ?", [set_id])}
        assert {"capture", "message digest calculation"} <= events
        copies = db.execute("SELECT disc_id, state, verification FROM discs WHERE set_id = ?",
                            [set_id]).fetchall()
        if state == "archived":
            assert copies and all(s == "verified" and v == "passed" for _, s, v in copies)
        for disc_id, s, v in copies:
            checks = db.execute("SELECT outcome FROM events WHERE disc_id = ? AND "
                                "event_type = 'fixity check'", [disc_id]).fetchall()
            if s == "verified":
                assert ("success",) in checks, f"{disc_id} verified without a fixity check"
    orphans = db.execute("SELECT count(*) FROM items WHERE set_id NOT IN "
                         "(SELECT set_id FROM disc_sets)").fetchone()[0]
    assert orphans == 0
    return states


@pytest.mark.parametrize("delay", [0.3, 0.8, 1.3, 1.8, 2.5])
def test_kill_9_leaves_a_consistent_inventory(home, demo_archive, delay):
    cmd = [sys.executable, "-c", "import cli; cli.main()", "archive", "--home", str(home),
           str(demo_archive)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    time.sleep(delay)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    check_consistent(home / "inventory.db")
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    states = check_consistent(home / "inventory.db")
    assert states.get("archived", 0) >= 1


def test_kill_9_takes_a_running_burner_with_it(home, demo_archive, tmp_path):
    """After kill -9 no burner goes on writing a medium that no job will record."""
    import psutil
    pidfile = tmp_path / "burner.pid"
    fake = tmp_path / "xorriso"
    fake.write_text("#!/bin/sh\n"
                    f'case " $* " in *" -as cdrecord "*) echo $$ > {pidfile}; exec sleep 60 ;; esac\n'
                    'exec xorriso "$@"\n')
    fake.chmod(0o755)
    cfg = home / "discarchive.toml"
    cfg.write_text(cfg.read_text(encoding="utf-8").replace(
        "timeout = 3600", f'timeout = 3600\nxorriso = "{fake}"'), encoding="utf-8")
    cmd = [sys.executable, "-c", "import cli; cli.main()", "archive", "--home", str(home),
           str(demo_archive), "--copies", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline, "the burner never started"
        time.sleep(0.05)
    burner = int(pidfile.read_text())
    assert psutil.pid_exists(burner)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    while psutil.pid_exists(burner) and psutil.Process(burner).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the burner outlived discarchive"
        time.sleep(0.05)
    check_consistent(home / "inventory.db")
