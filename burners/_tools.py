"""What the tool-driven adapters share: finding and running their programs.

A program is found on PATH (:func:`find_tool`, DriveError ``tool-missing``
with a one-line message saying how to get it) and run with no input, in its
own process group (:func:`run_tool`), its output lines handed to a callback
as they arrive, in the caller's thread. A run that outlives its time limit
is stopped with everything it started (:func:`stop_tool`) and reported as
DriveError ``timeout`` (:func:`run_timed`). Also here: the write-speed
helpers, a burn's progress reports, the checks of a ``[[drives]]`` table,
and :class:`DeviceNodeDrive`, the part of a real drive at a device node
(``/dev/sr0``) that the growisofs and wodim adapters share. Times are in
seconds, sizes in bytes.
"""

from __future__ import annotations

import ctypes
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ._media import (MediumFileReader, busy_error, check_writable, require_blank,
                     require_disc)
from .base import BurnResult, DriveError, MediumStatus, Progress

NOT_INSTALLED = ("{tool} is not installed: install it (Debian/Ubuntu: apt-get install {package}) "
                 "or set the drive's adapter in the config")
"""The one-line message of DriveError ``tool-missing`` for a Linux program
({tool}: its name, {package}: the Debian package that has it)."""

STOP_GRACE = 5.0
"""Seconds a stopped tool gets after SIGTERM before its process group gets SIGKILL."""

UNTRUSTED = "; the disc must not be trusted"
"""How a failed burn's message ends."""

_LINE_END = re.compile(rb"\r\n|[\r\n]")
_LINE_END_TEXT = re.compile(r"\r\n|[\r\n]")


# -- finding and running a tool --------------------------------------------------------

def find_tool(program: str, missing: str = NOT_INSTALLED,
              packages: Mapping[str, str] | None = None) -> str:
    """Full path of ``program`` (a name on PATH or a path).

    Raises DriveError ``tool-missing`` whose message is ``missing`` with
    ``{tool}`` the program's name and ``{package}`` its package from
    ``packages`` (by program name; default the name itself).
    """
    path = shutil.which(program)
    if path is None:
        name = os.path.basename(program)
        message = missing.format(tool=name, package=(packages or {}).get(name, name))
        if os.sep in program:       # a path from the config: say which one was looked for
            message += f" (looked for {program}, as the config says)"
        raise DriveError(message, "tool-missing")
    return path


