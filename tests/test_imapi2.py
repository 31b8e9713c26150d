"""The IMAPI2 (Windows) adapter, run through tests/fakes/imapi2/powershell.exe.

The fake reads the scripts burners/imapi2.py sends, answers with the JSON
those scripts print on Windows, and keeps the "disc" in a plain file; a
JSON state file sets what the drive holds and how it fails.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from burner_helpers import (FakeState, FakeStateContract, FakeStateNoMedium, failure,
                            image_fixture)
from burners import imapi2
from burners.base import SECTOR, DriveError, MediumStatus
from burners.imapi2 import (Imapi2Drive, Imapi2Error, VolumeReader, build_script,
                            encode_script, parse_discovery, parse_status, sectors_per_second,
                            speed_label, write_refusal)

FAKES = Path(__file__).parent / "fakes" / "imapi2"
POWERSHELL = str(FAKES / "powershell.exe")
UNIQUE_ID = r"\\?\scsi#cdrom&ven_hl-dt-st&prod_dvdram_gh24nsd1#5&2b6e2e5b&0&000000#{53f56308-b6bf-11d0-94f2-00a0c91efb8b}"
DVD_R_SPEEDS = [2720, 5440, 10880, 16320]          # 4x 8x 16x 24x at 680 sectors/s


class FakeDrive(FakeState):
    """The fake's state file: one recorder E: whose disc is ``medium``."""

    FILE, ENV, KEY = "imapi2-state.json", "FAKE_IMAPI2_STATE", "recorders"

    def __init__(self, tmp_path: Path, monkeypatch):
        super().__init__(tmp_path, monkeypatch, {
            "UniqueId": UNIQUE_ID, "letter": "E:", "VendorId": "HL-DT-ST",
            "ProductId": "DVDRAM GH24NSD1", "ProductRevision": "LG00",
            "media_type": 9, "capacity_sectors": 2_298_496, "speeds": DVD_R_SPEEDS})

    def drive(self, timeout: float | None = 30, device: str = "E:") -> Imapi2Drive:
        return Imapi2Drive("w1", device, powershell=POWERSHELL, timeout=timeout,
                           raw_device=str(self.medium))


@pytest.fixture
def fake(tmp_path, monkeypatch) -> FakeDrive:
    return FakeDrive(tmp_path, monkeypatch)


image = image_fixture(40 * SECTOR + 500)


# -- the contract ----------------------------------------------------------------------

class TestImapi2Contract(FakeStateContract):
    fake_class = FakeDrive

    def discover(self):
        return imapi2.discover(powershell=POWERSHELL)


# -- status and its parser ----------------------------------------------------------

BLANK_DVD_R = {"ok": True, "tool": "IMAPI2 (Windows 10.0.22631.0) via PowerShell 5.1.22621.2506",
               "UniqueId": UNIQUE_ID, "VendorId": "ASUS    ", "ProductId": "BW-16D1HT       ",
               "ProductRevision": "3.10", "VolumePathNames": ["F:\\"], "ExclusiveAccessOwner": "",
               "MediaSupported": True, "CurrentPhysicalMediaType": 9, "CurrentMediaStatus": 6,
               "MediaHeuristicallyBlank": True, "FreeSectorsOnMedia": 2298496,
               "TotalSectorsOnMedia": 2298496, "SupportedWriteSpeeds": [2720, 5440, 10880]}


def test_parse_status_of_a_blank_dvd_r():
    st = parse_status(BLANK_DVD_R, BLANK_DVD_R["tool"])
    assert st == MediumStatus("blank", "DVD-R", 2298496, "ASUS", "BW-16D1HT", "3.10",
                              medium_id=None, tool_version=BLANK_DVD_R["tool"])


def test_parse_status_of_a_finalized_bd_r():
    answer = dict(BLANK_DVD_R, CurrentPhysicalMediaType=18, CurrentMediaStatus=0x5000,
                  MediaHeuristicallyBlank=False, FreeSectorsOnMedia=0)
    st = parse_status(answer)
    assert (st.state, st.medium_type, st.free_sectors) == ("closed", "BD-R", 0)
    assert write_refusal(answer) is None   # closed, but not unwritable media: load_blank says so


def test_parse_status_of_an_appendable_cd_r():
    answer = dict(BLANK_DVD_R, CurrentPhysicalMediaType=2, CurrentMediaStatus=0x1004,
                  MediaHeuristicallyBlank=False, FreeSectorsOnMedia=120000)
    st = parse_status(answer)
    assert (st.state, st.medium_type, st.free_sectors) == ("appendable", "CD-R", 120000)


