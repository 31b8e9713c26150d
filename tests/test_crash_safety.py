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
