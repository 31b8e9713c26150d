"""Tests of the growisofs adapter (burners/growisofs.py).

The adapter runs fake growisofs, dvd+rw-mediainfo and eject programs
(tests/fakes/growisofs/) that print what the real ones print; the "drive" is
a regular file standing for /dev/sr0 (see tests/fakes/growisofs/_fakedisc.py
for it and the FAKE_* faults). Parsers are also tested on output text in the
real tools' layout, with our own sample data.
"""

from __future__ import annotations

import errno
import json
import time
from functools import partial
from pathlib import Path

import pytest

from burner_helpers import (DeviceNodeContract, assert_gone, device_drive, failure, fakes_fixture,
                            image_fixture, one_line)
from burners import growisofs
from burners.base import SECTOR, DriveError, DriveInfo
from burners._media import MediumFileReader
from burners.growisofs import (CONFIG_KEYS, GrowisofsDrive, classify_failure, from_config,
                               parse_cdrom_info, parse_mediainfo, parse_progress, parse_version,
                               parse_write_speed, speed_factor)

FAKES = Path(__file__).parent / "fakes" / "growisofs"

fake_tools = fakes_fixture(FAKES)
"""Autouse: the fake tools first on PATH, and no FAKE_* fault left over from outside."""

image = image_fixture(5 * (1 << 19) + 123)
"""An image of 2.5 MiB plus 123 bytes (not whole sectors; several progress lines)."""

make_drive = partial(device_drive, GrowisofsDrive)
"""make_drive(tmp_path, timeout=30, **state): a drive whose device is ``tmp_path/sr0``
(blank: the file is absent), with its state file."""


# -- the drive contract -----------------------------------------------------------

class TestGrowisofsContract(DeviceNodeContract):
    drive_class = GrowisofsDrive

    @pytest.fixture(autouse=True)
    def _host(self, tmp_path):
        self.host = tmp_path / "host"
        (self.host / "sys" / "sr0" / "device").mkdir(parents=True)
        (self.host / "sys" / "sr0" / "device" / "vendor").write_text("YOYODYNE\n")
        (self.host / "cdrom-info").write_text(CDROM_INFO)

    def discover(self):
        return growisofs.discover(info_path=str(self.host / "cdrom-info"),
                                  sys_block=str(self.host / "sys"))


# -- burning through the fakes --------------------------------------------------------

def test_burn_reports_progress_speed_and_the_medium(tmp_path, image, monkeypatch):
    path, data = image
    log = tmp_path / "argv.log"
    monkeypatch.setenv("FAKE_LOG", str(log))
    drive = make_drive(tmp_path)
    drive.load_blank("A-0001")
    seen = []
    result = drive.burn(path, progress=lambda d, t: seen.append((d, t)), speed="4x")

    assert seen[0] == (0, len(data)) and seen[-1] == (len(data), len(data))
    assert len(seen) >= 4 and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert (result.speed, result.requested_speed) == ("4.0x", "4x")
    assert (result.medium_type, result.medium_id) == ("DVD-R", "YOYO  01RG47")
    assert result.tool_version == "growisofs 7.1" and result.medium_path is None
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    assert ["-dvd-compat", "-speed=4", "-Z", f"{drive.device}={path}"] in runs
    assert b"".join(drive.read(len(data), chunk=64 * 1024)) == data


def test_status_of_blank_and_burned_discs(tmp_path, image, monkeypatch):
    monkeypatch.setenv("FAKE_CAPACITY_SECTORS", "100000")
    drive = make_drive(tmp_path)
    blank = drive.status()
    assert (blank.state, blank.free_sectors, blank.medium_type) == ("blank", 100_000, "DVD-R")
    assert (blank.vendor, blank.model, blank.firmware) == ("YOYODYNE", "OPTICA RW-24X", "1.0A")
    assert blank.tool_version == "growisofs 7.1"
    drive.burn(image[0])
    closed = drive.status()
    assert (closed.state, closed.free_sectors) == ("closed", 0)


