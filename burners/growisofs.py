"""Drive adapter for growisofs (dvd+rw-tools): DVD and BD burning on Linux.

Only real drives, addressed by their device node (``/dev/sr0``). The
operator inserts each disc by hand, so :meth:`GrowisofsDrive.load_blank` and
:meth:`GrowisofsDrive.load` only check what is in the tray.

Programs run, each with ``LC_ALL=C`` so that system error texts are in
English, in its own process group, and stopped when it outlives ``timeout``::

    dvd+rw-mediainfo DEVICE                               status()
    growisofs -dvd-compat [-speed=N] -Z DEVICE=IMAGE      burn()
    growisofs -version                                    tool version, once
    eject DEVICE                                          eject()

read() opens the device node itself. Debian packages: growisofs (growisofs
and dvd+rw-mediainfo), eject.

What the tools print, as far as this module relies on it (dvd+rw-tools 7.1):

* dvd+rw-mediainfo, on stdout: ``INQUIRY:  [VENDOR  ][PRODUCT         ][REV ]``
  (fields padded to 8, 16 and 4 characters); `` Mounted Media:  11h, DVD-R
  Sequential`` (profile number, name); `` Media ID:  ...`` for most
  recordable media; after ``READ DISC INFORMATION:`` the line `` Disc status:
  blank`` (or ``appendable``, ``complete``, ``other``); then a ``READ TRACK
  INFORMATION[#n]:`` block per track with `` Free Blocks:  N*2KB`` and
  `` Track Size:  N*2KB``. On a blank or appendable disc the last track is
  the invisible (or incomplete) one still to be written: its Free Blocks are
  the free 2048-byte sectors. Without a disc it says ``:-( no media mounted,
  exiting...`` on stderr, with a CD ``:-( non-DVD media mounted,
  exiting...``, and exits non-zero.
* growisofs, during a burn: ``Executing 'builtin_dd if=IMAGE of=DEVICE
  obs=32k seek=0'``; ``DEVICE: "Current Write Speed" is 4.1x1352KBps.`` (the
  speed the drive set); then about once a second ``  123207680/4700372992
  ( 2.6%) @3.3x, remaining 14:41 RBU 100.0% UBU  96.9%`` (bytes written, of
  bytes, and the speed of the moment). A drive's refusal reads ``:-[
  WRITE@LBA=330h failed with SK=3h/ASC=0Ch/ACQ=00h]: Input/output error``;
  other failures are ``:-( ...`` lines, such as ``:-( unable to
  open64("/dev/sr0",O_RDONLY): Device or resource busy``, ``:-( /dev/sr0:
  media is not recognized as recordable DVD: 0`` (profile 0: no disc) or,
  for a written disc when not run from a terminal, ``FATAL: /dev/sr0 already
  carries isofs!``. Every failure exits non-zero.
* ``growisofs -version`` prints ``* growisofs by <appro@fy.chalmers.se>,
  version 7.1,`` and then runs ``mkisofs -version`` (whose result is ignored).

This module also holds what the two device-node adapters share and
``burners._media`` has not: :func:`run_tool` (a tool run with a time limit
that stops the whole process group), :func:`find_tool`, :func:`drive_options`
(config checking). :mod:`burners.wodim` imports them.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
from dataclasses import replace
from typing import Any, Callable, Mapping

from ._media import check_speed
from ._tools import (BurnProgress, DeviceNodeDrive, ToolRun, drive_options,
                     find_tool, run_timed, speed_factor, telling_line)
from .base import BurnResult, DriveError, DriveInfo, MediumStatus, Progress
from .sense import SENSE_LINE, classify_sense

ADAPTER = "growisofs"

CONFIG_KEYS = frozenset({"name", "adapter", "device", "growisofs", "mediainfo", "eject",
                         "timeout"})
"""Keys a ``[[drives]]`` table with ``adapter = "growisofs"`` may hold."""

PACKAGES = {"growisofs": "growisofs", "dvd+rw-mediainfo": "growisofs", "eject": "eject"}
"""Debian package of each program this adapter runs (by program name), for
DriveError ``tool-missing``."""

CDROM_INFO = "/proc/sys/dev/cdrom/info"
"""The kernel's table of CD/DVD drives; its ``drive name:`` line lists them (``sr0``)."""

