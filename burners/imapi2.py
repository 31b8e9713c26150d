"""Drive adapter for Windows: IMAPI2 (Image Mastering API v2), driven through PowerShell.

Every operation runs one PowerShell script of ours (``powershell.exe
-NoProfile -NonInteractive -EncodedCommand ...``) that talks to the IMAPI2
COM objects and prints one JSON object per answer on stdout
(``ConvertTo-Json -Compress``). Each script starts with a marker line
``# discarchive-op: status`` (``burn``, ``eject``, ``discover``) and carries
its parameters as one JSON literal, so the test fakes (and a reader of a
log) can tell what was asked. comtypes is not used: PowerShell ships with
every Windows that has IMAPI2, so one code path serves all of them.

What this module relies on, as Microsoft documents IMAPI2:

* ``IMAPI2.MsftDiscMaster2`` enumerates the recorders' unique IDs;
  ``IMAPI2.MsftDiscRecorder2.InitializeDiscRecorder(id)`` opens one, with
  ``VendorId``/``ProductId``/``ProductRevision``, ``VolumePathNames``
  (``E:\\``) and ``ExclusiveAccessOwner``.
* ``IMAPI2.MsftDiscFormat2Data`` with its ``Recorder`` set reports
  ``CurrentPhysicalMediaType`` (IMAPI_MEDIA_PHYSICAL_TYPE: 9 = DVD-R, 18 =
  BD-R ...), ``CurrentMediaStatus`` (IMAPI_FORMAT2_DATA_MEDIA_STATE bit
  flags: 0x2 blank, 0x4 appendable, 0x4000 finalized, 0xFC00 the
  "unsupported" states), ``MediaHeuristicallyBlank``,
  ``FreeSectorsOnMedia`` (2048-byte sectors), ``IsCurrentMediaSupported``
  and ``SupportedWriteSpeeds`` (sectors per second; 1x is 75 for CD, 680
  for DVD, 2195 for BD).
* ``Write(IStream)`` burns one session; the stream's size must be a whole
  number of 2048-byte sectors. ``ForceMediaToBeClosed`` closes the disc;
  ``SetWriteSpeed(sectorsPerSecond, pureCAV)`` sets the speed; IMAPI2's own
  read-back is ``IBurnVerification.BurnVerificationLevel`` =
  IMAPI_BURN_VERIFICATION_FULL (2). IBurnVerification is an IUnknown-only
  interface (IID D2FFD834-958B-426D-8470-2A13879C6A91), out of reach of
  PowerShell's late binding, so the burn script compiles a few lines of C#
  (Add-Type) to set it, and to hand IMAPI2 the image as an IStream padded
  to whole sectors that counts the bytes IMAPI2 has taken from it: that
  count, printed once a second, is the burn's progress (IMAPI2 buffers a
  few MiB ahead of the laser; its full verification runs after the count
  reaches the end).
* Failures are COM exceptions whose HRESULT the scripts print, e.g.
  0xC0AA0202 E_IMAPI_RECORDER_MEDIA_NO_MEDIA; :data:`HRESULTS` maps them to
  failure classes. IMAPI2 does not tell an open tray from an empty one:
  both are "no media".
* IMAPI2's scriptable interfaces do not expose the disc's manufacturer ID
  (only the IUnknown-only IDiscRecorder2Ex.ReadDvdStructure does), so
  ``medium_id`` is None.

Reading back does not go through IMAPI2: Python opens the volume's raw
device ``\\\\.\\E:`` and reads it by length, in whole sectors at sector
offsets as a raw optical volume requires. (Windows normally lets the
logged-on user open an optical volume this way; this has not been tried on
Windows in this project's tests.)
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ._media import (MediumFileReader, check_speed, check_writable, require_blank,
                     require_disc)
from ._tools import (UNTRUSTED, BurnProgress, check_table, check_timeout, find_tool, run_timed,
                     speed_request)
from .base import BurnResult, DriveError, DriveInfo, MediumStatus, Progress

ADAPTER = "imapi2"

CONFIG_KEYS = frozenset({"name", "adapter", "device", "powershell", "timeout"})
"""Keys of an imapi2 ``[[drives]]`` table: ``device`` (recorder unique ID or
drive letter such as ``E:``), optional ``powershell`` (program name or path)
and ``timeout`` (seconds per PowerShell run; 0 or absent: no limit)."""

TOOL_MISSING = ("PowerShell was not found: the imapi2 adapter runs only on Windows, where "
                "powershell.exe and IMAPI2 are part of the system; elsewhere use the xorriso "
                "(Linux) or drutil (macOS) adapter")
"""The one-line message of DriveError ``tool-missing``."""

CLIENT_NAME = "discarchive"
"""The name IMAPI2 shows as the exclusive-access owner while we burn."""

BURN_VERIFICATION_FULL = 2
"""IMAPI_BURN_VERIFICATION_FULL: IMAPI2 reads the whole session back and
compares a checksum with the stream it burned."""

PROGRESS_EVERY_MS = 1000
"""How often the burn script reports progress, in milliseconds."""

# IMAPI_MEDIA_PHYSICAL_TYPE -> the usual name of the medium.
MEDIA_TYPES = {
    1: "CD-ROM", 2: "CD-R", 3: "CD-RW", 4: "DVD-ROM", 5: "DVD-RAM", 6: "DVD+R",
    7: "DVD+RW", 8: "DVD+R DL", 9: "DVD-R", 10: "DVD-RW", 11: "DVD-R DL",
    12: "disk", 13: "DVD+RW DL", 14: "HD DVD-ROM", 15: "HD DVD-R", 16: "HD DVD-RAM",
    17: "BD-ROM", 18: "BD-R", 19: "BD-RE",
}
_READ_ONLY_TYPES = {1, 4, 14, 17}

# Sectors per second at 1x (IMAPI_SECTORS_PER_SECOND_AT_1X_*), by medium family.
_ONE_X = {"CD": 75, "DVD": 680, "HD DVD": 4568, "BD": 2195}

# IMAPI_FORMAT2_DATA_MEDIA_STATE flags.
MEDIA_BLANK = 0x2
MEDIA_APPENDABLE = 0x4
MEDIA_DAMAGED = 0x400
MEDIA_ERASE_REQUIRED = 0x800
MEDIA_WRITE_PROTECTED = 0x2000
MEDIA_FINALIZED = 0x4000
MEDIA_UNSUPPORTED = 0x8000

E_IMAPI_RECORDER_MEDIA_NO_MEDIA = 0xC0AA0202

HRESULTS: dict[int, tuple[str, str | None]] = {
    0xC0AA0002: ("E_IMAPI_REQUEST_CANCELLED", "power-loss"),
    0xC0AA0003: ("E_IMAPI_RECORDER_REQUIRED", "config"),
    0xC0AA0007: ("E_IMAPI_BURN_VERIFICATION_FAILED", "write-error"),
    0xC0AA0202: ("E_IMAPI_RECORDER_MEDIA_NO_MEDIA", "no-medium"),
    0xC0AA0203: ("E_IMAPI_RECORDER_MEDIA_INCOMPATIBLE", "incompatible-medium"),
    0xC0AA0204: ("E_IMAPI_RECORDER_MEDIA_UPSIDE_DOWN", "incompatible-medium"),
    0xC0AA0205: ("E_IMAPI_RECORDER_MEDIA_BECOMING_READY", "not-ready"),
    0xC0AA0206: ("E_IMAPI_RECORDER_MEDIA_FORMAT_IN_PROGRESS", "not-ready"),
    0xC0AA0207: ("E_IMAPI_RECORDER_MEDIA_BUSY", "drive-busy"),
    0xC0AA0208: ("E_IMAPI_RECORDER_INVALID_MODE_PARAMETERS", None),
    0xC0AA0209: ("E_IMAPI_RECORDER_MEDIA_WRITE_PROTECTED", "incompatible-medium"),
    0xC0AA020D: ("E_IMAPI_RECORDER_COMMAND_TIMEOUT", None),
    0xC0AA020E: ("E_IMAPI_RECORDER_DVD_STRUCTURE_NOT_PRESENT", "incompatible-medium"),
    0xC0AA020F: ("E_IMAPI_RECORDER_MEDIA_SPEED_MISMATCH", "incompatible-medium"),
    0xC0AA0210: ("E_IMAPI_RECORDER_LOCKED", "drive-busy"),
    0xC0AA0212: ("E_IMAPI_RECORDER_MEDIA_NOT_FORMATTED", "incompatible-medium"),
    0xC0AA02FF: ("E_IMAPI_RECORDER_INVALID_RESPONSE_FROM_DEVICE", None),
    0xC0AA0300: ("E_IMAPI_LOSS_OF_STREAMING", "write-error"),
    0xC0AA0301: ("E_IMAPI_UNEXPECTED_RESPONSE_FROM_DEVICE", None),
    0xC0AA0400: ("E_IMAPI_DF2DATA_WRITE_IN_PROGRESS", "drive-busy"),
    0xC0AA0402: ("E_IMAPI_DF2DATA_INVALID_MEDIA_STATE", "medium-not-blank"),
    0xC0AA0404: ("E_IMAPI_DF2DATA_STREAM_TOO_LARGE_FOR_CURRENT_MEDIA", "medium-too-small"),
    0xC0AA0405: ("E_IMAPI_DF2DATA_MEDIA_NOT_BLANK", "medium-not-blank"),
    0xC0AA0406: ("E_IMAPI_DF2DATA_MEDIA_IS_NOT_SUPPORTED", "incompatible-medium"),
    0xC0AA0407: ("E_IMAPI_DF2DATA_RECORDER_NOT_SUPPORTED", "config"),
    0x80070005: ("E_ACCESSDENIED", "drive-busy"),
    0x80070015: ("ERROR_NOT_READY", "not-ready"),
    0x80070037: ("ERROR_DEV_NOT_EXIST", "not-ready"),
    0x80040154: ("REGDB_E_CLASSNOTREG", "tool-missing"),
}
"""HRESULT -> (name, failure class); None: the failed operation's own default
(``write-error`` for a burn, ``not-ready`` otherwise)."""


class Imapi2Error(ValueError):
    """An IMAPI2 answer reporting a failure: ``hresult`` (int or None),
    ``failure_class``, and the text IMAPI2 gave."""

    def __init__(self, text: str, hresult: int | None, failure_class: str):
        super().__init__(text)
        self.hresult = hresult
        self.failure_class = failure_class


def hresult_name(code: int | None) -> str:
    """``0xC0AA0202`` -> ``E_IMAPI_RECORDER_MEDIA_NO_MEDIA (0xC0AA0202)``."""
    if code is None:
        return "no HRESULT"
    name = HRESULTS.get(code, ("",))[0]
    return f"{name} (0x{code:08X})" if name else f"HRESULT 0x{code:08X}"


def classify_hresult(code: int | None, default: str) -> str:
    """The failure class of an HRESULT; ``default`` for codes the table leaves open."""
    if code is None:
        return default
    return HRESULTS.get(code, ("", None))[1] or default


def _hresult(answer: Mapping[str, Any]) -> int | None:
    """The answer's ``hresult`` (``"0xC0AA0202"`` or a signed int) as an unsigned int."""
    raw = answer.get("hresult")
    if raw is None or raw == "":
        return None
    try:
        return (int(raw, 16) if isinstance(raw, str) else int(raw)) & 0xFFFFFFFF
    except ValueError:
        return None


