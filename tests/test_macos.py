"""The drutil/hdiutil (macOS) adapter, run through tests/fakes/macos/{drutil,hdiutil,sw_vers}.

The fakes print drutil's and hdiutil's text layouts and keep the "disc" in a
plain file; a JSON state file sets what the drive holds and how it fails.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from burner_helpers import (FakeState, FakeStateContract, FakeStateNoMedium, failure,
                            image_fixture)
from burners import macos
from burners.base import SECTOR, DriveError, MediumStatus
from burners.macos import (MacDrive, classify_failure, hdiutil_speed, parse_burn_list,
                           parse_device_node, parse_list, parse_percent, parse_status,
                           parse_write_speeds)

FAKES = Path(__file__).parent / "fakes" / "macos"
IOSERVICE = ("IOService:/AppleARMPE/arm-io@10F00000/AppleT600xIO/usb-drd1@2280000/"
             "AppleT6000USBXHCI@01000000/usb-drd1-port-hs@01100000/Slim Portable DVD Writer@01100000/"
             "IOUSBHostInterface@0/IOUSBMassStorageDriverNub/IOUSBMassStorageDriver/"
             "IOSCSILogicalUnitNub@0/IOSCSIPeripheralDeviceType05/IODVDServices")


class FakeMac(FakeState):
    """The fakes' state file: drive 1, whose disc is ``medium``; the fakes on PATH."""

    FILE, ENV, KEY = "macos-state.json", "FAKE_MACOS_STATE", "drives"

    def __init__(self, tmp_path: Path, monkeypatch):
        super().__init__(tmp_path, monkeypatch, {
            "number": 1, "vendor": "PIONEER", "product": "DVD-RW  DVR-XD11", "rev": "1.00",
            "bus": "USB", "support": "Unsupported", "ioservice": IOSERVICE, "node": "/dev/disk4",
            "media_type": "DVD-R", "capacity_sectors": 2_298_496,
            "media_id": "CMC MAG. AM3", "speeds": [2, 4, 8, 16]})
        monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ.get('PATH', '')}")

    def drive(self, timeout: float | None = 30) -> MacDrive:
        return MacDrive("m1", 1, timeout=timeout, raw_device=str(self.medium))


@pytest.fixture
def fake(tmp_path, monkeypatch) -> FakeMac:
    return FakeMac(tmp_path, monkeypatch)


image = image_fixture(40 * SECTOR + 500)


# -- the contract ----------------------------------------------------------------------

class TestMacContract(FakeStateContract):
    fake_class = FakeMac

    def discover(self):
        return macos.discover()


# -- parsers, on text in drutil's and hdiutil's layouts ----------------------------------

BLANK_CD_R = """\
 Vendor   Product           Rev 
 HL-DT-ST DVDRW  GX50N      RP09

           Type: CD-R                 Name: /dev/disk3
       Sessions: 0                  Tracks: 0 
   Write Speeds: 8x, 16x, 24x
   Overwritable:   00:00:00         blocks:        0 /   0.00MB /   0.00MiB
     Space Free:   79:59:71         blocks:   359996 / 737.27MB / 703.12MiB
     Space Used:   00:00:00         blocks:        0 /   0.00MB /   0.00MiB
    Writability: appendable, blank, overwritable
"""

CLOSED_DVD_R = """\
 Vendor   Product           Rev 
 PIONEER  DVD-RW  DVR-XD11  1.00

           Type: DVD-R                Name: /dev/disk5
      Cur Write:    8x DVD          Sessions: 1
      Max Write:   16x DVD            Tracks: 1
   Overwritable:   00:00:00         blocks:        0 /   0.00MB /   0.00MiB
     Space Free:   00:00:00         blocks:        0 /   0.00MB /   0.00MiB
     Space Used:  224:17:40         blocks:  1009315 /   2.07GB /   1.93GiB
    Writability: 
      Book Type: DVD-R (v5)
       Media ID: TYG03
"""

