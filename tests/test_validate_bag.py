"""manifests.validate: the BagIt conformance suite, bags we make, and bags we break."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from pathlib import Path

import bagit
import pytest

from conftest import tree_state
from manifests.validate import BagReport, validate_bag

SUITE = Path(__file__).resolve().parents[1].parent / "shared" / "conformance" / "bagit"


def _cases() -> list:
    if not SUITE.is_dir():
        return [pytest.param(None, id="suite-absent",
                             marks=pytest.mark.skip(reason="../shared/conformance/bagit is not present"))]
    return [pytest.param(case, id=case.relative_to(SUITE).as_posix())
            for case in sorted(SUITE.glob("*/*/*")) if case.is_dir()]


def _suite_case(relative: str) -> Path:
    case = SUITE / relative
    if not case.is_dir():
        pytest.skip(f"{case} is not present")
    return case


def _named(problem: str) -> str:
    """The file a problem is about: what comes before ': ' (and ' line N')."""
    match = re.match(r"(.+?)(?: line \d+)?: ", problem)
    assert match, f"problem does not start with a file name: {problem!r}"
    return match[1]


def _names_a_file(problem: str, bag: Path) -> bool:
    """True when the problem starts with a file of the bag, or a path its manifests or fetch.txt list."""
    name = _named(problem)
    if (bag / name).exists() or name in {"bagit.txt", "manifest-<algorithm>.txt"}:
        return True
    listed = set()
    for tag in [*bag.glob("*manifest-*.txt"), *bag.glob("fetch.txt")]:
        for line in tag.read_bytes().decode("utf-8", "replace").splitlines():
            fields = line.split(None, 2 if tag.name == "fetch.txt" else 1)
            if fields:
                listed.add(fields[-1].lstrip("*").removeprefix("./"))
    return name in listed


def _out_of_scope_paths(bag: Path) -> list[str]:
    """Paths in the manifests and fetch.txt of ``bag`` that start outside it (/ or ~)."""
    found = []
    for tag in [*bag.glob("*manifest-*.txt"), *bag.glob("fetch.txt")]:
        for line in tag.read_bytes().decode("utf-8", "replace").splitlines():
            last = line.split()[-1] if line.split() else ""
            if last.startswith(("/", "~")):
                found.append(last)
    return found


@pytest.mark.parametrize("case", _cases())
def test_conformance_case(case: Path):
    kind = case.parent.name
    report = validate_bag(case)
    assert report.valid == (not report.problems)
    if kind == "valid":
        assert report.valid, report.problems
        assert report.version in {"0.97", "1.0"}
        return
    if kind == "warning":
        # valid where made; here either a warning, or a clear failure (a file lost in checkout)
        assert report.warnings or report.problems
    else:
        # invalid, linux-only, windows-only: the README asks the platform-only cases to fail
        # on their platform; /tmp/foo, ~/foo, C:\... and \\?\UNC\... are outside data/ on any.
        assert not report.valid
    for problem in report.problems:
        assert _names_a_file(problem, case), problem
    if kind == "linux-only":
        for path in _out_of_scope_paths(case):
            assert any(repr(path) in p for p in report.problems), (path, report.problems)


_CHECKSUM = re.compile(r".+: \w+ checksum is [0-9a-f]+, the manifest says [0-9a-f]+ \(RFC 8493 section 3\)")


@pytest.mark.parametrize("case", _cases())
def test_conformance_case_without_hashing(case: Path):
    """hashing=False finds every problem of a full validation but wrong checksums."""
    full = validate_bag(case)
    fast = validate_bag(case, hashing=False)
    assert fast.hashed is False and full.hashed is True
    assert fast.valid == (not fast.problems)
    not_checksums = [p for p in full.problems if not _CHECKSUM.fullmatch(p)]
    if not_checksums:
        assert not fast.valid, (full.problems, fast.warnings)
    else:
        assert not [p for p in fast.problems if p not in full.problems]
    for problem in fast.problems:
        assert not _CHECKSUM.fullmatch(problem), problem
        assert _names_a_file(problem, case), problem


def test_corrupt_tag_file_passes_only_without_hashing():
    case = _suite_case("v0.97/invalid/corrupt-tag-file")
    assert not validate_bag(case).valid
    assert validate_bag(case, hashing=False).valid


def test_validating_the_suite_changes_nothing_in_it():
    if not SUITE.is_dir():
        pytest.skip("../shared/conformance/bagit is not present")
    before = tree_state(SUITE)
    for case in SUITE.glob("*/*/*"):
        validate_bag(case)
    assert tree_state(SUITE) == before


def test_whitespace_around_the_colon_in_bagit_txt_is_named():
    # bagit-python 1.9 strips it and accepts this bag; RFC 8493 section 2.1.1 wants the exact line.
    case = _suite_case("v1.0/invalid/bagit-with-invalid-whitespace")
    report = validate_bag(case)
    assert not report.valid
    assert report.version == "1.0"
    first = [p for p in report.problems if p.startswith("bagit.txt line 1: ")]
    assert first and "'BagIt-Version : 1.0'" in first[0] and "2.1.1" in first[0]
    assert any(p.startswith("bagit.txt line 2: ") for p in report.problems)


# -- bags we make ----------------------------------------------------------


@pytest.fixture(params=["0.97", "1.0"])
def made_bag(request, tmp_path) -> Path:
    """A bag made by bagit.make_bag from a copy of a small source tree, with one
    extra tag file (catalog.csv) in its tag manifest. bagit-python 1.9 declares
    0.97; the 1.0 variant declares 1.0 instead (nothing else differs here)."""
    source = tmp_path / "source"
    (source / "dir").mkdir(parents=True)
    (source / "a.txt").write_text("first record\n", encoding="utf-8")
    (source / "dir" / "b.txt").write_text("second record\n", encoding="utf-8")
    (source / "dir" / "归档 文件.txt").write_text("third record\n", encoding="utf-8")
    bag = tmp_path / "bag"
    shutil.copytree(source, bag)
    bagit.make_bag(str(bag), {"Source-Organization": "Test"}, checksums=["sha256"])
    (bag / "catalog.csv").write_text("path,title\ndata/a.txt,first\n", encoding="utf-8")
    if request.param == "1.0":
        (bag / "bagit.txt").write_bytes(b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n")
    _write_tagmanifest(bag)
    return bag


def _write_tagmanifest(bag: Path) -> None:
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n"
             for p in sorted(bag.iterdir()) if p.is_file() and not p.name.startswith("tagmanifest-")]
    (bag / "tagmanifest-sha256.txt").write_text("".join(lines), encoding="utf-8")


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_bag_made_with_bagit_python_validates(made_bag):
    report = validate_bag(made_bag)
    assert report.valid, report.problems
    assert report.version == re.search(r"BagIt-Version: (\S+)", (made_bag / "bagit.txt").read_text())[1]
    assert report.problems == [] and report.warnings == []


def test_processes_are_handed_to_bagit_python(made_bag):
    assert validate_bag(made_bag, processes=2).valid
    _flip_byte(made_bag / "data" / "a.txt", 0)
    assert any(p.startswith("data/a.txt: ") for p in validate_bag(made_bag, processes=2).problems)


@pytest.mark.parametrize("target, offset", [
    ("data/dir/b.txt", 3),            # a payload file
    ("manifest-sha256.txt", 0),       # the first checksum digit of a manifest line
    ("bag-info.txt", 25),             # a bag-info.txt value
    ("catalog.csv", 5),               # a tag file of our own
])
def test_one_flipped_byte_is_detected_and_named(made_bag, target, offset):
    _flip_byte(made_bag / target, offset)
    report = validate_bag(made_bag)
    assert not report.valid
    assert any(p.startswith(f"{target}: ") or p.startswith(f"{target} line ") for p in report.problems), \
        report.problems
    for problem in report.problems:
        assert _names_a_file(problem, made_bag), problem


def test_a_file_listed_in_one_manifest_only_is_named(made_bag):
    """From 1.0 every payload manifest lists every payload file (RFC 8493 section 3); 0.97
    asked only that each be in one."""
    lines = (made_bag / "manifest-sha256.txt").read_text(encoding="utf-8").splitlines()
    sha512 = [f"{hashlib.sha512((made_bag / path).read_bytes()).hexdigest()}  {path}\n"
              for path in (line.split("  ", 1)[1] for line in lines) if path != "data/a.txt"]
    (made_bag / "manifest-sha512.txt").write_text("".join(sha512), encoding="utf-8")
    _write_tagmanifest(made_bag)
    report = validate_bag(made_bag)
    if report.version == "0.97":
        assert report.problems == []
    else:
        assert report.problems == ["manifest-sha512.txt: does not list 'data/a.txt', which manifest-sha256.txt "
                                   "lists; every payload manifest lists every payload file (RFC 8493 section 3)"]


# -- percent-encoded paths (RFC 8493 section 2.1.3) --------------------------


@pytest.fixture
def odd_names_bag(tmp_path) -> Path:
    """A 1.0 bag whose payload names hold '%', LF and CR, listed as RFC 8493 wants."""
    bag = tmp_path / "odd"
    (bag / "data").mkdir(parents=True)
    names = ["100%.txt", "two\nlines.txt", "carriage\rreturn.txt", "%0A literally.txt"]
    for i, name in enumerate(names):
        (bag / "data" / name).write_text(f"record {i}\n", encoding="utf-8")
    (bag / "bagit.txt").write_text("BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n",
                                   encoding="utf-8", newline="")
    encoded = {"100%.txt": "100%25.txt", "two\nlines.txt": "two%0Alines.txt",
               "carriage\rreturn.txt": "carriage%0dreturn.txt",  # lower-case hex is fine too
               "%0A literally.txt": "%250A literally.txt"}
    (bag / "manifest-sha256.txt").write_text("".join(
        f"{hashlib.sha256((bag / 'data' / n).read_bytes()).hexdigest()}  data/{encoded[n]}\n" for n in names),
        encoding="utf-8", newline="")
    return bag


def test_percent_encoded_paths_are_decoded_in_a_1_0_bag(odd_names_bag):
    report = validate_bag(odd_names_bag)
    assert report.valid, report.problems


def test_a_bare_percent_in_a_1_0_manifest_is_named(odd_names_bag):
    manifest = odd_names_bag / "manifest-sha256.txt"
    manifest.write_text(manifest.read_text(encoding="utf-8").replace("100%25.txt", "100%.txt"),
                        encoding="utf-8", newline="")
    report = validate_bag(odd_names_bag)
    assert not report.valid
    assert any(p.startswith("manifest-sha256.txt line 1: ") and "%25" in p for p in report.problems), \
        report.problems


def test_a_0_97_bag_keeps_percent_signs_literally(odd_names_bag):
    """0.97 has no percent-encoding: 'data/100%25.txt' names a file called '100%25.txt'."""
    (odd_names_bag / "bagit.txt").write_text("BagIt-Version: 0.97\nTag-File-Character-Encoding: UTF-8\n",
                                             encoding="utf-8", newline="")
    report = validate_bag(odd_names_bag)
    assert any(p.startswith("data/100%25.txt: ") for p in report.problems), report.problems
    assert any(p.startswith("data/100%.txt: ") for p in report.problems), report.problems
    assert any(p.startswith("data/two\\nlines.txt: ") for p in report.problems), report.problems
    assert not [p for p in report.problems if "\n" in p or "\r" in p]


# -- never raise; keep bagit-python quiet ------------------------------------


def test_a_path_that_is_not_a_folder_gives_one_problem(tmp_path):
    file = tmp_path / "bag.zip"
    file.write_bytes(b"PK")
    for path in (file, tmp_path / "nowhere"):
        report = validate_bag(path)
        assert not report.valid and report.version is None
        assert len(report.problems) == 1 and report.problems[0].startswith(f"{path}: ")


@pytest.mark.parametrize("name, content", [
    ("bagit.txt", b""),
    ("bagit.txt", b"BagIt-Version: 2.0\nTag-File-Character-Encoding: UTF-8\n"),
    ("bagit.txt", b"BagIt-Version: 1.0\nTag-File-Character-Encoding: KLINGON\n"),
    ("bag-info.txt", b"Payload-Oxum: lots\n"),
    ("bag-info.txt", b"no colon on this line\n"),
    ("manifest-sha256.txt", b"\xff\xfe not UTF-8 at all\n"),
    ("manifest-sha256.txt", b"# a comment\n"),
    ("manifest-sha256.txt", b""),
    ("fetch.txt", b"not-a-url 12 data/a.txt\n"),
    ("tagmanifest-sha256.txt", b"00  data/a.txt\n"),
    ("data", None),  # data/ replaced by a file
])
def test_a_broken_bag_gives_problems_not_exceptions(made_bag, name, content):
    target = made_bag / name
    if content is None:
        shutil.rmtree(target)
        target.write_bytes(b"not a folder")
    else:
        target.write_bytes(content)
    report = validate_bag(made_bag)
    assert not report.valid
    for problem in report.problems:
        assert "\n" not in problem
        assert _names_a_file(problem, made_bag), problem


def test_bagit_python_says_nothing_on_stderr(capfd, caplog):
    case = _suite_case("v0.97/warning/same-filename-listed-twice-with-the-same-hash")
    caplog.set_level(logging.DEBUG)
    propagate = bagit.LOGGER.propagate
    report = validate_bag(case)
    assert report.valid
    assert any(w.startswith("bagit-python: ") for w in report.warnings), report.warnings
    assert not [r for r in caplog.records if r.name == "bagit"]
    assert capfd.readouterr().err == ""
    assert bagit.LOGGER.propagate == propagate


def test_report_to_json(made_bag):
    _flip_byte(made_bag / "data" / "a.txt", 0)
    report = validate_bag(made_bag)
    data = json.loads(report.to_json())
    assert data["valid"] is False and data["version"] == report.version
    assert data["problems"] == report.problems and data["warnings"] == report.warnings
    assert data["path"] == str(made_bag)
    assert isinstance(report, BagReport)