def answer_error(answer: Mapping[str, Any], default: str) -> Imapi2Error:
    """An :class:`Imapi2Error` for a failed answer, classed by its HRESULT."""
    code = _hresult(answer)
    text = " ".join(str(answer.get("message") or "").split()) or "no message"
    owner = answer.get("ExclusiveAccessOwner")
    if owner and classify_hresult(code, default) == "drive-busy":
        text += f" (held by {owner})"
    return Imapi2Error(f"{hresult_name(code)}: {text}", code, classify_hresult(code, default))


def medium_family(medium_type: str | None) -> str | None:
    """``DVD+R DL`` -> ``DVD``; ``BD-RE`` -> ``BD``; unknown -> None."""
    if not medium_type:
        return None
    for family in ("HD DVD", "DVD", "CD", "BD"):
        if medium_type.startswith(family):
            return family
    return None


def parse_status(answer: Mapping[str, Any], tool_version: str = "") -> MediumStatus:
    """Build a MediumStatus from the status script's JSON answer.

    ``state``: no-medium for E_IMAPI_RECORDER_MEDIA_NO_MEDIA; blank when
    CurrentMediaStatus has the blank flag or MediaHeuristicallyBlank is
    true; closed when finalized, read-only (DVD-ROM...) or in any other
    unwritable state; appendable when IMAPI2 says so. ``free_sectors`` is
    FreeSectorsOnMedia (2048-byte sectors) for blank and appendable media.
    Raises :class:`Imapi2Error` for any other failure the answer reports
    (e.g. E_IMAPI_RECORDER_MEDIA_INCOMPATIBLE, E_IMAPI_RECORDER_LOCKED).
    """
    vendor = str(answer.get("VendorId") or "").strip()
    model = str(answer.get("ProductId") or "").strip()
    firmware = str(answer.get("ProductRevision") or "").strip()

    def make(state: str, medium_type: str | None, free: int) -> MediumStatus:
        return MediumStatus(state, medium_type, free, vendor, model, firmware,
                            medium_id=None, tool_version=tool_version)

    code = _hresult(answer)
    if code == E_IMAPI_RECORDER_MEDIA_NO_MEDIA:
        return make("no-medium", None, 0)
    if not answer.get("ok", True) or code is not None:
        raise answer_error(answer, "not-ready")
    kind = int(answer.get("CurrentPhysicalMediaType") or 0)
    flags = int(answer.get("CurrentMediaStatus") or 0)
    medium_type = MEDIA_TYPES.get(kind)
    if kind == 0 and not flags:
        return make("no-medium", None, 0)     # IMAPI_MEDIA_TYPE_UNKNOWN: empty recorder
    if kind in _READ_ONLY_TYPES or flags & (MEDIA_FINALIZED | MEDIA_DAMAGED | MEDIA_ERASE_REQUIRED
                                             | MEDIA_WRITE_PROTECTED | MEDIA_UNSUPPORTED):
        return make("closed", medium_type, 0)
    free = max(0, int(answer.get("FreeSectorsOnMedia") or 0))
    if flags & MEDIA_BLANK or answer.get("MediaHeuristicallyBlank"):
        return make("blank", medium_type, free)
    if flags & MEDIA_APPENDABLE:
        return make("appendable", medium_type, free)
    return make("closed", medium_type, 0)