APPENDABLE_DVD_PLUS_R = """\
 Vendor   Product           Rev 
 PIONEER  DVD-RW  DVR-XD11  1.00

           Type: DVD+R                Name: /dev/disk4
       Sessions: 3                  Tracks: 3
   Write Speeds: 4x, 8x
   Overwritable:   00:00:00         blocks:        0 /   0.00MB /   0.00MiB
     Space Free:  300:00:00         blocks:  1350000 /   2.76GB /   2.57GiB
     Space Used:  210:41:46         blocks:   948121 /   1.94GB /   1.81GiB
    Writability: appendable
      Book Type: DVD+R (v1)
       Media ID: RICOHJPN R02
"""

NO_MEDIA = """\
 Vendor   Product           Rev 
 HL-DT-ST DVDRW  GX50N      RP09

           Type: No Media Inserted
"""

DRUTIL_LIST = """\
   Vendor   Product           Rev   Bus       SupportLevel
1  HL-DT-ST DVDRW  GX50N      RP09  USB       Unsupported
2  PIONEER  BD-RW   BDR-XD07  1.01  USB       Apple Shipping
"""


def test_parse_status_of_a_blank_cd_r():
    st = parse_status(BLANK_CD_R, "macOS 14.4.1 drutil/hdiutil")
    assert st == MediumStatus("blank", "CD-R", 359996, "HL-DT-ST", "DVDRW  GX50N", "RP09",
                              medium_id=None, tool_version="macOS 14.4.1 drutil/hdiutil")
    assert parse_device_node(BLANK_CD_R) == "/dev/disk3"
    assert parse_write_speeds(BLANK_CD_R) == [8.0, 16.0, 24.0]


def test_parse_status_of_a_closed_dvd_r_with_two_pairs_a_line():
    st = parse_status(CLOSED_DVD_R)
    assert (st.state, st.medium_type, st.free_sectors, st.medium_id) == ("closed", "DVD-R", 0,
                                                                         "TYG03")
    assert (st.vendor, st.model, st.firmware) == ("PIONEER", "DVD-RW  DVR-XD11", "1.00")
    assert parse_device_node(CLOSED_DVD_R) == "/dev/disk5"
    assert parse_write_speeds(CLOSED_DVD_R) == []


def test_parse_status_of_an_appendable_dvd_plus_r():
    st = parse_status(APPENDABLE_DVD_PLUS_R)
    assert (st.state, st.free_sectors, st.medium_id) == ("appendable", 1350000, "RICOHJPN R02")


def test_parse_status_with_no_media():
    st = parse_status(NO_MEDIA)
    assert (st.state, st.medium_type, st.vendor) == ("no-medium", None, "HL-DT-ST")
    assert parse_device_node(NO_MEDIA) is None
    assert parse_status(" No Media Inserted\n").state == "no-medium"


def test_parse_status_refuses_text_without_a_drive():
    with pytest.raises(ValueError):
        parse_status("")


def test_parse_list():
    found = parse_list(DRUTIL_LIST)
    assert [(d.adapter, d.device, d.vendor, d.model, d.firmware) for d in found] == [
        ("drutil", "1", "HL-DT-ST", "DVDRW  GX50N", "RP09"),
        ("drutil", "2", "PIONEER", "BD-RW   BDR-XD07", "1.01")]
    assert parse_list("") == []


def test_parse_burn_list():
    text = IOSERVICE + "\n" + IOSERVICE.replace("@01100000", "@02200000") + "\n"
    assert parse_burn_list(text) == [IOSERVICE, IOSERVICE.replace("@01100000", "@02200000")]
    assert parse_burn_list("") == []


def test_parse_percent():
    assert parse_percent("PERCENT:12.345678") == pytest.approx(12.345678)
    assert parse_percent("PERCENT:100.000000") == 100.0
    assert parse_percent("PERCENT:-1.000000") is None
    assert parse_percent("MESSAGE:Writing track") is None


