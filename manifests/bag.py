"""Write a BagIt 1.0 bag's tag files beside a read-only payload (RFC 8493).

bagit-python's ``make_bag`` turns a folder into a bag *in place*, moving its
files under ``data/``; the source tree must never be touched, so this module
writes only the tag files, into a scratch folder, and returns the bag as a
list of (path in the bag, file on the host) entries. The mastering stage
puts those entries straight into the image: the payload is read once from
the source, never copied.

The bag on a disc::

    bagit.txt                    BagIt-Version 1.0, UTF-8
    bag-info.txt                 Source-Organization, Bagging-Date, Payload-Oxum,
                                 External-Identifier, Bag-Group-Identifier,
                                 Bag-Count ("k of n"), Fonds-Identifier,
                                 Record-Years, Retention-Period,
                                 Collection-Or-Payment (收/支),
                                 Bag-Software-Agent
    manifest-sha256.txt          every payload file's SHA-256
    归档文件目录.csv              the catalog of this disc's records (a tag file)
    说明文件.txt                  the description file: what is here, how to check it
    signing-key.pub              the Ed25519 public key (PEM)
    tagmanifest-sha256.txt       SHA-256 of the tag files above
    tagmanifest-sha256.txt.sig   Ed25519 signature of the tag manifest (base64)
    data/...                     the payload, with the source's relative paths
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import signing
from .catalog import CATALOG_COLUMNS, CATALOG_NAME, Item

SIGNATURE_NAME = "tagmanifest-sha256.txt.sig"
PUBLIC_KEY_NAME = "signing-key.pub"
DESCRIPTION_NAME = "说明文件.txt"
RETENTION_ORDER = ["10年", "30年", "50年", "100年", "永久"]
_NO_HASH = "0" * 64


def encode_manifest_path(path: str) -> str:
    """Percent-encode CR, LF and % in a manifest path (RFC 8493 section 2.1.3).

    ``data/100%\n.pdf`` becomes ``data/100%25%0A.pdf``; every other
    character is written as it is. :func:`decode_manifest_path` undoes it.
    """
    return path.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


_ENCODED = re.compile(r"%(25|0[AaDd])")
_DECODED = {"25": "%", "0A": "\n", "0D": "\r"}


def decode_manifest_path(path: str) -> str:
    """Undo :func:`encode_manifest_path`: %25, %0A and %0D (hex digits of either case)
    become ``%``, LF and CR, in one left-to-right pass (RFC 8493 section 2.1.3).

    Any other ``%`` is left as it is; a validator reports it (manifests.validate).
    """
    return _ENCODED.sub(lambda m: _DECODED[m[1].upper()], path)


def longest_retention(items: list[Item]) -> str | None:
    """The longest retention period (保管期限) among ``items``; a disc keeps the longest."""
    ranked = [RETENTION_ORDER.index(i.retention) for i in items if i.retention in RETENTION_ORDER]
    return RETENTION_ORDER[max(ranked)] if ranked else None


def payload_oxum(items: list[Item]) -> str:
    """Payload-Oxum: ``<octets>.<file count>`` of the payload."""
    return f"{sum(i.size for i in items)}.{len(items)}"


class BagEntries(Sequence):
    """The (path in the bag, host file) pairs of a bag: its tag files, then its payload.

    The payload's pairs are made from the items each time they are read,
    not kept: 100,000 ``Path`` objects would hold about 0.6 KB a file for
    as long as the bag is mastered. Reads as a list of ``(str, Path)``.
    """

    __slots__ = ("_tags", "_source", "_items")

    def __init__(self, tags: list[tuple[str, Path]], source: Path, items: list[Item]):
        self._tags, self._source, self._items = tags, source, items

    def __len__(self) -> int:
        return len(self._tags) + len(self._items)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("bag entry index out of range")
        if index < len(self._tags):
            return self._tags[index]
        item = self._items[index - len(self._tags)]
        return "data/" + item.path, self._source / item.path

    def __iter__(self) -> Iterator[tuple[str, Path]]:
        yield from self._tags
        source = self._source
        for item in self._items:
            yield "data/" + item.path, source / item.path


@dataclass
class Bag:
    """A bag ready to be mastered.

    ``entries`` maps each path in the bag (POSIX, relative to the bag root)
    to the host file holding its bytes: tag files from ``tag_dir``, payload
    files from the read-only source (a :class:`BagEntries`, read as a list).
    ``info`` is the bag-info.txt fields.
    """

    entries: Sequence[tuple[str, Path]]
    info: dict[str, str]
    tag_dir: Path


CATALOG_HEADER = CATALOG_COLUMNS + ["光盘路径", "字节", "SHA256"]
"""The columns of a disc's catalog: the source catalog's, then the place on the disc."""


def catalog_row(i: Item) -> list:
    """One record's row of the disc's catalog (归档文件目录.csv), in CATALOG_HEADER order."""
    return [i.item_number or "", i.archival_code or "", i.responsible or "",
            i.unit_code or "", i.title or "", i.date or "", i.pages or "",
            i.classification or "", i.retention or "", i.category or "", i.flow or "",
            i.remarks or "", i.path, "data/" + i.path, i.size, i.sha256 or _NO_HASH]


def manifest_line(i: Item) -> str:
    """One payload file's line of manifest-sha256.txt (RFC 8493 section 2.1.3)."""
    return f"{i.sha256 or _NO_HASH}  {encode_manifest_path('data/' + i.path)}\n"


