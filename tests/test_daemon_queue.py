"""The operator in the loop: the daemon asks for a disc or a blank, and acts on what is inserted.

The drive is a growisofs drive run through the fake dvd+rw-tools of
tests/fakes/growisofs: its device is a file holding the disc, and its state
file says whether a disc is in it, as an operator's hand would.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
from pathlib import Path

import pytest

import config
from burner_helpers import fakes_fixture
from conftest import Cli, flip_byte
from daemon import queue
from daemon.log import EventLog
from daemon.service import Daemon
from inventory import lifecycle as lc
from inventory.store import Inventory
from manifests.bag import DESCRIPTION_NAME

fake_tools = fakes_fixture(Path(__file__).parent / "fakes" / "growisofs")
UTC = dt.timezone.utc


class Tray:
    """The fake drive's device file and state: what the operator puts in."""

    def __init__(self, device: Path):
        self.device = device
        self.empty()

    def empty(self):
        self.device.unlink(missing_ok=True)
        Path(f"{self.device}.state").write_text(json.dumps({"medium": False}))

    def insert(self, medium: str | None):
        """Insert a copy of a burned medium file, or a blank (None)."""
        self.device.unlink(missing_ok=True)
        if medium:
            shutil.copyfile(medium, self.device)
        Path(f"{self.device}.state").write_text(json.dumps({"medium": True, "type": "DVD-R"}))


@pytest.fixture
def setup(home, run, demo_archive, tmp_path):
    """The demo archive's sets (one disc each, two copies) burned in file drives; then the
    home's only drive is sr0 (growisofs)."""
    assert run("archive", str(demo_archive)).exit_code == 0
    text = (home / config.CONFIG_NAME).read_text()
    text = text[:text.index("\n[[drives]]")]
    tray = Tray(tmp_path / "sr0")
    text += f"""
[[drives]]
name = "sr0"
adapter = "growisofs"
device = "{tray.device}"
timeout = 60

[daemon]
timezone = "UTC"
intake = "0 0 1 1 *"
deadline = "0 0 1 1 *"
due_check = "0 0 1 1 *"
digest = "0 0 1 1 *"
inspection = "0 9 * * *"

[lifecycle]
inspect_percent = 100
"""
    (home / config.CONFIG_NAME).write_text(text)
    inv = Inventory.open(home / "inventory.db")
    discs = {r["disc_id"]: r for r in inv.discs()}
    inv.close()
    log = io.StringIO()
    d = Daemon(config.load(home), log=EventLog(log, journal=False))
    return d, tray, discs, log


def images(discs: dict) -> list[str]:
    """The IDs of the discs (images) the copies ``discs`` are of, as the inventory has them."""
    return sorted({d["set_id"] for d in discs.values()})


def copy_of(discs: dict, image: str, label: str) -> str:
    """The ID of copy ``label`` of ``image``, read from the inventory's rows."""
    (disc_id,) = [i for i, d in discs.items() if d["set_id"] == image and d["copy_label"] == label]
    return disc_id


def fixity_events(home, disc_id):
    inv = Inventory.open(home / "inventory.db")
    try:
        return [e for e in inv.events(disc_id=disc_id) if e["event_type"] == "fixity check"]
    finally:
        inv.close()