def write_refusal(answer: Mapping[str, Any]) -> tuple[str, str] | None:
    """Why IMAPI2 will not write the disc a status answer describes, as
    ``(failure_class, reason)``; None when it is writable as far as IMAPI2
    says, or when it is simply written and closed (:func:`parse_status`
    reports that as ``closed``: not blank).
    """
    kind = int(answer.get("CurrentPhysicalMediaType") or 0)
    flags = int(answer.get("CurrentMediaStatus") or 0)
    name = MEDIA_TYPES.get(kind, f"medium type {kind}")
    if kind in _READ_ONLY_TYPES:
        return "incompatible-medium", f"the disc is a read-only {name}"
    if flags & MEDIA_DAMAGED:
        return "medium-error", f"IMAPI2 reports the {name} as damaged"
    if flags & MEDIA_FINALIZED:
        return None
    if flags & MEDIA_WRITE_PROTECTED:
        return "incompatible-medium", f"the {name} is write-protected"
    if flags & MEDIA_UNSUPPORTED or answer.get("MediaSupported") is False:
        return "incompatible-medium", f"IMAPI2 cannot write a {name} in this drive"
    if flags & MEDIA_ERASE_REQUIRED:
        return "medium-not-blank", f"the {name} must be erased first"
    return None


def sectors_per_second(speed: str | None, medium_type: str | None,
                       supported: list[int] | None = None) -> int | None:
    """The IMAPI2 write speed (2048-byte sectors per second) for a requested speed.

    ``"4x"`` (or ``"4"``) is 4 times the medium family's 1x rate (DVD: 680);
    ``"min"`` is the lowest of the drive's ``supported`` speeds; None or
    ``"max"`` is None (IMAPI2's default, the fastest). Raises ValueError for
    a speed it cannot read, or for ``x`` speeds on an unknown medium type.
    """
    factor = speed_request(speed)
    if factor is None:
        return None
    if factor == "min":
        speeds = [int(s) for s in supported or [] if int(s) > 0]
        if not speeds:
            raise ValueError("the drive reports no write speeds for this medium")
        return min(speeds)
    family = medium_family(medium_type)
    if family is None:
        raise ValueError(f"cannot turn {speed!r} into sectors per second for medium "
                         f"type {medium_type!r}")
    return max(1, round(factor * _ONE_X[family]))