_LINES = 4096
"""Manifest lines or catalog rows rendered at a time (each piece of a tag file a few 100 KB)."""


def _manifest_parts(items: list[Item]) -> Iterator[bytes]:
    """manifest-sha256.txt in pieces of up to _LINES lines (UTF-8)."""
    for n in range(0, len(items), _LINES):
        yield "".join(manifest_line(i) for i in items[n:n + _LINES]).encode("utf-8")


def _catalog_parts(items: list[Item]) -> Iterator[bytes]:
    """The disc's catalog (归档文件目录.csv) in pieces of up to _LINES rows (UTF-8)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CATALOG_HEADER)
    rows = 0
    for i in items:
        if i.is_record:
            w.writerow(catalog_row(i))
            rows += 1
            if rows % _LINES == 0:
                yield out.getvalue().encode("utf-8")
                out.seek(0)
                out.truncate()
    yield out.getvalue().encode("utf-8")


def csv_bytes(row: list) -> int:
    """The UTF-8 length of ``row`` written as one CSV line (as the disc's catalog writes it)."""
    fields = [str(v) for v in row]
    text = "\x1f".join(fields)
    if len(row) > 1 and "," not in text and '"' not in text and "\n" not in text \
            and "\r" not in text:
        return len(text.encode("utf-8")) + 1      # QUOTE_MINIMAL quotes nothing here
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(row)
    return len(out.getvalue().encode("utf-8"))


@dataclass
class DiscInfo:
    """Where a bag stands in its disc set: the set (group) ID, this disc's ID, k of n."""

    group_id: str
    disc_id: str
    volume: int = 1
    volumes: int = 1


def item_range(items: list[Item]) -> tuple[str, str]:
    """The first and last archival code (档号) of the records in ``items``, in their order."""
    codes = [i.archival_code for i in items if i.is_record and i.archival_code]
    return (codes[0], codes[-1]) if codes else ("-", "-")


def _description(info: dict[str, str], items: list[Item]) -> bytes:
    records = [i for i in items if i.is_record]
    first, last = item_range(items)
    k, _, n = info["Bag-Count"].partition(" of ")
    text = f"""说明文件 (disc description)

光盘组 Disc set:        {info['Bag-Group-Identifier']}
本盘 This disc:         {info['External-Identifier']}, 第 {k} 盘 共 {n} 盘 (disc {info['Bag-Count']})
全宗号 Fonds:           {info.get('Fonds-Identifier', '')}
年度 Years:             {info.get('Record-Years', '')}
收支 Side:              {info.get('Collection-Or-Payment', '')}
保管期限 Retention:     {info.get('Retention-Period', '')}
件数 Records:           {len(records)}
起止档号 Items:         {first} to {last}
文件 Files:             {len(items)} ({info['Payload-Oxum'].split('.')[0]} bytes)
制作单位 Made by:        {info['Source-Organization']}, {info['Bagging-Date']}

This disc is a BagIt 1.0 bag (RFC 8493) and holds everything needed to read
and check it: the other discs of the set are not needed. The records are under
data/ with their original paths; 归档文件目录.csv lists this disc's records with
their archival codes, sizes and SHA-256. The set's discs are numbered k of n
in bag-info.txt (Bag-Count) and share its Bag-Group-Identifier.

To check it with standard tools, at the disc's root:
  sha256sum -c manifest-sha256.txt          every record's SHA-256
  sha256sum -c tagmanifest-sha256.txt       the tag files
  base64 -d {SIGNATURE_NAME} > /tmp/sig
  openssl pkeyutl -verify -pubin -inkey {PUBLIC_KEY_NAME} -rawin \\
      -in tagmanifest-sha256.txt -sigfile /tmp/sig
{_encoded_names_note(items)}"""
    return text.encode("utf-8")


ENCODED_NAMES_SHOWN = 20
"""File names with %, CR or LF that the description file lists one a line; the rest are counted."""


def _encoded_names_note(items: list[Item]) -> str:
    """The description's paragraph on names the manifest percent-encodes (RFC 8493
    section 2.1.3), which ``sha256sum -c`` takes literally; empty when there are none.

    Names are shown as the manifest writes them, so each stays on one line.
    """
    odd = [i.path for i in items if any(c in i.path for c in "%\r\n")]
    if not odd:
        return ""
    lines = odd[:ENCODED_NAMES_SHOWN]
    shown = "".join(f"  {encode_manifest_path('data/' + p)}\n" for p in lines)
    more = f"  and {len(odd) - len(lines)} more\n" if len(odd) > len(lines) else ""
    breaks = sum(1 for p in odd if "\r" in p or "\n" in p)
    text = f"""
{len(odd)} file name(s) on this disc hold "%", a carriage return (CR) or a line
feed (LF). manifest-sha256.txt writes them percent-encoded, as BagIt requires
(RFC 8493 section 2.1.3: % as %25, CR as %0D, LF as %0A), and sha256sum reads
the names literally, so `sha256sum -c` reports these files as missing although
they are here. As the manifest writes them:
{shown}{more}"""
    if breaks < len(odd):
        text += """Names with "%" and no CR or LF are checked with the % decoded:
  sed 's/%25/%/g' manifest-sha256.txt | sha256sum -c
"""
    if breaks:
        text += f"""The {breaks} name(s) with CR or LF are checked with a BagIt 1.0 validator
(`discarchive validate-bag .` or `discarchive verify`), or one by one: run
sha256sum on the file and compare with its manifest line.
"""
    return text


def bag_info(items: list[Item], disc: DiscInfo, source_organization: str, fonds: str,
             bagging_date: dt.date | None = None, side: str = "") -> dict[str, str]:
    """The bag-info.txt fields of the bag for ``items`` (RFC 8493 section 2.2.2)."""
    records = [i for i in items if i.is_record]
    years = sorted({i.year for i in records if i.year})
    info = {
        "Source-Organization": source_organization,
        "Bagging-Date": (bagging_date or dt.date.today()).isoformat(),
        "Payload-Oxum": payload_oxum(items),
        "External-Identifier": disc.disc_id,
        "Bag-Group-Identifier": disc.group_id,
        "Bag-Count": f"{disc.volume} of {disc.volumes}",
        "Fonds-Identifier": fonds,
        "Record-Years": (years[0] if len(years) == 1 else f"{years[0]}-{years[-1]}") if years else "",
        "Retention-Period": longest_retention(records) or "",
    }
    if side:
        info["Collection-Or-Payment"] = side
    info["Bag-Software-Agent"] = "discarchive"
    return info


BAGIT_TXT = b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"


def tag_file_parts(items: list[Item], info: dict[str, str],
                   key: Ed25519PrivateKey) -> Iterator[tuple[str, Iterator[bytes]]]:
    """The bag's tag files, in the order they go onto the disc, each as (name, its pieces).

    The same bytes as :func:`tag_files`, rendered a few hundred KB at a
    time, so a bag of 100,000 files never holds its 60 MB of manifest and
    catalog at once. Consume each file's pieces before asking for the next
    file: the tag manifest (RFC 8493 section 2.2.1) holds the SHA-256 of
    the files before it, measured as their pieces go by, and is signed
    (Ed25519) as it is made. Raises RuntimeError if a file was skipped.
    """
    sums: list[tuple[str, str]] = []

    def hashed(name: str, parts) -> Iterator[bytes]:
        h = hashlib.sha256()
        for part in parts:
            h.update(part)
            yield part
        sums.append((name, h.hexdigest()))

    files = (("bagit.txt", [BAGIT_TXT]),
             ("bag-info.txt", ["".join(f"{k}: {v}\n" for k, v in info.items()).encode("utf-8")]),
             ("manifest-sha256.txt", _manifest_parts(items)),
             (CATALOG_NAME, _catalog_parts(items)),
             (DESCRIPTION_NAME, [_description(info, items)]),
             (PUBLIC_KEY_NAME, [signing.public_pem(key)]))
    for name, parts in files:
        yield name, hashed(name, parts)
    if len(sums) != len(files):
        raise RuntimeError("a tag file's pieces were not all taken before the tag manifest")
    tagmanifest = "".join(f"{sha}  {encode_manifest_path(name)}\n"
                          for name, sha in sums).encode("utf-8")
    yield "tagmanifest-sha256.txt", iter([tagmanifest])
    yield SIGNATURE_NAME, iter([signing.sign(key, tagmanifest)])


def tag_files(items: list[Item], info: dict[str, str], key: Ed25519PrivateKey) -> dict[str, bytes]:
    """The bag's tag files as {name: bytes}, in the order they go onto the disc.

    ``items`` carry their SHA-256 (an empty one, when planning or before
    the payload is hashed, is written as 64 zeros: the same length). See
    :func:`tag_file_parts` for the same files piece by piece.
    """
    return {name: b"".join(parts) for name, parts in tag_file_parts(items, info, key)}


def tag_sizes(items: list[Item], info: dict[str, str], manifest_bytes: int,
              catalog_bytes: int) -> dict[str, int]:
    """The sizes in bytes of :func:`tag_files`, without rendering the manifest and catalog.

    ``manifest_bytes`` and ``catalog_bytes`` are the sums of the items'
    :func:`manifest_line` and :func:`catalog_row` lengths (``csv_bytes``),
    kept by the caller. The signature (base64 of 64 bytes and a newline)
    and the public key (PEM of an Ed25519 key) have fixed sizes.
    """
    sizes = {
        "bagit.txt": len(BAGIT_TXT),
        "bag-info.txt": len("".join(f"{k}: {v}\n" for k, v in info.items()).encode("utf-8")),
        "manifest-sha256.txt": manifest_bytes,
        CATALOG_NAME: csv_bytes(CATALOG_HEADER) + catalog_bytes,
        DESCRIPTION_NAME: len(_description(info, items)),
        PUBLIC_KEY_NAME: 113,
    }
    sizes["tagmanifest-sha256.txt"] = sum(64 + 2 + len(encode_manifest_path(n).encode("utf-8")) + 1
                                          for n in sizes)
    sizes[SIGNATURE_NAME] = 89
    return sizes


def write_tag_files(tag_dir: Path, source: Path, items: list[Item], disc: DiscInfo | str,
                    source_organization: str, fonds: str,
                    key: Ed25519PrivateKey, bagging_date: dt.date | None = None,
                    side: str = "", placeholders: bool = False) -> Bag:
    """Write the tag files of the bag for ``items`` into ``tag_dir``.

    ``disc`` places the bag in its set (Bag-Group-Identifier, Bag-Count
    "k of n"); a plain ID means a set of this one disc. ``items`` carry
    their SHA-256, or none yet: an empty one is written as 64 zeros, as
    long as a hash, so every tag file already has its final size. The
    manifest records exactly the values given. ``placeholders`` writes each
    tag file as zeros (a sparse file) of that exact size instead of its
    bytes: for an image laid out before its payload is hashed, whose tag
    files are then rendered with :func:`tag_file_parts` and the same
    ``Bag.info`` (daemon.jobs.pack). Raises OSError if ``tag_dir`` cannot
    be written.
    """
    if isinstance(disc, str):
        disc = DiscInfo(disc, disc)
    tag_dir.mkdir(parents=True, exist_ok=True)
    info = bag_info(items, disc, source_organization, fonds, bagging_date, side)
    tags: list[tuple[str, Path]] = []
    for name, parts in tag_file_parts(items, info, key):
        with open(tag_dir / name, "wb") as f:
            if placeholders:
                f.truncate(sum(len(part) for part in parts))
            else:
                for part in parts:
                    f.write(part)
        tags.append((name, tag_dir / name))
    return Bag(entries=BagEntries(tags, source, items), info=info, tag_dir=tag_dir)