@pytest.mark.parametrize("text,expected", [
    ("hdiutil: burn failed - The burn failed because of a medium write error.", "write-error"),
    ("hdiutil: burn failed - The device failed to calibrate the laser power level for this media.",
     "calibration"),
    ("hdiutil: burn failed - The device is in use by another process.", "drive-busy"),
    ("hdiutil: burn failed - The disc isn't blank.", "medium-not-blank"),
    ("hdiutil: burn failed - The disc isn't supported for the requested burn operation.",
     "incompatible-medium"),
    ("hdiutil: burn failed - No media present.", "no-medium"),
    ("WRITE@LBA=330h failed with SK=3h/ASC=0Ch/ACQ=00h", "write-error"),
    ("hdiutil: burn failed - something new", "write-error"),
])
def test_classify_failure(text, expected):
    assert classify_failure(text) == expected


def test_hdiutil_speed():
    assert hdiutil_speed("4x", []) == "4"
    assert hdiutil_speed("2.4x", []) == "2.4"
    assert hdiutil_speed("min", [4.0, 2.0, 8.0]) == "2"
    assert hdiutil_speed("min", []) == "1"
    assert hdiutil_speed(None, []) is None and hdiutil_speed("max", []) is None
    with pytest.raises(ValueError):
        hdiutil_speed("fast", [])


# -- through the fakes ---------------------------------------------------------------------

def test_status_through_the_fakes(fake):
    st = fake.drive().status()
    assert (st.state, st.medium_type, st.free_sectors) == ("blank", "DVD-R", 2_298_496)
    assert (st.vendor, st.model, st.medium_id) == ("PIONEER", "DVD-RW  DVR-XD11", "CMC MAG. AM3")
    assert st.tool_version == "macOS 14.4.1 drutil/hdiutil"


def test_burn_asks_hdiutil_for_the_right_burn(fake, image):
    path, data = image
    seen = []
    result = fake.drive().burn(path, progress=lambda d, t: seen.append((d, t)), speed="4x")
    argv = fake.load()["last_burn"]["argv"]
    assert argv[:2] == ["burn", os.path.abspath(path)]
    assert argv[argv.index("-device") + 1] == IOSERVICE
    assert {"-noverifyburn", "-noeject", "-forceclose", "-puppetstrings"} <= set(argv)
    assert argv[argv.index("-speed") + 1] == "4"
    assert seen[0] == (0, len(data)) and seen[-1] == (len(data), len(data)) and len(seen) > 2
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert (result.requested_speed, result.medium_type, result.medium_id) == ("4x", "DVD-R",
                                                                              "CMC MAG. AM3")
    assert fake.medium.stat().st_size % SECTOR == 0


@pytest.mark.parametrize("speed", ["quick", "4"])
def test_an_unreadable_speed_is_a_config_error(fake, image, speed):
    with pytest.raises(DriveError) as err:
        fake.drive().burn(image[0], speed=speed)
    assert failure(err) == "config"
    assert "last_burn" not in fake.load()


def test_min_speed_is_the_discs_lowest(fake, image):
    fake.drive().burn(image[0], speed="min")
    argv = fake.load()["last_burn"]["argv"]
    assert argv[argv.index("-speed") + 1] == "2"


def test_read_opens_the_raw_disk_of_the_disc(fake, monkeypatch):
    monkeypatch.setattr(macos, "MediumFileReader", lambda path, *args: path)
    assert MacDrive("m1", 1).read(10) == "/dev/rdisk4"


def test_a_drive_number_drutil_does_not_know_is_not_ready(fake):
    with pytest.raises(DriveError) as err:
        MacDrive("m1", 7).status()
    assert failure(err) == "not-ready" and "\n" not in str(err.value)


# -- each failure class -------------------------------------------------------------------

class TestNoMedium(FakeStateNoMedium):
    """No disc, and a tray opened by eject(), as every JSON-state fake acts them out."""


def test_medium_not_blank(fake, image):
    fake.medium.write_bytes(b"x" * SECTOR)
    drive = fake.drive()
    assert drive.status().state == "closed"
    for call in (lambda: drive.load_blank("x"), lambda: drive.burn(image[0])):
        with pytest.raises(DriveError) as err:
            call()
        assert failure(err) == "medium-not-blank"


