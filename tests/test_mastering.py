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
