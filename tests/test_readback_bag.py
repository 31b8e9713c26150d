"""The bag checks of a one-pass verification, on a small hand-made image."""

from __future__ import annotations

import hashlib
from pathlib import Path

from verification.onepass import SECTOR, Extent
from verification.readback import Expected, verify


def _image(files: dict[str, bytes]) -> tuple[bytes, list[Extent]]:
    data, extents = bytearray(4 * SECTOR), []
    for path, body in files.items():
        extents.append(Extent(path, len(data) // SECTOR, len(body)))
        data += body + b"\0" * (-len(body) % SECTOR)
    return bytes(data), extents


def _verify(payload: dict[str, bytes], manifest: dict[str, bytes], oxum: str | None = None):
    lines = "".join(f"{hashlib.sha256(b).hexdigest()}  {p}\n" for p, b in manifest.items())
    oxum = oxum or f"{sum(map(len, payload.values()))}.{len(payload)}"
    files = {"bagit.txt": b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n",
             "bag-info.txt": f"Payload-Oxum: {oxum}\n".encode(),
             "manifest-sha256.txt": lines.encode(), **payload}
    data, extents = _image(files)
    expected = Expected(len(data), hashlib.sha256(data).hexdigest(),
                        tuple((e, hashlib.sha256(files[e.path]).hexdigest()) for e in extents))
    return verify([data], expected, b"")


def test_manifest_and_payload_agree():
    p = {"data/a": b"alpha", "data/b": b"beta" * 1000}
    report = _verify(p, p)
    assert [x for x in report.problems if x.startswith("bag:")] == []
    assert report.damaged == [] and report.image_ok


def test_a_file_not_in_the_manifest_and_a_listed_file_not_on_the_disc():
    report = _verify({"data/a": b"alpha", "data/b": b"beta"}, {"data/a": b"alpha", "data/c": b"x"})
    bag = [x for x in report.problems if x.startswith("bag:")]
    assert "bag: data/c is in manifest-sha256.txt but not on the disc" in bag
    assert "bag: data/b is on the disc but not in manifest-sha256.txt" in bag
    assert not report.bag_ok


def test_a_manifest_line_that_disagrees_and_a_wrong_oxum():
    report = _verify({"data/a": b"alpha"}, {"data/a": b"other"}, oxum="1.1")
    bag = [x for x in report.problems if x.startswith("bag:")]
    assert "bag: data/a does not match manifest-sha256.txt" in bag
    assert any("Payload-Oxum '1.1' does not match the payload (5.1)" in x for x in bag)


def test_a_manifest_written_otherwise_is_read_line_by_line():
    """Another tool's manifest (other order, upper-case hex, a tab) holds the same facts."""
    from verification.readback import _manifest_as_written

    p = {"data/a": b"alpha", "data/b": b"beta" * 1000, "data/c": b""}
    lines = "".join(f"{hashlib.sha256(p[k]).hexdigest().upper()}\t{k}\n" for k in ("data/c", "data/b", "data/a"))
    files = {"bagit.txt": b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n",
             "bag-info.txt": b"Payload-Oxum: 4005.3\n", "manifest-sha256.txt": lines.encode(), **p}
    data, extents = _image(files)
    expected = Expected(len(data), None, [(e, hashlib.sha256(files[e.path]).hexdigest())
                                          for e in extents])
    report = verify([data], expected, b"")
    assert [x for x in report.problems if x.startswith("bag:")] == []
    assert not _manifest_as_written(files["manifest-sha256.txt"], expected.files,
                                    [report.file_sha256.get(e.path) for e in extents])
    assert report.file_sha256["data/b"] == hashlib.sha256(p["data/b"]).hexdigest()


def test_the_manifest_as_written_is_recognised_and_a_changed_byte_is_not():
    from verification.readback import _manifest_as_written

    p = {"data/a": b"alpha", "data/b": b"beta"}
    report = _verify(p, p)
    table = Expected(0, None, [(Extent(k, 0, 1), None) for k in ("bagit.txt", *p)]).files
    got = [None] + [hashlib.sha256(b).hexdigest() for b in p.values()]
    manifest = report.tag_bytes["manifest-sha256.txt"]
    assert _manifest_as_written(manifest, table, ["x"] + got[1:])
    assert not _manifest_as_written(manifest.replace(b"data/b", b"data/B"), table, ["x"] + got[1:])
    assert not _manifest_as_written(manifest + b"\n", table, ["x"] + got[1:])
    assert not _manifest_as_written(manifest, table, got)     # a file not read


def test_expected_from_rows_and_from_pairs_agree():
    from dataclasses import replace

    rows = [("bagit.txt", 20, 55, None), ("data/a", 21, 5, "AB" * 32)]
    a = Expected.of_rows(4096, None, rows)
    b = Expected(4096, None, [(Extent(p, lba, n), sha) for p, lba, n, sha in rows])
    assert list(a.files) == list(b.files) == [(Extent("bagit.txt", 20, 55), None),
                                              (Extent("data/a", 21, 5), "ab" * 32)]
    assert replace(a, sha256="00" * 32).files is a.files


def test_a_manifest_as_recorded_is_known_without_rebuilding_it(monkeypatch):
    """Payload as recorded + manifest hashing to the lines from the records: no line-by-line build."""
    import verification.readback as rb

    calls = []
    real = rb._manifest_as_written
    monkeypatch.setattr(rb, "_manifest_as_written", lambda *a: calls.append(1) or real(*a))
    p = {"data/a": b"alpha", "data/b": b"beta" * 1000}
    report = _verify(p, p)
    assert report.bag_ok and calls == []
    report = _verify(p, {"data/a": b"alpha", "data/b": b"other"})       # the manifest lies
    assert "bag: data/b does not match manifest-sha256.txt" in report.problems and calls == [1]


def test_the_recorded_manifest_digest_is_that_of_the_lines_as_written():
    from verification.readback import _RecordedManifest

    paths = ["bagit.txt", "data/a", "data/100%\n.pdf"] + [f"data/f{i}" for i in range(2500)]
    wants = [None] + [hashlib.sha256(p.encode()).hexdigest() for p in paths[1:]]
    is_data = [p.startswith("data/") for p in paths]
    lines = "".join(f"{d}  {p.replace('%', '%25').replace(chr(10), '%0A')}\n"
                    for p, d in zip(paths[1:], wants[1:]))
    assert _RecordedManifest(paths, wants, is_data).hexdigest() == \
        hashlib.sha256(lines.encode()).hexdigest()
    assert _RecordedManifest(paths, wants[:2] + [None] + wants[3:], is_data).hexdigest() is None


def test_the_inventory_table_loads_while_the_image_is_read_and_keeps_the_bags_order(
        home, run, one_set_archive, monkeypatch):
    """expected_of gives the first file's byte at once and the rows on first use, in the
    recorded (manifest) order; verify starts reading before it loads them, and reports what
    a table loaded beforehand gives, the manifest known as written without a line-by-line
    rebuild."""
    import config
    import verification.readback as rb
    from config import INVENTORY_NAME
    from daemon.jobs import expected_of
    from inventory.store import Inventory
    from manifests import signing
    from verification.onepass import file_chunks

    assert run("archive", str(one_set_archive), "--copies", "1").exit_code == 0
    inv = Inventory.open(home / INVENTORY_NAME)
    (s,) = inv.db.execute("SELECT set_id, image_path FROM disc_sets").fetchall()
    rows = list(inv.db.execute("SELECT disc_path, extent_lba, size, sha256 FROM items "
                               "WHERE set_id = ? ORDER BY id", [s[0]]))
    cfg = config.load(home)
    _, pem = signing.load_keypair(cfg.key_path, cfg.public_key_path)
    lazy = expected_of(inv, s[0])
    assert isinstance(lazy.files, rb.LazyFileTable) and not lazy.files.loaded
    assert lazy.first_byte == min(lazy.files.lbas) * SECTOR > 0
    assert [p for p in lazy.files.paths if p.startswith("data/")] == [r[0] for r in rows]

    order = []
    real_reader = rb._ImageReader
    monkeypatch.setattr(rb, "_ImageReader", lambda *a, **k: order.append("reader") or
                        real_reader(*a, **k))
    real_of_rows = rb.FileTable.of_rows
    monkeypatch.setattr(rb.FileTable, "of_rows", classmethod(
        lambda cls, r: order.append("rows") or real_of_rows.__func__(cls, r)))
    calls = []
    monkeypatch.setattr(rb, "_manifest_as_written", lambda *a: calls.append(1))
    fresh = expected_of(inv, s[0])
    image = Path(s[1])
    early = verify(file_chunks(image, fresh.length), fresh, pem)
    assert order == ["reader", "rows"]
    plain = verify(file_chunks(image, fresh.length),
                   Expected.of_rows(fresh.length, fresh.sha256, list(zip(
                       fresh.files.paths, fresh.files.lbas, fresh.files.sizes,
                       fresh.files.sha256))), pem)
    assert early.passed and plain.passed and calls == []
    assert early.image_sha256 == plain.image_sha256
    assert dict(early.file_sha256) == dict(plain.file_sha256)
    inv.close()


def test_a_file_before_the_first_byte_given_is_refused_as_a_bug(tmp_path):
    """A record whose first file lies before first_byte would lose that file's bytes to the
    image hash only: the pass stops with ValueError instead of reporting it damaged."""
    import pytest

    from verification.readback import LazyFileTable

    data = bytes(range(256)) * 64                       # 16 KiB: files at sectors 2 and 4
    rows = [("data/a", 2, 100, hashlib.sha256(data[4096:4196]).hexdigest()),
            ("data/b", 4, 100, hashlib.sha256(data[8192:8292]).hexdigest())]
    wrong = Expected(len(data), None, LazyFileTable(lambda: rows), first_byte=4 * SECTOR)
    with pytest.raises(ValueError, match="before the 8192 bytes read for the image only"):
        verify([data], wrong, b"")
