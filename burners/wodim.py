"""Drive adapter for wodim (cdrkit's cdrecord): CD and DVD burning on Linux.

Only real drives, addressed by their device node (``/dev/sr0``). The
operator inserts each disc by hand, so :meth:`WodimDrive.load_blank` and
:meth:`WodimDrive.load` only check what is in the tray.

Programs run, each with ``LC_ALL=C``, in its own process group, and
stopped when it outlives ``timeout`` (see :func:`burners._tools.run_tool`)::

    wodim -v -atip dev=DEVICE                              status(): drive, medium, ATIP
    wodim -toc dev=DEVICE                                  status(): blank or written
    wodim -v -dao gracetime=2 [speed=N] dev=DEVICE IMAGE   burn()
    wodim -eject dev=DEVICE                                eject()
    wodim -version                                         tool version, once
    wodim --devices                                        discover()

``gracetime=2`` shortens wodim's last-chance countdown before writing
(9 seconds by default). read() opens the device node itself. Debian
package: wodim.

What wodim prints (cdrkit 1.1), as far as this module relies on it:

* Every command that opens the drive prints its INQUIRY data:
  ``Vendor_info    : 'VENDOR  '``, ``Identification : 'PRODUCT         '``,
  ``Revision       : 'REV '``; with ``-v`` also the current profile,
  ``Current: 0x0011 (DVD-R sequential recording)`` or ``Current: 0x0009
  (CD-R)``. It closes an open tray first; with no disc it ends with
  ``wodim: No disk / Wrong disk!`` and exit status 255.
* ``-atip`` on a CD-R/RW adds ``ATIP info from disk:`` with ``  ATIP start
  of lead out: 359847 (79:59/72)`` (the first sector past the recordable
  area: a blank disc's capacity in 2048-byte sectors) and ``Manufacturer:
  ...``. On a DVD it says nothing about the medium: wodim reports no DVD
  capacity outside a burn (with ``-v`` it points to dvd+rw-mediainfo).
* ``-toc`` on a written disc prints ``first: 1 last 1``, one ``track:   1
  lba: ...`` line per track and ``track:lout lba:      N (...)`` for the
  lead-out; on a blank disc ``wodim: Cannot read TOC header`` or ``Cannot
  read TOC/PMA`` (or ``Cannot read capacity``) instead, exit status 0 all the
  same.
* A burn with ``-v`` prints ``Starting to write CD/DVD at speed  16.0 in real
  SAO mode for single session.`` (the speed the drive set), once per MiB
  ``Track 01:   12 of  340 MB written (fifo 100%) [buf  99%]  16.0x.``
  (redrawn with ``\\r``; MiB written of MiB, speed of the moment) and at the
  end ``Track 01: Total bytes read/written: 7413760/7413760 (3620
  sectors).``. Before writing a DVD it checks the image against the drive's
  figure: ``wodim: Data does not fit on current disk.``. It pads a data
  track shorter than 300 sectors to 300.
* A drive's refusal is a block of lines: ``CDB:  2A 00 00 00 01 4A 00 00 1F
  00`` (the first byte is the command), ``status: 0x2 (CHECK CONDITION)``,
  ``Sense Key: 0x3 Medium Error, Segment 0``, ``Sense Code: 0x0C Qual 0x00
  (write error) Fru 0x0``; other complaints are ``wodim: ...`` lines, e.g.
  ``wodim: Device or resource busy. Cannot open SCSI driver!``. Failures
  exit non-zero.
* ``wodim -version`` prints ``Wodim 1.1.11`` among its lines (on stderr);
  ``wodim --devices`` one line per drive: `` 0  dev='/dev/sr0'\\trwrw-- :
  'VENDOR' 'PRODUCT'``.

Consequences: for a blank DVD, status() reports the nominal capacity of its
type (NOMINAL_SECTORS) and wodim's own check before writing is what refuses
an image too large for the actual disc (``medium-too-small``). A written
disc is reported ``closed`` with no free sectors: this adapter burns
single-session discs (``-dao``) and never appends.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import replace
from typing import Any, Callable, Mapping

from ._media import check_speed
from ._tools import (BurnProgress, DeviceNodeDrive, ToolRun, drive_options,
                     find_tool, run_timed, speed_factor, telling_line)
from .base import SECTOR, BurnResult, DriveError, DriveInfo, MediumStatus, Progress
from .sense import classify

ADAPTER = "wodim"

CONFIG_KEYS = frozenset({"name", "adapter", "device", "wodim", "timeout"})
"""Keys a ``[[drives]]`` table with ``adapter = "wodim"`` may hold."""

NOMINAL_SECTORS = {"DVD-R": 2_298_496, "DVD-RW": 2_298_496, "DVD+R": 2_295_104,
                   "DVD+RW": 2_295_104, "DVD-R DL": 4_171_712, "DVD+R DL": 4_173_824}
"""2048-byte sectors of a blank single-/dual-layer DVD of each type (ECMA-267/-349
figures); wodim itself reports no DVD capacity outside a burn."""

MIN_TRACK_SECTORS = 300
"""wodim pads a shorter data track to this many sectors."""

DISCOVER_TIMEOUT = 60.0
"""Seconds ``wodim --devices`` may take in :func:`discover`."""

MIB = 1 << 20

_INQUIRY = re.compile(r"^(Vendor_info|Identification|Revision)\s*:\s*'([^']*)'", re.M)
_PROFILE = re.compile(r"^Current:\s*0x([0-9A-Fa-f]+)(?:\s*\(([^)]*)\))?", re.M)
_LEAD_OUT = re.compile(r"ATIP start of lead out:\s*(\d+)")
_MANUFACTURER = re.compile(r"^Manufacturer:\s*(.+?)\s*$", re.M)
_NO_DISC = re.compile(r"No disk / Wrong disk")
_BLANK_TOC = re.compile(r"Cannot read (?:TOC header|TOC/PMA|capacity)")
_LEAD_OUT_TOC = re.compile(r"^track:\s*lout\s+lba:\s*(\d+)", re.M)
_PROGRESS = re.compile(r"Track\s+\d+:\s+(\d+)\s+of\s+\d+\s+MB written(?:.*?\s([\d.]+)x\.)?")
_TOTAL = re.compile(r"Track\s+\d+: Total bytes read/written:\s*\d+/(\d+)")
_START = re.compile(r"Starting to write CD/DVD at speed\s+([\d.]+)")
_CDB = re.compile(r"^CDB:\s+([0-9A-Fa-f]{2})", re.M)
_SENSE_KEY = re.compile(r"^Sense Key:\s*0x([0-9A-Fa-f]+)", re.M)
_SENSE_CODE = re.compile(r"^Sense Code:\s*0x([0-9A-Fa-f]+)\s+Qual\s+0x([0-9A-Fa-f]+)", re.M)
_DEVICE_LINE = re.compile(r"^\s*\d+\s+dev='([^']+)'\s+\S+\s*:\s*'([^']*)'\s+'([^']*)'", re.M)
_VERSION = re.compile(r"^Wodim\s+(\S+)", re.M)
_BUSY = re.compile(r"resource busy", re.I)

COMMANDS = {0x28: "READ", 0xA8: "READ", 0x2A: "WRITE", 0xAA: "WRITE", 0x2E: "WRITE AND VERIFY",
            0x35: "SYNCHRONIZE CACHE", 0x51: "READ DISC INFORMATION",
            0x52: "READ TRACK INFORMATION", 0x53: "RESERVE TRACK", 0x54: "SEND OPC",
            0x5B: "CLOSE TRACK/SESSION", 0x5D: "SEND CUE SHEET"}
"""Names of the MMC commands (by opcode, the first CDB byte) a burn sends."""


# -- parsing ---------------------------------------------------------------------

def parse_status(atip: str, toc: str) -> MediumStatus:
    """A MediumStatus from the output of ``wodim -v -atip`` and ``wodim -toc``
    (stdout and stderr together; ``toc`` may be "" when there is no disc).

    ``medium_type`` is the profile's name shortened (``DVD-R``, ``DVD+R DL``,
    ``CD-R``); ``medium_id`` the ATIP manufacturer of a CD (None for DVD).
    A blank disc's ``free_sectors`` is the ATIP lead-out of a CD, the nominal
    capacity of a DVD type (0 if unknown); a written disc is ``closed`` with 0.
    ``tool_version`` is left empty. Raises ValueError if ``toc`` shows
    neither a blank nor a written disc.
    """
    ident = {key: value.strip() for key, value in _INQUIRY.findall(atip)}
    vendor, model = ident.get("Vendor_info", ""), ident.get("Identification", "")
    firmware = ident.get("Revision", "")
    if _NO_DISC.search(atip) or _NO_DISC.search(toc):
        return MediumStatus("no-medium", None, 0, vendor, model, firmware)
    medium_type = None
    if (m := _PROFILE.search(atip)) and int(m[1], 16) != 0:
        medium_type = _medium_type(m[2] or "")
    manufacturer = _MANUFACTURER.search(atip)
    medium_id = manufacturer[1] if manufacturer else None
    if _LEAD_OUT_TOC.search(toc):
        return MediumStatus("closed", medium_type, 0, vendor, model, firmware, medium_id)
    if not _BLANK_TOC.search(toc):
        raise ValueError("wodim -toc showed neither a blank nor a written disc")
    if m := _LEAD_OUT.search(atip):
        free = int(m[1])
    else:
        free = NOMINAL_SECTORS.get(medium_type or "", 0)
    return MediumStatus("blank", medium_type, free, vendor, model, firmware, medium_id)


def _medium_type(profile: str) -> str | None:
    """``DVD-R sequential recording`` -> ``DVD-R``; ``DVD+R/DL`` -> ``DVD+R DL``;
    ``DVD-R/DL layer jump recording`` -> ``DVD-R DL``; ``CD-R`` -> ``CD-R``."""
    word = profile.split()[0] if profile.split() else ""
    if not word or word.startswith("Reserved"):
        return None
    return word[:-3] + " DL" if word.endswith("/DL") else word


def parse_progress(line: str) -> tuple[int, str | None] | None:
    """Parse one wodim progress line.

    ``Track 01:   12 of  340 MB written (fifo 100%) [buf  99%]  16.0x.`` gives
    ``(12 * 2**20, "16.0x")`` (bytes written, MiB resolution, and the speed
    of the moment; None when the line has none); ``Track 01: Total bytes
    read/written: 7413760/7413760 (3620 sectors).`` gives ``(7413760, None)``.
    Other lines give None.
    """
    if m := _TOTAL.search(line):
        return int(m[1]), None
    if m := _PROGRESS.search(line):
        return int(m[1]) * MIB, (m[2] + "x") if m[2] else None
    return None


def parse_start_speed(line: str) -> str | None:
    """``Starting to write CD/DVD at speed  16.0 in real SAO mode ...`` -> ``"16.0x"``."""
    m = _START.search(line)
    return m[1] + "x" if m else None


def parse_sense(text: str) -> tuple[int, int, int, str] | None:
    """The first sense report in wodim's output: ``(sense_key, asc, ascq, command)``.

    ``command`` is the name of the CDB's opcode from COMMANDS (``WRITE``,
    ``CLOSE TRACK/SESSION``...), or ``"opcode 0xNN"``, or "" without a CDB
    line. None when the text has no ``Sense Key``/``Sense Code`` pair.
    """
    code = _SENSE_CODE.search(text)
    if not code:
        return None
    keys = [m for m in _SENSE_KEY.finditer(text) if m.start() < code.start()]
    cdbs = [m for m in _CDB.finditer(text) if m.start() < code.start()]
    if not keys:
        return None
    command = ""
    if cdbs:
        opcode = int(cdbs[-1][1], 16)
        command = COMMANDS.get(opcode, f"opcode 0x{opcode:02X}")
    return int(keys[-1][1], 16), int(code[1], 16), int(code[2], 16), command


def classify_failure(text: str, default: str = "write-error") -> str:
    """The failure class of a failed wodim run (its whole output).

    The first sense report goes through :func:`burners.sense.classify`; then
    ``Device or resource busy`` -> ``drive-busy``, ``No disk / Wrong disk`` ->
    ``no-medium``, ``Data does not fit`` -> ``medium-too-small``; else
    ``default``.
    """
    if sense := parse_sense(text):
        return classify(*sense, default=default)
    if _BUSY.search(text):
        return "drive-busy"
    if _NO_DISC.search(text):
        return "no-medium"
    if "does not fit" in text:
        return "medium-too-small"
    return default


def failure_reason(text: str) -> str:
    """One line saying what went wrong: the first sense report (``WRITE failed:
    Sense Key: 0x3 Medium Error, Segment 0; Sense Code: 0x0C Qual 0x00 (write
    error) Fru 0x0``), else the most telling ``wodim:`` line (a busy drive, no
    disc, no room; not a warning or fifo statistics)."""
    if sense := parse_sense(text):
        code = _SENSE_CODE.search(text)
        key = [m for m in _SENSE_KEY.finditer(text) if m.start() < code.start()][-1]
        key_line = text[key.start():].splitlines()[0].strip()
        code_line = text[code.start():].splitlines()[0].strip()
        return f"{sense[3] or 'a SCSI command'} failed: {key_line}; {code_line}"
    return telling_line(text, (_BUSY, _NO_DISC, re.compile("does not fit"),
                               re.compile(r"wodim: (?!.*(?:[Ww]arning|fifo))")))


def parse_devices(text: str) -> list[DriveInfo]:
    """DriveInfos from ``wodim --devices``: `` 0  dev='/dev/sr0'\\trwrw-- : 'V' 'P'``."""
    return [DriveInfo(ADAPTER, dev, vendor.strip(), model.strip())
            for dev, vendor, model in _DEVICE_LINE.findall(text)]


def parse_version(text: str) -> str:
    """``Wodim 1.1.11`` (among wodim -version's lines) -> ``"wodim 1.1.11"``; "" if absent."""
    m = _VERSION.search(text)
    return f"wodim {m[1]}" if m else ""


# -- the drive -----------------------------------------------------------------

class WodimDrive(DeviceNodeDrive):
    """A CD/DVD writer at ``device`` (``/dev/sr0``) driven by wodim.

    ``wodim`` names the program (or gives its path); ``timeout`` is the limit
    in seconds for each run of it, a burn included (None or 0: no limit), so
    set it above the longest burn. A missing wodim is reported by the
    operation that needs it (DriveError ``tool-missing``), not here.
    load_blank(), load(), read(), eject() and tool_version() are
    :class:`burners._tools.DeviceNodeDrive`'s; as wodim pads short tracks,
    read() finds sectors missing past ``length`` only on a damaged or
    unfinished disc.
    """

    adapter = ADAPTER
    tool_label = "wodim"

    def __init__(self, name: str, device: str, wodim: str = "wodim",
                 timeout: float | None = None):
        super().__init__(name, device, timeout)
        self.wodim = wodim

    # -- the Drive interface --------------------------------------------------

    def status(self) -> MediumStatus:
        """Ask wodim about the drive and its disc (``-v -atip``, then ``-toc``).

        ``no-medium`` for an empty drive (wodim closes an open tray to look).
        Raises DriveError ``tool-missing``, ``timeout``, ``drive-busy``,
        ``medium-error`` (a disc wodim cannot make sense of) or ``not-ready``
        (any other failure of wodim).
        """
        doing = "read the disc status"
        atip = self._run(["-v", "-atip", f"dev={self.device}"], doing)
        if atip.returncode != 0 and not _NO_DISC.search(atip.text):
            raise self._failure(atip, doing, "not-ready")
        toc = ToolRun(0, "", "")
        if not _NO_DISC.search(atip.text):
            toc = self._run(["-toc", f"dev={self.device}"], doing)
        try:
            status = parse_status(atip.text, toc.text)
        except ValueError as exc:
            if toc.returncode != 0:
                raise self._failure(toc, doing, "not-ready") from None
            raise DriveError(f"drive {self.name}: {exc}", "medium-error") from None
        return replace(status, tool_version=self.tool_version())

    def burn(self, image_path: str, progress: Progress | None = None,
             speed: str | None = None) -> BurnResult:
        """Burn the image at ``image_path`` as one closed session (``-dao``).

        Checks first that the disc is blank, that the image (at least
        MIN_TRACK_SECTORS sectors, as wodim pads it) fits :meth:`status`
        ``free_sectors`` (for a DVD wodim then checks the disc's real figure)
        and that no other process holds the device node open. ``speed`` is
        ``"4x"``, ``"min"``, ``"max"`` or None (the drive's choice), see
        :func:`burners._media.check_speed`; wodim takes whole factors, so
        ``"2.4x"`` asks for 2.
        ``progress`` gets ``(done_bytes, image_bytes)``: 0, each progress
        line (MiB resolution), and the full size at the end. The result's
        ``speed`` is the one wodim says it started writing at, else the last
        one it measured.

        Raises DriveError ``no-medium``, ``medium-not-blank``,
        ``medium-too-small``, ``incompatible-medium`` (a medium type whose
        capacity is unknown), ``drive-busy`` (naming the holder where it
        can), ``config`` (a speed not understood), ``tool-missing``,
        ``timeout``, or the class of the
        drive's sense data (``write-error``, ``medium-error``,
        ``calibration``...; default ``write-error``). OSError if the image
        cannot be read. After any failure the disc must not be trusted.
        """
        factor = speed_factor(check_speed(self.name, speed))
        image = os.path.abspath(image_path)
        size = os.path.getsize(image)
        status = self.status()
        if status.state == "blank" and status.free_sectors == 0:
            raise DriveError(f"drive {self.name}: wodim does not report the capacity of a "
                             f"{status.medium_type or 'disc of unknown type'}; use a DVD±R "
                             "or CD-R, or the growisofs adapter", "incompatible-medium")
        self._check_burnable(status, max(size, MIN_TRACK_SECTORS * SECTOR))
        report = BurnProgress(progress, size)

        def on_line(line: str) -> None:
            report.drive_speed = parse_start_speed(line) or report.drive_speed
            if (parsed := parse_progress(line)) is not None:
                report.advance(*parsed)

        args = ["-v", "-dao", "gracetime=2"]
        if factor is not None:
            args.append(f"speed={max(1, int(float(factor)))}")
        args += [f"dev={self.device}", image]
        return self._write(args, image, status, speed, report, on_line)

    # -- helpers ------------------------------------------------------------

    def _eject_args(self) -> list[str]:
        """eject() runs ``wodim -eject dev=DEVICE``."""
        return ["-eject", f"dev={self.device}"]

    def _ask_version(self) -> str:
        """``wodim 1.1.11`` from ``wodim -version``; "" if it does not say."""
        return parse_version(self._run(["-version"], "report its version").text)

    def _run(self, args: list[str], doing: str, on_line: Callable[[str], None] | None = None,
             timeout_note: str = "") -> ToolRun:
        """Run wodim with ``args`` under this drive's time limit.

        Raises DriveError ``tool-missing`` or ``timeout`` (worded with ``doing``).
        """
        return run_timed([find_tool(self.wodim), *args], self.timeout, doing, tool="wodim",
                         drive=self.name, note=timeout_note, on_line=on_line, c_locale=True)

    _classify = staticmethod(classify_failure)
    _reason = staticmethod(failure_reason)


# -- module entry points -----------------------------------------------------------

def from_config(spec: Mapping[str, Any]) -> WodimDrive:
    """Build a WodimDrive from its ``[[drives]]`` table (keys: CONFIG_KEYS).

    ``device`` is required; ``wodim`` defaults to the program name;
    ``timeout`` is seconds per wodim run (absent or 0: no limit). Raises
    DriveError ``config`` (see :func:`burners._tools.drive_options`).
    Does not touch the drive or look for wodim.
    """
    return WodimDrive(**drive_options(spec, ADAPTER, CONFIG_KEYS, {"wodim": "wodim"}))


def discover(wodim: str = "wodim") -> list[DriveInfo]:
    """The drives ``wodim --devices`` lists; [] when wodim is not installed.

    Raises DriveError ``timeout`` if wodim runs longer than DISCOVER_TIMEOUT
    seconds (it is then stopped).
    """
    path = shutil.which(wodim)
    if path is None:
        return []
    run = run_timed([path, "--devices"], DISCOVER_TIMEOUT, "", tool="wodim --devices",
                    c_locale=True)
    return parse_devices(run.stdout)
