"""The four-property check (verification.fourcheck) on real files and on damaged ones."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import sys
import zipfile
import zlib
from pathlib import Path

import pytest

from verification import fourcheck as fc
from verification.fourcheck import FAIL, NOT_CHECKED, PASS

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "sample-archive"


# --- building inputs ------------------------------------------------------------------

@pytest.fixture(scope="module")
def sample() -> Path:
    if not SAMPLE.is_dir():
        pytest.skip("../shared/sample-archive is not present")
    return SAMPLE


def _sample_rows(sample: Path) -> list[dict[str, str]]:
    with open(sample / "归档文件目录.csv", "rb") as fh:
        return fc.read_catalog_rows(fh)


def _sample_file(sample: Path, ext: str) -> Path:
    return next(sample / r["文件"] for r in _sample_rows(sample) if r["文件"].endswith(ext))


def _file(path: str, data: bytes) -> fc.PayloadFile:
    return fc.PayloadFile.from_bytes(path, data, hashlib.sha256(data).hexdigest())


def _oxum(files) -> dict[str, str]:
    return {"Payload-Oxum": f"{sum(f.size for f in files)}.{len(files)}", "Bag-Count": "1 of 1"}


def _check(files, rows=(), **kw) -> fc.FourPropertyReport:
    kw.setdefault("bag_info", _oxum(files))
    return fc.check(fc.CheckInput(files=files, catalog_rows=None if rows is None else list(rows),
                                  **kw))


def _only(findings, subject, check=None) -> fc.Finding:
    hits = [f for f in findings if f.subject == subject and (check is None or f.check == check)]
    assert len(hits) == 1, hits
    return hits[0]


def _pdf(encrypt: bool = False) -> bytes:
    """A small one-page PDF 1.4 with a classic xref table, built here."""
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>"]
    if encrypt:
        objs.append(b"<< /Filter /Standard /V 2 /R 3 /Length 128 /P -4 "
                    b"/O <00> /U <00> >>")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for n, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (n, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    extra = b" /Encrypt 4 0 R /ID [<01><01>]" if encrypt else b""
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objs) + 1, extra, xref)
    return bytes(out)


def _png() -> bytes:
    """A 2x1 grey PNG, built here."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", 2, 1, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00\x80\x80")) + chunk(b"IEND", b""))


