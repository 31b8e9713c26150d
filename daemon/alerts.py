"""Alerts: what needs a person, kept once per subject and threshold, sent as a daily digest.

Kinds (``kind`` / ``threshold``; the subject is a copy's ID, ``discs.disc_id``
such as ``160-2025-S01-02-A``, unless said; the message names the copy and
which disc of which set it holds, ``disc 2 of 3 of set 160-2025-S01``):

``reburn-due`` / ``90d``, ``30d``, ``7d`` (the ``[alerts] lead_days``), ``due``
    the disc's re-burn due date (``discs.due_at``) is that near, or here:
    ``due`` is raised for the discs ``discarchive due`` lists for re-burning
    because their date has come (:func:`inventory.lifecycle.due`, on and
    after the day). Only the nearest threshold crossed is raised: a daemon
    that was down from 95 to 5 days before raises ``7d`` alone.
``reburn-early`` / ``flagged``
    an inspection flagged the disc for an early re-burn; the message gives
    the reason (:func:`inventory.lifecycle.judge`). Raised by the daemon's
    inspection at once, and by the due check for a disc flagged otherwise
    (``discarchive inspect``); cleared when the disc is re-burned.
``copy-failed`` / ``burn`` or ``verification``
    a copy failed to burn, or its first read-back failed.
``damaged`` / ``damaged``
    a verified copy failed a later read-back (twice, see daemon.jobs); it is
    on ``discarchive due``'s re-burn list.
``missing`` / ``missing``
    an inspection found no medium where the inventory says the disc is
    (a file-backed medium whose file is gone).
``insert-disc`` / ``inspection``
    an inspection needs the disc in a drive (a real drive held no medium).
    Both clear once the disc is read back after the alert.
``inspection-overdue`` / ``overdue``
    a verified copy missed the inspection the lifecycle asked for in an
    earlier year (every disc once per re-burn cycle; its last inspection,
    else its burn, counts: :func:`inventory.lifecycle.inspection_overdue`).
``space-low`` / ``low`` (subject ``images``)
    the images folder's file system has room for fewer than
    ``images_free_media`` images of the configured medium (psutil).
``drive-missing`` / ``missing`` (subject the drive's name)
    a configured drive's device (or media folder) is not there.
``batch-failed``, ``drive-error``, ``job-failed`` / ``failed``
    the daemon's own work stopped: a batch that cannot be archived, a
    drive error while packing, a job that raised.

The ``alerts`` table holds one row per (kind, subject, threshold). A row is
raised once; ``discarchive alerts --ack ID`` acknowledges it. A condition
that goes away (space freed, drive back, disc read back, disc superseded by
its re-burn) clears its row, and the row is raised again if the condition
returns; a disc whose due date changed (burned again) starts its lead times
afresh. A disc's place is said in :func:`inventory.lifecycle.place`'s
words, and the digest gives the place the disc has when it is sent.

Channels: every raised alert is a log line at once; :func:`send_digest`
sends the alerts not yet sent, in one e-mail (SMTP, STARTTLS) and one
webhook call (JSON POST), and marks them sent when every configured channel
took them; :func:`write_textfile` writes the Prometheus textfile for
node_exporter's textfile collector (atomically).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import smtplib
import ssl
import tempfile
import urllib.error
import urllib.request
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import psutil

from config import Config, media_sectors
from inventory import lifecycle as lc
from inventory.store import Inventory

from .log import mask_path, mask_text
from .schedule import iso, parse_iso

DISC_KINDS = ("reburn-due", "reburn-early", "copy-failed", "damaged", "missing", "insert-disc",
              "inspection-overdue")
SUPERSEDED_CLEARS = ("reburn-due", "reburn-early", "damaged", "missing", "insert-disc",
                     "inspection-overdue")
"""Alerts about a disc that end when a re-burn supersedes it (its new copy has its own)."""


class AlertError(Exception):
    """An alert cannot be acknowledged (unknown ID); the message says what to do."""


def raise_alert(inv: Inventory, kind: str, subject: str, threshold: str, now: dt.datetime,
                message: str, due_at: str | None = None, where: str | None = None,
                log=None) -> bool:
    """Raise one alert unless it is already raised; True if it was raised now (committed).

    A cleared row, or a disc alert whose ``due_at`` differs from the one
    recorded, is raised again (and sent again).
    """
    message = mask_text(message)
    with inv.transaction():
        row = inv.db.execute("SELECT id, state, due_at FROM alerts WHERE kind = ? AND "
                             "subject = ? AND threshold = ?",
                             [kind, subject, threshold]).fetchone()
        fields = {"kind": kind, "subject": subject, "threshold": threshold, "state": "open",
                  "raised_at": iso(now), "due_at": due_at, "location": where,
                  "message": message, "notified_at": None, "acked_at": None,
                  "acked_by": None, "cleared_at": None}
        if row is None:
            inv.db["alerts"].insert(fields)
        elif row[1] == "cleared" or (due_at and row[2] != due_at):
            inv.db["alerts"].update(row[0], fields)
        else:
            return False
    if log:
        log("alert.raised", "warning", kind=kind, subject=mask_path(subject),
            threshold=threshold, due_at=due_at, location=where,
            message=message)
    return True


def clear_alerts(inv: Inventory, kind: str, subject: str, now: dt.datetime, log=None) -> int:
    """Clear the open or acknowledged alerts of ``kind`` about ``subject``; how many."""
    if not inv.db.execute("SELECT 1 FROM alerts WHERE kind = ? AND subject = ? AND "
                          "state != 'cleared' LIMIT 1", [kind, subject]).fetchone():
        return 0                 # nothing to clear: no write transaction
    with inv.transaction():
        n = inv.db.execute("UPDATE alerts SET state = 'cleared', cleared_at = ? WHERE kind = ? "
                           "AND subject = ? AND state != 'cleared'",
                           [iso(now), kind, subject]).rowcount
    if n and log:
        log("alert.cleared", kind=kind, subject=mask_path(subject))
    return n


def _lead(days: int, leads: list[int]) -> str | None:
    """The nearest lead time (``30d``...) that ``days`` before a due date has crossed."""
    crossed = [d for d in leads if days <= d]
    return f"{min(crossed)}d" if crossed else None


def flag_alert(inv: Inventory, disc: dict[str, Any], now: dt.datetime, log=None) -> bool:
    """Raise ``reburn-early`` for a disc row an inspection flagged (``reburn_reason``).

    The message gives the reason and the inspection's date; True if raised
    now. A flag cleared and set again (a later flag) is raised again.
    """
    disc_id, reason = disc["disc_id"], disc["reburn_reason"]
    when = (disc.get("flagged_at") or "")[:10] or "-"
    return raise_alert(inv, "reburn-early", disc_id, "flagged", now,
                       f"{copy_text(disc)} was flagged for an early re-burn at its inspection of "
                       f"{when}: {reason}; re-burn it (`discarchive reburn {disc_id}`)",
                       disc.get("due_at"), lc.place(disc), log)


def copy_text(disc: dict[str, Any]) -> str:
    """How an alert names a copy: ``copy 160-2025-S01-02-A (disc 2 of 3 of set 160-2025-S01)``.

    ``disc`` is a ``discs`` row with its set's fields (``inv.disc``, or
    :func:`inventory.lifecycle.with_sets`); one without them is its own set.
    """
    return f"copy {disc['disc_id']} ({lc.volume_text(disc)})" if disc.get("set_id") \
        else f"copy {disc['disc_id']}"


def check(cfg: Config, inv: Inventory, now: dt.datetime, log=None) -> int:
    """Raise (and clear) every alert the inventory, the disk and the drives call for.

    Days count in the daemon's time zone. The re-burn alerts on and after
    the day, early re-burn flags and damaged discs are those of
    ``discarchive due`` for that day (:func:`inventory.lifecycle.due`);
    overdue inspections follow the lifecycle's rule
    (:func:`inventory.lifecycle.inspection_overdue`). Also rewrites the
    Prometheus textfile when one is configured. Returns how many alerts
    were raised.
    """
    zone = cfg.daemon.zone()
    today = now.astimezone(zone).date()
    leads = cfg.alerts.lead_days
    reburn = {r["disc_id"]: r for r in
              lc.due(inv, today, cfg.lifecycle, cfg.reburn_years)["reburn"]}
    raised = 0
    for d in lc.with_sets(inv, inv.discs()):
        disc_id, state, where = d["disc_id"], d["state"], lc.place(d)
        copy = copy_text(d)
        if d["due_at"] and state in lc.CURRENT_STATES:
            due = dt.date.fromisoformat(d["due_at"][:10])
            t = _lead((due - today).days, leads) if due > today else None
            if t:
                raised += raise_alert(inv, "reburn-due", disc_id, t, now,
                                      f"{copy} is due for re-burning on {due}, in "
                                      f"{(due - today).days} days", d["due_at"], where, log)
        listed = reburn.get(disc_id)
        if listed and listed["due_at"] and listed["due_at"][:10] <= today.isoformat():
            due = listed["due_at"][:10]
            what = (f"is due for re-burning today ({due})" if due == today.isoformat()
                    else f"was due for re-burning on {due}")
            raised += raise_alert(inv, "reburn-due", disc_id, "due", now,
                                  f"{copy} {what}: re-burn it (`discarchive reburn "
                                  f"{disc_id}`)", d["due_at"], where, log)
        if listed and listed["reburn_reason"]:
            raised += flag_alert(inv, d, now, log)
        if state == "failed":
            t = "verification" if d["failure_class"] == "verification" else "burn"
            raised += raise_alert(inv, "copy-failed", disc_id, t, now,
                                  f"{copy}: {t} failed ({d['failure'] or '-'}); burn it "
                                  f"again with `discarchive burn {d['set_id']}`",
                                  d["due_at"], where, log)
        if listed and state == "damaged":
            raised += raise_alert(inv, "damaged", disc_id, "damaged", now,
                                  f"{copy} failed its read-back ({d['failure'] or '-'}):"
                                  f" re-burn it from a good copy (`discarchive reburn "
                                  f"{disc_id}`)", d["due_at"], where, log)
        if state == "verified":
            if lc.inspection_overdue(d, today, cfg.reburn_years):
                raised += raise_alert(
                    inv, "inspection-overdue", disc_id, "overdue", now,
                    f"{copy} has not been inspected since "
                    f"{lc.last_checked(d)[:10]}, though every disc is inspected once per "
                    f"{cfg.reburn_years}-year re-burn cycle: inspect it (`discarchive inspect "
                    f"{disc_id}`)", d["due_at"], where, log)
            else:
                clear_alerts(inv, "inspection-overdue", disc_id, now, log)
    _clear_settled(inv, now, log)
    raised += _check_space(cfg, inv, now, log)
    raised += _check_drives(cfg, inv, now, log)
    write_textfile(cfg, inv, now)
    return raised


def _clear_settled(inv: Inventory, now: dt.datetime, log) -> int:
    """Clear the disc alerts whose cause has gone: a disc read back after a ``missing``
    or ``insert-disc`` alert, a superseded disc's re-burn, damage and inspection alerts,
    a damaged disc that reads well again, and an early re-burn flag no longer set. One
    transaction; returns how many."""
    kinds = ", ".join(f"'{k}'" for k in SUPERSEDED_CLEARS)
    sql = (f"FROM alerts a WHERE a.state != 'cleared' AND EXISTS (SELECT 1 FROM discs d "
           f"WHERE d.disc_id = a.subject AND ("
           f"(a.kind IN ('missing', 'insert-disc') AND (ifnull(d.inspected_at, '') > a.raised_at "
           f"OR ifnull(d.verified_at, '') > a.raised_at)) "
           f"OR (a.kind IN ({kinds}) AND d.state = 'superseded') "
           f"OR (a.kind = 'damaged' AND d.state = 'verified') "
           f"OR (a.kind = 'reburn-early' AND d.reburn_reason IS NULL)))")
    gone = inv.db.execute(f"SELECT a.kind, a.subject {sql}").fetchall()
    if not gone:
        return 0                 # nothing to clear: no write transaction
    with inv.transaction():
        inv.db.execute(f"UPDATE alerts SET state = 'cleared', cleared_at = ? WHERE id IN "
                       f"(SELECT a.id {sql})", [iso(now)])
    if log:
        for kind, subject in gone:
            log("alert.cleared", kind=kind, subject=mask_path(subject))
    return len(gone)


def _check_space(cfg: Config, inv: Inventory, now: dt.datetime, log) -> int:
    need = int(cfg.alerts.images_free_media * media_sectors(cfg.media) * 2048)
    folder = cfg.images_dir if cfg.images_dir.is_dir() else cfg.home
    free = psutil.disk_usage(str(folder)).free
    if need and free < need:
        return raise_alert(inv, "space-low", "images", "low", now,
                           f"the images folder {folder} has {free // 2**20} MiB free, less than "
                           f"{cfg.alerts.images_free_media:g} {cfg.media} images "
                           f"({need // 2**20} MiB): free space or move the images",
                           where=str(folder), log=log)
    clear_alerts(inv, "space-low", "images", now, log)
    return 0


def _check_drives(cfg: Config, inv: Inventory, now: dt.datetime, log) -> int:
    raised = 0
    for spec in cfg.drives:
        name = spec.get("name", "?")
        where = spec.get("device") or spec.get("media_dir")
        local = isinstance(where, str) and (where.startswith("/dev/") or spec.get("media_dir"))
        if local and not os.path.exists(where):
            raised += raise_alert(inv, "drive-missing", name, "missing", now,
                                  f"drive {name}: {where} is not there: connect the drive, or "
                                  "fix its [[drives]] table in discarchive.toml",
                                  where=where, log=log)
        else:
            clear_alerts(inv, "drive-missing", name, now, log)
    return raised


def disc_unreadable(cfg: Config, inv: Inventory, disc_id: str, exc: Exception,
                    now: dt.datetime, log=None) -> bool:
    """Alert for a disc an inspection could not read: ``missing`` when its medium file is
    gone, else ``insert-disc`` (the disc must be put into a drive)."""
    disc = inv.disc(disc_id) or {"disc_id": disc_id}
    where = lc.place(disc)
    path = disc.get("medium_path")
    if path and not str(path).startswith("/dev/") and not os.path.exists(path):
        return raise_alert(inv, "missing", disc_id, "missing", now,
                           f"{copy_text(disc)} is missing: its medium {path} is gone; find it, "
                           "or re-burn it from a good copy", disc.get("due_at"), where, log)
    return raise_alert(inv, "insert-disc", disc_id, "inspection", now,
                       f"{copy_text(disc)} is due for inspection: insert it into drive "
                       f"{disc.get('drive') or 'any'} ({exc})",
                       disc.get("due_at"), where, log)


def list_alerts(inv: Inventory, everything: bool = False) -> list[dict[str, Any]]:
    """The open and acknowledged alerts (``everything``: cleared ones too), newest first."""
    where = "" if everything else "WHERE state != 'cleared' "
    return list(inv.db.query(f"SELECT * FROM alerts {where}ORDER BY raised_at DESC, id DESC"))


def ack(inv: Inventory, alert_id: int, who: str, now: dt.datetime) -> dict[str, Any]:
    """Acknowledge alert ``alert_id`` as ``who``; returns the row. Raises AlertError for an
    unknown ID. An acknowledged alert stays listed (state ``acked``) until it is cleared."""
    if not 0 < alert_id < 2 ** 63:          # beyond SQLite's INTEGER: no such row
        raise AlertError(f"no alert {alert_id}: see `discarchive alerts` for the IDs")
    with inv.transaction():
        rows = list(inv.db.query("SELECT * FROM alerts WHERE id = ?", [alert_id]))
        if not rows:
            raise AlertError(f"no alert {alert_id}: see `discarchive alerts` for the IDs")
        inv.db["alerts"].update(alert_id, {"state": "acked", "acked_at": iso(now),
                                           "acked_by": who})
    return dict(rows[0], state="acked", acked_at=iso(now), acked_by=who)


# -- channels ---------------------------------------------------------------

def _digest_rows(inv: Inventory, rows: list[dict]) -> list[dict[str, Any]]:
    """The digest's alerts; a copy's alert carries ``disc_id`` (the copy's ID), ``disc``
    (its image: ``160-2025-S01-02``), ``set`` (``160-2025-S01``), ``volume`` (``2 of 3``)
    and ``location``, where the copy is now (it may have been shelved or moved since the
    alert was raised); the others carry None there."""
    out = []
    for r in rows:
        disc = inv.disc(r["subject"]) if r["kind"] in DISC_KINDS else None
        out.append({"id": r["id"], "kind": r["kind"], "threshold": r["threshold"],
                    "disc_id": r["subject"] if r["kind"] in DISC_KINDS else None,
                    "disc": disc["set_id"] if disc else None,
                    "set": (disc.get("group_id") or disc["set_id"]) if disc else None,
                    "volume": f"{disc.get('volume') or 1} of {disc.get('volumes') or 1}"
                    if disc else None,
                    "subject": r["subject"] if r["kind"] in DISC_KINDS
                    else mask_path(r["subject"]),
                    "location": lc.place(disc) if disc else r["location"],
                    "due_at": r["due_at"], "raised_at": r["raised_at"],
                    "message": r["message"]})
    return out


def email_digest(cfg: Config, alerts: list[dict[str, Any]], now: dt.datetime) -> None:
    """Send one e-mail listing ``alerts`` to ``[alerts] email_to`` (raises OSError, SMTPException).

    SMTP on ``smtp_host``:``smtp_port``; STARTTLS (RFC 3207) when
    ``smtp_starttls``, checking the server's certificate (``smtp_cafile``
    to trust a private CA); login when ``smtp_user`` is set, with the
    password in ``smtp_password_file``.
    """
    a = cfg.alerts
    msg = EmailMessage()
    msg["Subject"] = f"discarchive: {len(alerts)} alert(s), fonds {cfg.fonds}, {now.date()}"
    msg["From"] = a.email_from
    msg["To"] = ", ".join(a.email_to)
    lines = [f"discarchive at {cfg.home}: {len(alerts)} alert(s) not sent before.", ""]
    for r in alerts:
        lines.append(f"#{r['id']} [{r['kind']} {r['threshold']}] {r['message']}")
        if r["disc_id"]:
            which = f" (disc {r['volume']} of set {r['set']})" if r.get("set") else ""
            lines.append(f"    copy: {r['disc_id']}{which}  location: {r['location'] or '-'}  "
                         f"due: {r['due_at'] or '-'}")
    lines += ["", "Acknowledge one with `discarchive alerts --ack ID`."]
    msg.set_content("\n".join(lines) + "\n")
    with smtplib.SMTP(a.smtp_host, a.smtp_port, timeout=a.smtp_timeout) as smtp:
        smtp.ehlo()
        if a.smtp_starttls:
            ctx = ssl.create_default_context(cafile=a.smtp_cafile or None)
            smtp.starttls(context=ctx)
            smtp.ehlo()
        if a.smtp_user:
            password = Path(a.smtp_password_file).read_text().strip() \
                if a.smtp_password_file else ""
            smtp.login(a.smtp_user, password)
        smtp.send_message(msg)


def webhook_digest(cfg: Config, alerts: list[dict[str, Any]], now: dt.datetime) -> None:
    """POST ``{"source", "home", "fonds", "sent_at", "alerts": [...]}`` as JSON to
    ``[alerts] webhook_url``; raises OSError (urllib.error.URLError) on failure or a non-2xx."""
    body = json.dumps({"source": "discarchive", "home": str(cfg.home), "fonds": cfg.fonds,
                       "sent_at": iso(now), "alerts": alerts}, ensure_ascii=False).encode()
    req = urllib.request.Request(cfg.alerts.webhook_url, data=body, method="POST",
                                 headers={"Content-Type": "application/json; charset=utf-8",
                                          "User-Agent": "discarchive"})
    with urllib.request.urlopen(req, timeout=cfg.alerts.webhook_timeout) as resp:
        if not 200 <= resp.status < 300:
            raise urllib.error.URLError(f"HTTP {resp.status}")


def send_digest(cfg: Config, inv: Inventory, now: dt.datetime, log=None) -> dict[str, Any]:
    """Send the open alerts not yet sent through every configured channel.

    They are marked sent (``notified_at``) only when every configured
    channel took them; a channel that fails is logged and the alerts wait
    for the next digest. Returns ``{"alerts": n, "email": ..., "webhook": ...}``
    with each channel's outcome (``sent``, ``failed``, ``off``).
    """
    rows = list(inv.db.query("SELECT * FROM alerts WHERE state = 'open' AND notified_at IS NULL "
                             "ORDER BY id"))
    out: dict[str, Any] = {"alerts": len(rows), "email": "off", "webhook": "off"}
    if rows:
        digest = _digest_rows(inv, rows)
        ok = True
        for channel, send, on in (("email", email_digest, bool(cfg.alerts.email_to)),
                                  ("webhook", webhook_digest, bool(cfg.alerts.webhook_url))):
            if not on:
                continue
            try:
                send(cfg, digest, now)
                out[channel] = "sent"
            except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
                ok, out[channel] = False, "failed"
                if log:
                    log("digest.failed", "error", channel=channel, error=str(exc))
        if ok:
            with inv.transaction():
                inv.db.execute(f"UPDATE alerts SET notified_at = ? WHERE id IN "
                               f"({','.join('?' * len(rows))})", [iso(now)] + [r["id"] for r in rows])
        if log:
            log("digest.sent" if ok else "digest.kept", alerts=len(rows), email=out["email"],
                webhook=out["webhook"])
    write_textfile(cfg, inv, now)
    return out


def textfile_text(cfg: Config, inv: Inventory, now: dt.datetime) -> str:
    """The Prometheus text exposition (format 0.0.4) of the alerts and discs."""
    def esc(v: str) -> str:
        return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    out = []

    def metric(name: str, help_: str, samples: list[tuple[dict, float]]) -> None:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} gauge")
        for labels, value in samples:
            lab = ",".join(f'{k}="{esc(v)}"' for k, v in labels.items())
            out.append(f"{name}{{{lab}}} {value:g}" if lab else f"{name} {value:g}")

    open_ = inv.db.execute("SELECT kind, count(*) FROM alerts WHERE state = 'open' "
                           "GROUP BY kind ORDER BY kind").fetchall()
    metric("discarchive_alerts_open", "Alerts raised and not acknowledged, by kind.",
           [({"kind": k}, n) for k, n in open_])
    states = inv.db.execute("SELECT state, count(*) FROM discs GROUP BY state "
                            "ORDER BY state").fetchall()
    metric("discarchive_discs", "Disc copies in the inventory, by state.",
           [({"state": s}, n) for s, n in states])
    nxt = inv.db.execute("SELECT min(due_at) FROM discs WHERE state = 'verified' "
                         "AND due_at IS NOT NULL").fetchone()[0]
    if nxt:
        t = dt.datetime.fromisoformat(nxt[:10]).replace(tzinfo=dt.timezone.utc).timestamp()
        metric("discarchive_next_reburn_due_timestamp_seconds",
               "Earliest re-burn due date of a verified disc (UTC midnight).", [({}, t)])
    folder = cfg.images_dir if cfg.images_dir.is_dir() else cfg.home
    metric("discarchive_images_free_bytes", "Free bytes on the images folder's file system.",
           [({}, psutil.disk_usage(str(folder)).free)])
    runs = inv.db.execute("SELECT job, ended_at FROM daemon_runs WHERE ended_at IS NOT NULL "
                          "ORDER BY job").fetchall()
    metric("discarchive_job_last_run_timestamp_seconds", "When each daemon job last ended.",
           [({"job": j}, parse_iso(e).timestamp()) for j, e in runs])
    metric("discarchive_textfile_timestamp_seconds", "When this file was written.",
           [({}, now.timestamp())])
    return "\n".join(out) + "\n"


def write_textfile(cfg: Config, inv: Inventory, now: dt.datetime) -> Path | None:
    """Write ``[alerts] textfile`` atomically (a temporary file renamed over it); None if unset.

    node_exporter's textfile collector reads ``*.prom`` files in its folder
    and never sees a half-written file.
    """
    if not cfg.alerts.textfile:
        return None
    path = Path(cfg.alerts.textfile)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(textfile_text(cfg, inv, now))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
