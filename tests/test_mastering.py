"""Image mastering: names in the four trees, the Joliet rule, exact size before writing."""

from __future__ import annotations

import hashlib
import os
import subprocess

import pytest

from manifests.bag import encode_manifest_path
from mastering.iso import JOLIET_MAX, Layout, MasteringError, joliet_name

LONG = ("0002_关于职工养老保险关系跨省转移接续的申请报告及附件（含职工名册、历年缴费明细、"
        "劳动合同复印件、身份证复印件和银行账户信息）.pdf")


def units(s: str) -> int:
    return len(s.encode("utf-16-be")) // 2


def test_short_names_are_kept():
    for name in ["bagit.txt", "0001_参保单位登记表.ofd", "x" * 64]:
        assert joliet_name(name) == name


def test_long_names_are_shortened_by_one_fixed_rule():
    j = joliet_name(LONG)
    assert units(LONG) > JOLIET_MAX >= units(j)
    assert j.endswith(".pdf") and j.startswith("0002_关于职工养老保险")
    assert "~" in j and j == joliet_name(LONG), "the rule is deterministic"
    other = LONG.replace("银行账户", "银行帐户")
    assert joliet_name(other) != j, "names that differ past the cut stay distinct"


def test_forbidden_characters_are_replaced_and_tagged():
    j = joliet_name("a:b*c?.pdf")
    assert not set(j) & set("*/:;?\\") and j.endswith(".pdf") and "~" in j
    assert joliet_name("a:b*c?.pdf") != joliet_name("a;b*c?.pdf")


def test_names_outside_the_bmp_count_as_two_units():
    name = "𠀀" * 40 + ".txt"          # 80 UTF-16 units
    j = joliet_name(name)
    assert units(j) <= JOLIET_MAX and j.endswith(".txt")


def test_a_name_too_long_for_udf_is_refused(tmp_path):
    f = tmp_path / "a.pdf"
    f.write_bytes(b"x")
    with pytest.raises(MasteringError, match="too long for UDF"):
        Layout([("data/" + "a" * 251 + ".pdf", f)], "T")     # 255 bytes: Rock Ridge's limit
    with pytest.raises(MasteringError, match="longer than 255 UTF-8 bytes"):
        Layout([("data/" + "档" * 86 + ".pdf", f)], "T")


def test_size_is_known_before_writing_and_exact(tmp_path):
    files = []
    for n, size in enumerate([0, 1, 2048, 5000, 70000]):
        p = tmp_path / f"f{n}.bin"
        p.write_bytes(bytes([n]) * size)
        files.append((f"data/d{n % 2}/{LONG if n == 4 else p.name}", p))
    layout = Layout(files, "T")
    predicted = layout.sectors
    image = layout.write(tmp_path / "t.iso")
    assert image.sectors == predicted and image.size == predicted * 2048
    out = subprocess.run(["xorriso", "-indev", str(image.path), "-find", "/"],
                         capture_output=True, text=True, check=True).stdout
    assert LONG in out


def test_manifest_paths_are_percent_encoded():
    assert encode_manifest_path("data/a%b\nc\rd") == "data/a%25b%0Ac%0Dd"


def test_many_long_names_keep_their_rock_ridge_names(tmp_path):
    """Rock Ridge continuation areas spread over many blocks; independent readers see every name."""
    src = tmp_path / "x.pdf"
    src.write_bytes(b"%PDF-1.7\n")
    names = [f"{n:04d}_" + LONG[5:] for n in range(300)]
    files = [(f"data/2023/甲/{name}", src) for name in names]
    layout = Layout(files, "T")
    predicted = layout.sectors
    assert len(layout.iso.pvd.rr_ce_blocks) > 8      # more than the last few that are tried
    image = layout.write(tmp_path / "t.iso")
    assert image.sectors == predicted
    found = subprocess.run(["xorriso", "-indev", str(image.path), "-find", "/data/2023/甲"],
                           capture_output=True, text=True, check=True).stdout
    listed = subprocess.run(["isoinfo", "-R", "-l", "-i", str(image.path)],
                            capture_output=True, text=True, check=True).stdout
    for name in names:
        assert name in found and name in listed


