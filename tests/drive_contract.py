"""The contract every drive adapter passes (see burners/base.py).

Subclass :class:`DriveContract` in an adapter's test file (its name must
start with ``Test``) and define :meth:`make_drive` and :meth:`medium_file`;
pytest then runs every ``test_*`` method below against that adapter.
Adapters whose real tool cannot run here are driven through fake
executables on PATH that answer as the real tool does.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from burners.base import SECTOR, BurnResult, DriveError, DriveInfo, MediumStatus

IMAGE_BYTES = 7 * SECTOR + 123   # not a whole number of sectors: padding must never be read


class DriveContract:
    """Contract tests, parametrised by the subclass's drive factory."""

    def make_drive(self, tmp_path: Path, capacity_sectors: int = 2_298_496):
        """A drive of the adapter under test whose blank media hold ``capacity_sectors``."""
        raise NotImplementedError

    def medium_file(self, drive) -> Path:
        """The file holding the loaded medium's bytes (to damage it in tests)."""
        raise NotImplementedError

    def discover(self) -> list:
        """The adapter's discovery, as the test environment sets it up."""
        raise NotImplementedError

    # -- helpers ---------------------------------------------------------------

    @pytest.fixture
    def image(self, tmp_path) -> tuple[Path, bytes]:
        data = os.urandom(IMAGE_BYTES)
        path = tmp_path / "image.iso"
        path.write_bytes(data)
        return path, data

    # -- the contract ------------------------------------------------------------

    def test_blank_medium_reports_its_room(self, tmp_path):
        drive = self.make_drive(tmp_path)
        drive.load_blank("disc-1")
        st = drive.status()
        assert isinstance(st, MediumStatus)
        assert st.state == "blank" and st.free_sectors > 0 and st.medium_type

    def test_burn_then_read_back_exactly_the_image(self, tmp_path, image):
        path, data = image
        drive = self.make_drive(tmp_path)
        drive.load_blank("disc-1")
        seen = []
        result = drive.burn(str(path), progress=lambda d, t: seen.append((d, t)))
        assert isinstance(result, BurnResult) and result.seconds >= 0
        assert seen and seen[-1] == (len(data), len(data))
        assert drive.status().state in ("appendable", "closed")
        reader = drive.read(len(data))
        got = b"".join(reader)
        assert got == data
        assert reader.bad == [] and reader.slow == []

    def test_a_written_medium_is_not_burned_again(self, tmp_path, image):
        path, _ = image
        drive = self.make_drive(tmp_path)
        drive.load_blank("disc-1")
        drive.burn(str(path))
        with pytest.raises(DriveError) as err:
            drive.burn(str(path))
        assert err.value.failure_class == "medium-not-blank"

    def test_an_image_larger_than_the_medium_is_refused(self, tmp_path, image):
        path, _ = image
        drive = self.make_drive(tmp_path, capacity_sectors=3)
        drive.load_blank("disc-1")
        with pytest.raises(DriveError) as err:
            drive.burn(str(path))
        assert err.value.failure_class == "medium-too-small"
        assert drive.status().state == "blank", "a refused burn writes nothing"

    def test_a_truncated_medium_reads_with_its_missing_sectors_listed(self, tmp_path, image):
        path, data = image
        drive = self.make_drive(tmp_path)
        drive.load_blank("disc-1")
        drive.burn(str(path))
        medium = self.medium_file(drive)
        with open(medium, "r+b") as f:
            f.truncate(3 * SECTOR)
        reader = drive.read(len(data))
        got = b"".join(reader)
        assert len(got) == len(data)
        assert got[:3 * SECTOR] == data[:3 * SECTOR]
        assert reader.bad == [(3, 5)]   # sectors 3..7 of an 8-sector image

    def test_reading_with_no_medium_says_so(self, tmp_path):
        drive = self.make_drive(tmp_path)
        drive.load_blank("disc-1")
        drive.eject()
        with pytest.raises(DriveError) as err:
            b"".join(drive.read(100))
        assert err.value.failure_class in ("no-medium", "tray-open")

    def test_discovery_answers_with_drive_infos(self):
        found = self.discover()
        assert isinstance(found, list)
        assert all(isinstance(d, DriveInfo) and d.device for d in found)
