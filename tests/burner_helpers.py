"""Test setup shared by the tool-driven adapters' test files.

The growisofs and wodim tests drive a regular file standing for /dev/sr0
through fake programs on PATH (tests/fakes/growisofs/_fakedisc.py);
the imapi2 and macOS tests keep their fakes' drive in a JSON state file
(:class:`FakeState`). Both kinds run the drive contract
(:class:`DeviceNodeContract`, :class:`FakeStateContract`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from burners.base import DriveError
from drive_contract import DriveContract


def failure(exc_info) -> str:
    """The failure class of the DriveError ``pytest.raises`` caught."""
    return exc_info.value.failure_class


def one_line(exc_info) -> str:
    """The caught DriveError's message, asserting that it is one line."""
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def assert_gone(pid: int, wait: float = 5.0) -> None:
    """The process has exited (a zombie awaiting its reaper counts as gone)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return
        except FileNotFoundError:
            return
        time.sleep(0.05)
    pytest.fail(f"process {pid} is still running")


def image_fixture(size: int):
    """A fixture (assign it to ``image``) giving ``(path, bytes)`` of
    ``tmp_path/image.iso``, an image of ``size`` random bytes."""
    @pytest.fixture
    def image(tmp_path) -> tuple[str, bytes]:
        data = os.urandom(size)
        path = tmp_path / "image.iso"
        path.write_bytes(data)
        return str(path), data
    return image


# -- device-node drives (growisofs, wodim) ------------------------------------------------

def fakes_fixture(fakes: Path):
    """An autouse fixture putting the fake programs in ``fakes`` first on PATH,
    with no FAKE_* fault left over from outside."""
    @pytest.fixture(autouse=True)
    def fake_tools(monkeypatch):
        for key in list(os.environ):
            if key.startswith("FAKE_"):
                monkeypatch.delenv(key)
        # the fakes' "#!/usr/bin/env python3" finds the interpreter running the tests first
        path = [str(fakes), os.path.dirname(sys.executable), os.environ["PATH"]]
        monkeypatch.setenv("PATH", os.pathsep.join(path))
    return fake_tools


def device_drive(drive_class, tmp_path: Path, timeout: float = 30, **state):
    """A ``drive_class`` drive whose device is ``tmp_path/sr0`` (blank: the file is
    absent), with its state file holding ``state``."""
    device = tmp_path / "sr0"
    if state:
        Path(f"{device}.state").write_text(json.dumps(state))
    return drive_class("sr0", str(device), timeout=timeout)


class DeviceNodeContract(DriveContract):
    """The drive contract for ``drive_class`` (a device-node adapter) through its fakes."""

    drive_class: type

    def make_drive(self, tmp_path, capacity_sectors=2_298_496):
        return device_drive(self.drive_class, tmp_path, capacity_sectors=capacity_sectors)

    def medium_file(self, drive):
        return Path(drive.device)


# -- drives kept in a fake's JSON state file (imapi2, macOS) --------------------------------

class FakeState:
    """A fake's JSON state file ``tmp_path/FILE`` (its path in the environment
    variable ``ENV``): one drive, listed under ``KEY``, whose disc is the file
    ``medium``. A subclass gives the drive's ``entry`` and defines ``drive()``."""

    FILE: str
    ENV: str
    KEY: str

    def __init__(self, tmp_path: Path, monkeypatch, entry: dict):
        self.path = tmp_path / self.FILE
        self.medium = tmp_path / "disc.medium"
        self.medium.touch()
        self.state = {self.KEY: [{**entry, "medium": str(self.medium)}]}
        self.save()
        monkeypatch.setenv(self.ENV, str(self.path))

    @property
    def entry(self) -> dict:
        return self.state[self.KEY][0]

    def set(self, **changes) -> None:
        self.load()
        self.entry.update(changes)
        self.save()

    def load(self) -> dict:
        self.state = json.loads(self.path.read_text())
        return self.state

    def save(self) -> None:
        self.path.write_text(json.dumps(self.state))


class FakeStateContract(DriveContract):
    """The drive contract through a :class:`FakeState` subclass ``fake_class``."""

    fake_class: type

    @pytest.fixture(autouse=True)
    def _fake(self, tmp_path, monkeypatch):
        self.fake = self.fake_class(tmp_path, monkeypatch)

    def make_drive(self, tmp_path, capacity_sectors=2_298_496):
        self.fake.set(capacity_sectors=capacity_sectors)
        return self.fake.drive()

    def medium_file(self, drive):
        return Path(drive.raw_device)


class FakeStateNoMedium:
    """Failure tests shared by the adapters whose fakes keep a JSON state (imapi2, macOS).

    Subclass it as ``Test...`` in a module that defines the ``fake`` and
    ``image`` fixtures.
    """

    def test_no_medium(self, fake, image):
        fake.set(medium=None)
        drive = fake.drive()
        assert drive.status().state == "no-medium"
        for call in (lambda: drive.load_blank("x"), lambda: drive.burn(image[0]),
                     lambda: drive.read(100)):
            with pytest.raises(DriveError) as err:
                call()
            assert failure(err) == "no-medium"

    def test_tray_open_reads_as_no_medium_after_eject(self, fake):
        drive = fake.drive()
        drive.eject()
        assert drive.status().state == "no-medium"