def test_the_image_is_byte_for_byte_what_pycdlib_writes(tmp_path):
    """Layout.write skips pycdlib's idle seeks; the bytes stay those of a plain write."""
    files = []
    for n, size in enumerate([0, 1, 2047, 2048, 2049, 5000, 70000, 3]):
        p = tmp_path / f"f{n}.bin"
        p.write_bytes(bytes([n + 1]) * size)
        files.append((f"data/d{n % 3}/{LONG if n == 6 else p.name}", p))
    layout = Layout(files, "T")
    with open(tmp_path / "plain.iso", "wb") as f:
        layout.iso.write_fp(f)
    image = layout.write(tmp_path / "t.iso")
    assert image.path.read_bytes() == (tmp_path / "plain.iso").read_bytes()


def _extent_bytes(image, path: str, size: int) -> bytes:
    with open(image.path, "rb") as f:
        f.seek(image.extents[path] * 2048)
        return f.read(size)


def test_write_hashes_every_file_as_it_writes_it(tmp_path):
    """Image.digests: each file's SHA-256, of exactly the bytes in the image; large files
    span several reads, one source may be added twice, an empty file has the empty hash."""
    sizes = [0, 1, 2047, 2048, 2049, 5000, (3 << 20) + 17]
    files = []
    for n, size in enumerate(sizes):
        p = tmp_path / f"f{n}.bin"
        p.write_bytes(os.urandom(size))
        files.append((f"data/d{n % 2}/{p.name}", p))
    files.append(("data/again.bin", files[-1][1]))
    image = Layout(files, "T").write(tmp_path / "t.iso")
    assert sorted(image.digests) == sorted(path for path, _ in files)
    for path, host in files:
        data = host.read_bytes()
        assert image.digests[path] == hashlib.sha256(data).hexdigest()
        assert _extent_bytes(image, path, len(data)) == data


def test_finish_writes_files_again_in_place_before_the_image_is_final(tmp_path):
    """finish(digests) gets every file's hash and returns new bytes for some, in pieces,
    written at their places (a tag manifest laid out with a placeholder of its size)."""
    payload, tag = tmp_path / "p.bin", tmp_path / "tag.txt"
    payload.write_bytes(b"payload " * 1000)
    tag.write_bytes(bytes(71))
    seen = {}

    def finish(digests):
        seen.update(digests)
        line = f"{digests['data/p.bin']}  data/p.bin\n".encode()
        return [("tag.txt", [line[:30], line[30:71]])]

    image = Layout([("tag.txt", tag), ("data/p.bin", payload)], "T").write(tmp_path / "t.iso",
                                                                            finish=finish)
    want = hashlib.sha256(payload.read_bytes()).hexdigest()
    assert seen["data/p.bin"] == want and seen["tag.txt"] == hashlib.sha256(bytes(71)).hexdigest()
    written = _extent_bytes(image, "tag.txt", 71)
    assert written == f"{want}  data/p.bin\n".encode()[:71]
    assert image.digests["tag.txt"] == hashlib.sha256(written).hexdigest()
    assert not (tmp_path / "t.iso.part").exists()


