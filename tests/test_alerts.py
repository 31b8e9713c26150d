"""Alerts: raised once per disc and threshold, sent in a daily digest by e-mail and webhook."""

from __future__ import annotations

import datetime as dt
import email
import io
import ipaddress
import json
import socket
import ssl
import threading
from email import policy
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import config
from daemon import alerts
from daemon import lifecycle as lifecycle_jobs
from daemon.log import EventLog, mask_text
from daemon.service import Daemon
from inventory import lifecycle as lc
from inventory.store import Inventory
from conftest import flip_byte
from tests.test_daemon import Clock, append_config, drive

SHANGHAI = ZoneInfo("Asia/Shanghai")
QUIET = """
[daemon]
timezone = "Asia/Shanghai"
intake = "0 0 1 1 *"
deadline = "0 0 1 1 *"
inspection = "0 0 1 1 *"
due_check = "0 6 * * *"
digest = "0 8 * * *"
"""


@pytest.fixture
def burned(home, run, one_set_archive):
    """A home holding one archived set of one disc, in two verified copies."""
    assert run("archive", str(one_set_archive)).exit_code == 0
    return home


def daemon_for(home, extra: str = "", now=None):
    append_config(home, QUIET + extra)
    cfg = config.load(home)
    out = io.StringIO()
    clock = Clock(now or dt.datetime(2026, 1, 1, tzinfo=SHANGHAI))
    return Daemon(cfg, log=EventLog(out, journal=False), clock=clock), clock, out


def set_due(home, due: dt.date) -> list[str]:
    inv = Inventory.open(home / "inventory.db")
    ids = [r["disc_id"] for r in inv.discs()]
    for disc_id in ids:
        inv.update_disc(disc_id, due_at=due.isoformat())
    inv.close()
    return ids


def alert_rows(home, kind=None) -> list[dict]:
    inv = Inventory.open(home / "inventory.db")
    try:
        return [r for r in alerts.list_alerts(inv, everything=True)
                if kind is None or r["kind"] == kind]
    finally:
        inv.close()


def test_reburn_alerts_come_at_each_lead_time_and_on_the_day_once_each(burned):
    due = dt.date(2030, 6, 30)
    ids = set_due(burned, due)
    start = dt.datetime.combine(due - dt.timedelta(days=100), dt.time(12), SHANGHAI)
    d, clock, log = daemon_for(burned, now=start)
    ran = drive(d, clock, start, start + dt.timedelta(days=103), dt.timedelta(days=1))
    assert len([j for _, j in ran if j == "due_check"]) == 103
    rows = alert_rows(burned, "reburn-due")
    got = sorted((r["subject"], r["threshold"], r["raised_at"][:10]) for r in rows)
    expect = sorted((disc_id, t, str(due - dt.timedelta(days=n)))
                    for disc_id in ids for t, n in (("90d", 90), ("30d", 30), ("7d", 7),
                                                    ("due", 0)))
    # the daily 12:00 ticks (04:00 UTC, the same date) run the 06:00 due check
    assert got == expect
    assert log.getvalue().count("kind=reburn-due") == 8
    assert all(r["due_at"] == str(due) and r["location"] for r in rows)
    # each names the copy and which disc of which set it holds, as the inventory has them
    inv = Inventory.open(burned / "inventory.db")
    for r in rows:
        disc = inv.disc(r["subject"])
        assert r["message"].startswith(f"copy {r['subject']} (disc {disc['volume']} of "
                                       f"{disc['volumes']} of set {disc['group_id']}) ")
    inv.close()


def test_a_daemon_down_across_lead_times_raises_only_the_nearest(burned):
    due = dt.date(2030, 6, 30)
    set_due(burned, due)
    d, _, _ = daemon_for(burned)
    d.tick(dt.datetime.combine(due - dt.timedelta(days=95), dt.time(12), SHANGHAI))
    d.tick(dt.datetime.combine(due - dt.timedelta(days=5), dt.time(12), SHANGHAI))
    assert {r["threshold"] for r in alert_rows(burned, "reburn-due")} == {"7d"}


