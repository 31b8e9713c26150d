"""The registers people sign: the destruction register (销毁清册) and the handover list (交接清单).

Each is written twice, with the same rows: CSV (UTF-8 with a byte-order
mark, so spreadsheet programs read the Chinese) and XLSX (openpyxl, in its
write-only mode, so a year of 365,000 records streams to disk). Files are
written beside their final name and renamed into place, so a kill leaves
no half register. The register's title, the approver and the date go in the
XLSX's first rows and in the file name.
"""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font

DESTRUCTION_COLUMNS = ["序号", "类别", "档号/光盘编号", "题名", "年度", "保管期限", "到期日期",
                       "光盘", "存放位置", "鉴定意见", "批准人", "批准日期"]
"""Columns of the destruction register: one row per record or disc approved for destruction."""

HANDOVER_COLUMNS = ["序号", "件号", "档号", "版本", "责任者", "代码", "题名", "日期", "页数",
                    "密级", "保管期限", "光盘套", "套内盘次", "光盘", "备注"]
"""Columns of the handover list: the archival file catalog's (归档文件目录), the version
(版本: ``第2版`` for a changed record archived again, ``第1版`` for the first of a 档号
that has later ones, empty otherwise), the disc set (光盘套, e.g. ``160-2025-S01``),
which disc of it holds the record (套内盘次, ``2/3``: disc 2 of 3, the bag's Bag-Count)
and the current copies of that disc (光盘)."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_register(folder: Path, name: str, title: str, heading: Sequence[str],
                   columns: Sequence[str], rows: Iterable[Sequence], total: int = 0,
                   progress: Callable[[int, int], None] | None = None) -> dict[str, str]:
    """Write ``<folder>/<name>.csv`` and ``.xlsx``; return their paths and SHA-256.

    ``heading``: lines above the table in the XLSX (the CSV holds only the
    table, for machines). ``rows``: one sequence per row, in ``columns``
    order; ``progress(done, total)`` is told every 1,000 rows and at the end
    (``total``: the rows expected). Returns ``{"register_csv", "csv_sha256", "register_xlsx",
    "xlsx_sha256"}``. Raises OSError if the folder cannot be written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, xlsx_path = folder / f"{name}.csv", folder / f"{name}.xlsx"
    part_csv, part_xlsx = folder / f".{name}.csv.part", folder / f".{name}.xlsx.part"
    book = Workbook(write_only=True)
    sheet = book.create_sheet(title[:31])
    bold = Font(bold=True)
    for n, line in enumerate([title, *heading]):
        cell = WriteOnlyCell(sheet, value=line)
        if n == 0:
            cell.font = Font(bold=True, size=14)
        sheet.append([cell])
    sheet.append([])
    header = []
    for c in columns:
        cell = WriteOnlyCell(sheet, value=c)
        cell.font = bold
        header.append(cell)
    sheet.append(header)
    with open(part_csv, "w", encoding="utf-8-sig", newline="") as f:
        out = csv.writer(f)
        out.writerow(columns)
        done = 0
        for done, row in enumerate(rows, 1):
            values = ["" if v is None else v for v in row]
            out.writerow(values)
            sheet.append(values)
            if progress and done % 1000 == 0:
                progress(done, max(total, done + 1))
        f.flush()
        os.fsync(f.fileno())
    book.save(part_xlsx)
    if progress:
        progress(done, done)
    os.replace(part_csv, csv_path)
    os.replace(part_xlsx, xlsx_path)
    return {"register_csv": str(csv_path), "csv_sha256": _sha256(csv_path),
            "register_xlsx": str(xlsx_path), "xlsx_sha256": _sha256(xlsx_path)}


def destruction_rows(chosen: dict, by: str, day: str) -> list[list]:
    """Rows of the destruction register for :func:`inventory.lifecycle.select`'s choice.

    Records first (档号 order, as listed), then discs; ``day`` is the
    approval date (YYYY-MM-DD). A record's 光盘 is the disc (image) holding
    it; a disc's 题名 names its set, which disc of the set it is (Bag-Count
    k of n) and its copy label. 存放位置 and 鉴定意见 are in Chinese, for the
    clerk who signs (the listing's ``place_cn`` and ``opinion``): a place by
    柜/层/位 or 未上架, never a file path.
    """
    rows = []
    for i in chosen["items"]:
        rows.append(["档案", i["archival_code"], i["title"], i["year"], i["retention"],
                     i["retention_ends"], f"{i['set_id']} ({_volume(i)})", "",
                     i.get("opinion") or i["reason"], by, day])
    for d in chosen["discs"]:
        what = "光盘" + (f" (已由 {d['superseded_by']} 替代)" if d.get("superseded_by") else "")
        rows.append([what, d["disc_id"], f"光盘套 {d.get('group_id') or d['set_id']} "
                     f"第{d.get('volume') or 1}盘/共{d.get('volumes') or 1}盘 "
                     f"副本 {d['copy_label']}", "", "", "", d["disc_id"],
                     d.get("place_cn") or d["place"], d.get("opinion") or d["why"], by, day])
    return [[n, *r] for n, r in enumerate(rows, 1)]


def _volume(row: dict) -> str:
    """Which disc of its set a row's image is, as ``2/3`` (the bag's Bag-Count 2 of 3)."""
    return f"{row.get('volume') or 1}/{row.get('volumes') or 1}"


def handover_table(rows: Iterable[dict]) -> Iterator[list]:
    """Rows of the handover list from :func:`inventory.lifecycle.handover_rows`, as consumed."""
    for n, r in enumerate(rows, 1):
        v = r.get("version") or 1
        version = f"第{v}版" if (r.get("versions") or 1) > 1 or v > 1 else ""
        yield [n, r["item_number"], r["archival_code"], version, r["responsible"], r["unit_code"],
               r["title"], r["date"], r["pages"], r["classification"], r["retention"],
               r["group_id"], _volume(r), r["discs"], r["remarks"]]