def test_incompatible_medium(fake, image):
    fake.set(media_type="DVD-ROM")
    drive = fake.drive()
    assert drive.status().state == "closed"
    for call in (lambda: drive.load_blank("x"), lambda: drive.burn(image[0])):
        with pytest.raises(DriveError) as err:
            call()
        assert failure(err) == "incompatible-medium"
    fake.set(media_type="DVD-R", fail_burn="unsupported")
    with pytest.raises(DriveError) as err:
        drive.burn(image[0])
    assert failure(err) == "incompatible-medium"


@pytest.mark.parametrize("how,expected", [("write", "write-error"), ("calibration", "calibration"),
                                          ("busy", "drive-busy")])
def test_burn_failures(fake, image, how, expected):
    fake.set(fail_burn=how)
    with pytest.raises(DriveError) as err:
        fake.drive().burn(image[0])
    assert failure(err) == expected
    message = str(err.value)
    assert "hdiutil: burn failed - " in message and "must not be trusted" in message
    assert "\n" not in message


def test_timeout_stops_a_hung_hdiutil(fake, image):
    fake.set(hang="hdiutil")
    started = time.monotonic()
    with pytest.raises(DriveError) as err:
        fake.drive(timeout=1).burn(image[0])
    assert failure(err) == "timeout"
    assert "hdiutil took longer than 1 s" in str(err.value)
    assert time.monotonic() - started < 10


def test_timeout_stops_a_hung_drutil(fake):
    fake.set(hang="drutil")
    with pytest.raises(DriveError) as err:
        fake.drive(timeout=0.5).status()
    assert failure(err) == "timeout" and "drutil" in str(err.value)


@pytest.mark.parametrize("missing", ["drutil", "hdiutil"])
def test_tool_missing_is_one_line_saying_where_it_runs(fake, missing):
    drive = MacDrive("m1", 1, **{missing: f"no-such-{missing}"})
    for call in (drive.status, lambda: drive.load_blank("x")):
        with pytest.raises(DriveError) as err:
            call()
        assert failure(err) == "tool-missing"
        message = str(err.value)
        assert "\n" not in message and "macOS" in message and missing in message


def test_discovery_is_empty_where_drutil_is_missing():
    assert macos.discover(drutil="no-such-drutil") == []


def test_discovery_through_the_fake(fake):
    [found] = macos.discover()
    assert (found.adapter, found.device, found.vendor, found.firmware) == ("drutil", "1",
                                                                           "PIONEER", "1.00")


# -- config ----------------------------------------------------------------------------------

def test_from_config():
    drive = macos.from_config({"name": "m1", "adapter": "drutil", "device": 2, "timeout": 3600})
    assert (drive.name, drive.device, drive.drutil, drive.timeout) == ("m1", "2", "drutil", 3600)
    assert macos.from_config({"name": "m1", "device": "1"}).device == "1"
    assert macos.CONFIG_KEYS == {"name", "adapter", "device", "drutil", "hdiutil", "timeout"}


@pytest.mark.parametrize("spec,words", [
    ({"name": "m1", "adapter": "drutil", "device": 1, "media_dir": "/x"}, ["media_dir"]),
    ({"name": "m1", "adapter": "drutil"}, ["m1", "device"]),
    ({"name": "m1", "adapter": "drutil", "device": "/dev/disk4"}, ["m1", "drutil list"]),
    ({"name": "m1", "adapter": "drutil", "device": 0}, ["m1", "drutil list"]),
    ({"adapter": "drutil", "device": 1}, ["name"]),
    ({"name": "m1", "adapter": "drutil", "device": 1, "timeout": -1}, ["m1", "timeout"]),
])
def test_from_config_refuses_bad_tables(spec, words):
    with pytest.raises(DriveError) as err:
        macos.from_config(spec)
    assert failure(err) == "config" and "\n" not in str(err.value)
    assert all(w in str(err.value) for w in words)
