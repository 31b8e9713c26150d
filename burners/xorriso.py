"""Drive adapter for GNU xorriso (libburn), the Linux burning tool.

Two kinds of drive go through the same commands:

* a real drive, addressed by its device node (``/dev/sr0``);
* a file-backed drive: each medium is a file ``<media_dir>/<label>.medium``
  that xorriso writes through its ``stdio:`` pseudo-drive, so the real
  program runs end to end without optical hardware.

Commands used::

    xorriso -outdev DEV -toc -tell_media_space      status()
    xorriso -as cdrecord -v dev=DEV [speed=S] -dao IMAGE
                                                    burn()
    xorriso -outdev DEV -eject all                  eject() on a real drive
    xorriso -devices                                discover()
    xorriso -version                                tool_version (once per program)

where DEV is ``mmc:/dev/sr0`` or ``stdio:<medium file>``. The ``mmc:``
prefix matters: given a bare path that is not an optical drive (a typo, a
missing USB drive), xorriso would quietly treat it as a ``stdio:`` file and
"burn" into it.

What xorriso 1.5 prints, as far as this module relies on it:

* ``-toc`` reports on stdout, among other lines, ``Drive type   : vendor
  'V' product 'P' revision 'R'``, ``Media current: DVD-R sequential
  recording`` (``stdio file, overwriteable`` for files), ``Media status :
  is blank`` / ``is written , is appendable`` / ``is written , is closed`` /
  ``is not present``, and ``-tell_media_space`` adds ``Media space  : NNNs``
  (free 2048-byte sectors). For ``stdio:`` files the space is the free
  space of the file system, not a disc capacity. A real disc adds ``Media
  product: MCC 03RG20 , Mitsubishi Kagaku Media Co.``: the medium's
  manufacturer/media ID, then the manufacturer's name.
* ``-devices`` prints one line per drive it may use, e.g. ``0  -dev
  '/dev/sr0' rwrw-- :  'HL-DT-ST' 'DVDRAM GH24NSD1'`` (vendor and product
  from the drive's INQUIRY data); with none it says ``SORRY : No drives
  found`` and exits non-zero. Drives held by another process are not listed.
* ``-version`` starts its stdout with ``xorriso 1.5.4``.
* The cdrecord emulation's ``speed=`` goes to xorriso's ``-speed``: ``min``
  is the lowest speed the drive announces for the medium, ``max`` the
  highest, ``4`` or ``4x`` four times the medium's base speed. It accepts
  anything silently (``speed=fast`` means "send no speed"), so speeds are
  checked here first.
* During a burn, about once a second on stderr:
  ``xorriso : UPDATE :  152 of 1430 MB written (fifo  0%) [buf  50%]  52.3x.``
  (MB are MiB, rounded down; the speed is in the medium's "x" units). Short
  burns print none.
* Failures are ``... : SORRY : ...`` / ``... : FAILURE : ...`` lines on stderr
  and a non-zero exit status; SCSI errors read like
  ``WRITE@LBA=330h failed with SK=3h/ASC=0Ch/ACQ=00h``.
* A burn onto a ``stdio:`` file pads it beyond the image (to whole sectors
  and more), so a medium is always read back by length, never to its end.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import time
from typing import Callable

from ._media import (MediumFileReader, MediumSlot, busy_error, check_speed, check_writable,
                     holder_of, require_blank, require_disc)
from ._tools import (NOT_INSTALLED, BurnProgress, ToolRun, ToolTimeout, check_timeout, find_tool,
                     run_timed, run_tool, telling_line)
from .base import BurnResult, DriveError, DriveInfo, MediumStatus, Progress
from .sense import SENSE_LINE, classify_sense

TOOL_MISSING = NOT_INSTALLED.format(tool="xorriso", package="xorriso")
"""The one-line message of DriveError ``tool-missing``."""

DISCOVER_TIMEOUT = 120.0
"""Seconds ``xorriso -devices`` may take (it probes every drive) before discover() gives up."""

MIB = 1 << 20

_UPDATE = re.compile(r"UPDATE\s*:\s*(\d+)\s+of\s+\d+\s+MB written(?:.*?\s(\d+(?:\.\d+)?x)\.?\s*$)?")
_DRIVE_TYPE = re.compile(r"vendor '([^']*)' product '([^']*)' revision '([^']*)'")
_PROBLEM = re.compile(r" : (?:SORRY|FAILURE|FATAL|ABORT) : ")
_DEVICE = re.compile(r"^\s*\d+\s+-dev\s+'([^']+)'\s+\S+\s*:\s*'([^']*)'\s+'([^']*)'?")


def discover(xorriso: str = "xorriso", timeout: float = DISCOVER_TIMEOUT) -> list[DriveInfo]:
    """The optical drives ``xorriso -devices`` can use on this host.

    [] if xorriso is not installed or finds no drive. Drives held by another
    process, or that this user may not open for reading and writing, are not
    found either. Raises DriveError ``timeout`` if the scan takes longer than
    ``timeout`` seconds.
    """
    exe = shutil.which(xorriso)
    if exe is None:
        return []
    try:
        run = run_tool([exe, "-devices"], timeout)
    except ToolTimeout:
        raise DriveError(f"xorriso -devices took longer than {timeout:g} s to scan for drives",
                         "timeout") from None
    return parse_devices(run.stdout)


def parse_devices(text: str) -> list[DriveInfo]:
    """DriveInfos from the output of ``xorriso -devices``.

    ``0  -dev '/dev/sr0' rwrw-- :  'HL-DT-ST' 'DVDRAM GH24NSD1'`` gives
    ``DriveInfo("xorriso", "/dev/sr0", "HL-DT-ST", "DVDRAM GH24NSD1")``;
    other lines are ignored. xorriso does not list firmware here.
    """
    found = []
    for line in text.splitlines():
        if m := _DEVICE.match(line):
            found.append(DriveInfo("xorriso", m[1], m[2].strip(), m[3].strip()))
    return found


def parse_version(text: str) -> str:
    """The version line of ``xorriso -version``'s stdout: its first non-empty line
    (``xorriso 1.5.4``), "" if there is none."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