@pytest.mark.parametrize("pieces", [[b"x" * 70], [b"x" * 70, b"yy"]])
def test_finish_of_another_length_is_a_bug_and_leaves_no_image(tmp_path, pieces):
    tag = tmp_path / "tag.txt"
    tag.write_bytes(bytes(71))
    layout = Layout([("tag.txt", tag)], "T")
    with pytest.raises(MasteringError, match="71 were laid out; report this as a bug"):
        layout.write(tmp_path / "t.iso", finish=lambda digests: [("tag.txt", pieces)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tag.txt"]


def test_a_file_that_shrank_after_the_layout_is_written_as_pycdlib_writes_it(tmp_path):
    """Zeros where the missing bytes were laid out, and the digest is of those bytes."""
    p = tmp_path / "f.bin"
    p.write_bytes(b"a" * 5000)
    layout = Layout([("data/f.bin", p)], "T")
    p.write_bytes(b"b" * 3000)
    with open(tmp_path / "plain.iso", "wb") as f:
        layout.iso.write_fp(f)
    image = layout.write(tmp_path / "t.iso")
    assert image.path.read_bytes() == (tmp_path / "plain.iso").read_bytes()
    assert image.digests["data/f.bin"] == hashlib.sha256(b"b" * 3000 + bytes(2000)).hexdigest()


def test_a_file_gone_while_writing_is_one_error_and_no_image(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"a" * 5000)
    layout = Layout([("data/f.bin", p)], "T")
    p.unlink()
    with pytest.raises(MasteringError, match="cannot write the image: .*f.bin"):
        layout.write(tmp_path / "t.iso")
    assert list(tmp_path.iterdir()) == []
def test_iso9660_names_are_those_a_set_of_names_gives():
    """_Taken keeps generated names as numbers; every name it gives is the one a plain set gives."""
    import random

    from mastering.iso import _iso9660_name, _Taken

    rng = random.Random(5)
    pool = ["F0000001.pdf", "f0000002.txt", "D0000003", "d0000001", "readme.txt", "READ_ME",
            "F00000001", "中文.pdf", "F0000010", "a.b", "F0000004.x", "D0000002", "F10000000",
            "x" * 9, ".hidden", "F0000007"]
    for _ in range(2000):
        taken, plain, counter, plain_counter = _Taken(), set(), [0], [0]
        for _ in range(rng.randint(1, 25)):
            name, is_dir = rng.choice(pool), rng.random() < 0.3
            if rng.random() < 0.1:    # other folders used the counter meanwhile
                counter[0] = plain_counter[0] = counter[0] + rng.randint(1, 9_999_990)
            assert (_iso9660_name(name, is_dir, taken, counter)
                    == _iso9660_name(name, is_dir, plain, plain_counter))
        for name in pool + ["F0000003", "D0000004", "F0000005", "F0000001"]:
            assert (name.upper().partition(".")[0] in taken) == (name.upper().partition(".")[0] in plain)


def test_a_generated_looking_name_does_not_take_a_generated_one(tmp_path):
    """A file named like a generated ISO 9660 name gets another one in its folder, not in others."""
    src = tmp_path / "x.pdf"
    src.write_bytes(b"%PDF-1.7\n")
    layout = Layout([("data/a/中文.pdf", src), ("data/a/f0000001.pdf", src),
                     ("data/b/f0000001.pdf", src)], "T")
    names = {p: iso.rpartition("/")[2] for p, iso in layout._files.items()}
    assert names["data/a/中文.pdf"] == "F0000001.PDF;1"
    assert names["data/a/f0000001.pdf"] not in ("F0000001.PDF;1",)
    assert names["data/b/f0000001.pdf"] == "F0000001.PDF;1"
    layout.iso.close()


@pytest.mark.parametrize("order", [1, -1])
def test_a_kept_joliet_name_that_a_long_name_shortens_to_is_refused(tmp_path, order):
    """Only shortened names and names with "~" are remembered; a collision between them is still found."""
    src = tmp_path / "x.pdf"
    src.write_bytes(b"%PDF-1.7\n")
    files = [("data/a/" + LONG, src), ("data/a/" + joliet_name(LONG), src)][::order]
    with pytest.raises(MasteringError, match="Joliet name .* collides with .*rename one of them"):
        Layout(files, "T")
    Layout([("data/a/" + LONG, src), ("data/b/" + joliet_name(LONG), src)], "T").iso.close()


def test_the_per_second_clock_gives_the_time_modules_fields():
    """pycdlib's dates read localtime/gmtime of the whole second, once: the same fields."""
    import time as real_time

    import pycdlib

    import mastering.iso as iso

    clock = pycdlib.dates.time
    assert isinstance(clock, iso._PerSecondClock) and pycdlib.udf.time is clock
    for t in (0.0, 1.5, 1_764_400_000.999, -0.5, -86_400.25, 2_000_000_000):
        assert clock.localtime(t) == real_time.localtime(t)
        assert clock.gmtime(t) == real_time.gmtime(t)
    assert abs(clock.time() - real_time.time()) < 5


def test_shared_parts_write_the_same_image_as_pycdlib_alone(tmp_path, monkeypatch):
    """Dates and constant UDF parts shared between files, empty lists made immutable: same bytes."""
    import random
    import time as real_time

    import pycdlib

    import mastering.iso as iso

    files = []
    for n in range(40):
        p = tmp_path / f"f{n}.bin"
        p.write_bytes(bytes([n]) * (n * 700))
        files.append((f"data/{n % 4}/{n % 3}/{LONG if n == 7 else p.name}", p))
    monkeypatch.setattr(real_time, "time", lambda: 1_764_400_000.75)

    def image(name: str) -> tuple[bytes, list]:
        random.seed(3)        # pycdlib's UDF volume set identifier takes random bits
        layout = Layout(files, "T")
        records = [layout.iso.get_record(iso_path=p) for p in layout._files.values()]
        return layout.write(tmp_path / name).path.read_bytes(), records

    shared, records = image("shared.iso")
    assert len({id(r.date) for r in records}) == 1
    assert all(r.children == () and r.rock_ridge.dr_entries.sl_records == () for r in records)
    monkeypatch.setattr(iso._PyCdlib, "_share", lambda self, rec: None)
    for module in (pycdlib.dates, pycdlib.udf, pycdlib.utils):
        monkeypatch.setattr(module, "time", real_time)
    plain, _ = image("plain.iso")
    assert shared == plain


def test_bag_entries_read_as_the_list_they_replace(tmp_path):
    """BagEntries makes the payload's (bag path, host Path) pairs when read, the same each time."""
    from pathlib import Path

    from manifests.bag import BagEntries
    from manifests.catalog import Item

    items = [Item(path=f"2023/甲/{n}.pdf", size=n, sha256="0" * 64, mtime_ns=0) for n in range(5)]
    tags = [("bagit.txt", tmp_path / "bagit.txt")]
    entries = BagEntries(tags, tmp_path / "src", items)
    want = tags + [("data/" + i.path, tmp_path / "src" / i.path) for i in items]
    assert list(entries) == want and list(entries) == want
    assert len(entries) == 6 and entries[0] == want[0] and entries[-1] == want[-1]
    assert entries[1:3] == want[1:3] and isinstance(entries[3][1], Path)
    with pytest.raises(IndexError):
        entries[6]


def test_a_payload_file_is_kept_as_its_roots_and_bag_paths_tail(tmp_path):
    """pycdlib holds a _HostFile (shared root + the bag path's tail) that opens the same file."""
    import os

    from mastering.iso import _HostFile

    (tmp_path / "src" / "2023").mkdir(parents=True)
    a, b = tmp_path / "src" / "2023" / "甲.pdf", tmp_path / "elsewhere.bin"
    a.write_bytes(b"%PDF-1.7\n" * 300)
    b.write_bytes(b"\x01" * 5000)
    layout = Layout([("data/2023/甲.pdf", a), ("data/2023/other.bin", b)], "T")
    kept = [ino.data_fp for ino in layout.iso.inodes]
    assert isinstance(kept[0], _HostFile) and os.fspath(kept[0]) == str(a)
    assert kept[1] == str(b)            # a host path that does not end as the bag path: as it is
    image = layout.write(tmp_path / "t.iso")
    data = image.path.read_bytes()
    at = image.extents["data/2023/甲.pdf"] * 2048
    assert data[at:at + a.stat().st_size] == a.read_bytes()


@pytest.mark.parametrize("enabled", [True, False])
def test_the_garbage_collector_is_left_as_it_was(tmp_path, enabled):
    """Layout pauses Python's cyclic collector while it adds files; it is resumed, on errors too."""
    import gc

    src = tmp_path / "x.pdf"
    src.write_bytes(b"%PDF-1.7\n")
    seen = []

    class Watch(Layout):
        def _add(self, disc_path, host_path):
            seen.append(gc.isenabled())
            super()._add(disc_path, host_path)

    (gc.enable if enabled else gc.disable)()
    try:
        Watch([("data/a.pdf", src)], "T").iso.close()
        assert seen == [False] and gc.isenabled() is enabled
        with pytest.raises(MasteringError):
            Watch([("data/" + "x" * 300 + ".pdf", src)], "T")
        assert gc.isenabled() is enabled
    finally:
        gc.enable()


def test_the_layouts_objects_are_frozen_until_the_image_is_closed(tmp_path):
    """gc.freeze() after the layout is built (no full collection walks it while written); close() unfreezes."""
    import gc

    src = tmp_path / "x.pdf"
    src.write_bytes(b"%PDF-1.7\n")
    before = gc.get_freeze_count()
    layout = Layout([(f"data/{n}.pdf", src) for n in range(50)], "T")
    assert gc.get_freeze_count() > before
    layout.write(tmp_path / "t.iso")
    assert gc.get_freeze_count() == 0
    Layout([("data/a.pdf", src)], "T").iso.close()
    assert gc.get_freeze_count() == 0
    with pytest.raises(MasteringError):          # a layout that fails leaves nothing frozen
        Layout([("data/a.pdf", src), ("data/" + "x" * 300 + ".pdf", src)], "T")
    assert gc.get_freeze_count() == 0
