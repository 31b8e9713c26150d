"""The daemon's and the alerts' settings: the ``[daemon]`` and ``[alerts]`` tables.

Both tables are optional in ``discarchive.toml``; every key has the default
shown in ``config/defaults.toml``. Schedules are crontab lines (minute hour
day-of-month month day-of-week, as in crontab(5)) read by APScheduler's
``CronTrigger.from_crontab`` in the configured time zone.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path

DAEMON_KEYS = {"timezone": str, "sources": list, "intake": str, "settle_minutes": int,
               "fill_share": (int, float), "deadline": str, "due_check": str,
               "inspection": str, "digest": str, "poll_seconds": int, "stall_seconds": int}
ALERT_KEYS = {"lead_days": list, "images_free_media": (int, float), "email_to": list,
              "email_from": str, "smtp_host": str, "smtp_port": int, "smtp_starttls": bool,
              "smtp_user": str, "smtp_password_file": str, "smtp_cafile": str,
              "smtp_timeout": (int, float), "webhook_url": str, "webhook_timeout": (int, float),
              "textfile": str}

RETIRED_KEYS = {
    "inspection_share": "the share of discs inspected a year is [lifecycle] inspect_percent "
                        "(a percentage: inspection_share = 0.34 is inspect_percent = 34)",
    "inspection_overdue_days": "an inspection is overdue when the lifecycle's rule (every "
                               "disc once per re-burn cycle) was missed: remove the key",
}
"""``[daemon]`` keys of earlier versions, with what replaced them (one rule, in one place)."""

SCHEDULES = ("intake", "deadline", "due_check", "inspection", "digest")
"""The scheduled jobs, each with the crontab line of the setting of the same name."""


@dataclass
class DaemonSettings:
    """``[daemon]``: what the daemon does and when (times in the zone ``timezone``).

    ``sources``: intake folders; each folder directly inside one is a batch
    archived by one run (a disc set per fonds, year and side, each of as many
    discs as it needs). ``settle_minutes``: a batch changed more
    recently is left for a later scan. ``fill_share``: a batch is packed as
    soon as its bytes fill this share of one medium of the configured
    profile; at ``deadline`` every pending batch is packed (the annual
    handover, 31 January, for the year before). ``inspection``: when the
    year's inspection pull list is worked through (how many discs, and which,
    is the ``[lifecycle]`` table's: ``inspect_percent``, once per re-burn
    cycle, least recently checked first; see :func:`inventory.lifecycle.due`).
    ``poll_seconds``: how often the daemon looks again for work left undone
    (a job that found the home busy). ``stall_seconds``: a job that reports
    no progress for this long (or, if longer, for a configured drive's own
    ``timeout`` plus a minute) is taken as hung, and systemd's watchdog is
    no longer told the daemon is alive (see :meth:`daemon.service.Daemon.alive`).
    """

    timezone: str = ""
    sources: list[str] = field(default_factory=list)
    intake: str = "15 * * * *"
    settle_minutes: int = 60
    fill_share: float = 0.9
    deadline: str = "0 7 31 1 *"
    due_check: str = "30 6 * * *"
    inspection: str = "0 9 1 * *"
    digest: str = "0 8 * * *"
    poll_seconds: int = 300
    stall_seconds: int = 900

    def zone(self) -> zoneinfo.ZoneInfo:
        """The configured time zone, else the computer's (tzlocal)."""
        if self.timezone:
            return zoneinfo.ZoneInfo(self.timezone)
        import tzlocal
        return tzlocal.get_localzone()


@dataclass
class AlertSettings:
    """``[alerts]``: when alerts are raised and where the daily digest goes.

    ``lead_days``: days before a disc's re-burn due date at which it is
    announced (then ``due`` on and after the day). ``images_free_media``:
    alert when the images folder's file system has room for fewer images
    of the configured medium than this. E-mail goes to ``email_to`` through
    ``smtp_host``:``smtp_port`` (STARTTLS when ``smtp_starttls``; the
    password, if any, is read from ``smtp_password_file``; ``smtp_cafile``
    trusts a private CA). ``webhook_url`` gets a JSON POST. ``textfile`` is
    a Prometheus textfile for node_exporter, rewritten atomically.
    """

    lead_days: list[int] = field(default_factory=lambda: [90, 30, 7])
    images_free_media: float = 2
    email_to: list[str] = field(default_factory=list)
    email_from: str = "discarchive@localhost"
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_starttls: bool = True
    smtp_user: str = ""
    smtp_password_file: str = ""
    smtp_cafile: str = ""
    smtp_timeout: float = 30
    webhook_url: str = ""
    webhook_timeout: float = 10
    textfile: str = ""


def daemon_settings(where: str, table: dict, home: Path, check) -> DaemonSettings:
    """Check and read the ``[daemon]`` table (``check`` is config's key/type checker).

    Relative ``sources`` are taken from the home. Raises ConfigError.
    """
    from apscheduler.triggers.cron import CronTrigger
    from config import ConfigError

    where = f"{where} [daemon]"
    for key in RETIRED_KEYS.keys() & table.keys():
        raise ConfigError(f"{where}: {key} is no longer a [daemon] setting: {RETIRED_KEYS[key]}")
    check(where, table, DAEMON_KEYS)
    s = DaemonSettings(**table)
    if not all(isinstance(p, str) and p.strip() for p in s.sources):
        raise ConfigError(f"{where}: sources must be a list of folder paths")
    s.sources = [p if Path(p).is_absolute() else str(home / p) for p in s.sources]
    try:
        zone = s.zone()
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where}: timezone {s.timezone!r} is not a time zone name: use "
                          "one like \"Asia/Shanghai\", or \"\" for the computer's") from None
    for name in SCHEDULES:
        try:
            CronTrigger.from_crontab(getattr(s, name), timezone=zone)
        except ValueError as exc:
            raise ConfigError(f"{where}: {name} = {getattr(s, name)!r} is not a crontab line "
                              f"({exc}): write five fields, e.g. \"30 6 * * *\"") from None
    if not 0 < s.fill_share <= 1:
        raise ConfigError(f"{where}: fill_share must be more than 0 and at most 1")
    if s.settle_minutes < 0 or s.poll_seconds < 10 or s.stall_seconds < 60:
        raise ConfigError(f"{where}: settle_minutes must be 0 or more, poll_seconds 10 or "
                          "more, stall_seconds 60 or more")
    return s


def alert_settings(where: str, table: dict, check) -> AlertSettings:
    """Check and read the ``[alerts]`` table. Raises ConfigError."""
    from config import ConfigError

    where = f"{where} [alerts]"
    check(where, table, ALERT_KEYS)
    s = AlertSettings(**table)
    if not s.lead_days or not all(type(d) is int and d > 0 for d in s.lead_days):
        raise ConfigError(f"{where}: lead_days must be a list of whole days above 0, "
                          "e.g. [90, 30, 7]")
    s.lead_days = sorted(set(s.lead_days), reverse=True)
    if not all(isinstance(a, str) and "@" in a for a in s.email_to):
        raise ConfigError(f"{where}: email_to must be a list of e-mail addresses")
    if s.email_to and not s.smtp_host:
        raise ConfigError(f"{where}: email_to is set but smtp_host is not: name the mail server")
    if s.webhook_url and not s.webhook_url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: webhook_url must start with http:// or https://")
    if s.images_free_media < 0:
        raise ConfigError(f"{where}: images_free_media must be 0 or more")
    return s
