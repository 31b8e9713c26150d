"""Generate discarchive's demo archive: a small social-insurance business archive.

    python demo/make_archive.py OUT_DIR

Lays out ``YEAR/UNITCODE_UNITNAME/NN_CATEGORY/NNNN_TITLE.ext`` with the
archival file catalog ``归档文件目录.csv`` (DA/T 22-2015 archival codes,
件号 from 0001 within each year + retention + category class), in the
formats such an archive holds: PDF (ISO 32000), OFD (GB/T 33190, a ZIP
package of XML), TIFF (baseline, uncompressed), PNG and XML. The files are
real, small and deterministic: the same bytes on every run. Units, codes and
people are fictitious.
"""

from __future__ import annotations

import csv
import struct
import sys
import zipfile
import zlib
from pathlib import Path

FONDS = "160"
UNITS = [("91500103MA5U7K8L9M", "示例五金制品有限公司"), ("91500103MA5UAB1C2D", "示例餐饮管理有限公司")]
# category, short code, retention, retention code, collection/payment, items (title, format)
CATEGORIES = [
    ("社保登记类", "DJ", "永久", "Y", "", [("参保单位登记表", "ofd"), ("营业执照副本扫描件", "tif")]),
    ("参保人员类", "RY", "100年", "D100", "", [("职工参保登记表", "pdf"), ("增员花名册", "xml")]),
    ("申报结算类", "JS", "30年", "D30", "收", [("年度缴费基数申报表", "pdf"), ("社会保险费征缴凭证", "png")]),
    ("保险关系转停类", "ZT", "50年", "D50", "", [
        ("关于职工基本养老保险关系跨统筹地区转移接续的申请报告及所附职工名册、历年缴费明细与身份证明材料", "pdf")]),
    ("待遇类", "DY", "50年", "D50", "支", [("待遇支付审批表", "ofd")]),
]
YEARS = ["2024", "2025"]


def pdf(title: str, serial: str) -> bytes:
    """A one-page PDF 1.4 with a text line and the title in its metadata (UTF-16)."""
    text = f"discarchive demo record {serial}".encode("ascii")
    stream = b"BT /F1 14 Tf 72 720 Td (" + text + b") Tj ET"
    title16 = ("\ufeff" + title).encode("utf-16-be").hex().upper().encode()
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Title <" + title16 + b"> /Producer (discarchive demo) >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for n, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += (f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R /Info 6 0 R >>\n"
            f"startxref\n{xref}\n%%EOF\n").encode()
    return bytes(out)


def ofd(title: str, serial: str) -> bytes:
    """A minimal OFD package (GB/T 33190-2016): OFD.xml, a document and one page."""
    ns = 'xmlns:ofd="http://www.ofdspec.org/2016"'
    files = {
        "OFD.xml": f'<?xml version="1.0" encoding="UTF-8"?>\n<ofd:OFD {ns} Version="1.0" DocType="OFD">'
                   f"<ofd:DocBody><ofd:DocInfo><ofd:DocID>{serial}</ofd:DocID>"
                   f"<ofd:Title>{title}</ofd:Title><ofd:Creator>discarchive demo</ofd:Creator>"
                   f"</ofd:DocInfo><ofd:DocRoot>Doc_0/Document.xml</ofd:DocRoot></ofd:DocBody></ofd:OFD>",
        "Doc_0/Document.xml": f'<?xml version="1.0" encoding="UTF-8"?>\n<ofd:Document {ns}>'
                              "<ofd:CommonData><ofd:MaxUnitID>3</ofd:MaxUnitID><ofd:PageArea>"
                              "<ofd:PhysicalBox>0 0 210 297</ofd:PhysicalBox></ofd:PageArea>"
                              '</ofd:CommonData><ofd:Pages><ofd:Page ID="1" BaseLoc="Pages/Page_0/Content.xml"/>'
                              "</ofd:Pages></ofd:Document>",
        "Doc_0/Pages/Page_0/Content.xml": f'<?xml version="1.0" encoding="UTF-8"?>\n<ofd:Page {ns}>'
                                          '<ofd:Content><ofd:Layer ID="2"><ofd:TextObject ID="3" '
                                          'Boundary="20 20 170 10" Font="1" Size="5">'
                                          f'<ofd:TextCode X="0" Y="5">{title}</ofd:TextCode>'
                                          "</ofd:TextObject></ofd:Layer></ofd:Content></ofd:Page>",
    }
    import io
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in files.items():
            info = zipfile.ZipInfo(name, date_time=(2025, 1, 1, 0, 0, 0))
            z.writestr(info, text.encode("utf-8"))
    return buf.getvalue()