_INQUIRY = re.compile(r"^INQUIRY:\s*\[([^\]]*)\]\[([^\]]*)\]\[([^\]]*)\]", re.M)
_PROGRESS = re.compile(r"^\s*(\d+)/(\d+)\s*\(\s*[\d.]+%\)\s*@([\d.]+)x")
_WRITE_SPEED = re.compile(r'"Current Write Speed" is ([\d.]+)x')
_BLOCKS = re.compile(r"(\d+)\*2KB")
_VERSION = re.compile(r"growisofs by .*?version ([0-9][\w.]*)")


# -- parsing ---------------------------------------------------------------------

def parse_mediainfo(stdout: str, stderr: str = "") -> MediumStatus:
    """A MediumStatus from the output of ``dvd+rw-mediainfo DEVICE``.

    ``free_sectors`` (2048-byte sectors) is the Free Blocks of the last track
    of a blank or appendable disc (its Track Size if Free Blocks is missing),
    0 for a complete disc. ``tool_version`` is left empty.

    Raises ValueError if the output shows neither a medium nor its absence;
    DriveError ``incompatible-medium`` for a CD (growisofs writes DVD and BD
    only).
    """
    vendor = model = firmware = ""
    if m := _INQUIRY.search(stdout):
        vendor, model, firmware = (part.strip() for part in m.groups())
    if "no media mounted" in stderr:
        return MediumStatus("no-medium", None, 0, vendor, model, firmware)
    if "non-DVD media mounted" in stderr:
        raise DriveError("a CD is in the drive; growisofs writes DVD and BD only: insert a DVD "
                         "or BD, or use the wodim adapter for CDs", "incompatible-medium")
    fields: dict[str, str] = {}
    tracks: list[dict[str, str]] = []
    for line in stdout.splitlines():
        if line.startswith("READ TRACK INFORMATION"):
            tracks.append({})
            continue
        key, sep, value = line.partition(":")
        if not sep or not line.startswith(" "):
            continue
        (tracks[-1] if tracks else fields)[key.strip()] = value.strip()
    mounted, disc = fields.get("Mounted Media"), fields.get("Disc status")
    if mounted is None or disc is None:
        raise ValueError("dvd+rw-mediainfo reported neither a medium nor its absence")
    state = {"blank": "blank", "appendable": "appendable", "complete": "closed"}.get(disc)
    if state is None:
        raise ValueError(f"the disc is not usable: Disc status {disc!r}")
    free = 0
    if state != "closed" and tracks:
        last = tracks[-1]
        if m := _BLOCKS.match(last.get("Free Blocks") or last.get("Track Size", "")):
            free = int(m[1])
    return MediumStatus(state, _medium_type(mounted), free, vendor, model, firmware,
                        medium_id=fields.get("Media ID") or None)


def _medium_type(mounted: str) -> str:
    """``11h, DVD-R Sequential`` -> ``DVD-R``; ``2Bh, DVD+R Double Layer`` -> ``DVD+R DL``;
    ``41h, BD-R SRM`` -> ``BD-R``."""
    name = mounted.partition(",")[2].strip() or mounted
    short = name.split()[0]
    return short + " DL" if "Layer" in name else short


def parse_progress(line: str) -> tuple[int, int, str] | None:
    """Parse one growisofs progress line.

    ``  123207680/4700372992 ( 2.6%) @3.3x, remaining 14:41 RBU 100.0% UBU  96.9%``
    gives ``(123207680, 4700372992, "3.3x")``: bytes written, bytes to write
    and the speed of the moment. Other lines give None.
    """
    m = _PROGRESS.match(line)
    return (int(m[1]), int(m[2]), m[3] + "x") if m else None


def parse_write_speed(line: str) -> str | None:
    """``/dev/sr0: "Current Write Speed" is 4.1x1352KBps.`` -> ``"4.1x"``; other lines None."""
    m = _WRITE_SPEED.search(line)
    return m[1] + "x" if m else None


def parse_version(text: str) -> str:
    """``* growisofs by <appro@fy.chalmers.se>, version 7.1,`` -> ``"growisofs 7.1"``;
    "" if absent."""
    m = _VERSION.search(text)
    return f"growisofs {m[1]}" if m else ""