def test_failed_damaged_missing_space_and_drive_alerts(burned, tmp_path):
    inv = Inventory.open(burned / "inventory.db")
    a, b = sorted(r["disc_id"] for r in inv.discs())
    inv.update_disc(a, state="failed", failure_class="verification", failure="1 file damaged")
    inv.update_disc(b, state="damaged", failure="data/x.pdf unreadable")
    inv.close()
    d, _, log = daemon_for(burned, f"""

[alerts]
images_free_media = 1e9

[[drives]]
name = "usb-burner"
adapter = "xorriso"
media_dir = "{tmp_path / 'unplugged'}"
""")
    now = dt.datetime.now(SHANGHAI)
    inv = Inventory.open(burned / "inventory.db")
    assert alerts.check(d.cfg, inv, now, d.log) == 4
    assert alerts.check(d.cfg, inv, now, d.log) == 0            # once, not every day
    inv.close()
    kinds = {(r["kind"], r["subject"], r["threshold"]) for r in alert_rows(burned)}
    assert kinds == {("copy-failed", a, "verification"), ("damaged", b, "damaged"),
                     ("space-low", "images", "low"), ("drive-missing", "usb-burner", "missing")}
    # the drive comes back and space is freed: those alerts clear, and come back with the cause
    (tmp_path / "unplugged").mkdir()
    d.cfg.alerts.images_free_media = 0
    inv = Inventory.open(burned / "inventory.db")
    alerts.check(d.cfg, inv, now, d.log)
    states = {r["kind"]: r["state"] for r in alert_rows(burned)}
    assert states["drive-missing"] == "cleared" and states["space-low"] == "cleared"
    (tmp_path / "unplugged").rmdir()
    assert alerts.check(d.cfg, inv, now, d.log) == 1
    inv.close()


def test_an_inspection_that_finds_no_medium_raises_missing(burned):
    d, _, log = daemon_for(burned, "\n[lifecycle]\ninspect_percent = 100\n")
    inv = Inventory.open(burned / "inventory.db")
    disc = inv.discs()[0]
    inv.close()
    kept = Path(disc["medium_path"]).read_bytes()
    Path(disc["medium_path"]).unlink()
    now = dt.datetime.now(SHANGHAI)
    inv = Inventory.open(burned / "inventory.db")
    d.job_inspection(inv, d.cfg, now)
    (row,) = alert_rows(burned, "missing")
    assert row["subject"] == disc["disc_id"] and "is missing" in row["message"]
    assert "event=inspection.no_read" in log.getvalue()
    alerts.check(d.cfg, inv, now, d.log)
    assert alert_rows(burned, "missing")[0]["state"] == "open"       # still missing
    # found again: the next inspection reads it, and the due check clears the alert
    Path(disc["medium_path"]).write_bytes(kept)
    later = now + dt.timedelta(hours=1)
    assert d.job_inspection(inv, d.cfg, later)["checked"] == 1
    alerts.check(d.cfg, inv, later, d.log)
    inv.close()
    assert alert_rows(burned, "missing")[0]["state"] == "cleared"


def test_an_overdue_inspection_follows_the_lifecycle_rule_and_clears_at_the_inspection(burned):
    d, _, log = daemon_for(burned)
    inv = Inventory.open(burned / "inventory.db")
    ids = sorted(r["disc_id"] for r in inv.discs())
    for disc_id in ids:
        inv.update_disc(disc_id, burned_at="2026-03-01T02:00:00Z")
    # once per 4-year re-burn cycle: the lifecycle asks for both discs in 2030 ...
    must = lc.due(inv, dt.date(2030, 6, 1), d.cfg.lifecycle, d.cfg.reburn_years)["inspect"]
    assert sorted(r["disc_id"] for r in must) == ids
    assert all("once per re-burn cycle" in r["why"] for r in must)
    # ... so they are not overdue during 2030, and are from 1 January 2031 on
    alerts.check(d.cfg, inv, dt.datetime(2030, 12, 31, 12, tzinfo=SHANGHAI), d.log)
    assert alert_rows(burned, "inspection-overdue") == []
    alerts.check(d.cfg, inv, dt.datetime(2031, 1, 1, 12, tzinfo=SHANGHAI), d.log)
    rows = alert_rows(burned, "inspection-overdue")
    assert sorted(r["subject"] for r in rows if r["state"] == "open") == ids
    assert all("not been inspected since 2026-03-01" in r["message"]
               and f"discarchive inspect {r['subject']}" in r["message"] for r in rows)
    # an inspection (not a mere re-read) clears its disc's alert
    later = dt.datetime(2031, 1, 2, 12, tzinfo=SHANGHAI)
    assert lifecycle_jobs.inspect(d.cfg, ids[0], now=later).report.passed
    alerts.check(d.cfg, inv, later, d.log)
    inv.close()
    states = {r["subject"]: r["state"] for r in alert_rows(burned, "inspection-overdue")}
    assert states == {ids[0]: "cleared", ids[1]: "open"}