def tiff(seed: int, width: int = 64, height: int = 48) -> bytes:
    """A baseline grayscale TIFF (TIFF 6.0), uncompressed, with a deterministic pattern."""
    pixels = bytes(((x * 4 + y * 3 + seed) % 256) for y in range(height) for x in range(width))
    entries = [(256, 3, 1, width), (257, 3, 1, height), (258, 3, 1, 8), (259, 3, 1, 1),
               (262, 3, 1, 1), (273, 4, 1, 8), (277, 3, 1, 1), (278, 3, 1, height),
               (279, 4, 1, len(pixels))]
    ifd_offset = 8 + len(pixels)
    out = b"II*\x00" + struct.pack("<I", ifd_offset) + pixels
    out += struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        packed = struct.pack("<HI", value, 0)[:4] if typ == 3 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, typ, count) + packed
    return out + struct.pack("<I", 0)


def png(seed: int, width: int = 48, height: int = 32) -> bytes:
    """A grayscale PNG (ISO/IEC 15948) with a deterministic pattern."""
    raw = b"".join(b"\x00" + bytes(((x * 5 + y * 7 + seed) % 256) for x in range(width))
                   for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def xml(title: str, unit: str, year: str) -> bytes:
    rows = "".join(f'  <人员 序号="{n}"><姓名>示例人员{n:02d}</姓名><变动>增员</变动></人员>\n'
                   for n in range(1, 6))
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<花名册 单位="{unit}" 年度="{year}" '
            f'题名="{title}">\n{rows}</花名册>\n').encode("utf-8")


def make(out: Path) -> int:
    """Write the demo archive into ``out`` (which must not exist); returns the record count."""
    out.mkdir(parents=True)
    catalog = []
    for year in YEARS:
        numbers: dict[str, int] = {}
        for u, (code, name) in enumerate(UNITS):
            for c, (cat, short, ret, ret_code, flow, docs) in enumerate(CATEGORIES, 1):
                folder = out / year / f"{code}_{name}" / f"{c:02d}_{cat}"
                folder.mkdir(parents=True)
                for k, (title, fmt) in enumerate(docs):
                    n = numbers[cat] = numbers.get(cat, 0) + 1
                    number = f"{n:04d}"
                    serial = f"{year}-{code}-{short}-{number}"
                    seed = int(year) + u * 17 + c * 5 + k
                    data = {"pdf": lambda: pdf(title, serial), "ofd": lambda: ofd(title, serial),
                            "tif": lambda: tiff(seed), "png": lambda: png(seed),
                            "xml": lambda: xml(title, name, year)}[fmt]()
                    rel = f"{year}/{code}_{name}/{c:02d}_{cat}/{number}_{title}.{fmt}"
                    (out / rel).write_bytes(data)
                    catalog.append({
                        "件号": number, "档号": f"{FONDS}-SB·{year}-{ret_code}-{short}-{number}",
                        "责任者": name, "代码": code, "题名": title,
                        "日期": f"{year}{(k * 3 + c) % 12 + 1:02d}{(u * 7 + k + 3) % 28 + 1:02d}",
                        "页数": "1", "密级": "", "保管期限": ret, "类别": cat, "收支": flow,
                        "备注": "", "文件": rel})
    with open(out / "归档文件目录.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(catalog[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(catalog)
    return len(catalog)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python demo/make_archive.py OUT_DIR")
    target = Path(sys.argv[1])
    if target.exists():
        sys.exit(f"{target} exists already: give a new folder")
    print(f"demo archive: {make(target)} records in {target}")