def test_an_inspection_asks_for_the_disc_refuses_a_wrong_one_and_reads_the_right_one(
        home, run, setup):
    d, tray, discs, log = setup
    first, second = images(discs)[:2]
    wanted, other = copy_of(discs, first, "A"), copy_of(discs, second, "A")
    inv = Inventory.open(home / "inventory.db")
    inv.update_disc(wanted, inspected_at="2020-01-01T00:00:00Z")   # the least recently checked
    lc.shelve(inv, wanted, "1", 2, 14)
    inv.close()
    before = len(fixity_events(home, wanted))
    d.tick(dt.datetime(2026, 6, 1, 8, tzinfo=UTC))
    d.tick(dt.datetime(2026, 6, 1, 9, tzinfo=UTC))        # inspection: sr0 is empty
    (req,) = json.loads(run("queue", "--json").stdout)
    assert req["kind"] == "disc" and req["disc_id"] == wanted and req["state"] == "waiting"
    group = discs[wanted]["set_id"].rsplit("-", 1)[0]
    assert discs[wanted]["set_id"] == first and first == f"{group}-01"
    assert req["message"] == (f"insert copy {wanted} (disc 1 of 1 of set {group}) from cabinet "
                              "1, shelf 2, slot 14 into drive sr0 for its inspection")
    assert f"insert copy {wanted}" in run("queue").stdout
    # the clerk brings the wrong disc: a note, no read-back recorded
    tray.insert(discs[other]["medium_path"])
    d.tick(dt.datetime(2026, 6, 1, 9, 10, tzinfo=UTC))
    (req,) = json.loads(run("queue", "--json").stdout)
    assert req["state"] == "waiting"
    assert req["note"].startswith(f"wrong disc in drive sr0: it holds {second}, not a copy "
                                  f"of disc {first}")
    assert len(fixity_events(home, wanted)) == before and len(fixity_events(home, other)) == 1
    assert "event=queue.wrong_disc" in log.getvalue()
    # then the right one: it is inspected in sr0 and the request is done
    tray.insert(discs[wanted]["medium_path"])
    d.tick(dt.datetime(2026, 6, 1, 9, 20, tzinfo=UTC))
    assert json.loads(run("queue", "--json").stdout) == []
    (done,) = json.loads(run("queue", "--json", "--all").stdout)
    assert done["state"] == "done" and done["outcome"] == "passed"
    events = fixity_events(home, wanted)
    assert len(events) == before + 1 and json.loads(events[-1]["detail"])["drive"] == "sr0"
    inv = Inventory.open(home / "inventory.db")
    (inspection,) = lc.inspections(inv, wanted)
    assert inspection["drive"] == "sr0" and inspection["passed"] == 1
    assert inv.disc(wanted)["inspected_at"] == "2026-06-01T09:20:00Z"
    inv.close()


def test_a_copy_waiting_for_a_blank_is_burned_when_one_is_inserted_never_on_a_written_disc(
        home, run, setup):
    d, tray, discs, log = setup
    first, image, later = images(discs)[:3]
    copy, waits = copy_of(discs, image, "B"), copy_of(discs, later, "B")
    group = image.rsplit("-", 1)[0]
    inv = Inventory.open(home / "inventory.db")
    for disc_id in (copy, waits):      # two discs' copies failed; the blank is for one disc
        inv.update_disc(disc_id, state="failed", failure="no blank medium")
        inv.update_set(discs[disc_id]["set_id"], state="failed")
    inv.close()
    d.request_blank("sr0", copy)
    d.request_blank("sr0", copy)                        # asked twice: one request
    (req,) = json.loads(run("queue", "--json").stdout)
    assert req["kind"] == "blank" and req["set_id"] == image and req["message"] == \
        f"insert a blank DVD-R into drive sr0 for copy {copy} (disc 1 of 1 of set {group})"
    d.tick(dt.datetime(2026, 6, 1, 8, tzinfo=UTC))       # the drive is empty: it waits
    assert json.loads(run("queue", "--json").stdout)[0]["note"] is None
    # a written disc is refused, and not written
    tray.insert(discs[copy_of(discs, first, "A")]["medium_path"])
    written = tray.device.read_bytes()
    d.tick(dt.datetime(2026, 6, 1, 8, 10, tzinfo=UTC))
    (req,) = json.loads(run("queue", "--json").stdout)
    assert "is not blank" in req["note"] and "nothing was written" in req["note"]
    assert tray.device.read_bytes() == written
    # a blank: the copy is burned from the kept image, read back and the disc archived;
    # the other disc's failed copy is not burned on it
    tray.insert(None)
    d.tick(dt.datetime(2026, 6, 1, 8, 20, tzinfo=UTC))
    (done,) = json.loads(run("queue", "--json", "--all").stdout)
    assert done["state"] == "done" and done["outcome"] == "burned and verified"
    inv = Inventory.open(home / "inventory.db")
    assert inv.disc(copy)["state"] == "verified" and inv.disc(copy)["drive"] == "sr0"
    assert inv.disc_set(image)["state"] == "archived"
    assert inv.disc(waits)["state"] == "failed" and inv.disc_set(later)["state"] == "failed"
    assert len(inv.burns(waits)) == 1                   # its first burn only
    inv.close()
    assert tray.device.stat().st_size > 0