def test_parse_status_no_media_hresult_is_no_medium():
    answer = {k: v for k, v in BLANK_DVD_R.items()
              if k not in ("CurrentMediaStatus", "FreeSectorsOnMedia", "TotalSectorsOnMedia")}
    answer.update(MediaSupported=False, CurrentPhysicalMediaType=0, hresult="0xC0AA0202",
                  message="There is no media in the device.")
    st = parse_status(answer)
    assert st.state == "no-medium" and st.vendor == "ASUS" and st.free_sectors == 0


def test_parse_status_signed_hresult_and_other_failures():
    with pytest.raises(Imapi2Error) as err:
        parse_status(dict(BLANK_DVD_R, hresult=-1062600176, message="locked"))   # 0xC0AA0210
    assert err.value.failure_class == "drive-busy" and "E_IMAPI_RECORDER_LOCKED" in str(err.value)
    with pytest.raises(Imapi2Error) as err:
        parse_status(dict(BLANK_DVD_R, hresult="0xC0AA0203", message="incompatible"))
    assert err.value.failure_class == "incompatible-medium"


def test_a_pressed_dvd_rom_reads_as_closed_and_is_refused_for_writing():
    answer = dict(BLANK_DVD_R, CurrentPhysicalMediaType=4, CurrentMediaStatus=0,
                  MediaSupported=False, MediaHeuristicallyBlank=False)
    assert parse_status(answer).state == "closed"
    assert write_refusal(answer)[0] == "incompatible-medium"


def test_parse_discovery():
    found = parse_discovery({"ok": True, "recorders": [
        {"UniqueId": UNIQUE_ID, "VolumePathNames": ["E:\\"], "VendorId": "HL-DT-ST",
         "ProductId": "DVDRAM GH24NSD1 ", "ProductRevision": "LG00"},
        {"UniqueId": "", "VendorId": "x"}]})
    assert len(found) == 1
    assert (found[0].adapter, found[0].device, found[0].model) == ("imapi2", UNIQUE_ID,
                                                                    "DVDRAM GH24NSD1")


def test_status_through_the_fake(fake):
    st = fake.drive().status()
    assert (st.state, st.medium_type, st.free_sectors) == ("blank", "DVD-R", 2_298_496)
    assert (st.vendor, st.model, st.firmware) == ("HL-DT-ST", "DVDRAM GH24NSD1", "LG00")
    assert st.tool_version.startswith("IMAPI2 (Windows")


def test_the_unique_id_addresses_the_recorder_too(fake):
    assert fake.drive(device=UNIQUE_ID).status().state == "blank"


# -- speeds ----------------------------------------------------------------------------

def test_sectors_per_second():
    assert sectors_per_second("4x", "DVD-R") == 2720
    assert sectors_per_second("8", "DVD+R DL") == 5440
    assert sectors_per_second("16x", "CD-R") == 1200
    assert sectors_per_second("2x", "BD-R") == 4390
    assert sectors_per_second("min", "DVD-R", DVD_R_SPEEDS) == 2720
    assert sectors_per_second(None, "DVD-R") is None
    assert sectors_per_second("max", "DVD-R") is None
    for bad in ("fast", "0x", "-4x"):
        with pytest.raises(ValueError):
            sectors_per_second(bad, "DVD-R")
    with pytest.raises(ValueError):
        sectors_per_second("min", "DVD-R", [])


def test_speed_label():
    assert speed_label(5440, "DVD-R") == "8.0x"
    assert speed_label(0, "DVD-R") is None and speed_label(5440, None) is None


# -- the scripts -------------------------------------------------------------------------

def test_the_burn_script_asks_for_full_verification_and_a_closed_disc():
    script = build_script("burn", {"device": "E:", "image": "C:\\a.iso", "client": "discarchive",
                                   "verification": imapi2.BURN_VERIFICATION_FULL,
                                   "sectors_per_second": None, "progress_ms": 1000})
    assert script.startswith("# discarchive-op: burn\n")
    assert imapi2.BURN_VERIFICATION_FULL == 2          # IMAPI_BURN_VERIFICATION_FULL
    assert '"verification": 2' in script
    assert "D2FFD834-958B-426D-8470-2A13879C6A91" in script      # IID_IBurnVerification
    assert "SetVerification($fmt.psobject.BaseObject, [int]$p.verification)" in script
    assert "$fmt.ForceMediaToBeClosed = $true" in script
    assert "$fmt.Write($image)" in script


