"""Tests of the wodim adapter (burners/wodim.py).

The adapter runs a fake wodim (tests/fakes/wodim/wodim) that prints what
cdrkit's wodim prints; the "drive" is a regular file standing for /dev/sr0
(see tests/fakes/growisofs/_fakedisc.py for it and the FAKE_* faults).
Parsers are also tested on output text in wodim's layout, with our own
sample data.
"""

from __future__ import annotations

import json
import os
import time
from functools import partial
from pathlib import Path

import pytest

from burner_helpers import (DeviceNodeContract, assert_gone, device_drive, failure, fakes_fixture,
                            image_fixture, one_line)
from burners import wodim
from burners.base import SECTOR, DriveError, DriveInfo
from burners.wodim import (CONFIG_KEYS, NOMINAL_SECTORS, WodimDrive, classify_failure,
                           failure_reason, from_config, parse_devices, parse_progress,
                           parse_sense, parse_start_speed, parse_status, parse_version)

FAKES = Path(__file__).parent / "fakes" / "wodim"

fake_tools = fakes_fixture(FAKES)
"""Autouse: the fake wodim first on PATH, and no FAKE_* fault left over from outside."""

image = image_fixture(5 * (1 << 19) + 123)
"""An image of 2.5 MiB plus 123 bytes (not whole sectors; several progress lines)."""

make_drive = partial(device_drive, WodimDrive)
"""make_drive(tmp_path, timeout=30, **state): a drive whose device is ``tmp_path/sr0``
(blank: the file is absent), with its state file."""


# -- the drive contract -----------------------------------------------------------

class TestWodimContract(DeviceNodeContract):
    drive_class = WodimDrive

    @pytest.fixture(autouse=True)
    def _devices(self, monkeypatch):
        monkeypatch.setenv("FAKE_DEVICES", os.pathsep.join(["/dev/sr0", "/dev/sr1"]))

    def discover(self):
        found = wodim.discover()
        assert [d.device for d in found] == ["/dev/sr0", "/dev/sr1"]
        return found


# -- burning through the fake ---------------------------------------------------------

def test_burn_reports_progress_speed_and_the_medium(tmp_path, image, monkeypatch):
    path, data = image
    log = tmp_path / "argv.log"
    monkeypatch.setenv("FAKE_LOG", str(log))
    drive = make_drive(tmp_path)
    drive.load_blank("A-0001")
    seen = []
    result = drive.burn(path, progress=lambda d, t: seen.append((d, t)), speed="4x")

    assert seen[0] == (0, len(data)) and seen[-1] == (len(data), len(data))
    assert (1 << 20, len(data)) in seen and (2 << 20, len(data)) in seen   # \r-redrawn lines
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert (result.speed, result.requested_speed) == ("4.0x", "4x")
    assert (result.medium_type, result.medium_id) == ("DVD-R", None)
    assert result.tool_version == "wodim 1.1.11" and result.medium_path is None
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    assert ["-v", "-dao", "gracetime=2", "speed=4", f"dev={drive.device}", path] in runs
    assert b"".join(drive.read(len(data), chunk=64 * 1024)) == data


def test_status_of_a_blank_dvd_then_a_burned_one(tmp_path, image):
    drive = make_drive(tmp_path, type="DVD+R")
    blank = drive.status()
    assert (blank.state, blank.medium_type, blank.free_sectors) == (
        "blank", "DVD+R", NOMINAL_SECTORS["DVD+R"])
    assert (blank.vendor, blank.model, blank.firmware) == ("YOYODYNE", "OPTICA RW-24X", "1.0A")
    drive.burn(image[0])
    closed = drive.status()
    assert (closed.state, closed.free_sectors) == ("closed", 0)


def test_a_cd_r_reports_its_atip_capacity_and_manufacturer(tmp_path, monkeypatch):
    log = tmp_path / "argv.log"
    monkeypatch.setenv("FAKE_LOG", str(log))
    drive = make_drive(tmp_path, type="CD-R", capacity_sectors=1000)
    st = drive.status()
    assert (st.state, st.medium_type, st.free_sectors, st.medium_id) == (
        "blank", "CD-R", 1000, "Yoyodyne Optical Media Division")
    big = tmp_path / "big.iso"
    big.write_bytes(bytes(1001 * SECTOR))
    with pytest.raises(DriveError) as err:
        drive.burn(str(big))
    assert failure(err) == "medium-too-small" and "1001" in one_line(err)
    assert not any("-dao" in line for line in log.read_text().splitlines())