def test_a_request_no_longer_needed_is_cancelled(home, run, setup):
    d, tray, discs, _ = setup
    inv = Inventory.open(home / "inventory.db")
    now = dt.datetime(2026, 6, 1, 8, tzinfo=UTC)
    image = images(discs)[0]
    rid, new = queue.add(inv, "blank", "sr0", "insert a blank DVD-R into drive sr0", now,
                         disc_id=copy_of(discs, image, "A"), set_id=image, media="dvd-r")
    assert new
    d.answer_requests(inv, d.cfg, now)                  # that copy is verified already
    (row,) = queue.list_requests(inv, everything=True)
    inv.close()
    assert row["state"] == "cancelled" and row["outcome"] == "the copy was burned meanwhile"
    assert run("queue").stdout.strip() == "no requests: the daemon needs no disc now"


def test_a_request_that_cannot_be_answered_is_closed_with_the_reason(home, run, setup):
    d, tray, discs, log = setup
    image = images(discs)[1]
    copy = copy_of(discs, image, "B")
    inv = Inventory.open(home / "inventory.db")
    inv.update_disc(copy, state="failed")
    inv.update_set(image, state="failed", image_path=None)              # image not kept
    inv.close()
    d.request_blank("sr0", copy)
    tray.insert(None)
    assert d.tick(dt.datetime(2026, 6, 1, 8, tzinfo=UTC)) == {}          # the tick goes on
    (req,) = json.loads(run("queue", "--json", "--all").stdout)
    assert req["state"] == "done" and "no longer kept" in req["outcome"]
    assert "event=queue.failed" in log.getvalue()


def _description_extent(home, set_id: str) -> tuple[int, int]:
    inv = Inventory.open(home / "inventory.db")
    try:
        tags = json.loads(inv.disc_set(set_id)["tag_files"])
    finally:
        inv.close()
    (lba, size), = [(lba, size) for name, lba, size, _ in tags if name == DESCRIPTION_NAME]
    return lba, size


def _asked_for(home, d, discs, wanted: str, medium: Path) -> tuple[Path, int, int]:
    """Let the daemon ask for ``wanted`` (the least recently checked disc); return a copy of
    its medium at ``medium`` (to alter) and its description file's first sector and size."""
    inv = Inventory.open(home / "inventory.db")
    inv.update_disc(wanted, inspected_at="2020-01-01T00:00:00Z")
    inv.close()
    d.tick(dt.datetime(2026, 6, 1, 8, tzinfo=UTC))
    d.tick(dt.datetime(2026, 6, 1, 9, tzinfo=UTC))            # sr0 is empty: a request
    (req,) = json.loads(Cli(home)("queue", "--json").stdout)
    assert req["disc_id"] == wanted
    shutil.copyfile(discs[wanted]["medium_path"], medium)
    lba, size = _description_extent(home, wanted.rsplit("-", 1)[0])
    return medium, lba, size


def _other(code: str) -> str:
    """``code`` with its last digit changed (the same length)."""
    return code[:-1] + ("2" if code[-1] != "2" else "3")