def speed_label(sectors: int | None, medium_type: str | None) -> str | None:
    """IMAPI2's CurrentWriteSpeed (sectors per second) as ``"8.0x"``; None if unknown."""
    family = medium_family(medium_type)
    if not sectors or sectors <= 0 or family is None:
        return None
    return f"{sectors / _ONE_X[family]:.1f}x"


def parse_discovery(answer: Mapping[str, Any]) -> list[DriveInfo]:
    """DriveInfos from the discover script's answer (``recorders``: one dict each)."""
    found = []
    for rec in answer.get("recorders") or []:
        device = str(rec.get("UniqueId") or "").strip()
        if device:
            found.append(DriveInfo(ADAPTER, device, str(rec.get("VendorId") or "").strip(),
                                   str(rec.get("ProductId") or "").strip(),
                                   str(rec.get("ProductRevision") or "").strip()))
    return found


# -- the PowerShell scripts ---------------------------------------------------------

_PRELUDE = r"""
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
[Console]::OutputEncoding = New-Object System.Text.UTF8Encoding $false
$p = ConvertFrom-Json @'
__PARAMS__
'@
function Say($o) { [Console]::Out.WriteLine((ConvertTo-Json -InputObject $o -Compress -Depth 4)); [Console]::Out.Flush() }
function Fail($err, $extra) {
  $e = $err.Exception; while ($e.InnerException) { $e = $e.InnerException }
  $o = [ordered]@{ ok = $false; hresult = ('0x{0:X8}' -f $e.HResult); message = $e.Message }
  if ($extra) { foreach ($k in $extra.Keys) { $o[$k] = $extra[$k] } }
  Say $o; exit 1
}
function Get-Tool { 'IMAPI2 (Windows {0}) via PowerShell {1}' -f [Environment]::OSVersion.Version, $PSVersionTable.PSVersion }
function Open-Recorder($device) {
  $want = $device.TrimEnd('\')
  $master = New-Object -ComObject IMAPI2.MsftDiscMaster2
  foreach ($id in $master) {
    $rec = New-Object -ComObject IMAPI2.MsftDiscRecorder2
    $rec.InitializeDiscRecorder($id)
    if ($id -ieq $want) { return $rec }
    foreach ($path in @($rec.VolumePathNames)) { if ($path.TrimEnd('\') -ieq $want) { return $rec } }
  }
  Say ([ordered]@{ ok = $false; hresult = '0x80070037'; message = "no IMAPI2 recorder is $device" }); exit 1
}
"""

_STATUS = r"""
try {
  $rec = Open-Recorder $p.device
  $o = [ordered]@{ ok = $true; tool = (Get-Tool); UniqueId = $rec.ActiveDiscRecorder
    VendorId = $rec.VendorId; ProductId = $rec.ProductId; ProductRevision = $rec.ProductRevision
    VolumePathNames = @($rec.VolumePathNames); ExclusiveAccessOwner = $rec.ExclusiveAccessOwner }
  $fmt = New-Object -ComObject IMAPI2.MsftDiscFormat2Data
  try {
    $fmt.Recorder = $rec
    $o.MediaSupported = $fmt.IsCurrentMediaSupported($rec)
    $o.CurrentPhysicalMediaType = [int]$fmt.CurrentPhysicalMediaType
    $o.CurrentMediaStatus = [int]$fmt.CurrentMediaStatus
    $o.MediaHeuristicallyBlank = [bool]$fmt.MediaHeuristicallyBlank
    $o.FreeSectorsOnMedia = [long]$fmt.FreeSectorsOnMedia
    $o.TotalSectorsOnMedia = [long]$fmt.TotalSectorsOnMedia
    $o.SupportedWriteSpeeds = @($fmt.SupportedWriteSpeeds | ForEach-Object { [int]$_ })
  } catch {
    $e = $_.Exception; while ($e.InnerException) { $e = $e.InnerException }
    $o.hresult = '0x{0:X8}' -f $e.HResult; $o.message = $e.Message
  }
  Say $o
} catch { Fail $_ }
"""