def test_speed_is_left_to_the_drive_unless_asked(tmp_path, image, monkeypatch):
    log = tmp_path / "argv.log"
    monkeypatch.setenv("FAKE_LOG", str(log))
    result = make_drive(tmp_path).burn(image[0])
    assert result.requested_speed is None and result.speed == "8.0x"
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    assert not any(arg.startswith("-speed") for run in runs for arg in run)


def test_a_speed_not_understood_is_refused_before_anything_runs(tmp_path, image, monkeypatch):
    log = tmp_path / "argv.log"
    monkeypatch.setenv("FAKE_LOG", str(log))
    with pytest.raises(DriveError) as err:
        make_drive(tmp_path).burn(image[0], speed="fast")
    assert failure(err) == "config" and not log.exists()


def test_a_dual_layer_blu_ray_and_plus_r_media_are_named(tmp_path):
    assert make_drive(tmp_path, type="DVD+R DL").status().medium_type == "DVD+R DL"
    status = make_drive(tmp_path, type="BD-R").status()
    assert (status.medium_type, status.medium_id, status.free_sectors) == (
        "BD-R", "YOYODY/BR1", 12_219_392)


# -- each failure class ------------------------------------------------------------

def test_write_error(tmp_path, image, monkeypatch):
    monkeypatch.setenv("FAKE_SENSE", "WRITE@LBA=330h failed with SK=3h/ASC=0Ch/ACQ=00h")
    drive = make_drive(tmp_path)
    with pytest.raises(DriveError) as err:
        drive.burn(image[0])
    assert failure(err) == "write-error"
    assert "WRITE@LBA=330h failed with SK=3h/ASC=0Ch/ACQ=00h" in one_line(err)
    assert "must not be trusted" in str(err.value)
    assert drive.status().state != "blank"              # a coaster: half written


def test_a_failed_close_session_is_a_medium_error(tmp_path, image, monkeypatch):
    monkeypatch.setenv("FAKE_SENSE", "CLOSE SESSION failed with SK=5h/ASC=72h/ACQ=03h")
    with pytest.raises(DriveError) as err:
        make_drive(tmp_path).burn(image[0])
    assert failure(err) == "medium-error" and "CLOSE SESSION" in one_line(err)


def test_power_calibration_failure(tmp_path, image, monkeypatch):
    monkeypatch.setenv("FAKE_SENSE", "PERFORM OPC failed with SK=3h/ASC=73h/ACQ=03h")
    drive = make_drive(tmp_path)
    with pytest.raises(DriveError) as err:
        drive.burn(image[0])
    assert failure(err) == "calibration" and "PERFORM OPC" in one_line(err)
    assert failure(err) in DriveError.RETRY_ON_NEW_MEDIUM


def test_a_busy_drive_during_the_burn(tmp_path, image, monkeypatch):
    monkeypatch.setenv("FAKE_BUSY", "burn")
    with pytest.raises(DriveError) as err:
        make_drive(tmp_path).burn(image[0])
    assert failure(err) == "drive-busy" and "Device or resource busy" in one_line(err)