_VERSIONS: dict[str, str] = {}
"""Program path -> its version line, so ``-version`` runs once per program."""


def parse_status(text: str) -> MediumStatus:
    """Build a MediumStatus from the stdout of ``xorriso -toc -tell_media_space``.

    ``free_sectors`` is the ``Media space`` in 2048-byte sectors (0 for a
    closed or absent medium); ``medium_id`` the ID part of ``Media
    product`` (None without one); ``tool_version`` is left "". Raises
    ValueError if the text has no ``Media status`` line or reports an
    unrecognizable medium.
    """
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    vendor = model = firmware = ""
    if m := _DRIVE_TYPE.search(fields.get("Drive type", "")):
        vendor, model, firmware = (part.strip() for part in m.groups())
    status = fields.get("Media status")
    if status is None:
        raise ValueError("xorriso reported no 'Media status'")
    if "is not present" in status:
        return MediumStatus("no-medium", None, 0, vendor, model, firmware)
    if "is blank" in status:
        state = "blank"
    elif "is appendable" in status:
        state = "appendable"
    elif "is closed" in status:
        state = "closed"
    else:
        raise ValueError(f"the medium is not usable: Media status {status!r}")
    free = 0
    if state != "closed" and (m := re.match(r"(\d+)s", fields.get("Media space", ""))):
        free = int(m[1])
    medium_id = fields.get("Media product", "").partition(" , ")[0].strip() or None
    return MediumStatus(state, _medium_type(fields.get("Media current", "")), free,
                        vendor, model, firmware, medium_id=medium_id)


def _medium_type(current: str) -> str | None:
    """``DVD-R sequential recording`` -> ``DVD-R``; ``stdio file, overwriteable``
    -> ``stdio file``; ``is not recognizable`` -> None."""
    profile = current.split(",")[0].strip()
    if not profile or profile.startswith("is not"):
        return None
    return profile if profile.startswith("stdio") else profile.split()[0]


def parse_progress(line: str) -> tuple[int, str | None] | None:
    """Parse one xorriso burn progress line.

    ``xorriso : UPDATE :  152 of 1430 MB written (fifo  0%) [buf  50%]  52.3x.``
    gives ``(152 * 2**20, "52.3x")``: bytes written so far (MiB resolution)
    and the speed as printed (None when the line has none). Other lines give
    None.
    """
    m = _UPDATE.search(line)
    if not m:
        return None
    return int(m[1]) * MIB, m[2]