@dataclass
class ToolRun:
    """The outcome of one tool run (output decoded as UTF-8, undecodable bytes replaced)."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def text(self) -> str:
        """stdout and stderr together, for classification and messages."""
        return self.stdout + "\n" + self.stderr

    @property
    def stdout_lines(self) -> list[str]:
        """stdout cut into lines at ``\\r\\n``, ``\\n`` or ``\\r``."""
        return _lines(self.stdout)

    @property
    def stderr_lines(self) -> list[str]:
        """stderr cut into lines as :attr:`stdout_lines`."""
        return _lines(self.stderr)


def _lines(text: str) -> list[str]:
    lines = _LINE_END_TEXT.split(text)
    if lines[-1] == "":
        lines.pop()
    return lines


class ToolTimeout(Exception):
    """A tool ran longer than its limit; it was stopped with its whole process group."""


def run_tool(argv: list[str], timeout: float | None,
             on_line: Callable[[str], None] | None = None, *,
             stderr_lines: bool = True, c_locale: bool = False) -> ToolRun:
    """Run ``argv`` (``argv[0]`` a full path) with stdin /dev/null and collect its output.

    On POSIX the program runs in its own process group, so that it can be
    stopped with everything it started; on Windows without a console
    window. ``c_locale`` sets ``LC_ALL=C`` (system error texts in English).
    ``on_line`` gets each line of stdout, and of stderr too if
    ``stderr_lines``, as it arrives, in the calling thread; lines end at
    ``\\r\\n``, ``\\n`` or ``\\r`` (wodim and xorriso redraw their progress
    line with ``\\r``). If the run takes more than ``timeout`` seconds
    (None: no limit) it is stopped (:func:`stop_tool`) and ToolTimeout is
    raised; so it is if ``on_line`` raises or the wait is interrupted.
    OSError if the program cannot be started.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    if os.name == "nt":
        start: dict[str, Any] = {"creationflags": getattr(subprocess, "CREATE_NO_WINDOW", 0)}
    else:
        start = {"start_new_session": True}
        if sys.platform.startswith("linux"):
            start["preexec_fn"] = _die_with_parent
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            env={**os.environ, "LC_ALL": "C"} if c_locale else None, **start)
    streams = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    partial = dict.fromkeys(streams, b"")
    chunks: queue.Queue = queue.Queue()
    readers = [threading.Thread(target=_pump, args=(stream, chunks), daemon=True)
               for stream in streams]
    for reader in readers:
        reader.start()
    try:
        open_streams = len(streams)
        while open_streams:
            try:
                stream, data = chunks.get(timeout=_left(deadline))
            except queue.Empty:
                raise ToolTimeout(argv[0]) from None
            feeds = on_line is not None and (stderr_lines or stream is proc.stdout)
            if not data:
                open_streams -= 1
                if feeds and partial[stream]:
                    on_line(partial[stream].decode("utf-8", "replace"))
                continue
            streams[stream] += data
            if feeds:
                *lines, partial[stream] = _LINE_END.split(partial[stream] + data)
                for line in lines:
                    on_line(line.decode("utf-8", "replace"))
            if deadline is not None and time.monotonic() >= deadline:
                raise ToolTimeout(argv[0])
        try:
            proc.wait(_left(deadline))
        except subprocess.TimeoutExpired:
            raise ToolTimeout(argv[0]) from None
    except BaseException:
        stop_tool(proc)                  # timed out, interrupted, or on_line failed
        raise
    finally:
        for reader, stream in zip(readers, streams):
            reader.join(STOP_GRACE)
            if not reader.is_alive():    # else a leftover process still holds the pipe
                stream.close()
    return ToolRun(proc.returncode, streams[proc.stdout].decode("utf-8", "replace"),
                   streams[proc.stderr].decode("utf-8", "replace"))


def _pump(stream, chunks: queue.Queue) -> None:
    """Hand what ``stream`` gives to ``chunks`` as ``(stream, data)``; ``b""`` at its end."""
    try:
        while data := stream.read1(65536):
            chunks.put((stream, data))
    except (OSError, ValueError):
        pass
    chunks.put((stream, b""))


def _left(deadline: float | None) -> float | None:
    """Seconds until ``deadline`` (a time.monotonic() value), at least 0; None for no limit."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGKILL it when discarchive dies.

    A burner must not go on writing a medium that no job will record or read
    back, e.g. after kill -9 (prctl PR_SET_PDEATHSIG; best effort).
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)   # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def stop_tool(proc: subprocess.Popen) -> None:
    """Stop a tool started by :func:`run_tool` and reap it.

    POSIX: SIGTERM to its process group (so a burner can release the
    drive), SIGKILL to the group after STOP_GRACE seconds for whatever is
    left. Windows: TerminateProcess at once (PowerShell has no cleaner stop
    for a COM call in progress; the drive driver releases IMAPI2's
    exclusive lock).
    """
    if os.name == "nt":
        proc.kill()
        proc.wait()
        return
    _signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(proc, signal.SIGKILL)
    proc.wait()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except OSError:                      # gone; or (macOS) only zombies are left
        pass


def run_timed(argv: list[str], timeout: float | None, doing: str, *, tool: str,
              drive: str | None = None, note: str = "", **options: Any) -> ToolRun:
    """:func:`run_tool` (``options`` are its keyword arguments), a timeout
    raised as DriveError ``timeout``: ``drive NAME: TOOL took longer than N s
    to DOING and was stopped NOTE`` (without ``drive NAME:`` when ``drive``
    is None, without ``to DOING`` when ``doing`` is "")."""
    try:
        return run_tool(argv, timeout, **options)
    except ToolTimeout:
        where = f"drive {drive}: " if drive is not None else ""
        to = f" to {doing}" if doing else ""
        raise DriveError(f"{where}{tool} took longer than {timeout:g} s{to} and was "
                         f"stopped{note}", "timeout") from None


def telling_line(text: str, patterns: tuple[re.Pattern, ...]) -> str:
    """The line of a tool's output that best says what went wrong: the first
    line matching the first of ``patterns`` that matches any, else the last
    line; "no output" if there is none (lines stripped, empty ones skipped)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for pattern in patterns:
        for line in lines:
            if pattern.search(line):
                return line
    return lines[-1] if lines else "no output"


