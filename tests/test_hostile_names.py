"""Hostile names and trees (issue 3, point 6): each policy of docs/NAMES.md, checked.

One hostile source is archived once (module fixture) and its image read by
independent readers: xorriso and bsdtar (Rock Ridge), 7-Zip (Joliet with
-tiso, UDF with -tudf), isoinfo (ISO 9660, Rock Ridge, Joliet) and
pycdlib's own UDF reader. What is refused is refused before anything is
recorded, with one line naming the count and the first, and every path in
a list under HOME/reports/.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import shlex
import socket
import subprocess
import unicodedata
from pathlib import Path

import bagit
import pycdlib
import pytest

from config.home import init_home
from conftest import Cli, extract_bag, tree_state
from manifests import catalog
from manifests.bag import decode_manifest_path, encode_manifest_path
from manifests.bag import DESCRIPTION_NAME, decode_manifest_path, encode_manifest_path
from manifests.catalog import ScanError, name_problem, scan
from manifests.validate import validate_bag
from mastering.iso import MAX_EXTENT, SECTOR, Layout, MasteringError, max_file_bytes
from test_main_job import _discs, _nothing_recorded, _one_line_error
from verification.onepass import Extent, file_chunks, hash_pass

NFC = unicodedata.normalize("NFC", "café.pdf")
NFD = unicodedata.normalize("NFD", "café.pdf")
DEEP = "/".join(f"level{n:02d}" for n in range(1, 12))            # 11 folders below data/
DEEP_CJK = "/".join(f"第{n}层" for n in range(1, 11))
PERCENT_NAMES = ["100%.pdf", "%0A.pdf", "50%25.pdf"]
LINE_NAMES = ["a\nb.pdf", "Icon\r", "c\r\nd.pdf"]


def _tree() -> dict[str, bytes]:
    """The files of the hostile source: path -> content (each content distinct)."""
    files = {
        f"deep/{DEEP}/deep.txt": b"eleven levels down\n",
        f"deep/{DEEP}/also.txt": b"beside it\n",
        f"deep/{DEEP_CJK}/深.txt": "十层之下\n".encode(),
        "case/Report.pdf": b"%PDF upper\n",
        "case/report.pdf": b"%PDF lower\n",
        "case/DIR/x.txt": b"upper folder\n",
        "case/dir/x.txt": b"lower folder\n",
        f"nfd/{NFD}": b"decomposed name, alone in its folder\n",
        "zero/empty-1.pdf": b"",
        "zero/empty-2.ofd": b"",
        "zero/一字节.txt": b"1",
    }
    for n, name in enumerate(PERCENT_NAMES + LINE_NAMES):
        files[f"odd/{name}"] = f"odd name {n}\n".encode()
    files["odd/line\nbreak 50%/inside.txt"] = b"in a folder whose name has LF and %\n"
    return files


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """The hostile tree archived once on one copy: (home, Cli result, image, source, files)."""
    root = tmp_path_factory.mktemp("hostile")
    source = root / "source"
    files = _tree()
    for rel, data in files.items():
        path = source / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (source / "empty" / "inner").mkdir(parents=True)
    (source / "empty2").mkdir()
    os.symlink("../case/Report.pdf", source / "zero" / "link-to-file")
    os.symlink("../deep", source / "zero" / "link-to-folder")
    home = init_home(root / "home", file_drives=True)
    run = Cli(home)
    before = tree_state(source)
    res = run("archive", str(source), "--copies", "1")
    assert res.exit_code == 0, res.stderr
    assert tree_state(source) == before
    (image,) = sorted((home / "images").glob("*.iso"))
    return home, res, image, source, files


def _tool(*args: str) -> str:
    return subprocess.run(args, capture_output=True, check=True).stdout.decode("utf-8", "replace")


def _xorriso_files(image: Path) -> set[str]:
    """Rock Ridge paths of files as xorriso -find prints them (quoted; newlines kept)."""
    out = _tool("xorriso", "-indev", str(image), "-find", "/", "-type", "f")
    return {p.lstrip("/") for p in shlex.split(out)}


def _extracted(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in folder.rglob("*") if p.is_file() and not p.is_symlink()}


def _udf_files(image: Path) -> dict[str, bytes]:
    """Every file of the UDF tree with its bytes, read by pycdlib.

    Walked entry by entry (pycdlib's own walk() decodes a path whose
    folders mix 8- and 16-bit UDF names with one encoding).
    """
    iso = pycdlib.PyCdlib()
    iso.open(str(image))
    out: dict[str, bytes] = {}

    def walk(entry, prefix: str) -> None:
        for ident in entry.fi_descs.values():
            child = ident.file_entry
            if child is None or child.is_dot() or child.is_dotdot():
                continue
            name = child.file_identifier().decode(child.file_ident.encoding)
            path = f"{prefix}/{name}" if prefix else name
            if child.is_dir():
                walk(child, path)
            else:
                buf = io.BytesIO()
                iso.get_file_from_iso_fp(buf, udf_path="/" + path)
                out[path] = buf.getvalue()

    try:
        walk(iso.get_record(udf_path="/"), "")
    finally:
        iso.close()
    return out


def _payload(files: dict[str, bytes]) -> dict[str, bytes]:
    return {"data/" + k: v for k, v in files.items()}


# -- what goes onto the disc, and how every reader sees it ------------------------------


def test_every_path_and_byte_is_intact_under_rock_ridge(hostile, tmp_path):
    _, _, image, _, files = hostile
    want = _payload(files)
    assert want.keys() <= _xorriso_files(image)
    out = tmp_path / "bsdtar"
    out.mkdir()
    subprocess.run(["bsdtar", "-xf", str(image), "-C", str(out)], check=True)
    got = {k: v for k, v in _extracted(out).items() if k.startswith("data/")}
    assert got == want
    out = tmp_path / "xorriso"
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(image), "-extract", "/data",
                    str(out)], capture_output=True, check=True)
    assert _extracted(out) == files


def test_every_path_and_byte_is_intact_under_udf(hostile, tmp_path):
    _, _, image, _, files = hostile
    want = _payload(files)
    got = _udf_files(image)
    assert {k: v for k, v in got.items() if k.startswith("data/")} == want
    out = tmp_path / "7z-udf"
    subprocess.run(["7z", "x", "-tudf", f"-o{out}", str(image)], capture_output=True, check=True)
    assert {k: v for k, v in _extracted(out).items() if k.startswith("data/")} == want


def test_joliet_keeps_deep_paths_and_maps_line_breaks_by_its_one_rule(hostile):
    _, _, image, _, files = hostile
    listed = set(_tool("7z", "l", "-slt", "-tiso", str(image)).split("\nPath = ")[1:])
    listed = {entry.split("\n", 1)[0] for entry in listed}
    kept = {"data/" + p for p in files if "\r" not in p and "\n" not in p}
    assert kept <= listed                      # case twins, NFD, %, 11 levels: as they are
    # isoinfo decodes Joliet to Latin-1 only: check the ASCII deep paths through it
    joliet = set(_tool("isoinfo", "-J", "-f", "-i", str(image)).splitlines())
    assert {f"/data/deep/{DEEP}/deep.txt", f"/data/deep/{DEEP}/also.txt"} <= joliet
    tagged = {p.split("/")[2] for p in listed if p.startswith("data/odd/") and "~" in p}
    assert len(tagged) == len(LINE_NAMES) + 1   # Joliet forbids controls: _ and a hash tag
    assert not any("\n" in p or "\r" in p for p in tagged)


def test_the_iso9660_tree_keeps_eight_levels_and_rock_ridge_relocates_the_rest(hostile):
    """ECMA-119 6.8.2.1: at most 8 levels; deeper folders sit in /RR_MOVED, linked back
    by Rock Ridge CL/PL/RE. isoinfo 1.1.11 does not follow CL: it shows them there."""
    _, _, image, _, _ = hostile
    plain = [p for p in _tool("isoinfo", "-f", "-i", str(image)).splitlines() if p]
    assert max(p.count("/") for p in plain) <= 9       # 8 folder levels and a file name
    assert any(p.startswith("/RR_MOVED/") for p in plain)
    rr = _tool("isoinfo", "-R", "-f", "-i", str(image)).splitlines()
    assert any(p.startswith("/rr_moved/level06/") and p.endswith("/level11/deep.txt") for p in rr)


def test_the_bag_validates_after_the_round_trip(hostile, tmp_path):
    home, _, image, _, files = hostile
    manifest = _tool("bsdtar", "-xOf", str(image), "manifest-sha256.txt")
    for name in PERCENT_NAMES + LINE_NAMES:
        assert f"  data/odd/{encode_manifest_path(name)}\n" in manifest
    assert "\r" not in manifest and len(manifest.splitlines()) == len(files)
    bag = extract_bag(home, tmp_path / "bag")
    report = validate_bag(bag)
    assert report.valid, report.problems
    # our read-back parses the disc's manifests: every copy verifies again
    disc = _discs(Cli(home))[0]
    assert Cli(home)("verify", disc["disc_id"]).exit_code == 0


def test_bagit_python_alone_misses_only_the_percent_names(hostile, tmp_path):
    """bagit-python 1.9 decodes %0D and %0A but never %25 (its issue #157): docs/NAMES.md."""
    home, _, _, _, files = hostile
    bag = bagit.Bag(str(extract_bag(home, tmp_path / "bag")))
    with pytest.raises(bagit.BagValidationError) as failed:
        bag.validate()
    missing = {str(d.path) for d in failed.value.details if isinstance(d, bagit.FileMissing)}
    with_percent = {encode_manifest_path("data/" + p).replace("%0A", "\n").replace("%0D", "\r")
                    for p in files if "%" in p}          # %0A and %0D decoded, %25 not
    assert missing == with_percent and len(with_percent) == len(PERCENT_NAMES) + 1
    assert all(isinstance(d, (bagit.FileMissing, bagit.UnexpectedFile))
               for d in failed.value.details)


def test_zero_byte_files_are_archived_and_verified(hostile):
    home, _, image, _, files = hostile
    got = _udf_files(image)
    for rel in ("zero/empty-1.pdf", "zero/empty-2.ofd"):
        assert files[rel] == b"" and got["data/" + rel] == b""
    res = Cli(home)("find", "empty-1.pdf", "--json")
    (row,) = [r for r in json.loads(res.stdout) if r["disc_path"] == "data/zero/empty-1.pdf"]
    assert row["size"] == 0 and row["sha256"] == hashlib.sha256(b"").hexdigest()


def test_case_twins_are_kept_with_a_warning_about_windows(hostile):
    _, res, image, _, _ = hostile
    warning = next(w for w in res.stderr.splitlines() if "differ only in case" in w)
    assert "2 pair(s)" in warning and "case/DIR and case/dir" in warning
    assert "case/Report.pdf and case/report.pdf" in warning and "Windows" in warning
    got = _udf_files(image)
    assert got["data/case/Report.pdf"] != got["data/case/report.pdf"]


def test_a_lone_nfd_name_keeps_its_bytes(hostile):
    _, _, image, _, _ = hostile
    assert f"data/nfd/{NFD}" in _xorriso_files(image) and f"data/nfd/{NFD}" in _udf_files(image)
    assert f"data/nfd/{NFC}" not in _udf_files(image)


def test_links_inside_and_empty_folders_are_named_and_not_archived(hostile):
    _, res, image, _, _ = hostile
    lines = res.stderr.splitlines()
    empty = next(w for w in lines if "empty folder(s) not archived" in w)
    assert "2 empty folder(s)" in empty and "empty/inner" in empty and "empty2" in empty
    links = next(w for w in lines if "symbolic link(s) not archived" in w)
    assert "zero/link-to-file -> case/Report.pdf" in links
    assert "zero/link-to-folder -> deep" in links
    on_disc = _xorriso_files(image)
    assert not any("link-to" in p or "empty" in p.split("/")[1] for p in on_disc
                   if p.startswith("data/"))


# -- what is refused, all at once, before anything is written ----------------------------


def _reported(res, home: Path) -> list[str]:
    """The problem list the error line points to, HOME/reports/scan-problems-*.txt."""
    (listing,) = sorted((home / "reports").glob("scan-problems-*.txt"))
    assert str(listing) in res.stderr
    return listing.read_text(encoding="utf-8").split("\n\n", 1)[1].splitlines()


def test_names_too_long_are_refused_all_at_once(home, run, source_copy):
    """Linux itself holds 255 bytes a name, so the names made here are the ones Linux takes
    and UDF does not; longer names (from a share) meet the same rule in name_problem."""
    folder = next(source_copy.glob("*/*/01_*"))
    ascii_255 = "a" * 251 + ".pdf"                       # UDF: 1 + 255 bytes
    (folder / ascii_255).write_bytes(b"x")
    (source_copy / ("d" * 255)).mkdir()                 # a folder
    (source_copy / ("d" * 255) / "a.pdf").write_bytes(b"x")
    mixed = "a" * 120 + "档" * 10                        # 150 UTF-8 bytes, 130 UTF-16 units
    (source_copy / mixed).write_bytes(b"x")
    before = tree_state(source_copy)
    res = run("archive", str(source_copy))
    rel = folder.relative_to(source_copy)
    _one_line_error(res, 2, "3 name(s) are too long for Rock Ridge or UDF",
                    f"{rel}/{ascii_255} is too long for UDF (255 characters", "(and 2 more)",
                    "shorten them", "all 3 are listed in")
    listed = _reported(res, home)
    assert len(listed) == 3
    assert f"{'d' * 255} is too long for UDF (255 characters; 254 Latin or 127 other " \
           "characters at most)" in listed
    assert any(line.startswith(f"{mixed} is too long for UDF (130 characters") for line in listed)
    assert tree_state(source_copy) == before
    _nothing_recorded(home)


def test_a_name_over_255_utf8_bytes_is_refused_by_the_name_rule():
    assert name_problem("档" * 84 + ".pd") is None                  # 255 bytes, 87 units
    assert name_problem("档" * 84 + ".pdf") == "is longer than 255 UTF-8 bytes (256 bytes)"


def test_the_quick_name_test_agrees_with_the_full_rule(monkeypatch):
    """name_problem's one-expression shortcut accepts only names the full checks accept."""
    rng = random.Random(7)
    letters = "ab.档é \t\n\r\x1f\x7f\x85\u3000\u2028\udc80"
    names = ["".join(rng.choice(letters) for _ in range(rng.randint(0, 70)))
             for _ in range(3000)] + ["档" * 63, "档" * 64, "a" * 63, "a" * 64, " a", "a ", "\na"]
    quick = [name_problem(n) for n in names]
    monkeypatch.setattr(catalog, "_PLAIN_NAME", re.compile(r"(?!)"))     # never matches
    assert quick == [name_problem(n) for n in names]
    assert sum(q is None for q in quick) > 100 and sum(q is not None for q in quick) > 100


def test_nfc_and_nfd_twins_are_refused_with_both_paths(home, run, source_copy):
    folder = next(source_copy.glob("*/*/01_*"))
    (folder / NFC).write_bytes(b"composed")
    (folder / NFD).write_bytes(b"decomposed")
    res = run("archive", str(source_copy))
    rel = folder.relative_to(source_copy)
    _one_line_error(res, 2, "1 name(s) have a twin in another Unicode form",
                    f"{rel}/{NFC} (NFC) and {rel}/{NFD} (NFD) are one name in two Unicode forms")
    _nothing_recorded(home)


def test_links_outside_dangling_links_and_special_files_are_refused_together(
        home, run, source_copy, tmp_path):
    outside = tmp_path / "elsewhere.pdf"
    outside.write_bytes(b"not in the source")
    os.symlink(outside, source_copy / "to-outside.pdf")
    os.symlink("no-such-file.pdf", source_copy / "dangling.pdf")
    os.mkfifo(source_copy / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(source_copy / "sock"))
    expected = 4
    try:
        os.mknod(source_copy / "null", 0o600 | 0o020000, os.makedev(1, 3))
        expected += 1
    except PermissionError:
        pass                                           # not root: no device node to test
    try:
        res = run("archive", str(source_copy))
    finally:
        sock.close()
    _one_line_error(res, 2, f"{expected} paths cannot be archived as they are",
                    "link outside or to nothing: 2", "special file: ", "dangling.pdf is a "
                    "symbolic link to nothing (no-such-file.pdf)", f"all {expected} are listed")
    listed = _reported(res, home)
    assert f"to-outside.pdf is a symbolic link to {outside}, outside the source" in listed
    assert "pipe is a FIFO (named pipe)" in listed and "sock is a socket" in listed
    if expected == 5:
        assert "null is a character device" in listed
    _nothing_recorded(home)


def test_names_with_percent_and_line_breaks_are_no_longer_refused(source_copy):
    for name in PERCENT_NAMES + LINE_NAMES:
        (source_copy / name).write_bytes(name.encode())
    items = {i.path: i for i in scan(source_copy)}
    for name in PERCENT_NAMES + LINE_NAMES:
        assert items[name].sha256 == hashlib.sha256(name.encode()).hexdigest()


@pytest.mark.parametrize("path", ["data/100%.pdf", "data/%0A%0d%25", "data/a\r\nb",
                                  "data/%250A", "data/Icon\r"])
def test_manifest_paths_round_trip(path):
    encoded = encode_manifest_path(path)
    assert "\r" not in encoded and "\n" not in encoded
    assert decode_manifest_path(encoded) == path
    assert decode_manifest_path(encoded.replace("%0A", "%0a").replace("%0D", "%0d")) == path


# -- a file of 4 GiB or more ----------------------------------------------------------


BIG = (4 << 30) + 3 * 1024 * 1024 + 123               # past one ISO 9660 extent


def _sparse(path: Path, size: int) -> dict[int, bytes]:
    """A sparse file of ``size`` bytes: zeros, with marks either side of each 4 GiB boundary."""
    marks = {0: b"first", MAX_EXTENT - 7: b"<edge>!", (4 << 30) - 3: b"4GiB", size - 3: b"end"}
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in marks.items():
            f.seek(offset)
            f.write(data)
    return marks


def _expected(marks: dict[int, bytes], start: int, length: int) -> bytes:
    """Bytes ``start`` to ``start + length`` of the file :func:`_sparse` made."""
    out = bytearray(length)
    for offset, data in marks.items():
        lo, hi = max(offset, start), min(offset + len(data), start + length)
        if lo < hi:
            out[lo - start:hi - start] = data[lo - offset:hi - offset]
    return bytes(out)


def _streams_the_file(args: list[str], marks: dict[int, bytes], size: int) -> bool:
    """Whether a reader's output (stdout) is exactly the sparse file, compared as it streams."""
    pos, same = 0, True
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as p:
        while same and (chunk := p.stdout.read(1 << 22)):
            same = chunk == _expected(marks, pos, len(chunk))
            pos += len(chunk)
        p.kill()
    return same and pos == size


def test_a_file_over_4_gib_reads_back_byte_identical(tmp_path):
    """ISO 9660 level 3 multi-extent and UDF: read by bsdtar (Rock Ridge), 7-Zip (Joliet,
    UDF), xorriso (across the extent boundary), isoinfo's listing and our one-pass read-back."""
    big, image_path = tmp_path / "big.bin", tmp_path / "big.iso"
    marks = _sparse(big, BIG)
    small = tmp_path / "small.txt"
    small.write_bytes(b"after the big one\n")
    try:
        image = Layout([("data/big.bin", big), ("data/z.txt", small)], "BIG").write(image_path)
        # our own one-pass read-back: one (first sector, size) per file, as the inventory keeps
        lba = image.extents["data/big.bin"]
        result = hash_pass(file_chunks(image_path, image.size),
                           [Extent("data/big.bin", lba, BIG),
                            Extent("data/z.txt", image.extents["data/z.txt"], 18)])
        want = hashlib.sha256()
        for start in range(0, BIG, 1 << 24):
            want.update(_expected(marks, start, min(1 << 24, BIG - start)))
        assert result.sha256["data/big.bin"] == want.hexdigest()
        assert result.sha256["data/z.txt"] == hashlib.sha256(small.read_bytes()).hexdigest()
        # ISO 9660 level 3: two directory records (multi-extent), the second right after
        listing = [re.search(r" (\d+) \w{3} +\d+ \d{4} \[ *(\d+) ", line).groups() for line in
                   _tool("isoinfo", "-l", "-i", str(image_path)).splitlines() if "BIG.BIN;1" in line]
        assert [(int(size), int(at)) for size, at in listing] == [
            (MAX_EXTENT, lba), (BIG - MAX_EXTENT, lba + MAX_EXTENT // SECTOR)]
        for args in (["bsdtar", "-xOf", str(image_path), "data/big.bin"],          # Rock Ridge
                     ["7z", "e", "-so", "-tiso", str(image_path), "data/big.bin"],  # Joliet
                     ["7z", "e", "-so", "-tudf", str(image_path), "data/big.bin"]):  # UDF
            assert _streams_the_file(args, marks, BIG), args[:4]
        for start, length in ((MAX_EXTENT - (1 << 20), 2 << 20), (BIG - (1 << 20), 1 << 20)):
            piece = tmp_path / f"piece-{start}"            # xorriso, across the extent boundary
            subprocess.run(["xorriso", "-osirrox", "on", "-indev", f"stdio:{image_path}",
                            "-extract_cut", "/data/big.bin", str(start), str(length), str(piece)],
                           capture_output=True, check=True)
            assert piece.read_bytes() == _expected(marks, start, length)
    finally:                                           # 8 GiB of disk: free it at once
        for p in tmp_path.glob("*"):
            p.unlink()


def test_a_large_file_in_pieces_apart_is_refused(tmp_path, monkeypatch):
    """The inventory keeps one (first sector, size) per file: Layout refuses an image where
    pycdlib did not lay a multi-extent file's pieces back to back (nothing written here)."""
    big = tmp_path / "big.bin"
    _sparse(big, BIG)
    layout = Layout([("data/big.bin", big)], "BIG")
    iso = layout._files["data/big.bin"]
    lba = layout.iso.get_record(iso_path=iso).extent_location()
    layout._check_contiguous("data/big.bin", iso, lba)         # as pycdlib lays it out
    real = layout.iso.get_file_byte_extents

    def apart(**where):
        runs = real(**where)
        return runs[:1] + [(offset + SECTOR, length) for offset, length in runs[1:]]

    monkeypatch.setattr(layout.iso, "get_file_byte_extents", apart)
    with pytest.raises(MasteringError, match="ISO 9660 extents are not back to back"):
        layout._check_contiguous("data/big.bin", iso, lba)
    layout.iso.close()


def test_a_file_too_big_for_the_medium_is_refused_before_hashing(home, run, source_copy):
    huge = source_copy / "扫描件-全年.tif"
    limit = max_file_bytes(2298496)                     # a DVD-R
    with open(huge, "wb") as f:
        f.truncate(limit + SECTOR)
    hashed = []
    with pytest.raises(ScanError) as refused:
        scan(source_copy, progress=lambda done, total: hashed.append(done),
             max_file_bytes=limit, medium="dvd-r")
    assert hashed == [] and refused.value.problems == [f"{huge.name} ({limit + SECTOR} bytes)"]
    _one_line_error(run("archive", str(source_copy), "--media", "dvd-r"), 2,
                    "1 file(s) are larger than one dvd-r medium holds", huge.name,
                    "larger medium (--media)")
    _nothing_recorded(home)
    assert limit < 2298496 * SECTOR and max_file_bytes(12219392) > BIG


def _warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("discarchive: warning: ")]


def test_plan_warns_as_archive_does(hostile):
    """Empty folders, symbolic links inside, case pairs and files that are not records:
    `plan` prints archive's warnings (stderr) and lists them in --json."""
    home, res, _, source, _ = hostile
    archived = _warning_lines(res.stderr)
    for words in ("empty folder(s)", "symbolic link(s)", "differ only in case", "are not records"):
        assert any(words in line for line in archived), (words, archived)
    planned = Cli(home)("plan", str(source))
    assert planned.exit_code == 0, planned.stderr
    assert _warning_lines(planned.stderr) == archived
    out = Cli(home)("plan", str(source), "--json")
    assert [f"discarchive: warning: {w}" for w in json.loads(out.stdout)["warnings"]] == archived


def test_the_description_names_what_sha256sum_cannot_check(hostile, tmp_path):
    """The description file names the %, CR and LF names the manifest percent-encodes, and
    its sed line makes `sha256sum -c` pass the %-only ones (docs/NAMES.md)."""
    home, _, _, _, files = hostile
    bag = extract_bag(home, tmp_path / "bag")
    text = (bag / DESCRIPTION_NAME).read_text(encoding="utf-8")
    odd = sorted(p for p in files if any(c in p for c in "%\r\n"))
    assert f"{len(odd)} file name(s) on this disc" in text
    for path in odd:
        assert f"\n  {encode_manifest_path('data/' + path)}\n" in text, path
    breaks = [p for p in odd if "\r" in p or "\n" in p]
    assert f"The {len(breaks)} name(s) with CR or LF" in text
    (command,) = [line.strip() for line in text.splitlines() if line.strip().startswith("sed ")]
    out = subprocess.run(["sh", "-c", command], cwd=bag, capture_output=True).stdout.decode()
    ok = {line[:-len(": OK")] for line in out.splitlines() if line.endswith(": OK")}
    assert {f"data/{p}" for p in odd if p not in breaks} <= ok
    plain = subprocess.run(["sha256sum", "-c", "manifest-sha256.txt"], cwd=bag,
                           capture_output=True).stdout.decode()
    assert not any(f"data/{p}: OK" in plain for p in odd if "%" in p and p not in breaks)


def test_the_walk_closes_every_folder_it_opens(tmp_path):
    """The walk lists each folder through a descriptor of it: none is left open, after
    a scan that succeeds or one the tree policy refuses (a link to nothing)."""
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    for n in range(30):
        folder = tmp_path / "src" / "2024" / f"U{n}_单位" / "01_社保登记类"
        folder.mkdir(parents=True)
        (folder / "0001_表.pdf").write_bytes(b"x" * n)
    before = open_fds()
    items = scan(tmp_path / "src", None, problems=[], hashing=False)
    assert len(items) == 30 and open_fds() == before
    (tmp_path / "src" / "2024" / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(ScanError):
        scan(tmp_path / "src", None, problems=[], hashing=False)
    assert open_fds() == before
