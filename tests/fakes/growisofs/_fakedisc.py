"""The drive and disc that the fake burning tools in tests/fakes/ see.

A fake tool is given a device path as the real one is given /dev/sr0. Here
that path is a regular file holding the disc's contents: absent or empty, the
disc is blank; anything written to it, the disc is written and closed (the
adapters burn single closed sessions). Next to it, ``<device>.state`` (JSON,
optional) says the rest::

    {"medium": true, "tray": "closed", "type": "DVD-R",
     "capacity_sectors": 2298496, "medium_id": "YOYO  01RG47"}

Faults and knobs, from the environment:

FAKE_NO_MEDIUM=1          the drive is empty
FAKE_MEDIUM_TYPE=CD-R     the disc's type (DVD-R, DVD+R, DVD+R DL, DVD-R DL, BD-R, CD-R, CD-RW)
FAKE_CAPACITY_SECTORS=N   2048-byte sectors of a blank disc
FAKE_BUSY=1 | burn        every tool (1) or only a burn (burn) finds the drive busy
FAKE_HANG=1 | burn | status
                          a burn (1, burn) or a status query hangs, with a child
                          process that hangs too; both pids go to FAKE_PIDFILE
FAKE_SENSE='WRITE@LBA=330h failed with SK=3h/ASC=0Ch/ACQ=00h'
                          the drive refuses a command with this sense data: a
                          WRITE half-way through the image, CLOSE.../SYNCHRONIZE...
                          after writing it, anything else (PERFORM OPC, RESERVE
                          TRACK) before writing; each fake reports it in its
                          tool's own words
FAKE_LOG=path             each run appends its argv to this file, one JSON list a line
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

SECTOR = 2048

CAPACITY = {"CD-R": 359_847, "CD-RW": 359_847, "DVD-R": 2_298_496, "DVD+R": 2_295_104,
            "DVD-R DL": 4_171_712, "DVD+R DL": 4_173_824, "BD-R": 12_219_392}
"""Blank capacity (2048-byte sectors) of each disc type unless the state says otherwise."""

MEDIUM_ID = {"DVD-R": "YOYO  01RG47", "DVD-R DL": "YOYO  02RD47", "DVD+R": "YOYODYNE/R47",
             "DVD+R DL": "YOYODYNE/D47", "BD-R": "YOYODY/BR1"}
"""Our sample media IDs, in the shapes dvd+rw-mediainfo prints them."""

VENDOR, PRODUCT, REVISION = "YOYODYNE", "OPTICA RW-24X", "1.0A"
"""The fake drive's INQUIRY data."""

_SENSE = re.compile(r"^(.*?)\s*failed with SK=([0-9A-Fa-f]+)h/ASC=([0-9A-Fa-f]+)h/"
                    r"ACQ=([0-9A-Fa-f]+)h")


class Disc:
    """The drive at ``device`` and the disc in it."""

    def __init__(self, device: str):
        self.device = device
        self.state_path = device + ".state"
        try:
            with open(self.state_path) as f:
                self.state = json.load(f)
        except FileNotFoundError:
            self.state = {}

    @property
    def type(self) -> str:
        return os.environ.get("FAKE_MEDIUM_TYPE") or self.state.get("type", "DVD-R")

    @property
    def present(self) -> bool:
        """A disc is in the drive and the tray is closed."""
        return (not os.environ.get("FAKE_NO_MEDIUM") and self.state.get("medium", True)
                and self.state.get("tray", "closed") == "closed")

    @property
    def tray_open(self) -> bool:
        return self.state.get("tray", "closed") == "open"

    @property
    def capacity(self) -> int:
        value = os.environ.get("FAKE_CAPACITY_SECTORS") or self.state.get("capacity_sectors")
        return int(value) if value else CAPACITY.get(self.type, 2_298_496)

    @property
    def medium_id(self) -> str | None:
        return self.state.get("medium_id", MEDIUM_ID.get(self.type))

    @property
    def used_bytes(self) -> int:
        try:
            return os.path.getsize(self.device)
        except FileNotFoundError:
            return 0

    @property
    def used_sectors(self) -> int:
        return -(-self.used_bytes // SECTOR)

    @property
    def blank(self) -> bool:
        return self.used_bytes == 0

    def set_tray(self, tray: str) -> None:
        self.state["tray"] = tray
        with open(self.state_path, "w") as f:
            json.dump(self.state, f)

    def write(self, image: str, limit: int | None = None, min_sectors: int = 0) -> int:
        """Burn ``image`` (its first ``limit`` bytes if given) onto the disc,
        padded with zeros to whole sectors and to ``min_sectors``; return the
        bytes written, padding included."""
        with open(image, "rb") as f:
            data = f.read() if limit is None else f.read(limit)
        sectors = max(-(-len(data) // SECTOR), min_sectors if limit is None else 0)
        data += bytes(sectors * SECTOR - len(data))
        with open(self.device, "wb") as f:
            f.write(data)
        return len(data)


def busy(burning: bool) -> bool:
    """FAKE_BUSY says this run finds the drive busy."""
    value = os.environ.get("FAKE_BUSY", "")
    return value in ("1", "all") or (burning and value == "burn")


def hang_requested(what: str) -> bool:
    """FAKE_HANG says a run of this kind (``burn`` or ``status``) hangs."""
    value = os.environ.get("FAKE_HANG", "")
    return value == what or (what == "burn" and value == "1")


def hang() -> None:
    """Hang until killed, with a child process in the same process group doing the same."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    if pidfile := os.environ.get("FAKE_PIDFILE"):
        with open(pidfile, "w") as f:
            f.write(f"{os.getpid()} {child.pid}\n")
    sys.stdout.flush()
    sys.stderr.flush()
    time.sleep(600)


def sense() -> tuple[str, str, int, int, int] | None:
    """FAKE_SENSE as ``(when, command, sk, asc, ascq)``; ``when`` is ``write``
    (half-way), ``close`` (after writing) or ``start`` (before writing)."""
    text = os.environ.get("FAKE_SENSE")
    if not text:
        return None
    m = _SENSE.match(text.strip())
    if not m:
        sys.exit(f"fake: FAKE_SENSE {text!r} is not like "
                 "'WRITE@LBA=330h failed with SK=3h/ASC=0Ch/ACQ=00h'")
    command = m[1].upper()
    when = ("write" if command.startswith("WRITE")
            else "close" if command.startswith(("CLOSE", "SYNCHRONIZE", "FLUSH")) else "start")
    return when, m[1], int(m[2], 16), int(m[3], 16), int(m[4], 16)


def log(argv: list[str]) -> None:
    if path := os.environ.get("FAKE_LOG"):
        with open(path, "a") as f:
            f.write(json.dumps(argv) + "\n")


def say(*lines: str, err: bool = False) -> None:
    """Print lines to stdout (or stderr) at once, as the tools flush their lines."""
    stream = sys.stderr if err else sys.stdout
    for line in lines:
        stream.write(line + "\n")
    stream.flush()