def test_an_early_reburn_flag_is_alerted_with_its_reason_and_is_on_the_due_list(
        burned, run):
    d, _, log = daemon_for(burned, "\n[lifecycle]\ninspect_percent = 100\n")
    inv = Inventory.open(burned / "inventory.db")
    disc = inv.discs()[0]
    (lba,) = inv.db.execute("SELECT max(extent_lba) FROM items WHERE set_id = ? AND size > 0",
                            [disc["set_id"]]).fetchone()
    inv.close()
    # both drives read the medium file: the same damaged sector fails twice
    flip_byte(disc["medium_path"], lba * 2048 + 3)
    now = dt.datetime.now(SHANGHAI)
    inv = Inventory.open(burned / "inventory.db")
    result = d.job_inspection(inv, d.cfg, now)
    assert result["checked"] == 2 and result["flagged"] == 1
    (row,) = alert_rows(burned, "reburn-early")
    reason = inv.disc(disc["disc_id"])["reburn_reason"]
    assert reason.startswith("failed verification")
    assert row["subject"] == disc["disc_id"] and row["threshold"] == "flagged"
    # the reason as recorded, with the names in its paths masked (no personal data sent)
    assert mask_text(reason) in row["message"] and "示例" not in row["message"]
    assert f"discarchive reburn {disc['disc_id']}" in row["message"]
    assert "event=alert.raised kind=reburn-early" in log.getvalue()
    (inspection,) = [r for r in lc.inspections(inv, disc["disc_id"])]
    assert inspection["flag"] == reason and not inspection["passed"]
    # the due check raises it no second time, and says damaged as `discarchive due` does
    alerts.check(d.cfg, inv, now, d.log)
    inv.close()
    assert len(alert_rows(burned, "reburn-early")) == 1
    listed = {r["disc_id"]: r for r in json.loads(run("due", "--json").stdout)["reburn"]}
    damaged = {r["subject"] for r in alert_rows(burned, "damaged")}
    assert set(listed) == {disc["disc_id"]} == damaged
    assert listed[disc["disc_id"]]["why"] == f"early re-burn: {reason}"
    # its re-burn supersedes it (and clears the flag): its alerts end
    inv = Inventory.open(burned / "inventory.db")
    inv.update_disc(disc["disc_id"], state="superseded", reburn_reason=None)
    alerts.check(d.cfg, inv, now, d.log)
    inv.close()
    assert {(r["kind"], r["state"]) for r in alert_rows(burned)} == {
        ("reburn-early", "cleared"), ("damaged", "cleared")}


# -- channels ----------------------------------------------------------------

def self_signed(tmp_path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "discarchive test SMTP")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "smtp.crt", tmp_path / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server(tmp_path):
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that requires STARTTLS; yields (port, cert, inbox)."""
    from aiosmtpd.controller import Controller

    cert, key = self_signed(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    inbox: list[dict] = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            inbox.append({"from": envelope.mail_from, "to": envelope.rcpt_tos,
                          "tls": session.ssl is not None,
                          "message": email.message_from_bytes(envelope.content,
                                                              policy=policy.default)})
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=ctx,
                            require_starttls=True)
    controller.start()
    yield port, cert, inbox
    controller.stop()


@pytest.fixture
def webhook_server():
    """A local HTTP server recording each POST's JSON body; yields (url, calls)."""
    calls: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            calls.append({"type": self.headers["Content-Type"], "json": json.loads(body)})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/discarchive", calls
    server.shutdown()
    server.server_close()


