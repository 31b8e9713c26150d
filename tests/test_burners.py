"""Tests of the drive adapters: one contract for every adapter, then xorriso specifics.

The xorriso cases run the real program against ``stdio:`` medium files in
tmp_path; a few use small shell scripts standing in for xorriso to produce
output (sense errors, progress lines, hangs) that a file cannot.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from burners import (SECTOR, BurnResult, DriveError, MediumStatus, VirtualDrive, XorrisoDrive,
                     open_drive)
from burners.xorriso import TOOL_MISSING, classify_sense, parse_progress, parse_status

XORRISO = shutil.which("xorriso")
needs_xorriso = pytest.mark.skipif(XORRISO is None, reason="xorriso is not installed")

BLANK_TOC = """\
Drive current: -outdev 'stdio:/x.medium'
Drive type   : vendor 'YOYODYNE' product 'WARP DRIVE' revision 'FX01'
Media current: stdio file, overwriteable
Media status : is blank
Media space  : {space}s
"""


def fake_xorriso(tmp_path, burn_body: str, space: int = 100_000) -> str:
    """A shell script standing in for xorriso: ``-toc`` reports a blank medium
    with ``space`` free sectors, anything else runs ``burn_body``."""
    script = tmp_path / "fake-xorriso"
    script.write_text(
        "#!/bin/sh\n"
        'case " $* " in\n'
        f"  *' -toc '*) cat <<'EOF'\n{BLANK_TOC.format(space=space)}EOF\n  ;;\n"
        f"  *) {burn_body}\n  ;;\n"
        "esac\n")
    script.chmod(0o755)
    return str(script)


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> bytes:
    """A real ISO image with 1000 extra bytes, so its length is not whole sectors."""
    root = tmp_path_factory.mktemp("image")
    (root / "tree").mkdir()
    (root / "tree" / "record.txt").write_bytes(os.urandom(70_000))
    path = root / "disc.iso"
    if XORRISO:
        subprocess.run([XORRISO, "-as", "mkisofs", "-quiet", "-o", str(path), str(root / "tree")],
                       check=True, capture_output=True)
    else:
        path.write_bytes(os.urandom(40 * SECTOR))
    data = path.read_bytes() + os.urandom(1000)
    assert len(data) % SECTOR != 0
    return data


@pytest.fixture
def image_path(tmp_path, image) -> str:
    path = tmp_path / "disc.img"
    path.write_bytes(image)
    return str(path)


@pytest.fixture(params=["xorriso", "virtual"])
def make_drive(request, tmp_path):
    """make_drive(capacity_sectors=None) -> a file-backed drive of the adapter under test.

    A small capacity is simulated for xorriso by a wrapper that runs the real
    program and rewrites the ``Media space`` line of its ``-toc`` report.
    """
    media = str(tmp_path / "media")

    def make(capacity_sectors: int | None = None):
        if request.param == "virtual":
            return VirtualDrive("v1", media, capacity_sectors or 2_298_496)
        if XORRISO is None:
            pytest.skip("xorriso is not installed")
        program = XORRISO
        if capacity_sectors is not None:
            wrapper = tmp_path / "small-xorriso"
            wrapper.write_text(
                "#!/bin/sh\n"
                f"case \" $* \" in *' -toc '*) {XORRISO} \"$@\" | "
                f"sed 's/^Media space  : .*/Media space  : {capacity_sectors}s/' ;;\n"
                f"*) exec {XORRISO} \"$@\" ;; esac\n")
            wrapper.chmod(0o755)
            program = str(wrapper)
        return XorrisoDrive("x1", media_dir=media, xorriso=program, timeout=60)

    make.adapter = request.param
    return make


def _failure(exc_info) -> str:
    return exc_info.value.failure_class


# -- the contract, for every adapter -------------------------------------------

def test_burn_and_read_back(make_drive, image, image_path):
    drive = make_drive()
    assert drive.status().state == "no-medium"
    drive.load_blank("A-0001")
    medium = os.path.join(drive.media_dir, "A-0001.medium")
    before = drive.status()
    assert before.state == "blank" and before.free_sectors > 0
    assert before.medium_type

    seen = []
    result = drive.burn(image_path, lambda done, total: seen.append((done, total)))

    assert isinstance(result, BurnResult) and result.medium_path == medium
    assert result.seconds >= 0
    assert seen[0] == (0, len(image)) and seen[-1] == (len(image), len(image))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    after = drive.status()
    assert after.state in ("appendable", "closed")
    size = os.path.getsize(medium)
    assert size > len(image) and size % SECTOR == 0      # padded to whole sectors

    chunks = list(drive.read(len(image), chunk=64 * 1024))
    assert b"".join(chunks) == image                     # exactly the image, no padding
    assert max(len(c) for c in chunks) <= 64 * 1024

    drive.eject()
    assert drive.status().state == "no-medium"
    drive.load(medium)
    assert drive.status().state != "blank"
    assert b"".join(drive.read(100)) == image[:100]


def test_load_blank_refuses_a_used_medium(make_drive):
    drive = make_drive()
    drive.load_blank("A-0002")                        # creates the empty medium file
    drive.eject()
    drive.load_blank("A-0002")                        # still empty: still blank, accepted
    with open(os.path.join(drive.media_dir, "A-0002.medium"), "wb") as f:
        f.write(b"\1" * SECTOR)
    drive.eject()
    with pytest.raises(DriveError) as exc:
        drive.load_blank("A-0002")
    assert _failure(exc) == "medium-not-blank"
    assert drive.status().state == "no-medium"       # nothing was loaded


def test_load_missing_medium(make_drive, tmp_path):
    drive = make_drive()
    with pytest.raises(DriveError) as exc:
        drive.load(str(tmp_path / "gone.medium"))
    assert _failure(exc) == "no-medium"
    with pytest.raises(DriveError) as exc:
        list(drive.read(10))
    assert _failure(exc) == "no-medium"


def test_medium_too_small(make_drive, image, image_path):
    drive = make_drive(capacity_sectors=10)
    drive.load_blank("A-0003")
    assert drive.status().free_sectors == 10
    need = -(-len(image) // SECTOR)
    with pytest.raises(DriveError) as exc:
        drive.burn(image_path)
    assert _failure(exc) == "medium-too-small"
    assert str(need) in str(exc.value) and "10" in str(exc.value)
    assert os.path.getsize(os.path.join(drive.media_dir, "A-0003.medium")) == 0


def test_truncated_medium_gives_read_error(make_drive, image, image_path):
    drive = make_drive()
    drive.load_blank("A-0004")
    result = drive.burn(image_path)
    os.truncate(result.medium_path, 3 * SECTOR)
    with pytest.raises(DriveError) as exc:
        b"".join(drive.read(len(image)))
    assert _failure(exc) == "read-error"
    assert f"ends at byte {3 * SECTOR} of {len(image)}" in str(exc.value)


def test_burn_refuses_a_written_medium(make_drive, image_path):
    drive = make_drive()
    drive.load_blank("A-0005")
    drive.burn(image_path)
    with pytest.raises(DriveError) as exc:
        drive.burn(image_path)
    assert _failure(exc) == "medium-not-blank"


# -- xorriso specifics ----------------------------------------------------------

def test_xorriso_missing_is_reported_by_every_operation(tmp_path, image_path):
    drive = XorrisoDrive("x1", media_dir=str(tmp_path), xorriso="no-such-xorriso-binary")
    calls = [drive.status, lambda: drive.load_blank("A"), lambda: drive.load(image_path),
             lambda: drive.burn(image_path), lambda: drive.read(10), drive.eject]
    for call in calls:
        with pytest.raises(DriveError) as exc:
            call()
        assert _failure(exc) == "tool-missing"
        assert str(exc.value) == TOOL_MISSING
    assert "\n" not in TOOL_MISSING and "apt-get install xorriso" in TOOL_MISSING


def test_timeout_kills_a_hung_burner(tmp_path, image_path):
    pidfile = tmp_path / "sleeper.pid"
    program = fake_xorriso(tmp_path, f"sleep 30 & echo $! > {pidfile}; wait")
    drive = XorrisoDrive("x1", media_dir=str(tmp_path / "media"), xorriso=program, timeout=1)
    drive.load_blank("A-0006")
    started = time.monotonic()
    with pytest.raises(DriveError) as exc:
        drive.burn(image_path)
    assert _failure(exc) == "timeout"
    assert time.monotonic() - started < 8
    assert not _alive(int(pidfile.read_text()))      # the whole process group was killed


def _alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie waiting for a parent to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_burn_failure_is_classified_from_sense_data(tmp_path, image_path):
    program = fake_xorriso(tmp_path,
                           "echo 'libburn : SORRY : WRITE@LBA=330h failed with "
                           "SK=3h/ASC=0Ch/ACQ=00h' >&2; exit 5")
    drive = XorrisoDrive("x1", media_dir=str(tmp_path / "media"), xorriso=program)
    drive.load_blank("A-0007")
    with pytest.raises(DriveError) as exc:
        drive.burn(image_path)
    assert _failure(exc) == "write-error"
    assert "WRITE@LBA=330h" in str(exc.value) and "exit 5" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_burn_reports_xorriso_progress_and_speed(tmp_path, image, image_path):
    lines = ["xorriso : UPDATE :    0 of    1 MB written (fifo  0%) [buf  50%]",
             "xorriso : UPDATE :    1 of    1 MB written (fifo 99%) [buf  50%]  51.6x."]
    program = fake_xorriso(tmp_path, "; ".join(f"echo '{line}' >&2" for line in lines))
    drive = XorrisoDrive("x1", media_dir=str(tmp_path / "media"), xorriso=program)
    drive.load_blank("A-0008")
    seen = []
    result = drive.burn(image_path, lambda done, total: seen.append(done))
    assert result.speed == "51.6x"
    assert seen == [0, len(image)]   # 1 MiB exceeds the image: clamped, reported once


def test_parse_progress():
    line = "xorriso : UPDATE :  152 of 1430 MB written (fifo  0%) [buf  50%]  52.3x."
    assert parse_progress(line) == (152 << 20, "52.3x")
    assert parse_progress("xorriso : UPDATE :    7 of 1430 MB written (fifo  0%) [buf  50%]") \
        == (7 << 20, None)
    assert parse_progress("Beginning to write data track.") is None


@pytest.mark.parametrize("text, expected", [
    ("libburn : SORRY : WRITE@LBA=330h failed with SK=3h/ASC=0Ch/ACQ=00h", "write-error"),
    ("libburn : FAILURE : CLOSE SESSION failed with SK=5h/ASC=72h/ACQ=03h", "medium-error"),
    ("libburn : FAILURE : SEND OPC failed with SK=3h/ASC=73h/ACQ=03h", "calibration"),
    ("SK=3h/ASC=73h/ACQ=03h", "calibration"),
    ("READ CAPACITY failed with SK=2h/ASC=3Ah/ACQ=00h", "no-medium"),
    ("READ(10)@LBA=10h failed with SK=3h/ASC=11h/ACQ=05h", "read-error"),
    ("xorriso : FAILURE : something without sense data", "write-error"),
])
def test_classify_sense(text, expected):
    assert classify_sense(text) == expected


def test_classify_sense_takes_the_first_report():
    text = ("WRITE@LBA=10h failed with SK=3h/ASC=0Ch/ACQ=00h\n"
            "CLOSE SESSION failed with SK=5h/ASC=72h/ACQ=03h\n")
    assert classify_sense(text) == "write-error"
    assert classify_sense("no sense here", default="not-ready") == "not-ready"


def test_parse_status_of_a_real_drive():
    blank = ("Drive current: -outdev '/dev/sr0'\n"
             "Drive type   : vendor 'HL-DT-ST' product 'DVDRAM GUE0N' revision 'T.02'\n"
             "Media current: DVD-R sequential recording\n"
             "Media status : is blank\n"
             "Media space  : 2298496s\n")
    assert parse_status(blank) == MediumStatus("blank", "DVD-R", 2298496,
                                               "HL-DT-ST", "DVDRAM GUE0N", "T.02")
    closed = blank.replace("is blank", "is written , is closed").replace("2298496s", "0s")
    assert parse_status(closed).state == "closed"
    appendable = blank.replace("is blank", "is written , is appendable")
    assert parse_status(appendable).state == "appendable"
    empty = ("Drive type   : vendor 'HL-DT-ST' product 'DVDRAM GUE0N' revision 'T.02'\n"
             "Media current: is not recognizable\nMedia status : is not present\n")
    assert parse_status(empty) == MediumStatus("no-medium", None, 0,
                                               "HL-DT-ST", "DVDRAM GUE0N", "T.02")
    with pytest.raises(ValueError):
        parse_status("xorriso : FAILURE : Cannot acquire drive '/dev/sr0'\n")


@needs_xorriso
def test_a_device_that_is_not_a_drive_is_not_taken_for_a_file(tmp_path):
    # Given a bare path, xorriso would report a blank stdio: file and burn into it.
    device = tmp_path / "no-such-sr9"
    drive = XorrisoDrive("sr9", device=str(device))
    with pytest.raises(DriveError) as exc:
        drive.status()
    assert _failure(exc) == "not-ready"
    assert "not found" in str(exc.value) and "\n" not in str(exc.value)
    assert not device.exists()


# -- open_drive ------------------------------------------------------------------

def test_open_drive_builds_each_adapter(tmp_path):
    virtual = open_drive({"name": "v", "adapter": "virtual", "media_dir": str(tmp_path),
                          "capacity_sectors": 100})
    assert isinstance(virtual, VirtualDrive) and virtual.adapter == "virtual"
    real = open_drive({"name": "sr0", "adapter": "xorriso", "device": "/dev/sr0", "timeout": 0})
    assert isinstance(real, XorrisoDrive) and real.device == "/dev/sr0" and real.timeout is None
    files = open_drive({"name": "f", "adapter": "xorriso", "media_dir": str(tmp_path),
                        "xorriso": "/opt/xorriso", "timeout": 90})
    assert files.media_dir == str(tmp_path) and files.xorriso == "/opt/xorriso"
    assert files.timeout == 90


@pytest.mark.parametrize("spec, words", [
    ({"name": "d1", "adapter": "growisofs", "device": "/dev/sr0"}, ["d1", "adapter"]),
    ({"name": "d2", "adapter": "xorriso"}, ["d2", "device", "media_dir"]),
    ({"name": "d3", "adapter": "xorriso", "device": "/dev/sr0", "media_dir": "/m"},
     ["d3", "exactly one"]),
    ({"name": "d4", "adapter": "virtual", "media_dir": "/m"}, ["d4", "capacity_sectors"]),
    ({"name": "d5", "adapter": "virtual", "media_dir": "/m", "capacity_sectors": 0},
     ["d5", "capacity_sectors"]),
    ({"name": "d6", "adapter": "xorriso", "device": "/dev/sr0", "capacity_sectors": 5},
     ["d6", "capacity_sectors"]),
    ({"name": "d7", "adapter": "xorriso", "device": "/dev/sr0", "timeout": "soon"},
     ["d7", "timeout"]),
    ({"name": "d8", "adapter": "xorriso", "device": "stdio:/tmp/m"}, ["d8", "media_dir"]),
    ({"adapter": "virtual"}, ["name"]),
])
def test_open_drive_rejects_bad_config(spec, words):
    with pytest.raises(DriveError) as exc:
        open_drive(spec)
    assert _failure(exc) == "config"
    message = str(exc.value)
    assert "\n" not in message and all(word in message for word in words)
