"""The four-property check (四性检测, DA/T 70-2018) of a disc copy or an incoming bag.

A disc copy is read back once (a fixity check, recorded as such); the
payload's hashes, the bag's manifests and the signature come from that
read, and the format checks open each file on the medium by its recorded
extent, reading only headers and trailers. The report is stored as JSON in
``HOME/reports/`` and its SHA-256 logged as a PREMIS ``validation`` event.
"""

from __future__ import annotations

import datetime as dt
import io
import os
from pathlib import Path

from config import Config
from config.home import locked
from inventory import eventlog
from inventory.store import Inventory
from manifests import signing
from manifests.bag import PUBLIC_KEY_NAME, SIGNATURE_NAME
from manifests.catalog import CATALOG_NAME
from manifests.validate import validate_bag
from verification.fourcheck import (CheckInput, FourPropertyReport, PayloadFile, check,
                                    files_in_bag, read_catalog_rows)
from verification.onepass import open_extent
from verification.readback import TAG_MANIFEST, parse_bag_info, parse_manifest

from . import jobs


def _store(cfg: Config, name: str, report: FourPropertyReport) -> Path:
    """Write the report to ``HOME/reports/<name>-<UTC time>.json`` (temp file, fsync, rename)."""
    folder = cfg.home / "reports"
    folder.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    path = folder / f"{name}-{stamp}.json"
    tmp = path.with_suffix(".part")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(report.to_json())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def _catalog(data: bytes | None) -> tuple[list[dict] | None, str | None]:
    if data is None:
        return None, f"{CATALOG_NAME} is not in the bag"
    try:
        return read_catalog_rows(io.BytesIO(data)), None
    except ValueError as exc:
        return None, str(exc)


def check_disc(cfg: Config, disc_id: str, reporter=None) -> tuple[FourPropertyReport, Path]:
    """Read one disc copy back and run the four-property check on it.

    Returns the report and the file it was stored in. Raises JobError for an
    unknown disc, DriveError when no drive can read it (nothing recorded).
    """
    ui = reporter or jobs.QuietReporter()
    with locked(cfg.home):
        key, public_pem = signing.load_keypair(cfg.key_path, cfg.public_key_path)
        inv = Inventory.open(cfg.inventory_path)
        try:
            disc, drive = jobs.disc_in_drive(cfg, inv, disc_id)
            expected = jobs.expected_of(inv, disc["set_id"])
            fixity = jobs.read_recorded(cfg, inv, disc, drive, public_pem, ui, keep_catalog=True)
            medium = disc["medium_path"] or getattr(drive, "device", None)
            files = [PayloadFile(e.path, e.size, (lambda e=e: open_extent(medium, e)),
                                 fixity.file_sha256.get(e.path), want)
                     for e, want in expected.files if e.path.startswith("data/")]
            rows, catalog_error = _catalog(fixity.tag_bytes.get(CATALOG_NAME))
            s = inv.disc_set(disc["set_id"])
            report = check(CheckInput(
                files, parse_bag_info(fixity.tag_bytes.get("bag-info.txt", b"")), rows,
                settings=cfg.check, manifest_ok=fixity.passed,
                manifest_reason="image, manifests and inventory agree with the read-back"
                if fixity.passed else fixity.summary(),
                signature_ok=fixity.signature_ok,
                signature_reason="tag manifest signed with the archive's key"
                if fixity.signature_ok else "signature does not verify",
                expected_files=s["file_count"], expected_bytes=s["payload_bytes"],
                catalog_error=catalog_error, subject=f"disc {disc_id}"))
            path = _store(cfg, disc_id, report)
            inv.add_event("validation", "success" if report.passed else "failure",
                          disc["set_id"], disc_id,
                          {"check": "four-property (DA/T 70)", "report": path.name,
                           "sha256": report.digest(), "counts": report.counts()})
            return report, path
        finally:
            try:
                eventlog.checkpoint(inv, key)
            finally:
                inv.close()


def check_bag(cfg: Config, bag: Path) -> tuple[FourPropertyReport, Path]:
    """Run the four-property check on an incoming bag folder (read only).

    The bag is validated (RFC 8493) for the manifests; a signature is
    checked when the bag carries one, against the public key it carries
    (and said whether that is the archive's own). Returns the report and
    the file it was stored in.
    """
    with locked(cfg.home):
        key = signing.load_private_key(cfg.key_path)
        validation = validate_bag(bag)
        manifest = validation.problems
        signature_ok, signature_reason = None, "the bag carries no signature"
        sig, pub, tm = bag / SIGNATURE_NAME, bag / PUBLIC_KEY_NAME, bag / TAG_MANIFEST
        if sig.is_file() and pub.is_file() and tm.is_file():
            own = pub.read_bytes() == signing.public_pem(key)
            signature_ok = signing.verify(pub.read_bytes(), tm.read_bytes(), sig.read_bytes())
            signature_reason = (f"tag manifest signature {'verifies' if signature_ok else 'fails'}"
                                f" with {'the archive' if own else 'the bag'}'s own key")
        catalog = bag / CATALOG_NAME
        rows, catalog_error = _catalog(catalog.read_bytes() if catalog.is_file() else None)
        info = bag / "bag-info.txt"
        problems: list[str] = []
        manifest_file = bag / "manifest-sha256.txt"
        listed = parse_manifest(manifest_file.read_bytes(), manifest_file.name, problems) \
            if manifest_file.is_file() else {}
        report = check(CheckInput(
            files_in_bag(bag, expected=listed) if (bag / "data").is_dir() else [],
            parse_bag_info(info.read_bytes() if info.is_file() else b""), rows,
            settings=cfg.check, manifest_ok=validation.valid,
            manifest_reason="; ".join(manifest[:3]) or "valid (RFC 8493)",
            signature_ok=signature_ok, signature_reason=signature_reason,
            catalog_error=catalog_error, payload_dir=bag / "data", subject=f"bag {bag}"))
        path = _store(cfg, "bag-" + (bag.resolve().name or "root"), report)
        inv = Inventory.open(cfg.inventory_path)
        try:
            inv.add_event("validation", "success" if report.passed else "failure", None, None,
                          {"check": "four-property (DA/T 70)", "bag": str(bag.resolve()),
                           "report": path.name, "sha256": report.digest(),
                           "counts": report.counts()})
            eventlog.checkpoint(inv, key)
        finally:
            inv.close()
        return report, path
