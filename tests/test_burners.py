"""Tests of the drive adapters: the drive contract for every adapter, the medium
reader, then xorriso specifics.

The xorriso cases run the real program against ``stdio:`` medium files in
tmp_path; a few use small shell scripts standing in for xorriso to produce
output (sense errors, progress lines, hangs) that a file cannot.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from burner_helpers import failure as _failure
from burners import (SECTOR, BurnResult, DriveError, DriveInfo, MediumStatus, VirtualDrive,
                     XorrisoDrive, open_drive)
from burners import virtual as virtual_adapter
from burners import xorriso as xorriso_adapter
from burners._media import MediumFileReader, check_speed, holder_of
from burners.xorriso import (TOOL_MISSING, classify_sense, parse_devices, parse_progress,
                             parse_status, parse_version)
from drive_contract import DriveContract

XORRISO = shutil.which("xorriso")
needs_xorriso = pytest.mark.skipif(XORRISO is None, reason="xorriso is not installed")

BLANK_TOC = """\
Drive current: -outdev 'stdio:/x.medium'
Drive type   : vendor 'YOYODYNE' product 'WARP DRIVE' revision 'FX01'
Media current: stdio file, overwriteable
Media status : is blank
Media space  : {space}s
"""


def fake_xorriso(tmp_path, burn_body: str, space: int = 100_000, toc: str = BLANK_TOC) -> str:
    """A shell script standing in for xorriso: ``-version`` says ``xorriso
    1.5.4-fake``, ``-toc`` reports ``toc`` (a blank medium with ``space``
    free sectors), anything else runs ``burn_body``."""
    script = tmp_path / "fake-xorriso"
    script.write_text(
        "#!/bin/sh\n"
        'case " $* " in\n'
        "  *' -version '*) echo 'xorriso 1.5.4-fake' ;;\n"
        f"  *' -toc '*) cat <<'EOF'\n{toc.format(space=space)}EOF\n  ;;\n"
        f"  *) {burn_body}\n  ;;\n"
        "esac\n")
    script.chmod(0o755)
    return str(script)


def capacity_xorriso(tmp_path: Path, capacity_sectors: int, name: str) -> str:
    """A wrapper ``tmp_path/name`` around the real xorriso whose ``-toc`` reports
    ``capacity_sectors`` free sectors (a ``stdio:`` medium's room is the file
    system's free space)."""
    wrapper = tmp_path / name
    wrapper.write_text(
        "#!/bin/sh\n"
        f"case \" $* \" in *' -toc '*) {XORRISO} \"$@\" | "
        f"sed 's/^Media space  : .*/Media space  : {capacity_sectors}s/' ;;\n"
        f"*) exec {XORRISO} \"$@\" ;; esac\n")
    wrapper.chmod(0o755)
    return str(wrapper)


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
            program = capacity_xorriso(tmp_path, capacity_sectors, "small-xorriso")
        return XorrisoDrive("x1", media_dir=media, xorriso=program, timeout=60)

    make.adapter = request.param
    return make


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


def test_truncated_medium_reads_with_its_missing_sectors_bad(make_drive, image, image_path):
    drive = make_drive()
    drive.load_blank("A-0004")
    result = drive.burn(image_path)
    os.truncate(result.medium_path, 3 * SECTOR + 100)   # a torn sector counts as missing
    reader = drive.read(len(image), chunk=4 * SECTOR)
    got = b"".join(reader)
    total = -(-len(image) // SECTOR)
    assert got == image[:3 * SECTOR] + bytes(len(image) - 3 * SECTOR)
    assert reader.bad == [(3, total - 3)] and reader.slow == [] and reader.retried == 0


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
    ({"name": "d1", "adapter": "nero", "device": "/dev/sr0"}, ["d1", "adapter"]),
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


# -- the drive contract (tests/drive_contract.py) for each adapter ---------------------

class TestVirtualContract(DriveContract):
    def make_drive(self, tmp_path: Path, capacity_sectors: int = 2_298_496):
        return VirtualDrive("v1", str(tmp_path / "media"), capacity_sectors)

    def medium_file(self, drive) -> Path:
        return Path(drive._slot.current)

    def discover(self) -> list:
        return virtual_adapter.discover()


@needs_xorriso
class TestXorrisoContract(DriveContract):
    def make_drive(self, tmp_path: Path, capacity_sectors: int = 2_298_496):
        program = capacity_xorriso(tmp_path, capacity_sectors, "capacity-xorriso")
        return XorrisoDrive("x1", media_dir=str(tmp_path / "media"), xorriso=program,
                            timeout=60)

    def medium_file(self, drive) -> Path:
        return Path(drive._slot.current)

    def discover(self) -> list:
        return xorriso_adapter.discover()      # the real scan: no optical drive here


# -- the medium reader ---------------------------------------------------------------

class FlakyReader(MediumFileReader):
    """A reader whose medium fails (EIO) ``fails[lba]`` times at each listed sector,
    and whose clock advances ``seconds[lba]`` extra for each sector read."""

    def __init__(self, *args, fails=None, seconds=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fails = dict(fails or {})
        self.seconds = seconds or {}
        self.now = 0.0

    def _read(self, f, offset, size):
        first, end = offset // SECTOR, -(-(offset + size) // SECTOR)
        if any(self.fails.get(lba, 0) > 0 for lba in range(first, end)):
            if end - first == 1:
                self.fails[first] -= 1
            raise OSError(errno.EIO, "Input/output error")
        self.now += sum(self.seconds.get(lba, 0.01) for lba in range(first, end))
        return super()._read(f, offset, size)

    def _clock(self):
        return self.now


@pytest.fixture
def medium(tmp_path) -> tuple[str, bytes]:
    data = os.urandom(20 * SECTOR)
    path = tmp_path / "m.medium"
    path.write_bytes(data)
    return str(path), data


def test_reader_retries_failing_sectors_and_zeroes_the_hopeless(medium):
    path, data = medium
    # sector 5 reads on its 2nd try, 6 on its 3rd (the last of 1 + 2 retries), 7 and 8 never
    reader = FlakyReader(path, len(data), chunk=4 * SECTOR, retries=2,
                         fails={5: 1, 6: 2, 7: 99, 8: 99})
    got = b"".join(reader)
    assert got == data[:7 * SECTOR] + bytes(2 * SECTOR) + data[9 * SECTOR:]
    assert reader.bad == [(7, 2)] and reader.retried == 2 and reader.slow == []


def test_reader_with_no_retries_gives_up_at_once(medium):
    path, data = medium
    reader = FlakyReader(path, len(data), chunk=4 * SECTOR, retries=0, fails={5: 1})
    assert b"".join(reader)[5 * SECTOR:6 * SECTOR] == bytes(SECTOR)
    assert reader.bad == [(5, 1)] and reader.retried == 0


def test_reader_lists_markedly_slow_chunks(medium):
    path, data = medium
    # 0.01 s per sector; sectors 8 and 9 take 1 s each (chunk 8..11 then takes 2.02 s)
    reader = FlakyReader(path, len(data), chunk=4 * SECTOR, seconds={8: 1.0, 9: 1.0})
    assert b"".join(reader) == data
    assert reader.slow == [(8, 4)] and reader.bad == []


def test_reader_ignores_small_absolute_delays_and_the_first_chunk(medium):
    path, data = medium
    # sector 13 is 40x slower but costs only 0.4 s more: below the floor; the first chunk
    # (spin-up) is never judged
    reader = FlakyReader(path, len(data), chunk=4 * SECTOR, seconds={0: 5.0, 13: 0.4})
    b"".join(reader)
    assert reader.slow == []


def test_reader_of_a_plain_file_finds_nothing_slow_or_bad(tmp_path):
    path = tmp_path / "big.medium"
    data = os.urandom(8 << 20)
    path.write_bytes(data)
    seen = []
    reader = MediumFileReader(str(path), len(data) - 5, lambda d, t: seen.append((d, t)),
                              chunk=64 * 1024)
    assert b"".join(reader) == data[:-5]
    assert reader.bad == [] and reader.slow == [] and reader.retried == 0
    assert seen[-1] == (len(data) - 5, len(data) - 5)


def test_reader_chunks_smaller_than_a_sector(medium):
    path, data = medium
    chunks = list(MediumFileReader(path, 5000, chunk=1000))
    assert b"".join(chunks) == data[:5000] and max(map(len, chunks)) == 1000


def test_reader_of_a_missing_medium_says_no_medium(tmp_path):
    with pytest.raises(DriveError) as exc:
        MediumFileReader(str(tmp_path / "gone.medium"), 10, drive="d1")
    assert _failure(exc) == "no-medium" and "d1" in str(exc.value)


def test_reader_reports_an_unreadable_medium_as_read_error(medium):
    class Broken(MediumFileReader):
        def _read(self, f, offset, size):
            raise OSError(errno.EINVAL, "Invalid argument")

    with pytest.raises(DriveError) as exc:
        b"".join(Broken(medium[0], 100, drive="d1"))
    assert _failure(exc) == "read-error" and "sector 0" in str(exc.value)


def test_holder_of_names_another_process(tmp_path):
    path = tmp_path / "held.medium"
    path.write_bytes(b"x")
    assert holder_of(str(path)) is None
    with open(path, "rb"):
        assert holder_of(str(path)) is None           # our own process is never named
    with held_open(path) as child:
        pid, name = holder_of(str(path))
        assert pid == child.pid and name
    assert holder_of(str(tmp_path / "missing")) is None


@contextlib.contextmanager
def held_open(path) -> Iterator[subprocess.Popen]:
    """A child Python process that holds ``path`` open until the block ends."""
    proc = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; f = open(sys.argv[1], 'rb'); print('ready', flush=True); "
         "time.sleep(30)", str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


@pytest.mark.parametrize("speed", [None, "min", "max", "4x", "2.4x"])
def test_check_speed_accepts(speed):
    assert check_speed("d1", speed) == speed


@pytest.mark.parametrize("speed", ["fast", "4", "x4", "", "-1", 4])
def test_check_speed_refuses(speed):
    with pytest.raises(DriveError) as exc:
        check_speed("d1", speed)
    assert _failure(exc) == "config" and "d1" in str(exc.value)


# -- xorriso: discovery, version, medium ID, speed, busy --------------------------------

DEVICES = """\
xorriso 1.5.4 : RockRidge filesystem manipulator, libburnia project.

Beginning to scan for devices ...
Full drive scan done.
-----------------------------------------------------------------------------
0  -dev '/dev/sr0' rwrw-- :  'HL-DT-ST' 'DVDRAM GH24NSD1'
1  -dev '/dev/sr1' rwrw-- :  'ASUS    ' 'BW-16D1HT       '
-----------------------------------------------------------------------------
"""


def test_parse_devices():
    assert parse_devices(DEVICES) == [
        DriveInfo("xorriso", "/dev/sr0", "HL-DT-ST", "DVDRAM GH24NSD1"),
        DriveInfo("xorriso", "/dev/sr1", "ASUS", "BW-16D1HT")]
    assert parse_devices("xorriso : SORRY : No drives found\n") == []


def test_discover_without_xorriso_finds_nothing():
    assert xorriso_adapter.discover("no-such-xorriso-binary") == []


def test_discover_runs_the_scan(tmp_path):
    script = tmp_path / "scan-xorriso"
    script.write_text("#!/bin/sh\ncat <<'EOF'\n" + DEVICES + "EOF\n")
    script.chmod(0o755)
    assert [d.device for d in xorriso_adapter.discover(str(script))] == ["/dev/sr0", "/dev/sr1"]


def test_parse_status_reads_the_medium_id():
    toc = ("Drive type   : vendor 'HL-DT-ST' product 'DVDRAM GH24NSD1' revision 'LG00'\n"
           "Media current: DVD-R sequential recording\n"
           "Media product: MCC 03RG20 , Mitsubishi Kagaku Media Co.\n"
           "Media status : is blank\n"
           "Media space  : 2298496s\n")
    status = parse_status(toc)
    assert status.medium_id == "MCC 03RG20" and status.medium_type == "DVD-R"
    assert parse_status(toc.replace("Media product: MCC 03RG20 , Mitsubishi Kagaku Media Co.\n",
                                    "")).medium_id is None


def test_parse_version():
    assert parse_version("xorriso 1.5.4\nISO 9660 Rock Ridge filesystem manipulator\n") \
        == "xorriso 1.5.4"
    assert parse_version("") == ""


@needs_xorriso
def test_status_reports_the_real_tool_version(tmp_path):
    drive = XorrisoDrive("x1", media_dir=str(tmp_path / "media"))
    assert drive.status().tool_version.startswith("xorriso 1.")


def test_burn_passes_the_speed_and_records_the_burn(tmp_path, image_path):
    argsfile = tmp_path / "args"
    lines = ["xorriso : UPDATE :    1 of    1 MB written (fifo 99%) [buf  50%]   2.4x."]
    program = fake_xorriso(tmp_path, f'echo "$@" > {argsfile}; echo \'{lines[0]}\' >&2',
                           toc=BLANK_TOC.replace(
                               "Media current: stdio file, overwriteable\n",
                               "Media current: DVD-R sequential recording\n"
                               "Media product: RITEKF1 , Ritek Corp\n"))
    drive = XorrisoDrive("x1", media_dir=str(tmp_path / "media"), xorriso=program)
    drive.load_blank("A-0009")
    result = drive.burn(image_path, speed="min")
    assert " speed=min " in f" {argsfile.read_text().strip()} "
    assert (result.requested_speed, result.speed) == ("min", "2.4x")
    assert (result.medium_type, result.medium_id) == ("DVD-R", "RITEKF1")
    assert result.tool_version == "xorriso 1.5.4-fake"


def test_burn_without_a_speed_leaves_it_to_the_drive(tmp_path, image_path):
    argsfile = tmp_path / "args"
    program = fake_xorriso(tmp_path, f'echo "$@" > {argsfile}')
    drive = XorrisoDrive("x1", media_dir=str(tmp_path / "media"), xorriso=program)
    drive.load_blank("A-0010")
    result = drive.burn(image_path)
    assert "speed=" not in argsfile.read_text()
    assert result.requested_speed is None and result.speed is None


def test_burn_refuses_a_speed_xorriso_would_quietly_ignore(tmp_path, image_path):
    program = fake_xorriso(tmp_path, "exit 0")
    drive = XorrisoDrive("x1", media_dir=str(tmp_path / "media"), xorriso=program)
    drive.load_blank("A-0011")
    with pytest.raises(DriveError) as exc:
        drive.burn(image_path, speed="fast")
    assert _failure(exc) == "config"
    assert os.path.getsize(os.path.join(drive.media_dir, "A-0011.medium")) == 0


def test_xorriso_burn_refuses_a_medium_held_by_another_process(tmp_path, image_path):
    marker = tmp_path / "burned"
    program = fake_xorriso(tmp_path, f"touch {marker}")
    drive = XorrisoDrive("x1", media_dir=str(tmp_path / "media"), xorriso=program)
    drive.load_blank("A-0012")
    with held_open(drive._slot.current) as child:
        with pytest.raises(DriveError) as exc:
            drive.burn(image_path)
    assert _failure(exc) == "drive-busy"
    assert f"PID {child.pid}" in str(exc.value) and "\n" not in str(exc.value)
    assert not marker.exists(), "xorriso must not run"