# -- speeds and progress ---------------------------------------------------------------

_X_SPEED = re.compile(r"(\d+(?:\.\d+)?)\s*x?")


def speed_factor(speed: str | None) -> str | None:
    """The speed factor the tools take for a speed :func:`burners._media.check_speed`
    accepted: None or ``"max"`` -> None (the drive's choice); ``"min"`` -> ``"1"``
    (the tools then pick the slowest speed the medium allows); ``"2.4x"`` -> ``"2.4"``."""
    if speed is None or speed == "max":
        return None
    return "1" if speed == "min" else speed[:-1]


def speed_request(speed: str | None) -> float | str | None:
    """A requested write speed read leniently: None, "" or ``"max"`` -> None
    (the drive's fastest); ``"min"`` -> ``"min"``; ``"4x"`` or ``"4"`` -> 4.0
    (times the medium's base speed). Case and surrounding blanks do not
    matter. Raises ValueError for a speed it cannot read."""
    if speed is None or speed.strip().lower() in ("", "max"):
        return None
    text = speed.strip().lower()
    if text == "min":
        return "min"
    m = _X_SPEED.fullmatch(text)
    if not m or float(m[1]) <= 0:
        raise ValueError(f"speed {speed!r} is not a speed such as \"4x\", \"min\" or \"max\"")
    return float(m[1])


class BurnProgress:
    """A burn's reports to ``progress(done_bytes, image_bytes)`` (None: no
    reports), and the write speed its tool reported.

    :meth:`start` reports 0; :meth:`advance` each rise of the bytes done
    (capped at ``size``); :meth:`finish` the full size if the tool's last
    report fell short of it. :attr:`speed` is ``drive_speed`` (for the
    speed the drive says it set, e.g. ``"4.0x"``), else the last speed of
    the moment given to :meth:`advance`, else None.
    """

    def __init__(self, progress: Progress | None, size: int):
        self.progress, self.size, self.done = progress, size, 0
        self.drive_speed: str | None = None
        self.last_speed: str | None = None

    @property
    def speed(self) -> str | None:
        return self.drive_speed or self.last_speed

    def start(self) -> None:
        if self.progress:
            self.progress(0, self.size)

    def advance(self, done_bytes: int, speed: str | None = None) -> None:
        self.last_speed = speed or self.last_speed
        now = min(done_bytes, self.size)
        if self.progress and now > self.done:
            self.done = now
            self.progress(now, self.size)

    def finish(self) -> None:
        if self.progress and self.done < self.size:
            self.progress(self.size, self.size)


# -- config ----------------------------------------------------------------------------