def test_a_burn_through_the_fake_sets_verification_and_speed(fake, image):
    path, _ = image
    drive = fake.drive()
    result = drive.burn(path, speed="8x")
    burn = fake.load()["last_burn"]
    assert burn["params"]["verification"] == 2 and burn["force_closed"]
    assert burn["verification_iid"] and burn["client_name_set"]
    assert burn["params"]["sectors_per_second"] == 5440
    assert (result.speed, result.requested_speed, result.medium_type) == ("8.0x", "8x", "DVD-R")
    assert result.tool_version.startswith("IMAPI2")


def test_min_speed_is_the_lowest_the_drive_offers(fake, image):
    fake.drive().burn(image[0], speed="min")
    assert fake.load()["last_burn"]["params"]["sectors_per_second"] == min(DVD_R_SPEEDS)


@pytest.mark.parametrize("speed", ["quick", "4"])
def test_an_unreadable_speed_is_a_config_error(fake, image, speed):
    with pytest.raises(DriveError) as err:
        fake.drive().burn(image[0], speed=speed)
    assert failure(err) == "config"
    assert fake.medium.stat().st_size == 0


def test_scripts_travel_as_utf16_base64():
    script = build_script("status", {"device": "E:"})
    import base64
    assert base64.b64decode(encode_script(script)).decode("utf-16-le") == script


def test_burn_progress_rises_to_the_image_size(fake, image):
    path, data = image
    seen = []
    fake.drive().burn(path, progress=lambda d, t: seen.append((d, t)))
    assert seen[0] == (0, len(data)) and seen[-1] == (len(data), len(data))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and len(seen) > 2
    assert fake.medium.stat().st_size % SECTOR == 0


# -- each failure class -------------------------------------------------------------------

class TestNoMedium(FakeStateNoMedium):
    """No disc, and a tray opened by eject(), as every JSON-state fake acts them out."""


def test_medium_not_blank(fake, image):
    fake.medium.write_bytes(b"x" * SECTOR)
    drive = fake.drive()
    assert drive.status().state == "closed"
    with pytest.raises(DriveError) as err:
        drive.load_blank("x")
    assert failure(err) == "medium-not-blank"
    with pytest.raises(DriveError) as err:
        drive.burn(image[0])
    assert failure(err) == "medium-not-blank"


def test_incompatible_medium(fake, image):
    fake.set(incompatible=True)
    drive = fake.drive()
    for call in (drive.status, lambda: drive.load_blank("x"), lambda: drive.burn(image[0])):
        with pytest.raises(DriveError) as err:
            call()
        assert failure(err) == "incompatible-medium"
        assert "E_IMAPI_RECORDER_MEDIA_INCOMPATIBLE (0xC0AA0203)" in str(err.value)


def test_a_read_only_disc_is_incompatible_for_a_burn(fake, image):
    fake.medium.write_bytes(b"x" * SECTOR)
    fake.set(media_type=4)                                   # DVD-ROM
    for call in (lambda: fake.drive().burn(image[0]), lambda: fake.drive().load_blank("x")):
        with pytest.raises(DriveError) as err:
            call()
        assert failure(err) == "incompatible-medium" and "read-only DVD-ROM" in str(err.value)


def test_drive_busy_names_the_owner(fake, image):
    fake.set(locked_by="Other Burning Suite")
    with pytest.raises(DriveError) as err:
        fake.drive().burn(image[0])
    assert failure(err) == "drive-busy"
    assert "E_IMAPI_RECORDER_LOCKED" in str(err.value) and "Other Burning Suite" in str(err.value)


@pytest.mark.parametrize("hresult,name", [("0xC0AA0300", "E_IMAPI_LOSS_OF_STREAMING"),
                                          ("0xC0AA0007", "E_IMAPI_BURN_VERIFICATION_FAILED")])
def test_write_error(fake, image, hresult, name):
    fake.set(fail_burn=hresult)
    with pytest.raises(DriveError) as err:
        fake.drive().burn(image[0])
    assert failure(err) == "write-error"
    message = str(err.value)
    assert name in message and "must not be trusted" in message and "\n" not in message


