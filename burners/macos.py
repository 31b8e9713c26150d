"""Drive adapter for macOS: Apple's ``drutil`` and ``hdiutil``.

Commands used (``N`` is the drive's number in ``drutil list``)::

    drutil list                                   discover()
    drutil status -drive N                        status()
    hdiutil burn -list                            burn(): the burner's device path
    hdiutil burn IMAGE -device PATH -noverifyburn -noeject -forceclose
            -puppetstrings [-speed X]             burn()
    drutil eject -drive N                         eject()
    sw_vers -productVersion                       tool_version

What these print, as far as this module relies on it:

* ``drutil list``: a header line (``Vendor   Product   Rev   Bus
  SupportLevel``) and one row per drive starting with its number; the
  fields contain spaces, so rows are cut at the header's column positions.
* ``drutil status``: a ``Vendor Product Rev`` header line and the drive's
  values in the same columns; then ``Label: value`` pairs, two to a line at
  times: ``Type: DVD-R   Name: /dev/disk4``, ``Sessions``/``Tracks``,
  ``Write Speeds: 2x, 4x, 8x``, ``Space Free``/``Space Used``/
  ``Overwritable`` (``MM:SS:FF  blocks: N / ...``, N in 2048-byte sectors),
  ``Writability: appendable, blank, overwritable`` (empty once the disc is
  closed), ``Book Type`` and ``Media ID`` (DVD/BD). An empty drive shows
  ``No Media Inserted`` (usually as the ``Type``); an open tray looks the
  same. drutil's ``-xml`` output is its own XML, not a property list, and
  is not used.
* ``hdiutil burn -list`` prints one IORegistry path (``IOService:/...``) per
  burner: the only form ``-device`` takes. It lists the burners in the
  order ``drutil list`` numbers them; ``N`` picks the N-th.
* ``hdiutil burn -puppetstrings`` prints ``PERCENT:12.345678`` progress
  lines (``-1`` while the amount is unknown) and ``MESSAGE:`` lines; a
  failure ends with ``hdiutil: burn failed - <DiscRecording's reason>``
  (e.g. ``The burn failed because of a medium write error.``) and a
  non-zero exit. ``hdiutil burn`` waits for a disc if none is in the
  drive, so the medium is checked with drutil first. By default it ejects
  and verifies; we keep the disc in (``-noeject``), close it
  (``-forceclose``) and verify by reading back ourselves.

Reading back opens the disc's raw device ``/dev/rdiskN`` (from the status'
``Name: /dev/diskN``) and reads it by length; macOS gives the logged-in
user the device nodes of removable media.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from typing import Any, Mapping

from ._media import (MediumFileReader, check_speed, check_writable, require_blank,
                     require_disc)
from ._tools import (UNTRUSTED, BurnProgress, ToolRun, ToolTimeout, check_table, check_timeout,
                     find_tool, run_timed, run_tool, speed_request, telling_line)
from .base import BurnResult, DriveError, DriveInfo, MediumStatus, Progress
from .sense import SENSE_LINE, classify_sense

ADAPTER = "drutil"

CONFIG_KEYS = frozenset({"name", "adapter", "device", "drutil", "hdiutil", "timeout"})
"""Keys of a drutil ``[[drives]]`` table: ``device`` (the drive's number in
``drutil list``, e.g. 1), optional ``drutil`` and ``hdiutil`` (program names
or paths) and ``timeout`` (seconds per run; 0 or absent: no limit)."""

TOOL_MISSING = ("{tool} was not found: the drutil adapter runs only on macOS, where drutil and "
                "hdiutil are part of the system; elsewhere use the xorriso (Linux) or imapi2 "
                "(Windows) adapter")
"""The one-line message of DriveError ``tool-missing`` ({tool}: the program)."""

_READ_ONLY = ("CD-ROM", "DVD-ROM", "BD-ROM", "HD DVD-ROM")

_LABEL = re.compile(r"(?:^|\s{2,})([A-Z][A-Za-z]*(?: [A-Za-z]+)*):")
_BLOCKS = re.compile(r"blocks:\s*(\d+)")
_PERCENT = re.compile(r"^PERCENT:\s*(-?\d+(?:\.\d+)?)\s*$")
_FAILED = re.compile(r"hdiutil: burn(?: failed)?\s*-\s*(.*)$")

_PHRASES = [
    (re.compile(r"calibrat", re.I), "calibration"),
    (re.compile(r"not blank|isn't blank", re.I), "medium-not-blank"),
    (re.compile(r"busy|in use|exclusive access", re.I), "drive-busy"),
    (re.compile(r"no media|not present|isn't present|insert a (?:blank )?disc", re.I),
     "no-medium"),
    (re.compile(r"not supported|isn't supported|not writable|isn't writable|incompatible"
                r"|unsupported", re.I), "incompatible-medium"),
    (re.compile(r"write error|write fail|underrun|verification failed", re.I), "write-error"),
    (re.compile(r"not ready|becoming ready", re.I), "not-ready"),
]
"""DiscRecording's failure reasons (as hdiutil prints them) -> failure class;
the first match wins."""


def _fields(text: str) -> dict[str, str]:
    """The ``Label: value`` pairs of ``drutil status``, several to a line at times."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        marks = list(_LABEL.finditer(line))
        for i, m in enumerate(marks):
            end = marks[i + 1].start() if i + 1 < len(marks) else len(line)
            fields.setdefault(m[1], line[m.end():end].strip())
    return fields