def check_table(spec: Mapping[str, Any], adapter: str, keys: frozenset[str], *,
                example: str = "sr0", adapter_optional: bool = False) -> str:
    """The drive's name from its ``[[drives]]`` table, after checking that it
    has one (``example`` shows one), that its ``adapter`` is ``adapter`` (or
    absent, if ``adapter_optional``) and that it holds no key outside ``keys``.

    Raises DriveError ``config`` with one line naming the drive and the fix.
    """
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise DriveError(f"a drive in the config has no name: add name = \"{example}\" "
                         "(any label)", "config")
    if spec.get("adapter", adapter if adapter_optional else None) != adapter:
        raise DriveError(f"drive {name}: adapter is {spec.get('adapter')!r}, not {adapter!r}; "
                         "fix the adapter key", "config")
    unknown = sorted(set(spec) - keys)
    if unknown:
        raise DriveError(f"drive {name}: {', '.join(unknown)} not used by the {adapter} adapter; "
                         f"remove it (known keys: {', '.join(sorted(keys))})", "config")
    return name


def check_timeout(name: str, timeout: Any, hint: str = "") -> None:
    """Raise DriveError ``config`` unless ``timeout`` is None or a number of
    seconds >= 0 (``hint`` follows "seconds >= 0" in the message)."""
    if timeout is not None and (isinstance(timeout, bool)
                                or not isinstance(timeout, (int, float)) or timeout < 0):
        raise DriveError(f"drive {name}: timeout must be a number of seconds >= 0{hint}, "
                         f"not {timeout!r}", "config")


def drive_options(spec: Mapping[str, Any], adapter: str, keys: frozenset[str],
                  tools: Mapping[str, str]) -> dict[str, Any]:
    """Check a ``[[drives]]`` table for a device-node adapter and return the
    keyword arguments of its Drive class (``name``, ``device``, each tool key
    of ``tools`` with its default, ``timeout``).

    Raises DriveError ``config`` with one line naming the drive and the fix
    for: no name, another adapter, an unknown key, a missing or relative
    device, a tool that is not a non-empty string, a timeout that is not a
    number of seconds >= 0.
    """
    name = check_table(spec, adapter, keys)
    device = spec.get("device")
    if not isinstance(device, str) or not device.startswith("/"):
        raise DriveError(f"drive {name}: set device to the drive's device node, "
                         f"e.g. device = \"/dev/sr0\" (not {device!r})", "config")
    options: dict[str, Any] = {"name": name, "device": device}
    for key, default in tools.items():
        value = spec.get(key, default)
        if not isinstance(value, str) or not value:
            raise DriveError(f"drive {name}: {key} must be a program name or path, "
                             f"e.g. {key} = \"{default}\" (not {value!r})", "config")
        options[key] = value
    check_timeout(name, spec.get("timeout"), " (0: no limit)")
    options["timeout"] = spec.get("timeout")
    return options


# -- a real drive at a device node -----------------------------------------------------