def classify_failure(text: str, default: str = "write-error") -> str:
    """The failure class of a failed growisofs or dvd+rw-mediainfo run (its whole output).

    Sense data goes through :func:`burners.sense.classify_sense` (first report
    wins); then a busy drive (``Device or resource busy``, ``failed to grab``)
    -> ``drive-busy``; ``media is not recognized as recordable DVD: 0`` or
    ``no media mounted`` -> ``no-medium``; any other unrecognized medium ->
    ``incompatible-medium``; ``already carries isofs``, ``media is not
    appendable`` -> ``medium-not-blank``; ``blocks are free`` (the image does
    not fit) -> ``medium-too-small``; else ``default``.
    """
    if SENSE_LINE.search(text):
        return classify_sense(text, default)
    if re.search(r"resource busy|failed to grab", text, re.I):
        return "drive-busy"
    if re.search(r"recordable DVD: 0\b|no media mounted", text):
        return "no-medium"
    if re.search(r"not recognized as recordable|non-DVD media", text):
        return "incompatible-medium"
    if re.search(r"already carries isofs|media is not appendable|last session is not empty",
                 text):
        return "medium-not-blank"
    if "blocks are free" in text:
        return "medium-too-small"
    return default


_COMPLAINT = re.compile(r"^(?::-\(|FATAL)")


def reason(text: str) -> str:
    """The line of growisofs's (or dvd+rw-mediainfo's, eject's) output that
    best says what went wrong: a sense report, else a ``:-(`` or ``FATAL``
    complaint, else the last line; "no output" if there is none."""
    return telling_line(text, (SENSE_LINE, _COMPLAINT))


