"""The main job end to end: real xorriso stdio: drives, real SQLite, real bags."""

from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
import sqlite3
import stat
import subprocess
from pathlib import Path

import bagit
import pytest

import config
from config.home import init_home
from conftest import tree_state
from daemon import jobs
from inventory.store import Inventory


def _discs(run) -> list[dict]:
    res = run("discs", "--json")
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)


def _image(home: Path, set_id: str | None = None) -> Path:
    """The kept image of ``set_id``, else the first (by ID) of the home's images."""
    if set_id:
        return home / "images" / f"{set_id}.iso"
    return sorted((home / "images").glob("*.iso"))[0]


def _images(home: Path) -> list[Path]:
    return sorted((home / "images").glob("*.iso"))


# -- init ---------------------------------------------------------------------

def test_init_makes_a_complete_home(home):
    cfg = config.load(home)
    assert cfg.drives and all(d["media_dir"] == str(home / "media") for d in cfg.drives)
    text = (home / "discarchive.toml").read_text(encoding="utf-8")
    assert text.count("\n#") > 10, "the config is commented"
    key = home / "keys" / "signing.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in key.read_bytes()
    mode = sqlite3.connect(home / "inventory.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert (home / "images").is_dir()


def test_init_refuses_an_existing_home(home, run):
    before = tree_state(home)
    res = run("init", "--home", str(home))
    assert res.exit_code == 2
    assert "already exists" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert tree_state(home) == before


def test_init_uses_discarchive_home(tmp_path, monkeypatch):
    from conftest import Cli
    monkeypatch.setenv("DISCARCHIVE_HOME", str(tmp_path / "envhome"))
    res = Cli(None)("init")
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "envhome" / "inventory.db").is_file()


def test_a_group_readable_key_is_refused(home, run, demo_archive):
    key = home / "keys" / "signing.key"
    key.chmod(0o644)
    res = run("archive", str(demo_archive))
    assert res.exit_code == 2
    assert "chmod 600" in res.stderr
    assert _discs(run) == []


# -- the main job on the demo archive --------------------------------------------

def test_demo_archive_gives_two_verified_copies(home, run, demo_archive):
    before = tree_state(demo_archive)
    res = run("archive", str(demo_archive), "--media", "dvd-r", "--copies", "2")
    assert res.exit_code == 0, res.stderr
    discs = _discs(run)
    # one set per year and side (收/支): 2024 and 2025, each 收 and 支; one disc each
    assert sorted({d["set_id"] for d in discs}) == [
        "160-2024-S01-01", "160-2024-Z01-01", "160-2025-S01-01", "160-2025-Z01-01"]
    assert [d["copy_label"] for d in discs] == ["A", "B"] * 4
    for d in discs:
        assert d["state"] == "verified" and d["verification"] == "passed"
        burned = dt.date.fromisoformat(d["burned_at"][:10])
        assert d["due_at"] == burned.replace(year=burned.year + 4).isoformat()
        assert Path(d["medium_path"]).is_file()
    assert discs[0]["medium_path"] != discs[1]["medium_path"]
    assert tree_state(demo_archive) == before, "the source was changed"
    inv = Inventory.open(home / "inventory.db")
    sets = list(inv.db.query("SELECT * FROM disc_sets"))
    assert {s["state"] for s in sets} == {"archived"}
    assert sum(s["record_count"] for s in sets) == 32
    for s in sets:
        types = [e["event_type"] for e in inv.events(set_id=s["set_id"])]
        for t in ("capture", "message digest calculation", "replication", "fixity check"):
            assert t in types
        assert types.count("fixity check") == 2


def test_listing_shows_due_dates(home, run, demo_archive):
    assert run("archive", str(demo_archive)).exit_code == 0
    res = run("discs")
    lines = res.stdout.splitlines()
    assert lines[0].split()[:2] == ["DISC", "STATE"]
    assert len(lines) == 9 and all("verified" in line and "passed" in line for line in lines[1:])
    burned = dt.date.fromisoformat(lines[1].split()[4])
    assert lines[1].split()[5] == burned.replace(year=burned.year + 4).isoformat()