def test_the_digest_arrives_by_email_and_webhook_with_disc_location_and_due_date(
        burned, smtp_server, webhook_server):
    port, cert, inbox = smtp_server
    url, calls = webhook_server
    due = dt.date(2030, 6, 30)
    a, b = sorted(set_due(burned, due))
    start = dt.datetime.combine(due - dt.timedelta(days=30), dt.time(5), SHANGHAI)
    d, clock, log = daemon_for(burned, f"""
[alerts]
email_to = ["archives@bureau.example"]
email_from = "discarchive@bureau.example"
smtp_host = "127.0.0.1"
smtp_port = {port}
smtp_cafile = "{cert}"
webhook_url = "{url}"
""", now=start)
    inv = Inventory.open(burned / "inventory.db")
    lc.shelve(inv, a, "防磁柜1", 2, 14)            # A is put away before the alerts
    inv.close()
    drive(d, clock, start, start + dt.timedelta(hours=1), dt.timedelta(hours=1))
    assert {r["subject"] for r in alert_rows(burned, "reburn-due")} == {a, b}   # raised 06:00
    inv = Inventory.open(burned / "inventory.db")
    lc.shelve(inv, b, "防磁柜1", 2, 15)            # B after them, before the 08:00 digest
    discs = {r["disc_id"]: r for r in inv.discs()}
    inv.close()
    drive(d, clock, start + dt.timedelta(hours=2), start + dt.timedelta(days=1, hours=4),
          dt.timedelta(hours=1))
    # the 30-day alerts were raised at 06:00 and sent in the 08:00 digest, once
    assert len(inbox) == 1 and len(calls) == 1
    mail = inbox[0]
    assert mail["tls"] and mail["to"] == ["archives@bureau.example"]
    body = mail["message"].get_content()
    places = {a: "cabinet 防磁柜1, shelf 2, slot 14", b: "cabinet 防磁柜1, shelf 2, slot 15"}
    image = discs[a]["set_id"]
    inv = Inventory.open(burned / "inventory.db")
    group = inv.disc_set(image)["group_id"]
    inv.close()
    assert discs[b]["set_id"] == image and image == f"{group}-01"    # two copies of one disc
    for disc_id, where in places.items():
        assert lc.place(discs[disc_id]) == where
        assert f"copy: {disc_id} (disc 1 of 1 of set {group})  location: {where}  " \
               f"due: {due}" in body
    sent = calls[0]["json"]
    assert calls[0]["type"].startswith("application/json")
    assert sorted(x["disc_id"] for x in sent["alerts"]) == [a, b]
    for x in sent["alerts"]:
        assert x["due_at"] == str(due) and x["threshold"] == "30d"
        assert x["location"] == places[x["disc_id"]]
        assert (x["disc"], x["set"], x["volume"]) == (image, group, "1 of 1")
    assert all(r["notified_at"] for r in alert_rows(burned))
    assert "event=digest.sent alerts=2 email=sent webhook=sent" in log.getvalue()


def test_an_unshelved_disc_is_placed_by_its_medium_file_and_drive(burned):
    d, _, _ = daemon_for(burned)
    set_due(burned, dt.date(2030, 6, 30))
    inv = Inventory.open(burned / "inventory.db")
    alerts.check(d.cfg, inv, dt.datetime(2030, 6, 1, 8, tzinfo=SHANGHAI), d.log)
    discs = {r["disc_id"]: r for r in inv.discs()}
    rows = alerts._digest_rows(inv, alert_rows(burned, "reburn-due"))
    inv.close()
    for x in rows:
        disc = discs[x["disc_id"]]
        assert x["location"] == (f"not shelved; medium file {disc['medium_path']}, "
                                 f"drive {disc['drive']}")


