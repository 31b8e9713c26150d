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
    ``medium-not-blank``, ``medium-too-small``, ``medium-error``,
    ``write-error``, ``read-error``, ``drive-busy``, ``timeout``,
    ``config``, ``calibration`` (the drive's power calibration on the medium
    failed). The message is one line an operator can act on.
    """

    def __init__(self, message: str, failure_class: str = "medium-error"):
        super().__init__(message)
        self.failure_class = failure_class


@dataclass(frozen=True)
class MediumStatus:
    """What a drive reports about itself and the medium in it.

    ``state`` is one of ``no-medium``, ``blank``, ``appendable``, ``closed``.
    ``free_sectors`` is the number of 2048-byte sectors that can still be
    written (0 when there is no writable medium). ``medium_type`` is the
    drive's own word for the medium (``DVD-R``, ``BD-R``, ``stdio file``).
    """

    state: str
    medium_type: str | None
    free_sectors: int
    vendor: str = ""
    model: str = ""
    firmware: str = ""


@dataclass(frozen=True)
class BurnResult:
    """The outcome of a successful burn.

    ``medium_path`` is the medium's file for file-backed drives, else None;
    ``speed`` is the write speed the drive used as the tool reported it (or
    None); ``seconds`` is the wall-clock time of the burn.
    """

    medium_path: str | None
    speed: str | None
    seconds: float


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

    def burn(self, image_path: str, progress: Progress | None = None) -> BurnResult:
        """Write the image at ``image_path`` onto the loaded blank medium.

        Checks the image's sectors against :meth:`status` ``free_sectors``
        first (``medium-too-small``). Raises DriveError on any failure; the
        medium is then a coaster and must not be trusted.
        """

    def read(self, length: int, progress: Progress | None = None,
             chunk: int = 1 << 20) -> Iterator[bytes]:
        """Stream the first ``length`` bytes of the loaded medium.

        Yields chunks of at most ``chunk`` bytes, never more than ``length``
        in total; raises DriveError(``read-error``) if the medium ends early
        or a sector cannot be read.
        """

    def eject(self) -> None:
        """Open the tray (real drives) or unload the medium file."""
