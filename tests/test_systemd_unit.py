"""systemd/discarchive.service: `systemd-analyze verify` is clean and its security rating <= 2.5."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "discarchive.service"
INSTALLED = "/opt/discarchive/bin/discarchive"

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze is not installed (Debian: systemd)")


def settings() -> dict[str, list[str]]:
    """The unit's [Service] settings, each with every value it is given."""
    out: dict[str, list[str]] = {}
    section = None
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif line and not line.startswith("#") and section == "[Service]":
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_the_unit_asks_for_what_the_daemon_does():
    s = settings()
    assert s["Type"] == ["notify"] and s["Restart"] == ["on-failure"]
    assert s["ExecStart"] == [f"{INSTALLED} daemon"]
    assert s["SupplementaryGroups"] == ["cdrom"] and s["User"] == ["discarchive"]
    assert s["StateDirectory"] == ["discarchive"]
    assert s["ConfigurationDirectory"] == ["discarchive"]
    assert s["Environment"] == ["DISCARCHIVE_HOME=/var/lib/discarchive"]
    assert "WatchdogSec" in s and s["DeviceAllow"] == ["block-sr rw"]
    for key, value in [("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                       ("PrivateTmp", "yes"), ("NoNewPrivileges", "yes"),
                       ("CapabilityBoundingSet", "")]:
        assert s[key] == [value], key
    assert s["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert "@system-service" in s["SystemCallFilter"]
    # exit status 2 (bad configuration, a second daemon) is not worth restarting
    assert s["RestartPreventExitStatus"] == ["2"]


@needs_analyze
def test_systemd_analyze_verify_is_clean(tmp_path):
    # the unit as shipped, with ExecStart pointing at this checkout's discarchive
    # instead of the installed one (verify checks that the program exists)
    program = shutil.which("discarchive", path=str(Path(sys.executable).parent))
    assert program, "discarchive is not installed in this virtual environment"
    text = UNIT.read_text()
    assert text.count(INSTALLED) == 1
    (tmp_path / UNIT.name).write_text(text.replace(INSTALLED, program))
    r = subprocess.run(["systemd-analyze", "verify", str(tmp_path / UNIT.name)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stderr


@needs_analyze
def test_systemd_analyze_security_rates_it_2_5_or_lower():
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=25",
                        str(UNIT)], capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for discarchive\.service: (\d+\.\d)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.5
    assert r.returncode == 0, r.stderr
