"""Pack and master hash each payload file once, as it is written into the image (issue 8,
line 1): the scan hashes only files whose SHA-256 decides an incremental run, the tag files
are laid out with placeholders of their exact size and rendered from the hashes measured
while the image was written; the image check still proves the image holds those bytes."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

import config
from daemon import jobs
from manifests import catalog
from manifests.bag import DiscInfo, tag_files, write_tag_files
from manifests.catalog import ScanError, scan
from manifests.validate import validate_bag

from conftest import extract_bag


@pytest.fixture
def source(one_set_archive, tmp_path):
    dest = tmp_path / "src"
    shutil.copytree(one_set_archive, dest)
    return dest


@pytest.fixture
def hashed(monkeypatch):
    """The paths the scan hashes, in a list (catalog.hash_file, which its threads call)."""
    seen: list[str] = []
    real = catalog.hash_file

    def counting(path, progress=None):
        seen.append(str(path))
        return real(path, progress)
    monkeypatch.setattr(catalog, "hash_file", counting)
    return seen


def _payload(source: Path) -> dict[str, str]:
    return {str(p.relative_to(source)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in source.rglob("*") if p.is_file()}


def _items(home: Path) -> dict[str, str]:
    with sqlite3.connect(home / "inventory.db") as db:
        return dict(db.execute("SELECT path, sha256 FROM items"))


def test_a_first_run_hashes_nothing_at_scan_and_records_the_bytes_on_the_disc(
        run, home, source, hashed, tmp_path):
    res = run("archive", str(source))
    assert res.exit_code == 0, res.stderr
    assert hashed == []                       # every file hashed once, while it was written
    assert _items(home) == _payload(source)
    bag = extract_bag(home, tmp_path / "bag")
    report = validate_bag(bag)                # manifest, catalog, tag manifest, signature
    assert report.valid, report.problems
    manifest = (bag / "manifest-sha256.txt").read_text(encoding="utf-8")
    assert "0" * 64 not in manifest and "0" * 64 not in (bag / "归档文件目录.csv").read_text(
        encoding="utf-8")


def test_a_second_run_hashes_first_only_files_recorded_with_the_same_size(
        run, home, source, hashed):
    assert run("archive", str(source)).exit_code == 0
    files = sorted(p for p in source.rglob("*.pdf"))
    grown, same_size = files[0], files[1]
    with open(grown, "ab") as f:
        f.write(b"\n% appended\n")
    data = bytearray(same_size.read_bytes())
    data[-3] ^= 0x01
    same_size.write_bytes(bytes(data))
    (source / "extra.txt").write_text("a new file\n", encoding="utf-8")
    hashed.clear()
    res = run("archive", str(source))
    assert res.exit_code == 0, res.stderr
    picked = {str(Path(p).relative_to(source)) for p in hashed}
    recorded = set(_payload(source)) - {"extra.txt"}
    assert picked == recorded - {str(grown.relative_to(source))}
    with sqlite3.connect(home / "inventory.db") as db:
        latest = dict(db.execute("SELECT path, sha256 FROM items ORDER BY version"))
    now = _payload(source)
    for f in (grown, same_size, source / "extra.txt"):
        rel = str(f.relative_to(source))
        assert latest[rel] == now[rel], rel


def test_a_file_changed_in_place_while_packed_is_caught_by_its_earlier_hash(home, source):
    """A file hashed first (recorded, same size) then rewritten with its size and
    modification time kept: the bytes written have another SHA-256, so the run stops."""
    cfg = config.load(home)
    jobs.archive(cfg, source)
    victim = sorted(source.rglob("*.pdf"))[0]
    data = bytearray(victim.read_bytes())
    data[-3] ^= 0x01                          # changed since the first run: archived again
    victim.write_bytes(bytes(data))
    st = victim.stat()

    class Meddler(jobs.QuietReporter):
        done = False

        def progress(self, stage):
            def cb(done, total):
                if stage == "master" and not self.done:
                    self.done = True
                    data[-4] ^= 0x01
                    victim.write_bytes(bytes(data))
                    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
            return cb

    with sqlite3.connect(home / "inventory.db") as db:
        sets = db.execute("SELECT count(*) FROM disc_sets").fetchone()[0]
    with pytest.raises(jobs.JobError, match="changed while it was packed") as err:
        jobs.archive(cfg, source, reporter=Meddler())
    assert victim.name in str(err.value)
    with sqlite3.connect(home / "inventory.db") as db:
        assert db.execute("SELECT count(*) FROM disc_sets").fetchone()[0] == sets
    assert list((home / "images").glob("*.part")) == []


def test_placeholder_tag_files_have_the_final_sizes(source, tmp_path):
    """Laid out before any payload hash: zeros of exactly the rendered tag files' sizes."""
    from manifests import signing
    key, _ = signing.load_keypair(*_keys(tmp_path))
    items = scan(source, hashing=False)
    bag = write_tag_files(tmp_path / "tags", source, items, DiscInfo("G", "G-01"), "局", "160",
                          key, placeholders=True)
    for i in items:
        i.sha256 = hashlib.sha256((source / i.path).read_bytes()).hexdigest()
    final = tag_files(items, bag.info, key)
    for name, host in bag.entries[:len(final)]:
        assert host.stat().st_size == len(final[name]), name
        assert host.read_bytes() == bytes(len(final[name]))


def _keys(tmp_path: Path) -> tuple[Path, Path]:
    from manifests import signing
    key, pub = tmp_path / "k", tmp_path / "k.pub"
    signing.generate_key(key, pub)
    return key, pub


def test_scan_hashes_only_the_files_asked_for_and_can_prove_the_rest_readable(
        source, monkeypatch):
    picked = sorted(p.relative_to(source).as_posix() for p in source.rglob("*.pdf"))[:2]
    items = scan(source, hashing=lambda path, size: path in picked)
    got = {i.path: i.sha256 for i in items}
    assert {p for p, sha in got.items() if sha} == set(picked)
    for p in picked:
        assert got[p] == hashlib.sha256((source / p).read_bytes()).hexdigest()
    victim = source / sorted(set(got) - set(picked))[0]
    real_open = open

    def guarded(file, *a, **k):           # as the kernel answers for a file we may not read
        if Path(file) == victim:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *a, **k)
    monkeypatch.setattr("manifests.catalog.open", guarded, raising=False)
    scan(source, hashing=lambda path, size: path in picked)           # not opened: no error
    with pytest.raises(ScanError, match=f"cannot read .*{victim.name}: Permission denied"):
        scan(source, hashing=lambda path, size: path in picked, check_readable=True)
    with pytest.raises(ScanError, match="Permission denied"):
        scan(source, hashing=False, check_readable=True)


def test_an_image_too_big_for_the_medium_leaves_nothing_frozen(source, tmp_path):
    """The capacity check fails after the layout froze its records out of the collector's
    sight: pack closes the layout before it raises, so nothing stays frozen."""
    import gc

    from manifests import signing
    key, _ = signing.load_keypair(*_keys(tmp_path))
    items = scan(source, hashing=False)
    assert gc.get_freeze_count() == 0
    with pytest.raises(jobs.JobError, match="would need .* sectors but a custom:300 medium"):
        jobs.pack(tmp_path / "tags", tmp_path / "x.iso", source, items, DiscInfo("G", "G-01"),
                  "局", "160", "", key, 300, "custom:300", 300)
    assert gc.get_freeze_count() == 0
    assert not (tmp_path / "x.iso").exists()