# The C# the burn script compiles: IBurnVerification (IUnknown-only, so out of
# PowerShell's reach) and the image as an IStream padded to whole sectors that
# remembers how far IMAPI2 has read it, with a thread printing that as progress.
_BURN_HELPER = r"""
using System;
using System.IO;
using System.Runtime.InteropServices;
using System.Threading;
using ComTypes = System.Runtime.InteropServices.ComTypes;

namespace Discarchive {
  [ComImport, Guid("D2FFD834-958B-426D-8470-2A13879C6A91"), InterfaceType(ComInterfaceType.InterfaceIsIUnknown)]
  public interface IBurnVerification {
    void PutLevel(int level);
    int GetLevel();
  }

  public sealed class ImageStream : ComTypes.IStream {
    private readonly FileStream file;
    private readonly long length, padded;
    private long position, furthest;
    public ImageStream(string path) {
      file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
      length = file.Length;
      padded = (length + 2047) / 2048 * 2048;
    }
    public long Padded { get { return padded; } }
    public long Furthest { get { return Interlocked.Read(ref furthest); } }
    public void Read(byte[] pv, int cb, IntPtr pcbRead) {
      int done = 0;
      lock (file) {
        int want = (int)Math.Max(0, Math.Min((long)cb, padded - position));
        while (done < want) {
          long at = position + done;
          if (at < length) {
            file.Position = at;
            int got = file.Read(pv, done, (int)Math.Min(want - done, length - at));
            if (got <= 0) throw new IOException("the image file ended early");
            done += got;
          } else {
            Array.Clear(pv, done, want - done);
            done = want;
          }
        }
        position += done;
        if (position > furthest) Interlocked.Exchange(ref furthest, position);
      }
      if (pcbRead != IntPtr.Zero) Marshal.WriteInt32(pcbRead, done);
    }
    public void Seek(long offset, int origin, IntPtr newPosition) {
      lock (file) {
        position = (origin == 0 ? 0 : origin == 1 ? position : padded) + offset;
        if (newPosition != IntPtr.Zero) Marshal.WriteInt64(newPosition, position);
      }
    }
    public void Stat(out ComTypes.STATSTG stat, int flags) {
      stat = new ComTypes.STATSTG();
      stat.type = 2;
      stat.cbSize = padded;
    }
    public void Write(byte[] pv, int cb, IntPtr written) { throw new UnauthorizedAccessException(); }
    public void SetSize(long size) { throw new UnauthorizedAccessException(); }
    public void CopyTo(ComTypes.IStream target, long cb, IntPtr read, IntPtr written) { throw new NotImplementedException(); }
    public void Commit(int flags) { }
    public void Revert() { }
    public void LockRegion(long offset, long cb, int type) { throw new NotImplementedException(); }
    public void UnlockRegion(long offset, long cb, int type) { throw new NotImplementedException(); }
    public void Clone(out ComTypes.IStream copy) { throw new NotImplementedException(); }
  }

  public static class Burn {
    public static int SetVerification(object format, int level) {
      IBurnVerification v = (IBurnVerification)format;
      v.PutLevel(level);
      return v.GetLevel();
    }
    private static ManualResetEvent stop;
    private static Thread reporter;
    public static void StartProgress(ImageStream image, int everyMs) {
      stop = new ManualResetEvent(false);
      reporter = new Thread(delegate() { while (!stop.WaitOne(everyMs)) Report(image); });
      reporter.IsBackground = true;
      reporter.Start();
    }
    public static void StopProgress(ImageStream image) {
      if (stop != null) { stop.Set(); reporter.Join(); }
      Report(image);
    }
    private static void Report(ImageStream image) {
      Console.Out.WriteLine("{\"event\":\"progress\",\"bytes\":" + image.Furthest + ",\"total\":" + image.Padded + "}");
      Console.Out.Flush();
    }
  }
}
"""

_BURN = r"""
try {
  $rec = Open-Recorder $p.device
  Add-Type -TypeDefinition @'
__HELPER__
'@
  $fmt = New-Object -ComObject IMAPI2.MsftDiscFormat2Data
  $fmt.Recorder = $rec
  $fmt.ClientName = $p.client
  $fmt.ForceMediaToBeClosed = $true
  $level = [Discarchive.Burn]::SetVerification($fmt.psobject.BaseObject, [int]$p.verification)
  if ($p.sectors_per_second) { $fmt.SetWriteSpeed([int]$p.sectors_per_second, $false) }
  $image = New-Object Discarchive.ImageStream $p.image
  [Discarchive.Burn]::StartProgress($image, [int]$p.progress_ms)
  try { $fmt.Write($image) } finally { [Discarchive.Burn]::StopProgress($image) }
  Say ([ordered]@{ ok = $true; tool = (Get-Tool); BurnVerificationLevel = $level
    CurrentWriteSpeed = [int]$fmt.CurrentWriteSpeed; CurrentMediaStatus = [int]$fmt.CurrentMediaStatus })
} catch {
  $owner = $null; try { $owner = $rec.ExclusiveAccessOwner } catch { }
  Fail $_ @{ ExclusiveAccessOwner = $owner }
}
"""