class DeviceNodeDrive:
    """A real drive at ``device`` (``/dev/sr0``) driven by a Linux burning tool.

    The operator inserts each disc by hand, so :meth:`load_blank` and
    :meth:`load` only check what is in the tray; :meth:`read` opens the
    device node itself. A subclass sets ``adapter`` and ``tool_label`` (the
    tool named in failure messages, "" for none) and defines ``status()``,
    ``burn()``, ``_run(args, doing, on_line, timeout_note)`` (a run of its
    tool under the drive's time limit), ``_eject_args()``,
    ``_ask_version()``, and ``_classify(text, default)`` and
    ``_reason(text)`` for a failed run's output.
    """

    adapter: str
    media_dir = None
    tool_label = ""

    def __init__(self, name: str, device: str, timeout: float | None):
        self.name, self.device = name, device
        self.timeout = timeout or None
        self._ejected = False        # eject() opened the tray; load() says a disc is back
        self._version: str | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, device={self.device!r})"

    def load_blank(self, label: str) -> None:
        """Check that the disc the operator inserted is blank (``label`` is not used).

        Raises DriveError ``no-medium``, ``medium-not-blank``, or what
        :meth:`status` raises.
        """
        require_blank(self.name, self.device, self._require_disc())

    def load(self, medium_path: str | None) -> None:
        """Check that a disc is in the drive (``medium_path`` is not used).

        Raises DriveError ``no-medium`` or what :meth:`status` raises.
        """
        self._require_disc()

    def read(self, length: int, progress: Progress | None = None,
             chunk: int = 1 << 20, retries: int = 2) -> MediumFileReader:
        """A reader of the first ``length`` bytes of the disc, read from the
        device node itself (the burning tool is not run).

        See :class:`burners._media.MediumFileReader`: unreadable sectors are
        retried ``retries`` more times, then given as zeros and listed in its
        ``bad`` ranges, as are sectors missing where the disc ends early.
        Raises DriveError ``no-medium`` at once when the device node is
        missing, or after ``eject()`` until :meth:`load` or
        :meth:`load_blank` confirms a disc is back; while iterating,
        ``no-medium`` or ``read-error`` when the disc cannot be read at all.
        """
        if self._ejected:
            raise DriveError(f"drive {self.name}: the tray of {self.device} was opened; "
                             "insert the disc and load it before reading", "no-medium")
        return MediumFileReader(self.device, length, progress, chunk, retries, self.name)

    def eject(self) -> None:
        """Open the tray (the command of ``_eject_args()``).

        Raises DriveError ``tool-missing``, ``timeout``, ``drive-busy`` or
        ``not-ready``.
        """
        run = self._run(self._eject_args(), "open the tray")
        if run.returncode != 0:
            raise self._failure(run, "open the tray", "not-ready")
        self._ejected = True

    def tool_version(self) -> str:
        """The tool's version (``growisofs 7.1``, ``wodim 1.1.11``), asked once
        per drive object.

        "" if the tool does not say. Raises DriveError ``tool-missing`` or
        ``timeout`` (the drive's ``timeout`` applies).
        """
        if self._version is None:
            self._version = self._ask_version()
        return self._version

    def _write(self, args: list[str], image: str, status: MediumStatus, speed: str | None,
               report: BurnProgress, on_line: Callable[[str], None]) -> BurnResult:
        """Run the tool with ``args`` to burn ``image`` onto the disc ``status``
        describes, at the requested ``speed``; ``on_line`` gets its output
        lines (and feeds ``report``), ``report`` the start and the end.

        Raises DriveError ``tool-missing``, ``timeout`` or the failure's class
        (default ``write-error``), its message saying the disc must not be trusted.
        """
        started = time.monotonic()
        report.start()
        doing = f"burn {image}"
        run = self._run(args, doing, on_line, UNTRUSTED)
        if run.returncode != 0:
            raise self._failure(run, doing, "write-error", UNTRUSTED)
        report.finish()
        return BurnResult(medium_path=None, speed=report.speed,
                          seconds=time.monotonic() - started, requested_speed=speed,
                          medium_type=status.medium_type, medium_id=status.medium_id,
                          tool_version=status.tool_version)

    def _require_disc(self) -> MediumStatus:
        status = require_disc(self.name, self.device, self.status())
        self._ejected = False
        return status

    def _check_burnable(self, status: MediumStatus, image_bytes: int) -> None:
        """Raise DriveError unless the disc has room for ``image_bytes``
        (see :func:`burners._media.check_writable`) and no other process
        holds the device node (``drive-busy``, naming the holder)."""
        check_writable(self.name, status, image_bytes)
        if (busy := busy_error(self.name, self.device)) is not None:
            raise busy

    def _failure(self, run: ToolRun, doing: str, default: str, note: str = "") -> DriveError:
        """A one-line DriveError for a failed run, with its failure class; a
        busy drive's holder is named where it can be found."""
        failure_class = self._classify(run.text, default)
        if failure_class == "drive-busy" and (busy := busy_error(self.name, self.device)):
            return busy
        who = f"{self.tool_label} " if self.tool_label else ""
        return DriveError(f"drive {self.name}: {who}could not {doing} (exit {run.returncode}): "
                          f"{self._reason(run.text)}{note}", failure_class)