def _header_values(text: str) -> tuple[str, str, str]:
    """Vendor, product and revision from the ``Vendor  Product  Rev`` header
    and the line under it, cut at the header's column positions."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.search(r"\bVendor\s+Product\s+Rev\b", line):
            values = next((v for v in lines[i + 1:] if v.strip()), "")
            at = [line.index("Vendor"), line.index("Product"), line.index("Rev")]
            return tuple(values[a:b].strip()                          # type: ignore[return-value]
                         for a, b in zip(at, at[1:] + [len(values)]))
    return "", "", ""


def parse_status(text: str, tool_version: str = "") -> MediumStatus:
    """Build a MediumStatus from the output of ``drutil status -drive N``.

    ``state``: no-medium for ``No Media Inserted``; blank / appendable when
    ``Writability`` says so (blank first: a blank CD-R reads "appendable,
    blank, overwritable"); closed otherwise. ``free_sectors`` is the
    ``Space Free`` block count (2048-byte sectors) for blank and appendable
    discs. ``medium_type`` is the ``Type``; ``medium_id`` the ``Media ID``.
    Raises ValueError when the text shows no drive at all.
    """
    vendor, model, firmware = _header_values(text)
    fields = _fields(text)
    if "No Media Inserted" in text:
        return MediumStatus("no-medium", None, 0, vendor, model, firmware,
                            tool_version=tool_version)
    medium_type = fields.get("Type") or None
    if medium_type is None:
        raise ValueError("drutil reported no drive and no disc: "
                         + (" ".join(text.split())[:200] or "no output"))
    writability = fields.get("Writability", "").lower()
    if "blank" in writability:
        state = "blank"
    elif "appendable" in writability:
        state = "appendable"
    else:
        state = "closed"
    free = 0
    if state != "closed" and (m := _BLOCKS.search(fields.get("Space Free", ""))):
        free = int(m[1])
    return MediumStatus(state, medium_type, free, vendor, model, firmware,
                        medium_id=fields.get("Media ID") or None, tool_version=tool_version)


def parse_device_node(text: str) -> str | None:
    """The disc's device node from ``drutil status`` (``Name: /dev/disk4``), or None."""
    node = _fields(text).get("Name", "")
    return node if re.fullmatch(r"/dev/r?disk\d+", node) else None


def parse_write_speeds(text: str) -> list[float]:
    """The ``Write Speeds`` of ``drutil status`` (``2x, 4x, 8x`` -> [2.0, 4.0, 8.0])."""
    return [float(x) for x in re.findall(r"(\d+(?:\.\d+)?)x", _fields(text).get("Write Speeds", ""))]


def parse_list(text: str) -> list[DriveInfo]:
    """DriveInfos from ``drutil list``: rows numbered in the first column, cut
    at the header's ``Vendor``/``Product``/``Rev``/``Bus`` positions."""
    lines = text.splitlines()
    header = next((line for line in lines if re.search(r"\bVendor\s+Product\s+Rev\b", line)), None)
    if header is None:
        return []
    cols = [header.index(word) for word in ("Vendor", "Product", "Rev")]
    bus = header.find("Bus")
    cols.append(bus if bus > cols[-1] else None)
    found = []
    for line in lines:
        m = re.match(r"\s*(\d+)\s", line)
        if not m or line is header:
            continue
        vendor, product, rev = (line[a:b].strip() if b else line[a:].strip()
                                for a, b in zip(cols, cols[1:]))
        found.append(DriveInfo(ADAPTER, m[1], vendor, product, rev))
    return found


def parse_burn_list(text: str) -> list[str]:
    """The burners' IORegistry paths in ``hdiutil burn -list`` output, in order."""
    paths = []
    for line in text.splitlines():
        at = line.find("IOService:")
        if at >= 0 and line[at:].strip() not in paths:
            paths.append(line[at:].strip())
    return paths


def parse_percent(line: str) -> float | None:
    """``PERCENT:12.5`` -> 12.5 (percent of the burn done); None for other
    lines and for the ``-1`` hdiutil prints while it cannot tell."""
    m = _PERCENT.match(line.strip())
    if not m or float(m[1]) < 0:
        return None
    return min(100.0, float(m[1]))


def classify_failure(text: str, default: str = "write-error") -> str:
    """The failure class of hdiutil's or drutil's failure text: sense data
    where printed (``SK=3h/ASC=0Ch/ACQ=00h``), else DiscRecording's reason."""
    if SENSE_LINE.search(text):
        return classify_sense(text, default)
    reason = " ".join(m[1] for m in map(_FAILED.search, text.splitlines()) if m) or text
    for pattern, failure_class in _PHRASES:
        if pattern.search(reason):
            return failure_class
    return default


def hdiutil_speed(speed: str | None, write_speeds: list[float]) -> str | None:
    """The ``-speed`` value for a requested speed: ``"4x"`` -> ``"4"``; ``"min"``
    -> the lowest of the disc's ``write_speeds`` (1 if drutil listed none);
    None or ``"max"`` -> None (hdiutil's default, the fastest). Raises
    ValueError for a speed it cannot read."""
    factor = speed_request(speed)
    if factor is None:
        return None
    if factor == "min":
        return f"{min(write_speeds) if write_speeds else 1.0:g}"
    return f"{factor:g}"


class MacDrive:
    """A macOS optical drive, driven by drutil and hdiutil.

    ``device`` is the drive's number in ``drutil list`` (1 for the first);
    ``drutil`` and ``hdiutil`` the programs to run; ``timeout`` the limit in
    seconds for each run (None or 0: none; a burn is one run).
    ``raw_device`` is what :meth:`read` opens; by default ``/dev/rdiskN`` for
    the disc's ``Name: /dev/diskN``. Raises DriveError ``config`` for a bad
    argument; missing programs are reported by each operation
    (``tool-missing``).
    """

    adapter = ADAPTER
    media_dir = None

    def __init__(self, name: str, device: str | int, drutil: str = "drutil",
                 hdiutil: str = "hdiutil", timeout: float | None = None,
                 raw_device: str | None = None):
        if isinstance(device, bool) or not re.fullmatch(r"[1-9]\d*", str(device).strip()):
            raise DriveError(f"drive {name}: device must be the drive's number in `drutil list` "
                             f"(e.g. 1), not {device!r}", "config")
        check_timeout(name, timeout)
        self.name = name
        self.device = str(device).strip()
        self.drutil = drutil
        self.hdiutil = hdiutil
        self.timeout = timeout or None
        self.raw_device = raw_device
        self._version: str | None = None

    def __repr__(self) -> str:
        return f"MacDrive({self.name!r}, device={self.device!r})"

    # -- the Drive interface --------------------------------------------------------

    def status(self) -> MediumStatus:
        """Ask ``drutil status`` about the drive and its disc.

        Raises DriveError ``tool-missing``, ``timeout``, or ``not-ready``
        (drutil failed or shows no such drive).
        """
        return parse_status(self._status_text(), self._tool_version())

    def load_blank(self, label: str) -> None:
        """Check that a blank, writable disc is in the drive (``label`` is not
        used). Raises DriveError ``no-medium``, ``medium-not-blank``,
        ``incompatible-medium`` or what :meth:`status` raises."""
        status = self._require_medium()
        self._refuse_read_only(status)
        require_blank(self.name, f"drive {self.device}", status)

    def load(self, medium_path: str | None) -> None:
        """Check that a disc is in the drive (``medium_path`` is not used).
        Raises DriveError ``no-medium`` or what :meth:`status` raises."""
        self._require_medium()

    def burn(self, image_path: str, progress: Progress | None = None,
             speed: str | None = None) -> BurnResult:
        """Burn the image at ``image_path`` with ``hdiutil burn`` and close the disc.

        Checks first that the disc is blank, not read-only, and has room for
        the image's 2048-byte sectors (size rounded up). ``speed``: ``"4x"``,
        ``"min"`` (the disc's lowest listed write speed), None or ``"max"``
        (hdiutil's default, the fastest). ``progress`` gets ``(done_bytes,
        image_bytes)``: 0, then each ``PERCENT`` line as bytes, then the full
        size. hdiutil's own verification is off: the caller reads back.

        Raises DriveError ``no-medium``, ``medium-not-blank``,
        ``medium-too-small``, ``incompatible-medium``, ``config`` (a speed it
        cannot read), ``not-ready`` (hdiutil lists no burner N),
        ``tool-missing``, ``timeout`` (hdiutil stopped after ``timeout``
        seconds), or the class :func:`classify_failure` finds in hdiutil's
        output (default ``write-error``). After a failure the disc must not
        be trusted.
        """
        size = os.path.getsize(image_path)
        text = self._status_text()
        status = parse_status(text, self._tool_version())
        self._refuse_read_only(status)
        check_writable(self.name, status, size)
        check_speed(self.name, speed)
        try:
            x = hdiutil_speed(speed, parse_write_speeds(text))
        except ValueError as exc:
            raise DriveError(f"drive {self.name}: {exc}", "config") from None
        target = self._burner_path()
        image = os.path.abspath(image_path)
        args = ["burn", image, "-device", target, "-noverifyburn", "-noeject", "-forceclose",
                "-puppetstrings"] + (["-speed", x] if x else [])
        report = BurnProgress(progress, size)

        def on_line(line: str) -> None:
            percent = parse_percent(line)
            if percent is not None:
                report.advance(int(size * percent / 100))

        started = time.monotonic()
        report.start()
        doing = f"burn {image}"
        run = self._run(self.hdiutil, args, doing, on_line, UNTRUSTED)
        if run.returncode != 0:
            raise self._failure(self.hdiutil, run, doing, "write-error", UNTRUSTED)
        report.finish()
        return BurnResult(medium_path=None, speed=None, seconds=time.monotonic() - started,
                          requested_speed=speed, medium_type=status.medium_type,
                          medium_id=status.medium_id, tool_version=status.tool_version)

    def read(self, length: int, progress: Progress | None = None,
             chunk: int = 1 << 20, retries: int = 2) -> MediumFileReader:
        """Stream the first ``length`` bytes of the disc from its raw device
        ``/dev/rdiskN``.

        Asks ``drutil status`` first: raises DriveError ``no-medium`` at once
        when the drive is empty, ``not-ready`` when drutil names no device
        node for the disc. See :class:`burners._media.MediumFileReader`:
        unreadable sectors come back as zeros, listed in its ``bad`` ranges,
        as do sectors missing where the disc ends early.
        """
        text = self._status_text()
        require_disc(self.name, f"drive {self.device}", parse_status(text), " to read")
        path = self.raw_device
        if path is None:
            node = parse_device_node(text)
            if node is None:
                raise DriveError(f"drive {self.name}: drutil names no device node for the disc "
                                 f"in drive {self.device}; wait for it to spin up", "not-ready")
            path = node.replace("/dev/disk", "/dev/rdisk")
        return MediumFileReader(path, length, progress, chunk, retries, self.name)

    def eject(self) -> None:
        """Open the tray (``drutil eject``). Raises DriveError ``tool-missing``,
        ``timeout``, or drutil's failure class (default ``not-ready``)."""
        run = self._run(self.drutil, ["eject", "-drive", self.device], "eject the disc")
        if run.returncode != 0:
            raise self._failure(self.drutil, run, "eject the disc", "not-ready")

    # -- helpers --------------------------------------------------------------------

    def _exe(self, program: str) -> str:
        return find_tool(program, TOOL_MISSING)

    def _run(self, program: str, args: list[str], doing: str,
             on_line=None, note: str = "") -> ToolRun:
        """Run ``program`` with ``args`` under this drive's time limit (``on_line``
        gets its stdout lines). Raises DriveError ``tool-missing`` or ``timeout``."""
        return run_timed([self._exe(program), *args], self.timeout, doing,
                         tool=os.path.basename(program), drive=self.name, note=note,
                         on_line=on_line, stderr_lines=False)

    def _failure(self, program: str, run: ToolRun, doing: str, default: str,
                 note: str = "") -> DriveError:
        """A one-line DriveError for a failed run, with its failure class."""
        text = "\n".join(line.strip() for line in run.stderr_lines + run.stdout_lines
                         if line.strip() and not line.startswith(("PERCENT:", "MESSAGE:")))
        reason = telling_line(text, (SENSE_LINE, _FAILED))
        return DriveError(f"drive {self.name}: {os.path.basename(program)} could not {doing} "
                          f"(exit {run.returncode}): {reason}{note}",
                          classify_failure(text, default))

    def _status_text(self) -> str:
        self._exe(self.hdiutil)             # both programs or neither: say so before any work
        run = self._run(self.drutil, ["status", "-drive", self.device], "read the disc status")
        text = run.stdout
        if run.returncode != 0:
            raise self._failure(self.drutil, run, "read the disc status", "not-ready")
        try:
            parse_status(text)
        except ValueError as exc:
            raise DriveError(f"drive {self.name}: {exc}; check the drive number with "
                             "`drutil list`", "not-ready") from None
        return text

    def _require_medium(self) -> MediumStatus:
        return require_disc(self.name, f"drive {self.device}", self.status(),
                            " (or its tray is open)")

    def _refuse_read_only(self, status: MediumStatus) -> None:
        if status.medium_type in _READ_ONLY:
            raise DriveError(f"drive {self.name}: the disc in drive {self.device} is a read-only "
                             f"{status.medium_type}; insert a blank writable disc",
                             "incompatible-medium")

    def _burner_path(self) -> str:
        """The IORegistry path ``hdiutil burn -device`` takes for drive N."""
        run = self._run(self.hdiutil, ["burn", "-list"], "list the burners")
        if run.returncode != 0:
            raise self._failure(self.hdiutil, run, "list the burners", "not-ready")
        paths = parse_burn_list(run.stdout)
        index = int(self.device)
        if index > len(paths):
            raise DriveError(f"drive {self.name}: hdiutil lists {len(paths)} burner(s), not a "
                             f"drive {self.device}; check the drive number with `drutil list`",
                             "not-ready")
        return paths[index - 1]

    def _tool_version(self) -> str:
        """``macOS 14.4.1 drutil/hdiutil`` from ``sw_vers -productVersion``; "" if unknown."""
        if self._version is None:
            self._version = ""
            exe = shutil.which("sw_vers")
            if exe:
                try:
                    run = run_tool([exe, "-productVersion"], 10)
                except (ToolTimeout, OSError):
                    run = None
                lines = run.stdout_lines if run and run.returncode == 0 else []
                if lines and lines[0].strip():
                    self._version = f"macOS {lines[0].strip()} drutil/hdiutil"
        return self._version


# -- module entry points -------------------------------------------------------------

def from_config(spec: Mapping[str, Any]) -> MacDrive:
    """Build a :class:`MacDrive` from its ``[[drives]]`` table (keys: :data:`CONFIG_KEYS`).

    Raises DriveError ``config`` with one line naming the drive and the fix
    for a missing name or device, an unknown key, or a bad value. Does not
    run drutil.
    """
    name = check_table(spec, ADAPTER, CONFIG_KEYS, example="burner1", adapter_optional=True)
    for key in ("drutil", "hdiutil"):
        if key in spec and (not isinstance(spec[key], str) or not spec[key]):
            raise DriveError(f"drive {name}: {key} must be a program name or path", "config")
    if "device" not in spec:
        raise DriveError(f"drive {name}: set device to the drive's number in `drutil list` "
                         "(e.g. device = 1)", "config")
    return MacDrive(name, spec["device"], drutil=spec.get("drutil", "drutil"),
                    hdiutil=spec.get("hdiutil", "hdiutil"), timeout=spec.get("timeout"))


def discover(drutil: str = "drutil", timeout: float | None = 30) -> list[DriveInfo]:
    """The drives ``drutil list`` shows, one DriveInfo each with its number as
    ``device``. [] when drutil is missing (any host but macOS). Raises
    DriveError ``timeout`` or ``not-ready`` (drutil failed)."""
    exe = shutil.which(drutil)
    if exe is None:
        return []
    run = run_timed([exe, "list"], timeout, "list the drives", tool="drutil",
                    stderr_lines=False)
    if run.returncode != 0:
        last = telling_line(run.stderr + "\n" + run.stdout, ())
        raise DriveError(f"drutil could not list the drives (exit {run.returncode}): {last}",
                         "not-ready")
    return parse_list(run.stdout)