_EJECT = r"""
try {
  $rec = Open-Recorder $p.device
  $rec.EjectMedia()
  Say ([ordered]@{ ok = $true })
} catch { Fail $_ }
"""

_DISCOVER = r"""
try {
  $master = New-Object -ComObject IMAPI2.MsftDiscMaster2
  $found = @()
  foreach ($id in $master) {
    $rec = New-Object -ComObject IMAPI2.MsftDiscRecorder2
    $rec.InitializeDiscRecorder($id)
    $found += [ordered]@{ UniqueId = $id; VolumePathNames = @($rec.VolumePathNames)
      VendorId = $rec.VendorId; ProductId = $rec.ProductId; ProductRevision = $rec.ProductRevision }
  }
  Say ([ordered]@{ ok = $true; recorders = @($found) })
} catch { Fail $_ }
"""

_BODIES = {"status": _STATUS, "burn": _BURN, "eject": _EJECT, "discover": _DISCOVER}


def build_script(op: str, params: Mapping[str, Any]) -> str:
    """The PowerShell script for operation ``op`` (status, burn, eject,
    discover) with ``params`` embedded as a JSON literal. Its first line is
    the marker ``# discarchive-op: <op>``."""
    body = _BODIES[op].replace("__HELPER__", _BURN_HELPER.strip())
    return (f"# discarchive-op: {op}\n"
            + _PRELUDE.replace("__PARAMS__", json.dumps(dict(params), sort_keys=True)).lstrip()
            + body.lstrip())


def encode_script(script: str) -> str:
    """The script as ``-EncodedCommand`` takes it: base64 of its UTF-16LE text."""
    return base64.b64encode(script.encode("utf-16-le")).decode("ascii")


# -- running PowerShell ------------------------------------------------------------

@dataclass
class _Answers:
    """What one of our PowerShell scripts printed: exit status, its JSON
    objects in order, and its other text."""

    returncode: int
    objects: list[dict]
    text: str

    def answer(self) -> dict | None:
        """The last object carrying ``ok`` (progress events do not)."""
        return next((a for a in reversed(self.objects) if "ok" in a), None)


def _json_object(line: str) -> dict | None:
    line = line.strip().lstrip("\ufeff")
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _run_powershell(exe: str, script: str, timeout: float | None, doing: str,
                    on_object: Callable[[dict], None] | None = None, drive: str | None = None,
                    note: str = "") -> _Answers:
    """Run ``script`` in the PowerShell at ``exe`` (``-EncodedCommand``);
    ``on_object`` gets each JSON object it prints on stdout as it arrives.
    Raises DriveError ``timeout`` (worded with ``doing``, ``drive`` and
    ``note``, see :func:`burners._tools.run_timed`) after stopping it if it
    runs longer than ``timeout`` seconds (None: no limit)."""
    def on_line(line: str) -> None:
        obj = _json_object(line)
        if obj is not None and on_object:
            on_object(obj)

    argv = [exe, "-NoProfile", "-NonInteractive", "-EncodedCommand", encode_script(script)]
    run = run_timed(argv, timeout, doing, tool="PowerShell", drive=drive, note=note,
                    on_line=on_line, stderr_lines=False)
    lines = run.stdout_lines
    objects = [o for o in map(_json_object, lines) if o is not None]
    other = [line.strip() for line in lines + run.stderr_lines
             if line.strip() and _json_object(line) is None]
    return _Answers(run.returncode, objects, "\n".join(other))


# -- the drive ---------------------------------------------------------------------

