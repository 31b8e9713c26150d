"""The one drive interface every burner adapter implements.

A *drive* writes a finished image onto a *medium* and reads a medium back.
Sizes are in bytes or in sectors of 2048 bytes (ECMA-119 logical blocks);
times are seconds. Adapters hide their platform tool behind this interface:
nothing above ``burners/`` runs a burning program or parses its output.

Two kinds of drive exist:

* a real drive (``/dev/sr0``): the operator inserts the medium by hand;
  :meth:`Drive.load` and :meth:`Drive.load_blank` only check what is there;
* a file-backed drive (xorriso's ``stdio:`` pseudo-drives, the virtual
  drive): its media are plain files in ``media_dir``; ``load_blank(label)``
  puts a fresh, empty medium file ``<media_dir>/<label>.medium`` into the
  drive, and ``load(path)`` puts an existing one back in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

SECTOR = 2048
"""Bytes in one sector (ECMA-119 logical block, DVD/BD user data sector)."""

Progress = Callable[[int, int], None]
"""Progress callback: ``progress(done_bytes, total_bytes)``."""


class DriveError(Exception):
    """A drive could not do what was asked.

    ``failure_class`` names the kind of failure so callers can record it and
    decide on a retry: ``tool-missing``, ``not-ready``, ``no-medium``,
    ``tray-open``, ``medium-not-blank``, ``medium-too-small``,
    ``incompatible-medium`` (the wrong kind of medium for the job or drive),
    ``medium-error`` (the medium failed, e.g. closing the session),
    ``write-error``, ``read-error``, ``calibration`` (the drive's power
    calibration on the medium failed: ASC 73h), ``drive-busy`` (another
    process holds the drive), ``power-loss`` (the burn stopped part-way,
    leaving a truncated medium), ``timeout`` (a hung tool was stopped),
    ``config``. The message is one line an operator can act on.
    """

    RETRY_ON_NEW_MEDIUM = frozenset({"medium-error", "write-error", "calibration",
                                     "power-loss", "medium-not-blank",
                                     "incompatible-medium", "medium-too-small"})
    """Classes after which the job may go on with the next blank medium."""

    def __init__(self, message: str, failure_class: str = "medium-error"):
        super().__init__(message)
        self.failure_class = failure_class


@dataclass(frozen=True)
class MediumStatus:
    """What a drive reports about itself and the medium in it.

    ``state`` is one of ``no-medium``, ``tray-open``, ``blank``,
    ``appendable``, ``closed``. ``free_sectors`` is the number of 2048-byte
    sectors that can still be written (0 when there is no writable medium).
    ``medium_type`` is the drive's own word for the medium (``DVD-R``,
    ``BD-R``, ``stdio file``); ``medium_id`` the medium's manufacturer/media
    ID where the drive reports one (e.g. ``MCC 03RG20``), else None;
    ``tool_version`` the burning program's version line (e.g.
    ``xorriso 1.5.4``), "" for pure-Python drives.
    """

    state: str
    medium_type: str | None
    free_sectors: int
    vendor: str = ""
    model: str = ""
    firmware: str = ""
    medium_id: str | None = None
    tool_version: str = ""


@dataclass(frozen=True)
class BurnResult:
    """The outcome of a successful burn.

    ``medium_path`` is the medium's file for file-backed drives, else None;
    ``speed`` is the write speed the drive actually used as the tool
    reported it (e.g. ``"8.0x"``, or None); ``requested_speed`` what was
    asked for (None: the drive's choice); ``seconds`` the wall-clock time of
    the burn; ``medium_type``, ``medium_id`` and ``tool_version`` as in
    :class:`MediumStatus`, for the record of the burn.
    """

    medium_path: str | None
    speed: str | None
    seconds: float
    requested_speed: str | None = None
    medium_type: str | None = None
    medium_id: str | None = None
    tool_version: str = ""


@dataclass(frozen=True)
class DriveInfo:
    """A drive found by an adapter's ``discover()``.

    ``device`` is what the adapter's config takes to address it
    (``/dev/sr0``, an IMAPI2 unique ID, a drutil drive number...).
    """

    adapter: str
    device: str
    vendor: str = ""
    model: str = ""
    firmware: str = ""


class MediumReader(Protocol):
    """What :meth:`Drive.read` returns: an iterator of byte chunks that also
    keeps account of the medium's health while it is read.

    Iterating yields exactly ``length`` bytes in total. A sector still
    unreadable after the drive's retries is yielded as 2048 zero bytes and
    recorded in ``bad``; a stretch read markedly slower than the rest is
    recorded in ``slow``. Both are lists of ``(first_lba, sector_count)``
    ranges, filled in as reading goes, complete once iteration ends.
    ``retried`` counts sectors that needed a retry and then read fine.
    """

    bad: list[tuple[int, int]]
    slow: list[tuple[int, int]]
    retried: int

    def __iter__(self) -> Iterator[bytes]: ...


class Drive(Protocol):
    """A drive that burns images and reads media back.

    Attributes: ``name`` (the operator's name for it, e.g. ``sr0``),
    ``adapter`` (``xorriso``, ``virtual``...), ``media_dir`` (folder of
    medium files for file-backed drives, else None).
    """

    name: str
    adapter: str
    media_dir: str | None

    def status(self) -> MediumStatus:
        """Report the drive and the medium now in it. Raises DriveError."""

    def load_blank(self, label: str) -> None:
        """Make sure a blank medium is in the drive.

        File-backed drives create ``<media_dir>/<label>.medium`` (refusing if
        it exists: ``medium-not-blank``); real drives check the medium is blank.
        """

    def load(self, medium_path: str | None) -> None:
        """Put an existing medium back in (file-backed) or check one is there.

        Raises DriveError(``no-medium``) if the medium file is gone.
        """

    def burn(self, image_path: str, progress: Progress | None = None,
             speed: str | None = None) -> BurnResult:
        """Write the image at ``image_path`` onto the loaded blank medium.

        ``speed`` is the requested write speed (``"4x"``, ``"min"``; None: the
        drive's choice). Checks the image's sectors against :meth:`status`
        ``free_sectors`` first (``medium-too-small``). Raises DriveError on
        any failure; the medium is then a coaster and must not be trusted.
        """

    def read(self, length: int, progress: Progress | None = None,
             chunk: int = 1 << 20, retries: int = 2) -> MediumReader:
        """Stream the first ``length`` bytes of the loaded medium.

        Chunks are at most ``chunk`` bytes. Each unreadable sector is tried
        ``retries`` more times, then given as zeros and listed in the
        reader's ``bad`` ranges (a medium that ends early lists its missing
        sectors there too). Raises DriveError ``no-medium`` when nothing is
        loaded; ``read-error`` only when the medium cannot be read at all.
        """

    def eject(self) -> None:
        """Open the tray (real drives) or unload the medium file."""


class Adapter(Protocol):
    """An adapter module's entry points besides its Drive class."""

    def discover(self) -> list[DriveInfo]:
        """The drives this adapter's tool can see on this host ([] if the tool is missing)."""