def test_short_images_are_checked_as_wodim_pads_them(tmp_path, image):
    drive = make_drive(tmp_path, type="CD-R", capacity_sectors=299)
    small = tmp_path / "small.iso"
    small.write_bytes(bytes(10 * SECTOR))
    with pytest.raises(DriveError) as err:
        drive.burn(str(small))
    assert failure(err) == "medium-too-small" and "300 sectors" in one_line(err)


def test_the_drive_refuses_an_image_larger_than_the_dvd(tmp_path, image):
    drive = make_drive(tmp_path, capacity_sectors=1000)      # status still says nominal
    with pytest.raises(DriveError) as err:
        drive.burn(image[0])
    assert failure(err) == "medium-too-small" and "Data does not fit" in one_line(err)
    assert drive.status().state == "blank"


# -- each failure class ------------------------------------------------------------

def test_write_error(tmp_path, image, monkeypatch):
    monkeypatch.setenv("FAKE_SENSE", "WRITE@LBA=330h failed with SK=3h/ASC=0Ch/ACQ=00h")
    drive = make_drive(tmp_path)
    with pytest.raises(DriveError) as err:
        drive.burn(image[0])
    assert failure(err) == "write-error" and "must not be trusted" in one_line(err)
    assert "WRITE failed: Sense Key: 0x3 Medium Error" in str(err.value)
    assert "(write error)" in str(err.value)
    assert drive.status().state != "blank"


def test_a_failed_close_session_is_a_medium_error(tmp_path, image, monkeypatch):
    monkeypatch.setenv("FAKE_SENSE", "CLOSE SESSION failed with SK=5h/ASC=72h/ACQ=03h")
    with pytest.raises(DriveError) as err:
        make_drive(tmp_path).burn(image[0])
    assert failure(err) == "medium-error"
    assert "CLOSE TRACK/SESSION failed" in one_line(err) and "0x72 Qual 0x03" in str(err.value)


def test_power_calibration_failure(tmp_path, image, monkeypatch):
    monkeypatch.setenv("FAKE_SENSE", "PERFORM OPC failed with SK=3h/ASC=73h/ACQ=03h")
    drive = make_drive(tmp_path)
    with pytest.raises(DriveError) as err:
        drive.burn(image[0])
    assert failure(err) == "calibration" and "SEND OPC failed" in one_line(err)
    assert drive.status().state == "blank"


def test_a_busy_drive(tmp_path, image, monkeypatch):
    monkeypatch.setenv("FAKE_BUSY", "burn")
    drive = make_drive(tmp_path)
    with pytest.raises(DriveError) as err:
        drive.burn(image[0])
    assert failure(err) == "drive-busy" and "Device or resource busy" in one_line(err)
    monkeypatch.setenv("FAKE_BUSY", "1")
    with pytest.raises(DriveError) as err:
        drive.status()
    assert failure(err) == "drive-busy"


def test_no_medium(tmp_path, image, monkeypatch):
    monkeypatch.setenv("FAKE_NO_MEDIUM", "1")
    drive = make_drive(tmp_path)
    st = drive.status()
    assert (st.state, st.vendor) == ("no-medium", "YOYODYNE")
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


def test_a_hung_burn_is_stopped_with_its_whole_process_group(tmp_path, image, monkeypatch):
    pidfile = tmp_path / "pids"
    monkeypatch.setenv("FAKE_HANG", "1")
    monkeypatch.setenv("FAKE_PIDFILE", str(pidfile))
    drive = make_drive(tmp_path, timeout=1)
    drive.status()
    started = time.monotonic()
    with pytest.raises(DriveError) as err:
        drive.burn(image[0])
    assert failure(err) == "timeout" and "wodim took longer than 1 s" in one_line(err)
    assert time.monotonic() - started < 10
    for pid in map(int, pidfile.read_text().split()):
        assert_gone(pid)