class Imapi2Drive:
    """A Windows optical drive burned through IMAPI2.

    ``device`` is the recorder's IMAPI2 unique ID (as :func:`discover`
    lists) or its drive letter (``E:``); ``powershell`` the program to run
    (``powershell.exe``, or ``pwsh``); ``timeout`` the limit in seconds for
    each PowerShell run (None or 0: none; a burn runs in one). ``raw_device``
    is what :meth:`read` opens; by default ``\\\\.\\E:`` for the drive letter
    IMAPI2 reports. Raises DriveError ``config`` for a bad argument; a
    missing PowerShell is reported by each operation (``tool-missing``).
    """

    adapter = ADAPTER
    media_dir = None

    def __init__(self, name: str, device: str, powershell: str = "powershell.exe",
                 timeout: float | None = None, raw_device: str | None = None):
        if not isinstance(device, str) or not device.strip():
            raise DriveError(f"drive {name}: set device to the recorder's drive letter "
                             "(e.g. \"E:\") or IMAPI2 unique ID", "config")
        check_timeout(name, timeout)
        self.name = name
        self.device = device.strip()
        self.powershell = powershell
        self.timeout = timeout or None
        self.raw_device = raw_device
        self._last: dict = {}

    def __repr__(self) -> str:
        return f"Imapi2Drive({self.name!r}, device={self.device!r})"

    # -- the Drive interface --------------------------------------------------------

    def status(self) -> MediumStatus:
        """Ask IMAPI2 about the recorder and its disc (one PowerShell run).

        Raises DriveError ``tool-missing``, ``timeout``, or the class of
        IMAPI2's HRESULT (``drive-busy``, ``incompatible-medium``,
        ``not-ready``...).
        """
        answer = self._ask("status", {"device": self.device}, "read the disc status", "not-ready")
        try:
            status = parse_status(answer, str(answer.get("tool") or ""))
        except Imapi2Error as exc:
            raise DriveError(f"drive {self.name} ({self.device}): IMAPI2 could not read the "
                             f"disc status: {exc}", exc.failure_class) from None
        self._last = answer
        return status

    def load_blank(self, label: str) -> None:
        """Check that a blank disc IMAPI2 can write is in the drive (``label`` is
        not used). Raises DriveError ``no-medium``, ``medium-not-blank``,
        ``incompatible-medium``, or what :meth:`status` raises."""
        status = self._require_medium()
        self._refuse_unwritable()
        require_blank(self.name, self.device, status)

    def load(self, medium_path: str | None) -> None:
        """Check that a disc is in the drive (``medium_path`` is not used).
        Raises DriveError ``no-medium`` or what :meth:`status` raises."""
        self._require_medium()

    def burn(self, image_path: str, progress: Progress | None = None,
             speed: str | None = None) -> BurnResult:
        """Burn the image at ``image_path`` in one closed session, IMAPI2 then
        reading the whole session back (BurnVerificationLevel FULL).

        Checks first that the disc is blank, writable by IMAPI2, and has room
        for the image's 2048-byte sectors (size rounded up; IMAPI2 is given
        the image padded with zeros to whole sectors). ``speed``: ``"4x"``
        (times the medium's 1x rate), ``"min"`` (the drive's lowest for this
        disc), None or ``"max"`` (IMAPI2's default, the fastest).
        ``progress`` gets ``(done_bytes, image_bytes)``: 0, then once a
        second the bytes IMAPI2 has taken from the image, then the full size.

        Raises DriveError ``no-medium``, ``medium-not-blank``,
        ``medium-too-small``, ``incompatible-medium``, ``config`` (a speed it
        cannot read), ``tool-missing``, ``timeout`` (PowerShell stopped after
        ``timeout`` seconds: a coaster), or the class of IMAPI2's HRESULT
        (default ``write-error``). OSError if the image cannot be read. After
        a failure the disc must not be trusted.
        """
        size = os.path.getsize(image_path)
        status = self.status()
        if status.state != "no-medium":
            self._refuse_unwritable()
        check_writable(self.name, status, size)
        check_speed(self.name, speed)
        try:
            rate = sectors_per_second(speed, status.medium_type,
                                      self._last.get("SupportedWriteSpeeds"))
        except ValueError as exc:
            raise DriveError(f"drive {self.name}: {exc}", "config") from None
        image = os.path.abspath(image_path)
        report = BurnProgress(progress, size)

        def on_answer(obj: dict) -> None:
            if obj.get("event") == "progress":
                report.advance(int(obj.get("bytes") or 0))

        started = time.monotonic()
        report.start()
        params = {"device": self.device, "image": image, "client": CLIENT_NAME,
                  "verification": BURN_VERIFICATION_FULL, "sectors_per_second": rate,
                  "progress_ms": PROGRESS_EVERY_MS}
        answer = self._ask("burn", params, f"burn {image}", "write-error", on_answer,
                           note=UNTRUSTED)
        report.finish()
        return BurnResult(medium_path=None,
                          speed=speed_label(answer.get("CurrentWriteSpeed"), status.medium_type),
                          seconds=time.monotonic() - started, requested_speed=speed,
                          medium_type=status.medium_type, medium_id=None,
                          tool_version=status.tool_version)

    def read(self, length: int, progress: Progress | None = None,
             chunk: int = 1 << 20, retries: int = 2) -> VolumeReader:
        """Stream the first ``length`` bytes of the disc from its raw volume
        (``\\\\.\\E:``), not through IMAPI2.

        Asks :meth:`status` first: raises DriveError ``no-medium`` at once
        when the drive is empty, and ``config`` when IMAPI2 reports no drive
        letter to read through. See :class:`VolumeReader`: unreadable sectors
        come back as zeros, listed in its ``bad`` ranges, as do sectors
        missing where the disc ends early.
        """
        require_disc(self.name, self.device, self.status(), " to read")
        path = self.raw_device or self._raw_from_letter()
        return VolumeReader(path, length, progress, chunk, retries, self.name)

    def eject(self) -> None:
        """Open the tray (IDiscRecorder2.EjectMedia). Raises DriveError
        ``tool-missing``, ``timeout`` or the class of IMAPI2's HRESULT."""
        self._ask("eject", {"device": self.device}, "eject the disc", "not-ready")

    # -- helpers --------------------------------------------------------------------

    def _ask(self, op: str, params: Mapping[str, Any], doing: str, default: str,
             on_answer: Callable[[dict], None] | None = None, note: str = "") -> dict:
        """Run the ``op`` script and return its answer; raise DriveError for a
        failed, missing or timed-out one (class from its HRESULT, else
        ``default``; ``note`` ends the message). The status script's answer is
        returned even when it carries an HRESULT: :func:`parse_status` reads it."""
        exe = find_tool(self.powershell, TOOL_MISSING)
        run = _run_powershell(exe, build_script(op, params), self.timeout, doing, on_answer,
                              self.name, note)
        answer = run.answer()
        if answer is None:
            last = run.text.splitlines()[-1] if run.text else "no output"
            raise DriveError(f"drive {self.name}: PowerShell could not {doing} "
                             f"(exit {run.returncode}, no answer): {last}{note}", default)
        if op == "status" and answer.get("ok"):
            return answer
        if not answer.get("ok") or run.returncode != 0:
            err = answer_error(answer, default)
            raise DriveError(f"drive {self.name} ({self.device}): IMAPI2 could not {doing}: "
                             f"{err}{note}", err.failure_class)
        return answer

    def _require_medium(self) -> MediumStatus:
        return require_disc(self.name, self.device, self.status(), " (or its tray is open)")

    def _refuse_unwritable(self) -> None:
        refusal = write_refusal(self._last)
        if refusal:
            failure_class, reason = refusal
            raise DriveError(f"drive {self.name}: {reason}; insert a blank disc it can write",
                             failure_class)

    def _raw_from_letter(self) -> str:
        """``\\\\.\\E:`` for the first drive letter IMAPI2 reported for the recorder."""
        for path in self._last.get("VolumePathNames") or []:
            if m := re.match(r"([A-Za-z]:)\\?$", str(path)):
                return "\\\\.\\" + m[1].upper()
        if m := re.fullmatch(r"([A-Za-z]:)\\?", self.device):
            return "\\\\.\\" + m[1].upper()
        raise DriveError(f"drive {self.name}: IMAPI2 reports no drive letter for {self.device} "
                         "to read the disc back through; give the drive a letter", "config")