def _ofd(doc_root: str = "Doc_0/Document.xml", with_doc: bool = True) -> bytes:
    """A minimal OFD package (GB/T 33190): OFD.xml naming a DocRoot."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("OFD.xml", '<?xml version="1.0" encoding="UTF-8"?>'
                   '<ofd:OFD xmlns:ofd="http://www.ofdspec.org/2016" DocType="OFD" Version="1.0">'
                   f"<ofd:DocBody><ofd:DocRoot>{doc_root}</ofd:DocRoot></ofd:DocBody></ofd:OFD>")
        if with_doc:
            z.writestr("Doc_0/Document.xml",
                       '<ofd:Document xmlns:ofd="http://www.ofdspec.org/2016"/>')
    return buf.getvalue()


def _set_zip_encryption_bit(data: bytes) -> bytes:
    """Set general purpose flag bit 0 in every local and central header."""
    out = bytearray(data)
    for sig, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        i = out.find(sig)
        while i >= 0:
            out[i + at] |= 0x01
            i = out.find(sig, i + 4)
    return bytes(out)


def _rows(*specs: tuple[str, str, str]) -> list[dict[str, str]]:
    """Catalog rows from (件号, 档号, file under data/) with every other field filled."""
    return [{"件号": n, "档号": code, "责任者": "区社会保险局", "题名": "参保单位登记表",
             "日期": "20230108", "保管期限": "永久", "类别": "社保登记类", "文件": path}
            for n, code, path in specs]


def _scanner(tmp_path: Path, body: str) -> list[str]:
    script = tmp_path / "scanner.py"
    script.write_text("import sys, pathlib\n" + body, encoding="utf-8")
    return [sys.executable, str(script)]


# --- the real sample ------------------------------------------------------------------

def test_the_sample_archive_passes_every_check_that_can_run(sample):
    rows = _sample_rows(sample)
    files = [fc.PayloadFile.from_path("data/" + r["文件"], sample / r["文件"], measure=True)
             for r in rows]
    for f in files:
        f.expected_sha256 = f.sha256
    rep = _check(files, rows, manifest_ok=True, signature_ok=True,
                 expected_files=len(files), expected_bytes=sum(f.size for f in files))
    assert rep.passed, rep.summary()
    use = {f.subject: f for f in rep.usability if f.check == "format"}
    assert len(use) == 56 and all(f.status == PASS for f in use.values())
    labels = {f.reason.split(":")[0] for f in use.values()}
    assert {"OFD 1.0", "OFD 1.1", "PDF 1.7", "PDF 1.5", "TIFF", "JPEG/JFIF", "XML"} <= labels
    assert all(f.status == PASS for f in rep.integrity)
    numbering = [f.reason for f in rep.integrity if f.check == "numbering"]
    assert "class 160-SB·2023-Y-DJ: 件号 0001-0006 continuous" in numbering
    assert "class 160-SB·2024-D50-ZT: 件号 0001-0004 continuous" in numbering
    enc = [f for f in rep.security if f.check == "encryption"]
    assert len(enc) == 56 and all(f.status == PASS for f in enc)
    assert _only(rep.security, "bag", "virus-scan").reason == "no virus scanner configured"
    assert _only(rep.security, "bag", "virus-scan").status == NOT_CHECKED
    seals = [f for f in rep.authenticity if f.check == "seal"]
    assert seals and all(f.status == NOT_CHECKED and "Signatures.xml" in f.reason for f in seals)


def test_report_json_is_stable_utf8_and_its_digest_covers_it(sample):
    import datetime as dt
    pdf = _sample_file(sample, ".pdf")
    files = [fc.PayloadFile.from_path("data/a.pdf", pdf, measure=True)]
    when = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    inp = fc.CheckInput(files=files, bag_info=_oxum(files), catalog_rows=[], subject="光盘 1")
    one, two = fc.check(inp, now=when), fc.check(inp, now=when)
    one.log = two.log = [e for e in one.log if "seconds" not in e]  # timings vary run to run
    text = one.to_json()
    assert text == two.to_json() and one.digest() == two.digest()
    assert one.digest() == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert "光盘 1" in text and "\\u" not in text
    doc = json.loads(text)
    assert list(doc) == sorted(doc)
    assert doc["properties"]["integrity"]["name"] == "完整性"
    assert doc["checked_at"] == "2025-01-02T03:04:05+00:00"
    assert doc["passed"] is True


# --- authenticity ---------------------------------------------------------------------

def test_a_changed_file_fails_fixity_by_name_and_given_results_are_reported():
    good, bad = _file("data/a.png", _png()), _file("data/b.png", _png())
    bad.expected_sha256 = "0" * 64
    unmeasured = fc.PayloadFile("data/c.png", 3, lambda: io.BytesIO(b"abc"), None, "1" * 64)
    rep = _check([good, bad, unmeasured], manifest_ok=False,
                 manifest_reason="manifest-sha256.txt: data/b.png differs",
                 signature_ok=None, signature_reason="no public key for this archive")
    assert _only(rep.authenticity, "data/a.png").status == PASS
    f = _only(rep.authenticity, "data/b.png")
    assert f.status == FAIL and "recorded " + "0" * 64 in f.reason
    assert _only(rep.authenticity, "data/c.png").reason == "SHA-256 not measured on this read"
    man = _only(rep.authenticity, "bag", "manifest")
    assert (man.status, man.reason) == (FAIL, "manifest-sha256.txt: data/b.png differs")
    sig = _only(rep.authenticity, "bag", "signature")
    assert (sig.status, sig.reason) == (NOT_CHECKED, "no public key for this archive")
    assert not rep.passed


# --- integrity ------------------------------------------------------------------------

def test_payload_oxum_and_inventory_mismatches_fail_with_the_numbers():
    files = [_file("data/a.png", _png())]
    size = files[0].size
    rep = _check(files, bag_info={"Payload-Oxum": f"{size + 1}.2"},
                 expected_files=1, expected_bytes=size + 5)
    ox = _only(rep.integrity, "bag", "payload-oxum")
    assert ox.status == FAIL
    assert ox.reason == f"payload has 1 files, Payload-Oxum says 2 and {size} bytes, " \
                        f"Payload-Oxum says {size + 1}"
    inv = _only(rep.integrity, "bag", "inventory")
    assert inv.status == FAIL and f"{size} bytes, the inventory says {size + 5}" in inv.reason
    rep = _check(files, bag_info={"Payload-Oxum": "lots"})
    assert _only(rep.integrity, "bag", "payload-oxum").status == FAIL
    rep = _check(files, bag_info={})
    assert _only(rep.integrity, "bag", "payload-oxum").status == NOT_CHECKED
    assert _only(rep.integrity, "bag", "inventory").status == NOT_CHECKED


def test_gaps_duplicates_and_missing_fields_in_the_catalog_are_named():
    rows = _rows(("0001", "160-SB·2023-Y-DJ-0001", "a.png"),
                 ("0002", "160-SB·2023-Y-DJ-0002", "b.png"),
                 ("0002", "160-SB·2023-Y-DJ-0002", "c.png"),
                 ("0005", "160-SB·2023-Y-DJ-0005", "d.png"),
                 ("0001", "160-SB·2023-D100-RY-0001", "e.png"))
    rows[4]["题名"] = ""
    files = [_file(f"data/{n}.png", _png()) for n in "abcde"]
    rep = _check(files, rows)
    bad = [(f.subject, f.reason) for f in rep.integrity if f.status == FAIL]
    assert ("data/c.png", "class 160-SB·2023-Y-DJ: 件号 0002 repeated (also data/b.png)") in bad
    assert ("bag", "class 160-SB·2023-Y-DJ: 件号 0003-0004 missing") in bad
    assert ("data/e.png", "catalog line 6: 题名 not filled") in bad
    assert len(bad) == 3
    ok = [f.reason for f in rep.integrity if f.status == PASS and f.check == "numbering"]
    assert ok == ["class 160-SB·2023-D100-RY: 件号 0001 continuous"]


def test_a_single_missing_number_and_a_number_that_disagrees_with_the_code():
    rows = _rows(("0001", "160-SB·2023-Y-DJ-0001", "a.png"),
                 ("0003", "160-SB·2023-Y-DJ-0003", "b.png"),
                 ("0007", "160-SB·2023-Y-DJ-0004", "c.png"),
                 ("0001", "160-SB-2023-Y", "d.png"))
    files = [_file(f"data/{n}.png", _png()) for n in "abcd"]
    bad = {(f.subject, f.reason) for f in _check(files, rows).integrity if f.status == FAIL}
    assert ("bag", "class 160-SB·2023-Y-DJ: 件号 0002 missing") in bad
    assert ("data/c.png", "件号 0007 differs from the 档号's 0004 (160-SB·2023-Y-DJ-0004)") in bad
    assert ("data/d.png", "档号 '160-SB-2023-Y' is not "
                          "全宗号-门类代码·年度-保管期限-机构代码-件号") in bad


def test_a_bag_that_holds_part_of_a_set_leaves_continuity_to_the_set():
    rows = _rows(("0004", "160-SB·2023-Y-DJ-0004", "a.png"),
                 ("0006", "160-SB·2023-Y-DJ-0006", "b.png"),
                 ("0006", "160-SB·2023-Y-DJ-0006", "c.png"))
    files = [_file(f"data/{n}.png", _png()) for n in "abc"]
    rep = _check(files, rows, bag_info={**_oxum(files), "Bag-Count": "2 of 3"})
    dup = _only(rep.integrity, "data/c.png", "numbering")
    assert dup.status == FAIL and "0006 repeated" in dup.reason
    part = _only(rep.integrity, "bag", "numbering")
    assert part.status == NOT_CHECKED
    assert part.reason.startswith("class 160-SB·2023-Y-DJ: 件号 0004-0006 here with 1 gap(s); "
                                  "bag 2 of 3 holds part of its set")


def test_rows_without_an_archival_code_are_classed_by_year_retention_and_category():
    rows = _rows(("0001", "", "a.png"), ("0003", "", "b.png"))
    files = [_file(f"data/{n}.png", _png()) for n in "ab"]
    rep = _check(files, rows, settings=fc.CheckSettings(required_fields=("件号", "题名")))
    gap = [f for f in rep.integrity if f.status == FAIL]
    assert [(f.subject, f.reason) for f in gap] == [("bag", "class 2023 永久 社保登记类: 件号 0002 missing")]


def test_a_row_for_a_file_not_in_the_payload_fails():
    rows = _rows(("0001", "160-SB·2023-Y-DJ-0001", "gone.pdf"))
    rep = _check([_file("data/a.png", _png())], rows)
    f = _only(rep.integrity, "data/gone.pdf", "metadata")
    assert (f.status, f.reason) == (
        FAIL, "catalog line 2 describes a file that is not in the payload")


# --- usability ------------------------------------------------------------------------

def test_broken_and_mislabelled_files_fail_with_the_reason(sample):
    pdf = _sample_file(sample, ".pdf").read_bytes()
    jpg = _sample_file(sample, ".jpg").read_bytes()
    bad_crc = bytearray(_png())
    bad_crc[29] ^= 0xFF  # last byte of the IHDR CRC
    files = [
        _file("data/truncated.pdf", pdf[:len(pdf) // 2]),
        _file("data/no-eoi.jpg", jpg[:-2]),
        _file("data/bad-crc.png", bytes(bad_crc)),
        _file("data/really-png.pdf", _png()),
        _file("data/mystery.pdf", bytes(range(256)) * 4),
        _file("data/ok.png", _png()),
        _file("data/ok.pdf", _pdf()),
    ]
    use = {f.subject: f for f in _check(files).usability if f.check == "format"}
    assert use["data/truncated.pdf"].status == FAIL
    assert use["data/truncated.pdf"].reason == (
        "no %%EOF in the last 1024 bytes (truncated?); no startxref near the end (truncated?)")
    assert use["data/no-eoi.jpg"].reason == "does not end with EOI (truncated?)"
    assert use["data/bad-crc.png"].reason == "IHDR CRC does not match (damaged)"
    assert use["data/really-png.pdf"].reason == "content is PNG but the name ends in .pdf"
    assert use["data/mystery.pdf"].reason == (
        "content matches no known format (starts 00 01 02 03 04 05 06 07): "
        "not a format on the list")
    assert use["data/ok.png"].status == PASS and use["data/ok.png"].reason.startswith("PNG: 2x1")
    assert use["data/ok.pdf"].status == PASS and use["data/ok.pdf"].reason.startswith("PDF 1.4")
    assert all(use[p].status == FAIL for p in use if "/ok." not in p)


def test_real_formats_open_and_a_format_off_the_allow_list_fails(sample):
    files = [fc.PayloadFile.from_path(f"data/x{ext}", _sample_file(sample, ext))
             for ext in (".ofd", ".pdf", ".tif", ".jpg", ".xml")]
    settings = fc.CheckSettings(formats=("ofd", "pdf", "xml"))
    use = {f.subject: f for f in _check(files, settings=settings).usability if f.check == "format"}
    assert use["data/x.ofd"].status == PASS
    assert "DocRoot Doc_0/Document.xml" in use["data/x.ofd"].reason
    assert use["data/x.xml"].status == PASS and "well-formed" in use["data/x.xml"].reason
    assert use["data/x.tif"].reason == "TIFF 6.0 is not on the allowed list (ofd, pdf, xml)"
    assert use["data/x.jpg"].reason == "JPEG/JFIF is not on the allowed list (ofd, pdf, xml)"


def test_ofd_xml_csv_and_tiff_structure_faults():
    good_csv = "件号,题名\r\n0001,\"登记表, 附件\"\r\n".encode("utf-8")
    files = [
        _file("data/no-docroot.ofd", _ofd(with_doc=False)),
        _file("data/plain.zip.ofd", _zip_without_ofd()),
        _file("data/broken.xml", b"<?xml version='1.0'?><a><b></a>"),
        _file("data/ragged.csv", "件号,题名\n0001,a\n0002\n".encode("utf-8")),
        _file("data/gbk.csv", "件号,题名\n".encode("gbk")),
        _file("data/gbk-late.csv", "件号,题名\n".encode() + b"0001,a\n" * 1000 + "登记".encode("gbk")),
        _file("data/ok.csv", good_csv),
        _file("data/bad-ifd.tif", b"II*\x00" + struct.pack("<I", 9999) + b"\x00" * 8),
        _file("data/ok.ofd", _ofd()),
    ]
    use = {f.subject: f for f in _check(files).usability if f.check == "format"}
    assert use["data/no-docroot.ofd"].reason == (
        "OFD.xml names DocRoot Doc_0/Document.xml, which is not in the package")
    assert use["data/plain.zip.ofd"].reason == (
        "ZIP package without OFD.xml at its root (not OFD): not a format on the list")
    assert use["data/broken.xml"].reason.startswith("does not parse as XML: mismatched tag")
    assert use["data/ragged.csv"].reason == "record 3 has 1 fields, the header 2"
    assert use["data/gbk.csv"].reason == (
        "content matches no known format (starts bc fe ba c5 2c cc e2 c3): "
        "not a format on the list")
    assert use["data/gbk-late.csv"].reason == "not UTF-8 at byte 7014"
    assert (use["data/ok.csv"].status, use["data/ok.csv"].reason) == (
        PASS, "CSV: 2 records of 2 fields")
    assert use["data/bad-ifd.tif"].reason == "first IFD offset 9999 is outside the file (16 bytes)"
    assert use["data/ok.ofd"].status == PASS


def _zip_without_ofd() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("readme.txt", "hello")
    return buf.getvalue()


def test_an_unreadable_catalog_fails_usability_and_skips_metadata():
    files = [_file("data/a.png", _png())]
    rep = _check(files, rows=None, catalog_error="not UTF-8 (invalid start byte)")
    u = _only(rep.usability, "bag", "metadata")
    assert (u.status, u.reason) == (
        FAIL, "the catalog does not parse: not UTF-8 (invalid start byte)")
    i = _only(rep.integrity, "bag", "metadata")
    assert i.status == NOT_CHECKED


def test_read_catalog_rows_reports_why_it_cannot_parse():
    assert fc.read_catalog_rows(io.BytesIO("\ufeff件号,题名\n0001,表\n".encode())) == [
        {"件号": "0001", "题名": "表"}]
    with pytest.raises(ValueError, match="line 2 has more fields"):
        fc.read_catalog_rows(io.BytesIO("件号,题名\n0001,表,多\n".encode()))
    with pytest.raises(ValueError, match="not UTF-8"):
        fc.read_catalog_rows(io.BytesIO("件号,题名\n0001,表\n".encode("gbk")))


# --- security -------------------------------------------------------------------------

def test_encrypted_pdf_and_zip_fail_security():
    files = [_file("data/locked.pdf", _pdf(encrypt=True)),
             _file("data/locked.ofd", _set_zip_encryption_bit(_ofd())),
             _file("data/open.pdf", _pdf()),
             _file("data/open.ofd", _ofd()),
             _file("data/mystery.bin", b"\x00\x01\x02")]
    rep = _check(files)
    enc = {f.subject: f for f in rep.security if f.check == "encryption"}
    assert enc["data/locked.pdf"].status == FAIL
    assert enc["data/locked.pdf"].reason == (
        "the trailer has an /Encrypt entry (password or certificate protected)")
    assert enc["data/locked.ofd"].status == FAIL
    assert enc["data/locked.ofd"].reason == (
        "2 ZIP entries are encrypted (general purpose flag bit 0), first OFD.xml")
    assert (enc["data/open.pdf"].status, enc["data/open.pdf"].reason) == (
        PASS, "no /Encrypt entry in the trailer")
    assert (enc["data/open.ofd"].status, enc["data/open.ofd"].reason) == (
        PASS, "none of 2 ZIP entries encrypted")
    assert enc["data/mystery.bin"].status == NOT_CHECKED
    assert _only(rep.usability, "data/locked.ofd").reason == "encrypted entries cannot be opened"
    assert not rep.passed


def test_an_ofd_with_gmt0099_encryption_fails():
    buf = io.BytesIO(_ofd())
    with zipfile.ZipFile(buf, "a") as z:
        z.writestr("Encryptions.xml", "<Encryptions/>")
    rep = _check([_file("data/a.ofd", buf.getvalue())])
    f = _only(rep.security, "data/a.ofd", "encryption")
    assert (f.status, f.reason) == (
        FAIL, "the package has Encryptions.xml (OFD encryption, GM/T 0099-2020)")


def test_the_virus_scanner_runs_per_file_and_its_verdicts_are_recorded(tmp_path):
    argv = _scanner(tmp_path, (
        "p = pathlib.Path(sys.argv[1])\n"
        "if b'EICAR-FAKE' in p.read_bytes():\n"
        "    print(f'{p}: Fake.Test.Signature FOUND'); sys.exit(1)\n"
        "print(f'{p}: OK')\n"))
    on_disk = tmp_path / "clean.png"
    on_disk.write_bytes(_png())
    files = [fc.PayloadFile.from_path("data/clean.png", on_disk, measure=True),
             _file("data/bad.csv", b"a,b\r\nEICAR-FAKE,1\r\n")]
    rep = _check(files, settings=fc.CheckSettings(virus_scan=(*argv, "{path}")))
    clean = _only(rep.security, "data/clean.png", "virus-scan")
    assert (clean.status, clean.reason) == (PASS, f"{Path(sys.executable).name}: clean")
    bad = _only(rep.security, "data/bad.csv", "virus-scan")
    assert bad.status == FAIL
    assert bad.reason.startswith(f"{Path(sys.executable).name} reports an infection: ")
    assert bad.reason.endswith("bad.csv: Fake.Test.Signature FOUND")
    runs = [e for e in rep.log if e["step"] == "virus-scan"]
    assert [e["exit"] for e in runs] == [1, 0]  # sorted by bag path: bad.csv first
    assert runs[1]["argv"] == [*argv, str(on_disk)]  # a host file is scanned where it is
    assert "FOUND" in runs[0]["output"]
    assert not rep.passed
    assert '"argv"' in rep.to_json()


def test_a_scanner_error_timeout_or_absence_is_not_checked(tmp_path):
    files = [_file("data/a.png", _png()), _file("data/b.png", _png())]
    erring = _scanner(tmp_path, "print('ERROR: cannot load virus database', file=sys.stderr)\n"
                                "sys.exit(2)\n")
    rep = _check(files, settings=fc.CheckSettings(virus_scan=(*erring, "{path}")))
    f = _only(rep.security, "data/a.png", "virus-scan")
    assert f.status == NOT_CHECKED
    assert f.reason == (f"{Path(sys.executable).name} failed (exit 2): "
                        "ERROR: cannot load virus database")
    assert rep.passed  # not checked is not a failure, but it is in the report

    slow = _scanner(tmp_path, "import time; time.sleep(5)\n")
    rep = _check(files[:1], settings=fc.CheckSettings(virus_scan=(*slow, "{path}"),
                                                      virus_scan_timeout=0.3))
    f = _only(rep.security, "data/a.png", "virus-scan")
    assert (f.status, f.reason) == (
        NOT_CHECKED, "scanner did not finish within 0.3 s and was stopped")

    missing = str(tmp_path / "no-such-clamscan")
    rep = _check(files, settings=fc.CheckSettings(virus_scan=(missing, "{path}")))
    scans = [f for f in rep.security if f.check == "virus-scan"]
    assert [f.status for f in scans] == [NOT_CHECKED, NOT_CHECKED]
    assert scans[1].reason == f"scanner program {missing} not found: install it or fix virus_scan"
    assert len([e for e in rep.log if e["step"] == "virus-scan"]) == 1


def test_a_folder_scanner_runs_once_on_the_payload_folder(tmp_path):
    payload = tmp_path / "bag" / "data"
    payload.mkdir(parents=True)
    (payload / "a.png").write_bytes(_png())
    argv = _scanner(tmp_path, "assert pathlib.Path(sys.argv[1]).is_dir(); print('clean')\n")
    files = fc.files_in_bag(tmp_path / "bag")
    assert [f.path for f in files] == ["data/a.png"] and files[0].sha256
    rep = _check(files, settings=fc.CheckSettings(virus_scan=(*argv, "{dir}")),
                 payload_dir=payload)
    f = _only(rep.security, "bag", "virus-scan")
    assert f.status == PASS
    rep = _check(files, settings=fc.CheckSettings(virus_scan=(*argv, "{dir}")))
    assert _only(rep.security, "bag", "virus-scan").status == NOT_CHECKED


def test_settings_refuse_unknown_formats_and_commands_without_a_placeholder():
    with pytest.raises(ValueError, match="unknown format"):
        fc.CheckSettings(formats=("pdf", "docx"))
    with pytest.raises(ValueError, match=r"\{path\}"):
        fc.CheckSettings(virus_scan=("clamscan", "--no-summary"))
    with pytest.raises(ValueError, match="more than 0"):
        fc.CheckSettings(virus_scan_timeout=0)


def test_an_unreadable_file_fails_usability_and_is_not_checked_for_encryption():
    def broken():
        raise PermissionError(13, "Permission denied")
    f = fc.PayloadFile("data/a.pdf", 10, broken, None, None)
    rep = _check([f])
    u = _only(rep.usability, "data/a.pdf")
    assert (u.status, u.reason) == (FAIL, "cannot read it: Permission denied")
    assert _only(rep.security, "data/a.pdf", "encryption").status == NOT_CHECKED