def test_a_hung_status_query_times_out(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_HANG", "status")
    with pytest.raises(DriveError) as err:
        make_drive(tmp_path, timeout=0.5).status()
    assert failure(err) == "timeout"


def test_a_missing_wodim_says_how_to_install_it(tmp_path, image):
    drive = WodimDrive("sr0", str(tmp_path / "sr0"), wodim="/nonexistent/wodim")
    for call in (drive.status, lambda: drive.burn(image[0]), drive.eject):
        with pytest.raises(DriveError) as err:
            call()
        assert failure(err) == "tool-missing"
        assert "wodim is not installed" in one_line(err)
        assert "apt-get install wodim" in str(err.value)


def test_eject_opens_the_tray_and_wodim_closes_it_to_look(tmp_path, image):
    drive = make_drive(tmp_path)
    drive.burn(image[0])
    drive.eject()
    assert json.loads(Path(f"{drive.device}.state").read_text())["tray"] == "open"
    with pytest.raises(DriveError) as err:
        drive.read(10)
    assert failure(err) == "no-medium"
    drive.load(None)                                   # wodim loads the tray and finds the disc
    assert b"".join(drive.read(10)) == image[1][:10]


def test_discover_without_wodim_finds_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert wodim.discover() == []


# -- config ------------------------------------------------------------------------

def test_from_config():
    drive = from_config({"name": "cd", "adapter": "wodim", "device": "/dev/sr1",
                         "wodim": "/usr/local/bin/wodim", "timeout": 0})
    assert isinstance(drive, WodimDrive)
    assert (drive.name, drive.device, drive.wodim, drive.timeout) == (
        "cd", "/dev/sr1", "/usr/local/bin/wodim", None)
    assert CONFIG_KEYS == {"name", "adapter", "device", "wodim", "timeout"}


@pytest.mark.parametrize("spec, words", [
    ({"name": "cd", "adapter": "wodim"}, "device = \"/dev/sr0\""),
    ({"name": "cd", "adapter": "wodim", "device": "/dev/sr0", "growisofs": "x"},
     "growisofs not used by the wodim adapter"),
    ({"name": "cd", "adapter": "wodim", "device": "/dev/sr0", "timeout": -1},
     "timeout must be a number"),
    ({"name": "cd", "adapter": "wodim", "device": "/dev/sr0", "wodim": 7},
     "wodim must be a program"),
])
def test_bad_config_is_one_line_naming_the_fix(spec, words):
    with pytest.raises(DriveError) as err:
        from_config(spec)
    assert failure(err) == "config" and words in one_line(err) and "drive cd" in str(err.value)


# -- parsers, on output in wodim's layout --------------------------------------------------

INQUIRY = """\
Device type    : Removable CD-ROM
Version        : 5
Response Format: 2
Capabilities   : 
Vendor_info    : 'ACME    '
Identification : 'BURNER 9        '
Revision       : 'B100'
Device seems to be: Generic mmc2 DVD-R/DVD-RW.
"""

ATIP_CD = INQUIRY + """\
Current: 0x000A (CD-RW)
Profile: 0x0009 (CD-R) 
Profile: 0x000A (CD-RW) (current)
Using generic SCSI-3/mmc   CD-R/CD-RW driver (mmc_cdr).
Driver flags   : MMC-3 SWABAUDIO BURNFREE 
Supported modes: TAO PACKET SAO SAO/R96P SAO/R96R RAW/R16 RAW/R96P RAW/R96R
ATIP info from disk:
  Indicated writing power: 3
  Reference speed: 2
  Is not unrestricted
  Is erasable
  Disk sub type: High speed Rewritable (CAV) media (1)
  ATIP start of lead in:  -11700 (97:24/00)
  ATIP start of lead out: 336075 (74:43/00)
Disk type:    Long strategy type (Cyanine, AZO or similar)
Manuf. index: 7
Manufacturer: Acme Disc Works
"""

ATIP_DVD_DL = INQUIRY + """\
Current: 0x002B (DVD+R/DL)
Profile: 0x002B (DVD+R/DL) (current)
Using generic SCSI-3/mmc DVD-R(W) driver (mmc_mdvd).
Driver flags   : SWABAUDIO BURNFREE 
Supported modes: PACKET SAO
HINT: use dvd+rw-mediainfo from dvd+rw-tools for information extraction.
"""

TOC_BLANK = "wodim: Cannot read TOC header\nwodim: Cannot read TOC/PMA\n"

TOC_WRITTEN = INQUIRY + """\
first: 1 last 1
track:   1 lba:         0 (        0) 00:02:00 adr: 1 control: 4 mode: 1
track:lout lba:     51200 (   204800) 11:24:50 adr: 1 control: 4 mode: -1
"""


def test_parse_status():
    cd = parse_status(ATIP_CD, INQUIRY + TOC_BLANK)
    assert (cd.state, cd.medium_type, cd.free_sectors, cd.medium_id) == (
        "blank", "CD-RW", 336075, "Acme Disc Works")
    assert (cd.vendor, cd.model, cd.firmware) == ("ACME", "BURNER 9", "B100")
    dvd = parse_status(ATIP_DVD_DL, TOC_BLANK)
    assert (dvd.state, dvd.medium_type, dvd.free_sectors, dvd.medium_id) == (
        "blank", "DVD+R DL", 4_173_824, None)
    written = parse_status(ATIP_DVD_DL, TOC_WRITTEN)
    assert (written.state, written.free_sectors) == ("closed", 0)
    empty = parse_status(INQUIRY + "wodim: No disk / Wrong disk!\n", "")
    assert (empty.state, empty.medium_type, empty.model) == ("no-medium", None, "BURNER 9")
    with pytest.raises(ValueError):
        parse_status(ATIP_DVD_DL, INQUIRY)


def test_parse_progress_and_speeds():
    assert parse_progress("Track 01:   12 of  340 MB written (fifo 100%) [buf  99%]  16.0x.") \
        == (12 << 20, "16.0x")
    assert parse_progress("Track 01:    0 of  340 MB written.") == (0, None)
    assert parse_progress("Track 01: Total bytes read/written: 7413760/7413760 "
                          "(3620 sectors).") == (7413760, None)
    assert parse_progress("Fixating...") is None
    assert parse_start_speed("Starting to write CD/DVD at speed  16.0 in real SAO mode for "
                             "single session.") == "16.0x"
    assert parse_version("Cdrecord-yelling-line-to-tell-frontends-to-use-it-like-version "
                         "2.01.01a03-dvd \nWodim 1.1.11\n") == "wodim 1.1.11"


WRITE_FAILURE = """\
Track 01:   41 of 1200 MB written (fifo 100%) [buf  98%]  12.1x.
Errno: 5 (Input/output error), write_g1 scsi sendcmd: no error
CDB:  2A 00 00 00 52 20 00 00 1F 00
status: 0x2 (CHECK CONDITION)
Sense Bytes: 70 00 03 00 00 00 00 0A 00 00 00 00 0C 00 00 00
Sense Key: 0x3 Medium Error, Segment 0
Sense Code: 0x0C Qual 0x00 (write error) Fru 0x0
Sense flags: Blk 0 (not valid) 
cmd finished after 0.503s timeout 200s
write track data: error after 42991616 bytes
wodim: A write error occured.
wodim: Please properly read the error message above.
"""


def test_parse_sense_and_classify_failure():
    assert parse_sense(WRITE_FAILURE) == (3, 0x0C, 0, "WRITE")
    assert classify_failure(WRITE_FAILURE) == "write-error"
    assert failure_reason(WRITE_FAILURE) == (
        "WRITE failed: Sense Key: 0x3 Medium Error, Segment 0; "
        "Sense Code: 0x0C Qual 0x00 (write error) Fru 0x0")
    close = WRITE_FAILURE.replace("CDB:  2A", "CDB:  5B").replace(
        "Sense Key: 0x3 Medium Error", "Sense Key: 0x5 Illegal Request").replace(
        "Sense Code: 0x0C Qual 0x00 (write error)", "Sense Code: 0x72 Qual 0x03 (whatever)")
    assert parse_sense(close) == (5, 0x72, 3, "CLOSE TRACK/SESSION")
    assert classify_failure(close) == "medium-error"
    opc = close.replace("CDB:  5B", "CDB:  54").replace("0x5 Illegal Request", "0x3 x").replace(
        "0x72 Qual 0x03", "0x73 Qual 0x03")
    assert classify_failure(opc) == "calibration"
    read = WRITE_FAILURE.replace("CDB:  2A", "CDB:  28").replace("0x0C Qual", "0x11 Qual")
    assert classify_failure(read) == "read-error"
    assert classify_failure("wodim: Device or resource busy. \nCannot open SCSI driver!\n") \
        == "drive-busy"
    assert classify_failure("wodim: No disk / Wrong disk!\n") == "no-medium"
    assert classify_failure("wodim: Data does not fit on current disk.\n") == "medium-too-small"
    assert classify_failure("wodim: Cannot open new session.\n") == "write-error"
    assert failure_reason("wodim: Operation not permitted. Warning: Cannot raise "
                          "RLIMIT_MEMLOCK limits.\nwodim: Cannot open new session.\n") \
        == "wodim: Cannot open new session."


def test_parse_devices():
    text = ("wodim: Overview of accessible drives (2 found) :\n" + "-" * 73 + "\n"
            " 0  dev='/dev/sr0'\trwrw-- : 'HL-DT-ST' 'DVDRAM GH24NSD1'\n"
            " 1  dev='/dev/sr1'\trwrw-- : 'ACME' 'BURNER 9'\n" + "-" * 73 + "\n")
    assert parse_devices(text) == [DriveInfo("wodim", "/dev/sr0", "HL-DT-ST", "DVDRAM GH24NSD1"),
                                   DriveInfo("wodim", "/dev/sr1", "ACME", "BURNER 9")]
    assert parse_devices("wodim: No such file or directory.\n") == []