def test_a_channel_that_fails_keeps_the_alerts_for_the_next_digest(burned, webhook_server):
    url, calls = webhook_server
    set_due(burned, dt.date(2030, 6, 30))
    dead = f"http://127.0.0.1:{free_port()}/nobody"
    d, _, log = daemon_for(burned, f'\n[alerts]\nwebhook_url = "{dead}"\nwebhook_timeout = 2\n')
    now = dt.datetime(2030, 6, 1, 8, tzinfo=SHANGHAI)
    inv = Inventory.open(burned / "inventory.db")
    alerts.check(d.cfg, inv, now, d.log)
    assert alerts.send_digest(d.cfg, inv, now, d.log) == {"alerts": 2, "email": "off",
                                                          "webhook": "failed"}
    assert "event=digest.failed" in log.getvalue()
    assert not any(r["notified_at"] for r in alert_rows(burned))
    d.cfg.alerts.webhook_url = url
    assert alerts.send_digest(d.cfg, inv, now, d.log)["webhook"] == "sent"
    assert alerts.send_digest(d.cfg, inv, now, d.log) == {"alerts": 0, "email": "off",
                                                          "webhook": "off"}
    inv.close()
    assert len(calls) == 1 and len(calls[0]["json"]["alerts"]) == 2


def test_email_refuses_a_server_whose_certificate_it_cannot_trust(burned, smtp_server):
    port, _, inbox = smtp_server
    set_due(burned, dt.date(2030, 6, 30))
    d, _, log = daemon_for(burned, f'\n[alerts]\nemail_to = ["a@b.example"]\n'
                           f'smtp_host = "127.0.0.1"\nsmtp_port = {port}\n')
    now = dt.datetime(2030, 6, 1, 8, tzinfo=SHANGHAI)
    inv = Inventory.open(burned / "inventory.db")
    alerts.check(d.cfg, inv, now, d.log)
    assert alerts.send_digest(d.cfg, inv, now, d.log)["email"] == "failed"
    inv.close()
    assert inbox == [] and "CERTIFICATE_VERIFY_FAILED" in log.getvalue()


def test_alerts_command_lists_and_acknowledges(burned, run):
    set_due(burned, dt.date.today() + dt.timedelta(days=20))
    cfg = config.load(burned)
    inv = Inventory.open(cfg.inventory_path)
    alerts.check(cfg, inv, dt.datetime.now(dt.timezone.utc))
    inv.close()
    r = run("alerts", "--json")
    assert r.exit_code == 0
    rows = json.loads(r.stdout)
    assert {(x["kind"], x["threshold"], x["state"]) for x in rows} == {("reburn-due", "30d", "open")}
    text = run("alerts").stdout
    assert all(x["subject"] in text for x in rows) and "30d" in text
    r = run("alerts", "--ack", str(rows[0]["id"]))
    assert r.exit_code == 0 and f"alert {rows[0]['id']} acknowledged" in r.stdout
    states = {x["id"]: x["state"] for x in json.loads(run("alerts", "--json").stdout)}
    assert states[rows[0]["id"]] == "acked" and states[rows[1]["id"]] == "open"
    r = run("alerts", "--ack", "999")
    assert r.exit_code == 2 and r.stderr.strip() == \
        "discarchive: error: no alert 999: see `discarchive alerts` for the IDs"


def test_prometheus_textfile_is_written_whole(burned, tmp_path):
    prom = tmp_path / "textfile" / "discarchive.prom"
    d, _, _ = daemon_for(burned, f'\n[alerts]\ntextfile = "{prom}"\n')
    set_due(burned, dt.date(2030, 6, 30))
    inv = Inventory.open(burned / "inventory.db")
    alerts.check(d.cfg, inv, dt.datetime(2030, 6, 25, tzinfo=SHANGHAI), d.log)
    inv.close()
    lines = prom.read_text().splitlines()
    assert 'discarchive_alerts_open{kind="reburn-due"} 2' in lines
    assert 'discarchive_discs{state="verified"} 2' in lines
    due_ts = dt.datetime(2030, 6, 30, tzinfo=dt.timezone.utc).timestamp()
    assert f"discarchive_next_reburn_due_timestamp_seconds {due_ts:g}" in lines
    assert any(line.startswith("discarchive_images_free_bytes ") for line in lines)
    assert [p.name for p in prom.parent.iterdir()] == ["discarchive.prom"]   # no temp file left
    for line in lines:        # every sample line is NAME{labels} VALUE
        assert line.startswith("#") or float(line.rsplit(" ", 1)[1]) >= 0