def test_timeout_stops_a_hung_powershell(fake, image):
    fake.set(hang=True)
    started = time.monotonic()
    with pytest.raises(DriveError) as err:
        fake.drive(timeout=0.5).burn(image[0])
    assert failure(err) == "timeout"
    assert time.monotonic() - started < 10


def test_tool_missing_is_one_line_saying_where_it_runs(fake):
    drive = Imapi2Drive("w1", "E:", powershell="no-such-powershell.exe")
    for call in (drive.status, lambda: drive.load_blank("x"), drive.eject):
        with pytest.raises(DriveError) as err:
            call()
        assert failure(err) == "tool-missing"
        message = str(err.value)
        assert "\n" not in message and "Windows" in message and "xorriso" in message


def test_discovery_is_empty_where_powershell_is_missing():
    assert imapi2.discover(powershell="no-such-powershell.exe") == []


def test_discovery_through_the_fake(fake):
    [found] = imapi2.discover(powershell=str(FAKES / "pwsh"))
    assert (found.adapter, found.device, found.vendor) == ("imapi2", UNIQUE_ID, "HL-DT-ST")


# -- reading back ----------------------------------------------------------------------

def test_read_uses_the_drive_letter_imapi2_reports(fake, monkeypatch):
    monkeypatch.setattr(imapi2, "VolumeReader", lambda path, *args: path)
    assert Imapi2Drive("w1", UNIQUE_ID, powershell=POWERSHELL).read(10) == "\\\\.\\E:"


def test_windows_sector_errors_are_salvaged_not_fatal(tmp_path):
    """Windows reports a bad sector as ERROR_CRC (23) and the like, not EIO."""
    data = os.urandom(8 * SECTOR)
    medium = tmp_path / "volume"
    medium.write_bytes(data)
    failures = {3: 99, 5: 2}         # sector -> failures left (the chunk's read takes one)

    class Flaky(VolumeReader):
        def _read(self, f, offset, size):
            hit = [s for s in range(offset // SECTOR, (offset + size) // SECTOR)
                   if failures.get(s)]
            if hit:
                failures[hit[0]] -= 1
                exc = OSError(22, "Data error (cyclic redundancy check)")
                exc.winerror = 23
                raise exc
            return super()._read(f, offset, size)

    reader = Flaky(str(medium), len(data), chunk=4 * SECTOR, retries=2, drive="w1")
    got = b"".join(reader)
    assert reader.bad == [(3, 1)] and reader.retried == 1
    assert got[:3 * SECTOR] == data[:3 * SECTOR] and got[3 * SECTOR:4 * SECTOR] == bytes(SECTOR)
    assert got[4 * SECTOR:] == data[4 * SECTOR:]


def test_windows_not_ready_while_reading_is_no_medium(tmp_path):
    medium = tmp_path / "volume"
    medium.write_bytes(bytes(4 * SECTOR))

    class Gone(VolumeReader):
        def _read(self, f, offset, size):
            exc = OSError(13, "The device is not ready")
            exc.winerror = 21
            raise exc

    with pytest.raises(DriveError) as err:
        b"".join(Gone(str(medium), 4 * SECTOR, drive="w1"))
    assert failure(err) == "no-medium"


# -- config ----------------------------------------------------------------------------------

def test_from_config():
    drive = imapi2.from_config({"name": "w1", "adapter": "imapi2", "device": "E:",
                                "powershell": "pwsh", "timeout": 7200})
    assert (drive.name, drive.device, drive.powershell, drive.timeout) == ("w1", "E:", "pwsh", 7200)
    assert imapi2.CONFIG_KEYS == {"name", "adapter", "device", "powershell", "timeout"}


@pytest.mark.parametrize("spec,words", [
    ({"name": "w1", "adapter": "imapi2", "device": "E:", "media_dir": "/x"}, ["media_dir"]),
    ({"name": "w1", "adapter": "imapi2"}, ["w1", "device"]),
    ({"adapter": "imapi2", "device": "E:"}, ["name"]),
    ({"name": "w1", "adapter": "imapi2", "device": "E:", "timeout": "soon"}, ["w1", "timeout"]),
    ({"name": "w1", "adapter": "xorriso", "device": "E:"}, ["w1", "imapi2"]),
])
def test_from_config_refuses_bad_tables(spec, words):
    with pytest.raises(DriveError) as err:
        imapi2.from_config(spec)
    assert failure(err) == "config" and "\n" not in str(err.value)
    assert all(w in str(err.value) for w in words)