def test_show_gives_the_recorded_fields(home, run, demo_archive):
    assert run("archive", str(demo_archive)).exit_code == 0
    disc_id, set_id = _discs(run)[0]["disc_id"], _discs(run)[0]["set_id"]
    res = run("show", disc_id, "--json")
    data = json.loads(res.stdout)
    assert data["disc_id"] == disc_id and data["image_sha256"] == jobs_sha(_image(home, set_id))
    assert data["image_sectors"] * 2048 >= data["image_bytes"] > (data["image_sectors"] - 1) * 2048
    assert {e["event_type"] for e in data["events"]} == {"replication", "fixity check"}
    assert run("show", "no-such-disc").exit_code == 2
    text = run("show", disc_id).stdout.split("events:\n")[1].splitlines()
    assert len(text) == len(data["events"]), "one line per event"
    fixity = next(line for line in text if "fixity check" in line)
    files = next(e for e in data["events"] if e["event_type"] == "fixity check")
    assert f"files_checked={json.loads(files['detail'])['files_checked']}" in fixity
    assert f"image_sha256={data['image_sha256'][:12]}…" in fixity and len(fixity) < 150, fixity


def jobs_sha(path: Path) -> str:
    import hashlib
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_burned_medium_is_padded_and_hashed_over_the_image_length(home, run, demo_archive):
    assert run("archive", str(demo_archive)).exit_code == 0
    d = _discs(run)[0]
    medium = Path(d["medium_path"]).read_bytes()
    image = _image(home, d["set_id"]).read_bytes()
    assert len(medium) > len(image), "xorriso pads stdio media; the test expects padding"
    assert medium[:len(image)] == image
    assert jobs_sha(_image(home, d["set_id"])) == d["image_sha256"]


# -- the sample archive, read by independent tools ----------------------------

@pytest.fixture
def archived_sample(home, run, sample_archive):
    before = tree_state(sample_archive)
    res = run("archive", str(sample_archive))
    assert res.exit_code == 0, res.stderr
    assert tree_state(sample_archive) == before, "the source was changed"
    return sample_archive