# -- reading back ------------------------------------------------------------------

_SECTOR_WINERRORS = {23, 27, 30, 1117}
"""ERROR_CRC, ERROR_SECTOR_NOT_FOUND, ERROR_READ_FAULT, ERROR_IO_DEVICE: one
failing sector, which Windows does not report as EIO."""

_NO_MEDIA_WINERRORS = {21, 1112}
"""ERROR_NOT_READY, ERROR_NO_MEDIA_IN_DRIVE."""


class VolumeReader(MediumFileReader):
    """:class:`burners._media.MediumFileReader` for a Windows raw volume
    (``\\\\.\\E:``): a failing sector is salvaged (zeros, listed in ``bad``)
    on the Windows errors that mean one bad sector, and an empty drive is
    ``no-medium``. Elsewhere it behaves exactly as its base class."""

    def _check_errno(self, exc: OSError, lba: int) -> None:
        winerror = getattr(exc, "winerror", None)
        if winerror in _SECTOR_WINERRORS:
            return
        if winerror in _NO_MEDIA_WINERRORS:
            raise DriveError(f"drive {self.drive}: the disc went away at sector {lba} of "
                             f"{self.path}: {exc.strerror}", "no-medium") from exc
        super()._check_errno(exc, lba)


# -- module entry points -------------------------------------------------------------

def from_config(spec: Mapping[str, Any]) -> Imapi2Drive:
    """Build an :class:`Imapi2Drive` from its ``[[drives]]`` table (keys: :data:`CONFIG_KEYS`).

    Raises DriveError ``config`` with one line naming the drive and the fix
    for a missing name or device, an unknown key, or a bad value. Does not
    run PowerShell.
    """
    name = check_table(spec, ADAPTER, CONFIG_KEYS, example="burner1", adapter_optional=True)
    powershell = spec.get("powershell") or "powershell.exe"
    if not isinstance(powershell, str):
        raise DriveError(f"drive {name}: powershell must be a program name or path", "config")
    return Imapi2Drive(name, spec.get("device") or "", powershell=powershell,
                       timeout=spec.get("timeout"))


def discover(powershell: str = "powershell.exe", timeout: float | None = 60) -> list[DriveInfo]:
    """The recorders IMAPI2 sees (MsftDiscMaster2), one DriveInfo each with
    its unique ID as ``device``.

    [] when PowerShell is missing (any host but Windows) or IMAPI2's COM
    classes are not registered. Raises DriveError ``timeout`` or the class
    of another IMAPI2 failure.
    """
    exe = shutil.which(powershell)
    if exe is None:
        return []
    run = _run_powershell(exe, build_script("discover", {}), timeout,
                          "list the IMAPI2 recorders")
    answer = run.answer()
    if answer is None:
        return []                       # not a PowerShell that can load COM (pwsh off Windows)
    if not answer.get("ok"):
        err = answer_error(answer, "not-ready")
        if err.failure_class == "tool-missing":
            return []
        raise DriveError(f"IMAPI2 could not list the recorders: {err}", err.failure_class)
    return parse_discovery(answer)