@pytest.mark.parametrize("change", ["set", "disc k of n", "items", None])
def test_a_disc_whose_description_file_names_another_set_or_disc_is_refused(
        home, run, setup, tmp_path, change):
    """Its volume ID is the wanted disc's, but its 说明文件.txt names another set, another
    disc of a set, or other items (or is no description at all)."""
    d, tray, discs, log = setup
    image = images(discs)[0]
    wanted = copy_of(discs, image, "A")
    inv = Inventory.open(home / "inventory.db")
    row = inv.disc(wanted)
    inv.close()
    group = row["group_id"]
    other, lba, size = _asked_for(home, d, discs, wanted, tmp_path / "other.medium")
    with open(other, "r+b") as f:
        f.seek(lba * 2048)
        text = f.read(size)
        names = queue.described(text.decode())
        assert (names["set"], names["disc"], names["count"]) == (
            group, image, f"{row['volume']} of {row['volumes']}") == (group, f"{group}-01",
                                                                       "1 of 1")
        first, last = names["items"].split(" to ")
        if change == "set":                  # the set's ID, and so the disc's, is another
            text = text.replace(group.encode(), _other(group).encode())
            says = f"names disc set {_other(group)}, disc {_other(group)}-01 (1 of 1), items"
        elif change == "disc k of n":
            text = text.replace(b"(disc 1 of 1)", b"(disc 2 of 3)")
            says = f"names disc set {group}, disc {image} (2 of 3), items {first} to {last}"
        elif change == "items":
            text = text.replace(f" to {last}".encode(), f" to {_other(last)}".encode())
            says = f"names disc set {group}, disc {image} (1 of 1), items {first} to {_other(last)}"
        else:
            text = bytes(len(text))                            # a foreign disc's bytes
            says = "holds no discarchive description file"
        assert len(text) == size
        f.seek(lba * 2048)
        f.write(text)
    before = len(fixity_events(home, wanted))
    tray.insert(str(other))
    d.tick(dt.datetime(2026, 6, 1, 9, 10, tzinfo=UTC))
    (req,) = json.loads(run("queue", "--json").stdout)
    assert req["state"] == "waiting"
    start = "its description file (" if change else "it holds no"
    assert req["note"].startswith(f"wrong disc in drive sr0: {start}")
    assert says in req["note"] and req["note"].endswith(f"take it out and insert {wanted}")
    assert len(fixity_events(home, wanted)) == before          # nothing read back or recorded
    inv = Inventory.open(home / "inventory.db")
    assert lc.inspections(inv, wanted) == []
    inv.close()
    assert "event=queue.wrong_disc" in log.getvalue()


def test_a_disc_whose_description_was_altered_is_refused_with_a_hint(
        home, run, setup, tmp_path):
    """The volume ID matches, the description reads but is not the one recorded."""
    d, tray, discs, log = setup
    wanted = copy_of(discs, images(discs)[0], "A")
    damaged, lba, _ = _asked_for(home, d, discs, wanted, tmp_path / "damaged.medium")
    flip_byte(damaged, lba * 2048 + 10)        # the description altered on the disc
    tray.insert(str(damaged))
    d.tick(dt.datetime(2026, 6, 1, 9, 10, tzinfo=UTC))
    (req,) = json.loads(run("queue", "--json").stdout)
    # a flipped byte in a readable sector is not a read error: the disc is refused, with a hint
    assert f"if it is {wanted} itself, its description file was altered" in req["note"]
    assert f"discarchive inspect {wanted}" in req["note"]


def test_a_description_that_cannot_be_read_is_left_to_the_inspection(
        home, setup, tmp_path):
    """A virtual drive: the right disc passes; with its description's sectors unreadable it
    passes too (the inspection records the damage)."""
    from burners.virtual import VirtualDrive

    _, _, discs, _ = setup
    image, other = images(discs)[:2]
    medium = discs[copy_of(discs, image, "A")]["medium_path"]
    lba, size = _description_extent(home, image)
    inv = Inventory.open(home / "inventory.db")
    try:
        good = VirtualDrive("v", str(tmp_path), 2_298_496)
        good.load(medium)
        assert queue.check_description(good, inv, image) == (
            True, f"its {DESCRIPTION_NAME} is the one recorded")
        assert queue.check_description(good, inv, other)[0] is False
        # only the description's own sectors are read: a bad sector before it is not met
        before = VirtualDrive("v", str(tmp_path), 2_298_496, faults={"unreadable": [lba - 1]})
        before.load(medium)
        assert queue.check_description(before, inv, image)[1].endswith("recorded")
        bad = VirtualDrive("v", str(tmp_path), 2_298_496, faults={"unreadable": [lba]})
        bad.load(medium)
        ok, why = queue.check_description(bad, inv, image)
        assert ok and "cannot be read in full" in why
        data, unreadable = queue.read_extent(bad, lba, size)
        assert unreadable and data == bytes(size)
    finally:
        inv.close()