def test_a_busy_drive_when_asked_for_its_status(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_BUSY", "1")
    with pytest.raises(DriveError) as err:
        make_drive(tmp_path).status()
    assert failure(err) == "drive-busy"


def test_no_medium(tmp_path, image, monkeypatch):
    monkeypatch.setenv("FAKE_NO_MEDIUM", "1")
    drive = make_drive(tmp_path)
    assert drive.status().state == "no-medium"
    for call in (lambda: drive.load_blank("A"), lambda: drive.load(None),
                 lambda: drive.burn(image[0])):
        with pytest.raises(DriveError) as err:
            call()
        assert failure(err) == "no-medium"


def test_a_written_disc_is_not_blank(tmp_path, image):
    drive = make_drive(tmp_path)
    drive.burn(image[0])
    with pytest.raises(DriveError) as err:
        drive.load_blank("A-0002")
    assert failure(err) == "medium-not-blank" and "insert a blank disc" in one_line(err)
    drive.load(None)                                   # a written disc is a disc all the same


def test_a_cd_is_an_incompatible_medium(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_MEDIUM_TYPE", "CD-R")
    with pytest.raises(DriveError) as err:
        make_drive(tmp_path).status()
    assert failure(err) == "incompatible-medium" and "wodim" in one_line(err)


def test_a_hung_burn_is_stopped_with_its_whole_process_group(tmp_path, image, monkeypatch):
    pidfile = tmp_path / "pids"
    monkeypatch.setenv("FAKE_HANG", "1")
    monkeypatch.setenv("FAKE_PIDFILE", str(pidfile))
    drive = make_drive(tmp_path, timeout=1)
    drive.status()                                     # asks growisofs -version once, in time
    started = time.monotonic()
    with pytest.raises(DriveError) as err:
        drive.burn(image[0])
    assert failure(err) == "timeout" and "must not be trusted" in one_line(err)
    assert time.monotonic() - started < 10
    for pid in map(int, pidfile.read_text().split()):
        assert_gone(pid)


def test_a_hung_status_query_times_out(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_HANG", "status")
    with pytest.raises(DriveError) as err:
        make_drive(tmp_path, timeout=0.5).status()
    assert failure(err) == "timeout" and "dvd+rw-mediainfo took longer than 0.5 s" in one_line(err)


@pytest.mark.parametrize("key, program, package", [
    ("growisofs", "growisofs", "growisofs"), ("mediainfo", "dvd+rw-mediainfo", "growisofs"),
    ("eject", "eject", "eject")])
def test_a_missing_tool_says_how_to_install_it(tmp_path, image, key, program, package):
    drive = GrowisofsDrive("sr0", str(tmp_path / "sr0"), **{key: f"/nonexistent/{program}"})
    call = drive.eject if key == "eject" else lambda: drive.burn(image[0])
    with pytest.raises(DriveError) as err:
        call()
    assert failure(err) == "tool-missing"
    assert f"{program} is not installed" in one_line(err)
    assert f"apt-get install {package}" in str(err.value)


def test_eject_then_read_needs_the_disc_loaded_again(tmp_path, image):
    drive = make_drive(tmp_path)
    drive.burn(image[0])
    drive.eject()
    assert drive.status().state == "no-medium"         # the fake's tray is open
    with pytest.raises(DriveError) as err:
        drive.read(10)
    assert failure(err) == "no-medium"
    Path(f"{drive.device}.state").write_text("{}")     # the operator closes the tray
    drive.load(None)
    assert b"".join(drive.read(10)) == image[1][:10]


# -- config ------------------------------------------------------------------------

def test_from_config():
    drive = from_config({"name": "sr0", "adapter": "growisofs", "device": "/dev/sr0",
                         "growisofs": "/opt/bin/growisofs", "timeout": 3600})
    assert isinstance(drive, GrowisofsDrive)
    assert (drive.name, drive.device, drive.growisofs, drive.mediainfo, drive.timeout) == (
        "sr0", "/dev/sr0", "/opt/bin/growisofs", "dvd+rw-mediainfo", 3600)
    assert CONFIG_KEYS == {"name", "adapter", "device", "growisofs", "mediainfo", "eject",
                           "timeout"}


@pytest.mark.parametrize("spec, words", [
    ({"adapter": "growisofs", "device": "/dev/sr0"}, "no name"),
    ({"name": "sr0", "adapter": "growisofs"}, "device = \"/dev/sr0\""),
    ({"name": "sr0", "adapter": "growisofs", "device": "sr0"}, "device node"),
    ({"name": "sr0", "adapter": "growisofs", "device": "/dev/sr0", "media_dir": "/m"},
     "media_dir not used"),
    ({"name": "sr0", "adapter": "growisofs", "device": "/dev/sr0", "timeout": "1h"},
     "timeout must be a number"),
    ({"name": "sr0", "adapter": "growisofs", "device": "/dev/sr0", "growisofs": ""},
     "growisofs must be a program"),
    ({"name": "sr0", "adapter": "wodim", "device": "/dev/sr0"}, "not 'growisofs'"),
])
def test_bad_config_is_one_line_naming_the_fix(spec, words):
    with pytest.raises(DriveError) as err:
        from_config(spec)
    assert failure(err) == "config" and words in one_line(err)


# -- discovery ------------------------------------------------------------------------

CDROM_INFO = """\
CD-ROM information, Id: cdrom.c 3.20 2003/12/17

drive name:\t\tsr1\tsr0
drive speed:\t\t48\t24
drive # of slots:\t1\t1
Can close tray:\t\t1\t1
Can write DVD-R:\t1\t1
"""


def test_discover_reads_the_kernel_table_and_sysfs(tmp_path):
    info = tmp_path / "info"
    info.write_text(CDROM_INFO)
    for name, vendor, model, rev in (("sr0", "YOYODYNE", "OPTICA RW-24X", "1.0A"),
                                     ("sr1", "ACME", "BURNER 9", "")):
        dev = tmp_path / "sys" / name / "device"
        dev.mkdir(parents=True)
        (dev / "vendor").write_text(vendor + "  \n")
        (dev / "model").write_text(model + "\n")
        if rev:
            (dev / "rev").write_text(rev + "\n")
    found = growisofs.discover(info_path=str(info), sys_block=str(tmp_path / "sys"))
    assert found == [DriveInfo("growisofs", "/dev/sr0", "YOYODYNE", "OPTICA RW-24X", "1.0A"),
                     DriveInfo("growisofs", "/dev/sr1", "ACME", "BURNER 9", "")]


def test_discover_falls_back_to_device_nodes(tmp_path):
    (tmp_path / "sr0").touch()
    found = growisofs.discover(info_path=str(tmp_path / "none"),
                               dev_pattern=str(tmp_path / "sr*"), sys_block=str(tmp_path))
    assert [d.device for d in found] == [str(tmp_path / "sr0")]


def test_discover_without_growisofs_finds_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert growisofs.discover(info_path=str(tmp_path / "none")) == []


# -- parsers, on output in the real tools' layout ------------------------------------------

MEDIAINFO_APPENDABLE = """\
INQUIRY:                [ACME    ][BURNER 9        ][B100]
GET [CURRENT] CONFIGURATION:
 Mounted Media:         11h, DVD-R Sequential
 Media ID:              ACME  03RG16
 Current Write Speed:   16.0x1385=22160KB/s
GET [CURRENT] PERFORMANCE:
 Write Performance:     16.0x1385=22160KB/s@[0 -> 2298495]
READ DVD STRUCTURE[#0h]:
 Media Book Type:       25h, DVD-R book [revision 5]
 Last border-out at:    4096*2KB=8388608
READ DISC INFORMATION:
 Disc status:           appendable
 Number of Sessions:    2
 State of Last Session: empty
 "Next" Track:          2
 Number of Tracks:      2
READ TRACK INFORMATION[#1]:
 Track State:           complete incremental
 Track Start Address:   0*2KB
 Free Blocks:           0*2KB
 Track Size:            51200*2KB
 Last Recorded Address: 51199*2KB
READ TRACK INFORMATION[#2]:
 Track State:           invisible incremental
 Track Start Address:   80000*2KB
 Next Writable Address: 80000*2KB
 Free Blocks:           2218496*2KB
 Track Size:            2218496*2KB
FABRICATED TOC:
 Track#1  :             14@0
 Track#AA :             14@51200
 Multi-session Info:    #1@0
READ CAPACITY:          51200*2048=104857600
"""

MEDIAINFO_COMPLETE_PLUS = """\
INQUIRY:                [ACME    ][BURNER 9        ][B100]
GET [CURRENT] CONFIGURATION:
 Mounted Media:         1Bh, DVD+R
 Media ID:              ACMEDISC/S16
READ DISC INFORMATION:
 Disc status:           complete
 Number of Sessions:    1
 State of Last Session: complete
 Number of Tracks:      1
READ TRACK INFORMATION[#1]:
 Track State:           partial/complete
 Track Start Address:   0*2KB
 Free Blocks:           0*2KB
 Track Size:            1000*2KB
"""


def test_parse_mediainfo_appendable_uses_the_invisible_track():
    st = parse_mediainfo(MEDIAINFO_APPENDABLE)
    assert (st.state, st.medium_type, st.free_sectors, st.medium_id) == (
        "appendable", "DVD-R", 2218496, "ACME  03RG16")
    assert (st.vendor, st.model, st.firmware) == ("ACME", "BURNER 9", "B100")


def test_parse_mediainfo_complete_and_empty():
    st = parse_mediainfo(MEDIAINFO_COMPLETE_PLUS)
    assert (st.state, st.medium_type, st.free_sectors, st.medium_id) == (
        "closed", "DVD+R", 0, "ACMEDISC/S16")
    empty = parse_mediainfo("INQUIRY:                [ACME    ][BURNER 9        ][B100]\n"
                            "GET [CURRENT] CONFIGURATION:\n",
                            ":-( no media mounted, exiting...\n")
    assert (empty.state, empty.vendor) == ("no-medium", "ACME")
    with pytest.raises(ValueError):
        parse_mediainfo("/dev/sr0: unable to open: Permission denied\n")


def test_parse_progress_speed_and_version():
    line = "  123207680/4700372992 ( 2.6%) @3.3x, remaining 14:41 RBU 100.0% UBU  96.9%"
    assert parse_progress(line) == (123207680, 4700372992, "3.3x")
    assert parse_progress("/dev/sr0: flushing cache") is None
    assert parse_write_speed('/dev/sr0: "Current Write Speed" is 16.4x1352KBps.') == "16.4x"
    assert parse_version("* growisofs by <appro@fy.chalmers.se>, version 7.1,\n"
                         "genisoimage 1.1.11 (Linux)\n") == "growisofs 7.1"
    assert parse_version("sh: 1: mkisofs: not found\n") == ""


@pytest.mark.parametrize("output, expected", [
    (":-[ WRITE@LBA=330h failed with SK=3h/ASC=0Ch/ACQ=00h]: Input/output error\n"
     ":-( write failed: Input/output error", "write-error"),
    (":-[ CLOSE SESSION failed with SK=5h/ASC=72h/ACQ=03h]: Input/output error", "medium-error"),
    (":-[ PERFORM OPC failed with SK=3h/ASC=73h/ACQ=03h]: Input/output error", "calibration"),
    (':-( unable to open64("/dev/sr0",O_RDONLY): Device or resource busy', "drive-busy"),
    (":-( /dev/sr0: failed to grab associated sg device", "drive-busy"),
    (":-( /dev/sr0: media is not recognized as recordable DVD: 0", "no-medium"),
    (":-( /dev/sr0: media is not recognized as recordable DVD: 9", "incompatible-medium"),
    ("FATAL: /dev/sr0 already carries isofs!", "medium-not-blank"),
    (":-( /dev/sr0: 1000 blocks are free, 2000 to be written!", "medium-too-small"),
    (":-( write failed: Input/output error", "write-error"),
])
def test_classify_failure(output, expected):
    assert classify_failure(output) == expected


def test_parse_cdrom_info_and_speed_factor():
    assert parse_cdrom_info(CDROM_INFO) == ["sr0", "sr1"]
    assert parse_cdrom_info("") == []
    assert speed_factor(None) is None and speed_factor("max") is None
    assert (speed_factor("min"), speed_factor("4x"), speed_factor("2.4x")) == ("1", "4", "2.4")


# -- reading back ----------------------------------------------------------------------

def test_read_salvages_a_failing_sector(tmp_path, image, monkeypatch):
    path, data = image
    drive = make_drive(tmp_path)
    drive.burn(path)
    real_read = MediumFileReader._read

    def read(self, f, offset, size):
        if offset <= 4 * SECTOR < offset + size:
            raise OSError(errno.EIO, "Input/output error")
        return real_read(self, f, offset, size)

    monkeypatch.setattr(MediumFileReader, "_read", read)
    reader = drive.read(len(data), retries=1)
    got = b"".join(reader)
    assert reader.bad == [(4, 1)] and got[4 * SECTOR:5 * SECTOR] == bytes(SECTOR)
    assert got[:4 * SECTOR] == data[:4 * SECTOR] and got[5 * SECTOR:] == data[5 * SECTOR:]


def test_reading_a_missing_device_says_no_medium(tmp_path):
    with pytest.raises(DriveError) as err:
        list(make_drive(tmp_path).read(10))
    assert failure(err) == "no-medium" and "sr0" in one_line(err)