def _catalog(source: Path) -> list[dict]:
    with open(source / "归档文件目录.csv", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def test_sample_archive_every_record_found(home, run, archived_sample):
    rows = _catalog(archived_sample)
    assert len(rows) == 56
    for row in rows:
        res = run("find", row["档号"], "--json")
        found = json.loads(res.stdout)
        match = [f for f in found if f["archival_code"] == row["档号"]]
        assert len(match) == 1, row["档号"]
        assert match[0]["path"] == row["文件"]
        assert {c["verification"] for c in match[0]["copies"]} == {"passed"}
        assert len(match[0]["copies"]) == 2


def test_find_by_title_path_number_and_hash(home, run, archived_sample):
    by_title = json.loads(run("find", "工伤认定", "--json").stdout)
    assert by_title and all("工伤认定" in r["title"] for r in by_title)
    one = by_title[0]
    by_hash = json.loads(run("find", one["sha256"], "--json").stdout)
    assert one["path"] in [r["path"] for r in by_hash]
    assert {r["sha256"] for r in by_hash} == {one["sha256"]}
    by_path = json.loads(run("find", "山城物流", "--json").stdout)
    assert by_path and all("山城物流" in r["path"] for r in by_path)
    assert run("find", "nothing-like-this").exit_code == 1
    text = run("find", one["archival_code"]).stdout
    assert one["archival_code"] in text and "-A (passed)" in text and "-B (passed)" in text


def _names(archive: Path) -> set[str]:
    names = {p.name for p in archive.rglob("*")}
    assert any(len(n) > 64 for n in names), "the sample has a name longer than Joliet's 64"
    return names


@pytest.mark.parametrize("tool", ["xorriso", "7z", "bsdtar", "isoinfo"])
def test_independent_tools_list_every_original_name(home, archived_sample, tool):
    if not shutil.which(tool):
        pytest.fail(f"{tool} is not installed: run `make test` (it installs it)")
    out = ""
    for image in _images(home):
        img = str(image)
        cmd = {"xorriso": ["xorriso", "-indev", img, "-find", "/"],
               "7z": ["7z", "l", img],
               "bsdtar": ["bsdtar", "-tf", img],
               "isoinfo": ["isoinfo", "-R", "-l", "-i", img]}[tool]
        out += subprocess.run(cmd, capture_output=True, check=True,
                              env={"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
                                   "PATH": "/usr/bin:/bin"}).stdout.decode("utf-8")
    for name in _names(archived_sample):
        assert name in out, f"{tool} does not show {name}"


@pytest.mark.parametrize("tool", ["7z", "bsdtar"])
def test_files_extract_byte_identical_and_the_bag_validates(home, archived_sample, tmp_path, tool):
    found, rows, sets = set(), 0, []
    for n, image in enumerate(_images(home)):
        img = str(image)
        out = tmp_path / f"x{n}"
        out.mkdir()
        cmd = ["7z", "x", "-y", f"-o{out}", img] if tool == "7z" else ["bsdtar", "-xf", img, "-C", str(out)]
        subprocess.run(cmd, capture_output=True, check=True, env={"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"})
        for f in (out / "data").rglob("*"):
            if f.is_file():
                rel = f.relative_to(out / "data")
                assert f.read_bytes() == (archived_sample / rel).read_bytes(), rel
                found.add(str(rel))
        for p in out.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        bag = bagit.Bag(str(out))
        bag.validate()
        info = bag.info
        files = [f for f in (out / "data").rglob("*") if f.is_file()]
        assert info["Payload-Oxum"] == f"{sum(f.stat().st_size for f in files)}.{len(files)}"
        assert info["External-Identifier"] == image.stem
        assert info["Fonds-Identifier"] == "160" and info["Bag-Count"] == "1 of 1"
        assert info["Record-Years"] in ("2023", "2024")
        for field in ("Source-Organization", "Bagging-Date", "Bag-Group-Identifier"):
            assert info[field]
        sets.append((info["Bag-Group-Identifier"], info["Retention-Period"]))
        with open(out / "归档文件目录.csv", encoding="utf-8") as f:
            rows += len(list(csv.DictReader(f)))
    assert found == {str(p.relative_to(archived_sample)) for p in archived_sample.rglob("*")
                     if p.is_file()}
    assert rows == 56
    assert sets == [("160-2023-S01", "永久"), ("160-2023-Z01", "50年"),
                    ("160-2024-S01", "永久"), ("160-2024-Z01", "50年")]


def test_volume_id_is_the_set_id(home, archived_sample):
    out = subprocess.run(["isoinfo", "-d", "-i", str(_image(home))], capture_output=True,
                         check=True, text=True).stdout
    assert "Volume id: 160-2023-S01-01" in out
    assert "Joliet" in out and "Rock Ridge" in out
    udf = subprocess.run(["xorriso", "-indev", str(_image(home)), "-pvd_info"],
                         capture_output=True, text=True)
    assert "160-2023-S01-01" in udf.stdout


def test_signature_verifies_with_openssl_free_procedure(home, archived_sample, tmp_path):
    """The description file's procedure, done with the cryptography library alone."""
    import base64
    from cryptography.hazmat.primitives import serialization
    out = tmp_path / "x"
    subprocess.run(["bsdtar", "-xf", str(_image(home)), "-C", str(tmp_path), "tagmanifest-sha256.txt",
                    "tagmanifest-sha256.txt.sig", "signing-key.pub", "说明文件.txt"], check=True)
    pub = serialization.load_pem_public_key((tmp_path / "signing-key.pub").read_bytes())
    sig = base64.b64decode((tmp_path / "tagmanifest-sha256.txt.sig").read_bytes())
    pub.verify(sig, (tmp_path / "tagmanifest-sha256.txt").read_bytes())
    assert (tmp_path / "signing-key.pub").read_bytes() == (home / "keys" / "signing.pub").read_bytes()
    text = (tmp_path / "说明文件.txt").read_text(encoding="utf-8")
    assert "160-2023-S01-01" in text and "sha256sum -c manifest-sha256.txt" in text
    assert "%25" not in text and "percent-encoded" not in text   # no such names in the sample
    assert not out.exists()


# -- verify ----------------------------------------------------------------------

def test_verify_passes_and_records_a_fixity_check(home, run, demo_archive):
    assert run("archive", str(demo_archive)).exit_code == 0
    disc_id = _discs(run)[1]["disc_id"]
    res = run("verify", disc_id)
    assert res.exit_code == 0, res.stderr
    assert "passed" in res.stdout
    inv = Inventory.open(home / "inventory.db")
    checks = [e for e in inv.events(disc_id=disc_id) if e["event_type"] == "fixity check"]
    assert [e["outcome"] for e in checks] == ["success", "success"]


def test_one_flipped_byte_fails_verify_and_names_the_file(home, run, demo_archive):
    assert run("archive", str(demo_archive)).exit_code == 0
    disc = next(d for d in _discs(run) if d["set_id"].endswith("S01-01") and d["copy_label"] == "B")
    on_disc = [i["path"] for i in Inventory.open(home / "inventory.db").items(disc["set_id"])]
    victim = demo_archive / next(p for p in on_disc if p.endswith(".pdf"))
    content = victim.read_bytes()
    medium = Path(disc["medium_path"])
    data = bytearray(medium.read_bytes())
    at = data.find(content)
    assert at > 0 and data.find(content, at + 1) == -1
    data[at + len(content) // 2] ^= 0x01
    medium.write_bytes(bytes(data))
    res = run("verify", disc["disc_id"])
    assert res.exit_code == 1
    rel = str(victim.relative_to(demo_archive))
    assert f"damaged: data/{rel}" in res.stdout
    assert "failed verification" in res.stderr
    inv = Inventory.open(home / "inventory.db")
    last = inv.events(disc_id=disc["disc_id"])[-1]
    assert last["event_type"] == "fixity check" and last["outcome"] == "failure"
    assert rel in last["detail"]
    assert inv.disc(disc["disc_id"])["verification"] == "failed"


def test_verify_unknown_disc_is_one_line(run):
    res = run("verify", "160-1999-0001-A")
    assert res.exit_code == 2 and "no disc 160-1999-0001-A" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


# -- a copy that fails is never archived ------------------------------------------

def _flip_reads_in(monkeypatch, drives: set[str]) -> None:
    """Drives whose read-back returns one wrong bit (a physical fault we cannot cause here)."""
    from burners.xorriso import XorrisoDrive
    real_read = XorrisoDrive.read

    class FlippingReader:
        def __init__(self, inner, flip):
            self.inner, self.flip = inner, flip
            self.bad, self.slow, self.retried = inner.bad, inner.slow, inner.retried

        def __iter__(self):
            for n, piece in enumerate(self.inner):
                if self.flip and n == 0:
                    piece = piece[:-1] + bytes([piece[-1] ^ 0xFF])
                yield piece

    def bad_read(self, length, progress=None, chunk=1 << 20, retries=2):
        return FlippingReader(real_read(self, length, progress, chunk, retries),
                              self.name in drives)

    monkeypatch.setattr(XorrisoDrive, "read", bad_read)


def _fixity_reads(home: Path, disc_id: str) -> list[tuple[str, int, str]]:
    inv = Inventory.open(home / "inventory.db")
    return [(json.loads(e["detail"])["drive"], json.loads(e["detail"])["read"], e["outcome"])
            for e in inv.events(disc_id=disc_id) if e["event_type"] == "fixity check"]


def test_a_copy_that_reads_back_wrong_twice_is_recorded_failed(home, run, demo_archive,
                                                               monkeypatch):
    _flip_reads_in(monkeypatch, {"file-a", "file-b"})
    res = run("archive", str(demo_archive))
    assert res.exit_code == 1
    assert "not archived" in res.stderr
    discs = {d["copy_label"]: d for d in _discs(run)}
    assert discs["B"]["state"] == "failed" and discs["B"]["verification"] == "failed"
    assert _fixity_reads(home, discs["B"]["disc_id"]) == [
        ("file-b", 1, "failure"), ("file-a", 2, "failure")]
    inv = Inventory.open(home / "inventory.db")
    assert {s["state"] for s in inv.db.query("SELECT state FROM disc_sets")} == {"failed"}


def test_a_disc_is_called_bad_only_after_a_second_read_in_another_drive(home, run, demo_archive,
                                                                      monkeypatch):
    _flip_reads_in(monkeypatch, {"file-b"})
    res = run("archive", str(demo_archive))
    assert res.exit_code == 0, res.stderr
    b = {d["copy_label"]: d for d in _discs(run)}["B"]
    assert b["state"] == "verified"
    assert _fixity_reads(home, b["disc_id"]) == [("file-b", 1, "failure"), ("file-a", 2, "success")]


# -- bad input: one line, non-zero, nothing half-written ------------------------------

def _nothing_recorded(home: Path) -> None:
    db = sqlite3.connect(home / "inventory.db")
    for table in ("disc_sets", "discs", "items", "events"):
        assert db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, table
    assert list((home / "images").iterdir()) == []


def _one_line_error(res, code: int, *words: str) -> None:
    assert res.exit_code == code, (res.exit_code, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("discarchive: error: ")
    assert "Traceback" not in res.stderr
    for w in words:
        assert w in lines[0]


def test_missing_source(home, run, tmp_path):
    _one_line_error(run("archive", str(tmp_path / "nope")), 2, "does not exist")
    _nothing_recorded(home)


def test_empty_source(home, run, tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    _one_line_error(run("archive", str(tmp_path / "empty")), 2, "no files")
    _nothing_recorded(home)


def test_unreadable_file(home, run, source_copy, monkeypatch):
    victim = next(source_copy.rglob("*.ofd"))
    victim.chmod(0)
    import os
    if os.geteuid() == 0:
        # root reads any file; answer as the kernel does for a file we may not read
        import builtins
        real_open = builtins.open

        def guarded(file, *a, **k):
            if Path(file) == victim:
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *a, **k)
        monkeypatch.setattr("manifests.catalog.open", guarded, raising=False)
    _one_line_error(run("archive", str(source_copy)), 2, victim.name, "Permission denied")
    _nothing_recorded(home)


def test_a_link_out_of_the_source_is_refused(home, run, source_copy, tmp_path):
    """Links into the source are skipped with a warning: tests/test_hostile_names.py."""
    (tmp_path / "outside.pdf").write_bytes(b"%PDF-1.4\n")
    (source_copy / "link.pdf").symlink_to(tmp_path / "outside.pdf")
    _one_line_error(run("archive", str(source_copy)), 2, "link.pdf", "symbolic link",
                    "outside the source")
    _nothing_recorded(home)


def test_a_file_changing_while_packed(home, source_copy):
    victim = next(source_copy.rglob("*.xml"))

    class Meddler:
        done = False

        def progress(self, stage):
            def cb(done, total):
                if stage == "master" and not self.done:
                    self.done = True
                    victim.write_bytes(victim.read_bytes().replace(b"</", b"<!-- x --></", 1))
            return cb

        def note(self, text):
            pass

    cfg = config.load(home)
    with pytest.raises(jobs.JobError, match="changed while it was packed") as err:
        jobs.archive(cfg, source_copy, reporter=Meddler())
    assert victim.name in str(err.value)
    _nothing_recorded(home)


def test_a_payload_larger_than_the_medium(home, run, demo_archive):
    _one_line_error(run("archive", str(demo_archive), "--media", "custom:200"), 2,
                    "sectors", "larger medium")
    _nothing_recorded(home)


def test_an_unknown_medium(home, run, demo_archive):
    _one_line_error(run("archive", str(demo_archive), "--media", "floppy"), 2, "dvd-r")
    _nothing_recorded(home)


def test_xorriso_not_installed(home, run, demo_archive, tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    res = run("archive", str(demo_archive), env={"PATH": str(empty)})
    _one_line_error(res, 3, "xorriso is not installed", "apt-get install xorriso")
    _nothing_recorded(home)


def test_no_home(tmp_path, demo_archive):
    from conftest import Cli
    res = Cli(tmp_path / "nohome")("archive", str(demo_archive))
    _one_line_error(res, 2, "discarchive init")


def test_catalog_naming_a_missing_file(home, run, source_copy):
    victim = next(source_copy.rglob("*.png"))
    victim.unlink()
    _one_line_error(run("archive", str(source_copy), "--strict"), 2, "not in the source",
                    victim.name)
    _nothing_recorded(home)
    res = run("archive", str(source_copy))
    assert res.exit_code == 0 and "not in the source" in res.stderr and victim.name in res.stderr


def test_second_run_gets_the_next_set_id(home, run, demo_archive, source_copy):
    # the same records from another folder: not an incremental run of the first source
    assert run("archive", str(demo_archive), "--copies", "1").exit_code == 0
    assert run("archive", str(source_copy), "--copies", "1").exit_code == 0
    ids = sorted(d["disc_id"] for d in _discs(run) if d["set_id"].startswith("160-2024-S"))
    assert ids == ["160-2024-S01-01-A", "160-2024-S02-01-A"]


def test_init_home_is_all_or_nothing(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("inventory.store.Inventory.create", boom)
    with pytest.raises(OSError):
        init_home(tmp_path / "h", file_drives=True)
    assert list(tmp_path.iterdir()) == []


# -- the virtual drive through the config ----------------------------------------

def _use_virtual_drives(home: Path, capacity: int) -> None:
    cfg = home / "discarchive.toml"
    text = cfg.read_text(encoding="utf-8").split("\n[[drives]]")[0]
    text += "".join(f'\n[[drives]]\nname = "v{n}"\nadapter = "virtual"\nmedia_dir = "media"\n'
                    f"capacity_sectors = {capacity}\n" for n in (1, 2))
    cfg.write_text(text, encoding="utf-8")


def test_virtual_drives_burn_and_verify(home, run, demo_archive):
    _use_virtual_drives(home, 2_298_496)
    res = run("archive", str(demo_archive))
    assert res.exit_code == 0, res.stderr
    discs = _discs(run)
    assert [(d["drive"], d["adapter"], d["state"]) for d in discs] == [
        ("v1", "virtual", "verified"), ("v2", "virtual", "verified")] * 4
    assert run("verify", discs[0]["disc_id"]).exit_code == 0


def test_a_medium_smaller_than_the_image_is_a_recorded_failed_burn(home, run, demo_archive):
    _use_virtual_drives(home, 100)
    res = run("archive", str(demo_archive))
    assert res.exit_code == 1
    for d in _discs(run):
        assert d["state"] == "failed" and d["failure_class"] == "medium-too-small"
        assert d["medium_path"] is None and d["burned_at"] is None
    assert list((home / "media").iterdir()) == [] or all(
        p.stat().st_size == 0 for p in (home / "media").iterdir())


def test_an_interrupt_during_the_image_check_leaves_no_image(home, run, one_set_archive,
                                                             monkeypatch):
    """Ctrl-C while a new image is checked: the image, not yet recorded, is removed (a later
    run would otherwise count it when numbering sets)."""
    from daemon import jobs

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(jobs, "verify", interrupted)
    res = run("archive", str(one_set_archive), "--copies", "1")
    assert res.exit_code != 0
    assert list((home / "images").glob("*.iso*")) == []
    monkeypatch.undo()
    again = run("archive", str(one_set_archive), "--copies", "1")
    assert again.exit_code == 0, again.stderr
    assert [p.name for p in (home / "images").glob("*.iso")] == ["160-2024-S01-01.iso"]