class XorrisoDrive:
    """A real drive (``device``) or a file-backed drive (``media_dir``) driven by xorriso.

    Exactly one of ``device`` and ``media_dir`` is given. ``xorriso`` is the
    program's name or path; ``timeout`` is the limit in seconds for each
    xorriso run (None or 0: no limit). Raises DriveError ``config`` on a bad
    combination. A missing xorriso is reported by every operation
    (DriveError ``tool-missing``), not here, so a config can be loaded on a
    host without it.
    """

    adapter = "xorriso"

    def __init__(self, name: str, device: str | None = None, media_dir: str | None = None,
                 xorriso: str = "xorriso", timeout: float | None = None):
        if (device is None) == (media_dir is None):
            raise DriveError(
                f"drive {name}: give exactly one of device (a drive such as /dev/sr0) "
                "or media_dir (a folder of medium files)", "config")
        if device is not None and re.match(r"[A-Za-z]+:", device):
            raise DriveError(f"drive {name}: device {device!r} must be a device node such as "
                             "/dev/sr0, without a prefix; for medium files set media_dir",
                             "config")
        check_timeout(name, timeout)
        self.name = name
        self.device = device
        self.media_dir = os.fspath(media_dir) if media_dir is not None else None
        self.xorriso = xorriso
        self.timeout = timeout or None
        self._slot = MediumSlot(name, self.media_dir) if self.media_dir is not None else None

    def __repr__(self) -> str:
        where = f"device={self.device!r}" if self.device else f"media_dir={self.media_dir!r}"
        return f"XorrisoDrive({self.name!r}, {where})"

    # -- the Drive interface ------------------------------------------------

    def status(self) -> MediumStatus:
        """Ask xorriso about the drive and its medium.

        A file-backed drive with nothing loaded (or whose medium file has
        gone) reports ``no-medium`` without running xorriso. ``tool_version``
        is xorriso's version line. Raises DriveError ``tool-missing``,
        ``timeout``, ``medium-error`` (medium not recognizable) or the class
        of xorriso's failure (default ``not-ready``).
        """
        version = self.tool_version()
        if self._slot is not None and (self._slot.current is None
                                       or not os.path.isfile(self._slot.current)):
            return MediumStatus("no-medium", None, 0, tool_version=version)
        run = self._run(["-outdev", self._target(), "-toc", "-tell_media_space"],
                        "read the medium status")
        try:
            status = parse_status(run.stdout)
        except ValueError as exc:
            if run.returncode != 0:
                raise self._failure(run, "read the medium status", "not-ready") from None
            raise DriveError(f"drive {self.name}: {exc}", "medium-error") from None
        if run.returncode != 0 and status.state != "no-medium":
            raise self._failure(run, "read the medium status", "not-ready")
        return dataclasses.replace(status, tool_version=version)

    def load_blank(self, label: str) -> None:
        """Load a blank medium.

        File-backed: the medium becomes ``<media_dir>/<label>.medium``
        (created empty, ``media_dir`` too if needed). Real drive: checks that
        the inserted disc is blank; ``label`` is not used. Raises DriveError
        ``medium-not-blank``, ``no-medium``, ``config`` (bad label or
        folder), ``tool-missing``, or whatever :meth:`status` raises.
        """
        self._exe()
        if self._slot is not None:
            self._slot.load_blank(label)
            return
        require_blank(self.name, self.device, self._require_medium())

    def load(self, medium_path: str | None) -> None:
        """Load an existing medium.

        File-backed: ``medium_path`` becomes the current medium. Real drive:
        checks a disc is in the drive; ``medium_path`` is not used. Raises
        DriveError ``no-medium``, ``tool-missing``, or what :meth:`status` raises.
        """
        self._exe()
        if self._slot is not None:
            self._slot.load(medium_path)
        else:
            self._require_medium()

    def burn(self, image_path: str, progress: Progress | None = None,
             speed: str | None = None) -> BurnResult:
        """Burn the image at ``image_path`` in one DAO session.

        Checks first that the medium is blank, that the image's 2048-byte
        sectors (size rounded up) fit ``status().free_sectors``, and that no
        other process holds the drive's device node or medium file open.
        ``speed`` (``"min"``, ``"max"``, ``"4x"``; None: the drive's choice)
        is passed as ``speed=``. ``progress`` gets ``(done_bytes,
        image_bytes)``: 0 at the start, each of xorriso's progress lines,
        and the full size at the end. The result records the requested
        speed, the last speed xorriso reported (None if it printed none),
        and the medium's type and ID as status() saw them before the burn.

        Raises DriveError ``config`` (speed not understood), ``no-medium``,
        ``medium-not-blank``, ``medium-too-small`` (message gives both
        sector counts), ``drive-busy`` (names the holder and its PID),
        ``tool-missing``, ``timeout`` (xorriso ran longer than ``timeout``
        seconds and was killed), or the class :func:`classify_sense` finds in
        xorriso's output (default ``write-error``). OSError if the image
        cannot be read. After a failure the medium must not be trusted.
        """
        check_speed(self.name, speed)
        self._exe()
        medium = self._slot.require() if self._slot is not None else None
        size = os.path.getsize(image_path)
        before = self.status()
        check_writable(self.name, before, size)
        if (busy := busy_error(self.name, medium or self.device)) is not None:
            raise busy
        image = os.path.abspath(image_path)
        report = BurnProgress(progress, size)

        def on_line(line: str) -> None:
            if (parsed := parse_progress(line)) is not None:
                report.advance(*parsed)

        started = time.monotonic()
        report.start()
        doing = f"burn {image}"
        args = ["-as", "cdrecord", "-v", f"dev={self._target()}"]
        if speed is not None:
            args.append(f"speed={speed}")
        run = self._run([*args, "-dao", image], doing, on_line,
                        "; the medium must not be trusted")
        if run.returncode != 0:
            raise self._failure(run, doing, "write-error")
        report.finish()
        return BurnResult(medium_path=medium, speed=report.speed,
                          seconds=time.monotonic() - started,
                          requested_speed=speed, medium_type=before.medium_type,
                          medium_id=before.medium_id, tool_version=self.tool_version())

    def read(self, length: int, progress: Progress | None = None,
             chunk: int = 1 << 20, retries: int = 2) -> MediumFileReader:
        """A reader of the first ``length`` bytes of the medium, read directly
        from the device node or medium file (xorriso is not run).

        See :class:`burners._media.MediumFileReader`: unreadable sectors are
        retried ``retries`` more times, then given as zeros and listed in its
        ``bad`` ranges, as are sectors missing where the medium ends early.
        Raises DriveError ``tool-missing`` or ``no-medium`` (nothing loaded,
        or no device node) at once; while iterating, ``no-medium`` or
        ``read-error`` when the medium cannot be read at all.
        """
        self._exe()
        path = self._slot.require() if self._slot is not None else self.device
        return MediumFileReader(path, length, progress, chunk, retries, self.name)

    def eject(self) -> None:
        """Open the tray (real drive) or unload the medium file (file-backed).

        Raises DriveError ``tool-missing``, ``timeout`` or xorriso's failure
        class (default ``not-ready``).
        """
        self._exe()
        if self._slot is not None:
            self._slot.eject()
            return
        run = self._run(["-outdev", self._target(), "-eject", "all"], "eject the disc")
        if run.returncode != 0:
            raise self._failure(run, "eject the disc", "not-ready")

    def tool_version(self) -> str:
        """xorriso's version line (``xorriso 1.5.4``), asked once per program path.

        "" if xorriso does not say. Raises DriveError ``tool-missing`` or
        ``timeout`` (the drive's ``timeout`` applies).
        """
        exe = self._exe()
        if exe not in _VERSIONS:
            run = self._run(["-version"], "report its version")
            _VERSIONS[exe] = parse_version(run.stdout) if run.returncode == 0 else ""
        return _VERSIONS[exe]

    # -- helpers ------------------------------------------------------------

    def _exe(self) -> str:
        """Path of the xorriso program. Raises DriveError ``tool-missing``."""
        return find_tool(self.xorriso, TOOL_MISSING)

    def _target(self) -> str:
        """The drive address xorriso takes: ``mmc:<device>`` or ``stdio:<medium file>``.

        ``mmc:`` makes xorriso refuse anything but a real optical drive; a bare
        path that is not one would silently become a ``stdio:`` file.
        """
        if self._slot is None:
            return "mmc:" + self.device
        return "stdio:" + self._slot.require()

    def _require_medium(self) -> MediumStatus:
        return require_disc(self.name, self.device, self.status())

    def _run(self, args: list[str], doing: str, on_line: Callable[[str], None] | None = None,
             timeout_note: str = "") -> ToolRun:
        """Run xorriso with ``args`` in its own process group, collecting its output.

        ``on_line`` is called with each output line as it arrives. If the run
        takes more than ``self.timeout`` seconds the whole group is stopped
        (SIGTERM, then SIGKILL after :data:`burners._tools.STOP_GRACE`
        seconds) and DriveError ``timeout`` is raised; ``doing`` and
        ``timeout_note`` word its message.
        """
        return run_timed([self._exe(), *args], self.timeout, doing, tool="xorriso",
                         drive=self.name, note=timeout_note, on_line=on_line)

    def _failure(self, run: ToolRun, doing: str, default: str) -> DriveError:
        """A one-line DriveError for a failed xorriso run, with its failure class."""
        text = run.stderr + "\n" + run.stdout
        reason = telling_line(text, (SENSE_LINE, _PROBLEM))
        failure_class = _classify(text, default)
        if failure_class == "drive-busy" and self.device and (held := holder_of(self.device)):
            reason += f" (held by {held[1]}, PID {held[0]})"
        return DriveError(f"drive {self.name}: xorriso could not {doing} "
                          f"(exit {run.returncode}): {reason}", failure_class)


def _classify(text: str, default: str) -> str:
    """Failure class of xorriso's output: the sense data, else a few known phrases."""
    if SENSE_LINE.search(text):
        return classify_sense(text, default)
    if re.search(r"\bbusy\b", text, re.IGNORECASE):
        return "drive-busy"
    if re.search(r"no media|media status : is not present", text, re.IGNORECASE):
        return "no-medium"
    return default