def parse_cdrom_info(text: str) -> list[str]:
    """Device names from the kernel's ``/proc/sys/dev/cdrom/info``:
    ``drive name:\\t\\tsr1\\tsr0`` -> ``["sr0", "sr1"]``."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "drive name":
            return sorted(value.split())
    return []


# -- the drive -----------------------------------------------------------------

class GrowisofsDrive(DeviceNodeDrive):
    """A DVD/BD writer at ``device`` (``/dev/sr0``) driven by growisofs.

    ``growisofs``, ``mediainfo`` and ``eject`` name the programs (or give
    their paths); ``timeout`` is the limit in seconds for each run of them,
    a burn included (None or 0: no limit), so set it above the longest burn.
    A missing program is reported by the operation that needs it (DriveError
    ``tool-missing``), not here, so a config loads on a host without them.
    load_blank(), load(), read(), eject() and tool_version() are
    :class:`burners._tools.DeviceNodeDrive`'s.
    """

    adapter = ADAPTER

    def __init__(self, name: str, device: str, growisofs: str = "growisofs",
                 mediainfo: str = "dvd+rw-mediainfo", eject: str = "eject",
                 timeout: float | None = None):
        super().__init__(name, device, timeout)
        self.growisofs, self.mediainfo, self.eject_program = growisofs, mediainfo, eject

    # -- the Drive interface --------------------------------------------------

    def status(self) -> MediumStatus:
        """Ask dvd+rw-mediainfo about the drive and its disc.

        ``no-medium`` for an empty drive. Raises DriveError ``tool-missing``,
        ``timeout``, ``drive-busy``, ``incompatible-medium`` (a CD),
        ``medium-error`` (a disc the tool cannot make sense of) or
        ``not-ready`` (any other failure of the tool).
        """
        run = self._run([self.mediainfo, self.device], "read the disc status")
        try:
            status = parse_mediainfo(run.stdout, run.stderr)
        except DriveError as exc:
            raise DriveError(f"drive {self.name}: {exc}", exc.failure_class) from None
        except ValueError as exc:
            if run.returncode != 0:
                raise self._failure(run, "read the disc status", "not-ready") from None
            raise DriveError(f"drive {self.name}: {exc}", "medium-error") from None
        return replace(status, tool_version=self.tool_version())

    def burn(self, image_path: str, progress: Progress | None = None,
             speed: str | None = None) -> BurnResult:
        """Burn the image at ``image_path`` as one closed session (``-dvd-compat``).

        Checks first that the disc is blank, that the image's 2048-byte
        sectors fit :meth:`status` ``free_sectors``, and that no other
        process holds the device node open. ``speed`` is ``"4x"``, ``"min"``,
        ``"max"`` or None (the drive's choice), see
        :func:`burners._media.check_speed`. ``progress`` gets
        ``(done_bytes, image_bytes)``: 0, each progress line of growisofs, and
        the full size at the end. The result's ``speed`` is the one growisofs
        reports the drive set, else the last one it measured.

        Raises DriveError ``no-medium``, ``medium-not-blank``,
        ``medium-too-small``, ``incompatible-medium``, ``drive-busy`` (naming
        the holder where it can), ``config`` (a speed not understood),
        ``tool-missing``, ``timeout`` (growisofs ran longer than ``timeout``
        and was stopped), or the class of the drive's sense data
        (``write-error``, ``medium-error``, ``calibration``...; default
        ``write-error``). OSError if the image cannot be read. After any
        failure the disc must not be trusted.
        """
        factor = speed_factor(check_speed(self.name, speed))
        image = os.path.abspath(image_path)
        size = os.path.getsize(image)
        status = self.status()
        self._check_burnable(status, size)
        report = BurnProgress(progress, size)

        def on_line(line: str) -> None:
            report.drive_speed = parse_write_speed(line) or report.drive_speed
            if (parsed := parse_progress(line)) is not None:
                report.advance(parsed[0], parsed[2])

        args = [self.growisofs, "-dvd-compat"]
        if factor is not None:
            args.append(f"-speed={factor}")
        args += ["-Z", f"{self.device}={image}"]
        return self._write(args, image, status, speed, report, on_line)

    # -- helpers ------------------------------------------------------------

    def _eject_args(self) -> list[str]:
        """eject() runs ``eject DEVICE`` (a missing one: Debian package eject)."""
        return [self.eject_program, self.device]

    def _ask_version(self) -> str:
        """``growisofs 7.1`` from ``growisofs -version``; "" if it does not say."""
        return parse_version(self._run([self.growisofs, "-version"],
                                       "report its version").stdout)

    def _run(self, args: list[str], doing: str, on_line: Callable[[str], None] | None = None,
             timeout_note: str = "") -> ToolRun:
        """Run a tool (``args[0]`` its name or path) under this drive's time limit.

        Raises DriveError ``tool-missing`` or ``timeout`` (worded with ``doing``).
        """
        return run_timed([find_tool(args[0], packages=PACKAGES), *args[1:]], self.timeout,
                         doing, tool=os.path.basename(args[0]), drive=self.name,
                         note=timeout_note, on_line=on_line, c_locale=True)

    _classify = staticmethod(classify_failure)
    _reason = staticmethod(reason)


# -- module entry points -----------------------------------------------------------

def from_config(spec: Mapping[str, Any]) -> GrowisofsDrive:
    """Build a GrowisofsDrive from its ``[[drives]]`` table (keys: CONFIG_KEYS).

    ``device`` is required; ``growisofs``, ``mediainfo``, ``eject`` default to
    the program names; ``timeout`` is seconds per tool run (absent or 0: no
    limit). Raises DriveError ``config`` (see :func:`burners._tools.drive_options`).
    Does not touch the drive or look for the programs.
    """
    return GrowisofsDrive(**drive_options(spec, ADAPTER, CONFIG_KEYS, {
        "growisofs": "growisofs", "mediainfo": "dvd+rw-mediainfo", "eject": "eject"}))


def discover(info_path: str = CDROM_INFO, dev_pattern: str = "/dev/sr*",
             sys_block: str = "/sys/block") -> list[DriveInfo]:
    """The optical drives of this host, for the growisofs adapter.

    Drive names come from the ``drive name:`` line of ``info_path`` (the
    kernel's CD-ROM table), else from the device nodes matching
    ``dev_pattern``; vendor, model and firmware from ``<sys_block>/<name>/
    device/{vendor,model,rev}`` where readable. No drive is touched.
    [] when growisofs is not installed.
    """
    if shutil.which("growisofs") is None:
        return []
    try:
        with open(info_path, encoding="utf-8", errors="replace") as f:
            names = parse_cdrom_info(f.read())
    except OSError:
        names = []
    if not names:
        names = sorted(os.path.basename(p) for p in glob.glob(dev_pattern))
    found = []
    for name in names:
        ident = [_read_line(os.path.join(sys_block, name, "device", part))
                 for part in ("vendor", "model", "rev")]
        found.append(DriveInfo(ADAPTER, os.path.join(os.path.dirname(dev_pattern), name),
                               *ident))
    return found


def _read_line(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""
