"""The virtual drive's faults: each fails as a real drive does, with its failure class,
its sense line where a real drive gives one, and exact bad/slow accounts on reading."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib

import pytest

from burner_helpers import image_fixture
from burners import SECTOR, DriveError, VirtualDrive
from burners.sense import classify_sense
from burners.virtual import CONFIG_KEYS, discover, from_config

SECTORS = 16
IMAGE_BYTES = SECTORS * SECTOR - 700     # the last sector is padded on the medium


image = image_fixture(IMAGE_BYTES)


def drive_with(tmp_path, **faults) -> VirtualDrive:
    drive = VirtualDrive("v1", str(tmp_path / "media"), 100_000, faults=faults)
    drive.load_blank("disc-1")
    return drive


def medium_bytes(drive) -> int:
    return os.path.getsize(drive._slot.current)


def failure(call) -> DriveError:
    with pytest.raises(DriveError) as err:
        call()
    assert "\n" not in str(err.value)
    return err.value


# -- reading ---------------------------------------------------------------------------

@pytest.mark.parametrize("chunk", [SECTOR, 3 * SECTOR, 1 << 20])
def test_unreadable_sectors_read_as_zeros_and_are_listed_bad(tmp_path, image, chunk):
    path, data = image
    drive = drive_with(tmp_path, unreadable=[3, 4, 10, 500])   # 500 lies past the image
    drive.burn(path)
    reader = drive.read(len(data), chunk=chunk)
    got = b"".join(reader)
    zeros = bytearray(data)
    for lba in (3, 4, 10):
        zeros[lba * SECTOR:(lba + 1) * SECTOR] = bytes(SECTOR)
    assert got == bytes(zeros)
    assert reader.bad == [(3, 2), (10, 1)]
    assert reader.slow == [] and reader.retried == 0


@pytest.mark.parametrize("chunk", [SECTOR, 4 * SECTOR, 1 << 20])
def test_slow_sectors_are_listed_slow(tmp_path, image, chunk):
    path, data = image
    drive = drive_with(tmp_path, slow=[0, 2, 3, 9, 900])
    drive.burn(path)
    reader = drive.read(len(data), chunk=chunk)
    assert b"".join(reader) == data
    assert reader.slow == [(0, 1), (2, 2), (9, 1)]
    assert reader.bad == []


def test_unreadable_and_slow_together(tmp_path, image):
    path, data = image
    drive = drive_with(tmp_path, unreadable=[7], slow=[7, 8])
    drive.burn(path)
    reader = drive.read(len(data))
    b"".join(reader)
    assert reader.bad == [(7, 1)] and reader.slow == [(7, 2)]


# -- burning ---------------------------------------------------------------------------

def test_write_error_stops_the_burn_at_its_lba(tmp_path, image):
    path, _ = image
    drive = drive_with(tmp_path, write_error_at=10)
    err = failure(lambda: drive.burn(path))
    assert err.failure_class == "write-error"
    assert "WRITE@LBA=ah failed with SK=3h/ASC=0Ch/ACQ=00h" in str(err)
    assert classify_sense(str(err)) == "write-error"
    assert medium_bytes(drive) == 10 * SECTOR


def test_write_error_past_the_image_is_not_reached(tmp_path, image):
    path, data = image
    drive = drive_with(tmp_path, write_error_at=SECTORS)
    drive.burn(path)
    assert b"".join(drive.read(len(data))) == data


def test_close_session_error_after_writing_everything(tmp_path, image):
    path, data = image
    drive = drive_with(tmp_path, close_session_error=True)
    err = failure(lambda: drive.burn(path))
    assert err.failure_class == "medium-error"
    assert "CLOSE SESSION failed with SK=5h/ASC=72h/ACQ=03h" in str(err)
    assert medium_bytes(drive) == SECTORS * SECTOR
    assert b"".join(drive.read(len(data))) == data


@pytest.mark.parametrize("speed", [None, "max", "8x"])
def test_opc_failure_at_any_speed_but_min(tmp_path, image, speed):
    path, _ = image
    drive = drive_with(tmp_path, opc_failure=True)
    err = failure(lambda: drive.burn(path, speed=speed))
    assert err.failure_class == "calibration"
    assert "ASC=73h/ACQ=03h" in str(err) and classify_sense(str(err)) == "calibration"
    assert medium_bytes(drive) == 0, "calibration fails before writing"
    assert drive.status().state == "blank"


def test_opc_failure_burns_at_min_speed(tmp_path, image):
    path, data = image
    drive = drive_with(tmp_path, opc_failure=True)
    result = drive.burn(path, speed="min")
    assert result.requested_speed == "min" and result.speed == "min"
    assert b"".join(drive.read(len(data))) == data


def test_power_loss_leaves_exactly_n_sectors(tmp_path, image):
    path, data = image
    drive = drive_with(tmp_path, power_loss_at=6)
    err = failure(lambda: drive.burn(path))
    assert err.failure_class == "power-loss"
    assert medium_bytes(drive) == 6 * SECTOR
    reader = drive.read(len(data))
    got = b"".join(reader)
    assert got == data[:6 * SECTOR] + bytes(len(data) - 6 * SECTOR)
    assert reader.bad == [(6, SECTORS - 6)]


def test_the_earliest_of_two_stops_wins(tmp_path, image):
    path, _ = image
    drive = drive_with(tmp_path, power_loss_at=9, write_error_at=4)
    assert failure(lambda: drive.burn(path)).failure_class == "write-error"
    assert medium_bytes(drive) == 4 * SECTOR


def test_busy_drive_names_its_holder(tmp_path, image):
    path, _ = image
    drive = VirtualDrive("v1", str(tmp_path / "media"), 100_000, faults={"busy": "brasero"})
    drive.load_blank("disc-1")
    for call in (drive.status, lambda: drive.burn(path)):
        err = failure(call)
        assert err.failure_class == "drive-busy" and "brasero" in str(err)
    assert medium_bytes(drive) == 0


def test_not_blank_medium_is_refused_on_loading(tmp_path):
    drive = VirtualDrive("v1", str(tmp_path / "media"), 100_000, faults={"not_blank": True})
    err = failure(lambda: drive.load_blank("disc-1"))
    assert err.failure_class == "medium-not-blank"
    assert drive.status().state == "no-medium"


def test_a_medium_file_held_open_by_another_process_makes_the_burn_busy(tmp_path, image):
    path, _ = image
    drive = drive_with(tmp_path)
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; f = open(sys.argv[1], 'rb'); print('ready', flush=True); "
         "time.sleep(30)", drive._slot.current], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        err = failure(lambda: drive.burn(path))
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert err.failure_class == "drive-busy"
    assert f"PID {child.pid}" in str(err)
    assert medium_bytes(drive) == 0
    drive.burn(path)                                  # the holder is gone: it burns


def test_a_burn_records_speed_type_and_tool(tmp_path, image):
    path, _ = image
    drive = VirtualDrive("v1", str(tmp_path / "media"), 100_000, medium_type="BD-R")
    drive.load_blank("disc-1")
    result = drive.burn(path)
    assert (result.speed, result.requested_speed) == ("virtual", None)
    assert (result.medium_type, result.medium_id, result.tool_version) == ("BD-R", None, "")
    drive.load_blank("disc-2")
    assert drive.burn(path, speed="4x").speed == "4x"


# -- configuration ---------------------------------------------------------------------

@pytest.mark.parametrize("faults, words", [
    ({"scratched": True}, ["unknown fault", "scratched", "unreadable"]),
    ({"unreadable": 3}, ["unreadable", "list"]),
    ({"unreadable": [1, -2]}, ["unreadable"]),
    ({"slow": ["7"]}, ["slow"]),
    ({"write_error_at": True}, ["write_error_at"]),
    ({"power_loss_at": -1}, ["power_loss_at"]),
    ({"opc_failure": "yes"}, ["opc_failure", "true or false"]),
    ({"busy": ""}, ["busy", "process name"]),
    ([1, 2], ["faults", "table"]),
])
def test_bad_faults_are_config_errors(tmp_path, faults, words):
    err = failure(lambda: VirtualDrive("v9", str(tmp_path), 100, faults=faults))
    assert err.failure_class == "config"
    assert "v9" in str(err) and all(w in str(err) for w in words)


def test_faults_come_from_a_drives_faults_table(tmp_path, image):
    path, data = image
    config = tomllib.loads(f"""
[[drives]]
name = "flaky"
adapter = "virtual"
media_dir = "{tmp_path / 'media'}"
capacity_sectors = 1000

[drives.faults]
unreadable = [2]
slow = [5]
""")
    drive = from_config(config["drives"][0])
    assert set(config["drives"][0]) <= CONFIG_KEYS
    drive.load_blank("disc-1")
    drive.burn(path)
    reader = drive.read(len(data))
    b"".join(reader)
    assert (reader.bad, reader.slow) == ([(2, 1)], [(5, 1)])


def test_from_config_refuses_unknown_keys(tmp_path):
    err = failure(lambda: from_config({"name": "v", "adapter": "virtual",
                                       "media_dir": str(tmp_path), "capacity_sectors": 5,
                                       "device": "/dev/sr0"}))
    assert err.failure_class == "config" and "device" in str(err)


def test_virtual_drives_are_not_discovered():
    assert discover() == []
