"""discarchive's command line: thin commands over the stage modules.

Exit status: 0 done; 1 the job ran but a copy or a check failed; 2 bad
input, usage or configuration; 3 a drive or its tool cannot work; 4 a bug
in discarchive (one line to report); 130 interrupted. Errors are one line
on stderr saying what to do.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import click

import config
from burners import DriveError
from config.home import init_home
from daemon import checks, jobs
from daemon import lifecycle as lifecycle_jobs
from inventory import eventlog
from inventory import lifecycle
from inventory import registers
from inventory.store import Inventory, InventoryError
from manifests.catalog import ScanError, write_problems
from manifests import signing
from manifests.signing import SigningError
from manifests.validate import validate_bag
from mastering.iso import MasteringError

EXIT_FAILED, EXIT_INPUT, EXIT_DRIVE, EXIT_BUG = 1, 2, 3, 4
_INPUT_ERRORS = (config.ConfigError, ScanError, SigningError, MasteringError, InventoryError,
                 jobs.JobError, lifecycle.LifecycleError)


def _fail(message: str, code: int) -> None:
    click.echo(f"discarchive: error: {_safe(message)}", err=True)
    sys.exit(code)


@contextmanager
def _errors():
    """Turn the stages' errors into one line and an exit status."""
    try:
        yield
    except _INPUT_ERRORS as exc:
        _fail(str(exc), EXIT_INPUT)
    except DriveError as exc:
        _fail(str(exc), EXIT_INPUT if exc.failure_class == "config" else EXIT_DRIVE)
    except KeyboardInterrupt:
        _fail("interrupted; run `discarchive discs` to see what was recorded", 130)
    except OSError as exc:
        _fail(f"{exc.strerror or exc} ({exc.filename or 'I/O'}): check the path and its "
              "permissions and free space", EXIT_INPUT)


class TerminalReporter:
    """Progress on a terminal (stderr): one line showing every running stage.

    Stages from several drives' threads share the line, e.g.
    ``burn A  45% | burn B  30%``. Quiet when stderr is not a terminal.
    """

    def __init__(self):
        self.tty = sys.stderr.isatty()
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}

    def progress(self, stage: str):
        def update(done: int, total: int) -> None:
            if not self.tty:
                return
            with self._lock:
                before = self._running.get(stage)
                if done >= total:
                    self._running.pop(stage, None)
                else:
                    self._running[stage] = int(100 * done / max(total, 1))
                if self._running.get(stage) != before:
                    self._draw()
        return update

    def _draw(self) -> None:
        line = " | ".join(f"{k} {v:3d}%" for k, v in self._running.items())
        sys.stderr.write("\r\033[K" + line)
        sys.stderr.flush()

    def note(self, text: str) -> None:
        if not self.tty:
            return
        with self._lock:
            sys.stderr.write("\r\033[K" + _safe(text) + "\n")
            self._draw()

    def request_blank(self, drive: str, disc_id: str) -> bool:
        if not (self.tty and sys.stdin.isatty()):
            return False
        with self._lock:
            sys.stderr.write("\r\033[K")
            answer = click.prompt(f"insert a new blank medium for {disc_id} into drive {drive}, "
                                  "then press Enter (or type skip)", default="",
                                  show_default=False, err=True)
        return answer.strip().lower() != "skip"


def _home_option(f):
    return click.option("--home", type=click.Path(file_okay=False, path_type=Path),
                        default=None, help="Archive home (default: $DISCARCHIVE_HOME or the "
                        "platform's data directory).")(f)


def _config(home: Path | None) -> config.Config:
    return config.load(home or config.default_home())


def _inventory(home: Path | None) -> Inventory:
    cfg = _config(home)
    return Inventory.open(cfg.inventory_path)


def _emit_json(data) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


class _Group(click.Group):
    """click's group, with usage errors as one ``discarchive: error:`` line (exit 2)."""

    def main(self, *args, **kwargs):
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
            sys.exit(0)
        except click.UsageError as exc:
            cmd = exc.ctx.command_path if exc.ctx else "discarchive"
            _fail(f"{exc.format_message()} (see `{cmd} --help`)", EXIT_INPUT)
        except click.ClickException as exc:
            _fail(exc.format_message(), EXIT_INPUT)
        except click.Abort:
            _fail("interrupted; run `discarchive discs` to see what was recorded", 130)
        except Exception as exc:  # noqa: BLE001 - the operator gets one line, not a traceback
            if os.environ.get("DISCARCHIVE_DEBUG"):
                raise
            _fail(f"unexpected {type(exc).__name__}: {exc} (a bug in discarchive: report this "
                  "line; DISCARCHIVE_DEBUG=1 shows where it happened)", EXIT_BUG)
        sys.exit(rv if isinstance(rv, int) else 0)


def _safe(text) -> str:
    """A value safe to print on one line: control characters escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="discarchive")
def main():
    """Keep electronic archives alive on optical discs."""


@main.command()
@_home_option
@click.option("--file-drives", is_flag=True,
              help="Configure two file-backed drives (media are files under HOME/media) "
                   "instead of /dev/sr0: for trying discarchive without a burner.")
def init(home, file_drives):
    """Make a new archive home: config, inventory, images folder, signing key."""
    with _errors():
        path = init_home(home or config.default_home(), file_drives=file_drives)
    click.echo(f"archive home ready at {path}")
    click.echo(f"  config:    {path / config.CONFIG_NAME}")
    click.echo(f"  back up the signing key {path / 'keys' / 'signing.key'} somewhere safe")


def _print_problems(problems) -> None:
    for line in jobs.problem_lines(problems, 50):
        click.echo(f"discarchive: warning: {_safe(line)}", err=True)


@main.command()
@_home_option
@click.argument("source")
@click.option("--media", default=None, help="Medium profile (dvd-r, bd-r, ...); default from the config.")
@click.option("--copies", type=int, default=None, help="Copies to burn; default from the config.")
@click.option("--strict", is_flag=True, help="Refuse while the arrangement has problems "
              "(件号 gaps or duplicates, malformed 档号, catalog rows without a file, files "
              "without a row).")
def archive(home, source, media, copies, strict):
    """Arrange SOURCE, pack each planned disc into a bag, master, burn verified copies, record."""
    if not source.strip():
        _fail("SOURCE is empty: give the folder that holds the records", EXIT_INPUT)
    with _errors():
        cfg = _config(home)
        try:
            result = jobs.archive(cfg, Path(source), media=media, copies=copies,
                                  reporter=TerminalReporter(), strict=strict)
        except ScanError as exc:
            raise _listed(cfg, exc) from None
    for w in result.warnings:
        click.echo(f"discarchive: warning: {_safe(w)}", err=True)
    for r in result.images:
        click.echo(f"disc {r.set_id} ({r.volume} of {r.volumes} of set {r.group_id}): "
                   f"{r.records} records {_safe(r.first)} .. {_safe(r.last)}, {r.files} files, "
                   f"image {r.image.sectors} sectors, sha256 {r.image.sha256}")
        _print_copies(r)
    if result.unchanged:
        click.echo(f"{result.unchanged} file(s) unchanged since earlier runs of this source: "
                   "not archived again"
                   + (f"; {result.changed} changed file(s) archived as new versions"
                      if result.changed else ""))
    if not result.images:
        click.echo("nothing new to archive")
    _settle(result)


@main.command()
@_home_option
@click.argument("source")
@click.option("--media", default=None, help="Medium profile (dvd-r, bd-r, ..., custom:SECTORS); "
              "default from the config.")
@click.option("--strict", is_flag=True, help="Exit 2 while the arrangement has problems.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plan(home, source, media, strict, as_json):
    """Show the disc sets `archive SOURCE` would make, without writing or hashing anything."""
    if not source.strip():
        _fail("SOURCE is empty: give the folder that holds the records", EXIT_INPUT)
    with _errors():
        cfg = _config(home)
        p = jobs.plan(cfg, Path(source), media)
    if as_json:
        _emit_json(p.to_dict())
    else:
        for w in p.warnings:
            click.echo(f"discarchive: warning: {_safe(w)}", err=True)
        _print_problems(p.problems)
        for n in p.notes:
            click.echo(_safe(n))
        if p.unchanged:
            click.echo(f"{p.unchanged} file(s) are already on disc sets of this source (same "
                       "path and size): left out; `archive` hashes them to be sure")
        if not p.sets:
            click.echo("nothing new to archive")
        for s in p.sets:
            click.echo(f"set {s.group_id}: fonds {s.group.fonds}, {s.group.year}, "
                       f"{s.group.side or 'no records'}, {len(s.discs)} disc(s)")
            for d in s.discs:
                first = d.ranges[0][0] if d.ranges else "-"
                last = d.ranges[-1][1] if d.ranges else "-"
                moved = f", {len(d.ranges) - 1} run(s) moved up to fill" if len(d.ranges) > 1 else ""
                click.echo(f"  {d.disc_id}  {d.volume}/{len(s.discs)}  {len(d.records):>6} records  "
                           f"{_safe(first)} .. {_safe(last)}  {d.payload_bytes} bytes  "
                           f"{'' if d.exact else '<='}{d.sectors} sectors  "
                           f"{100 * d.fill:.1f}% full{moved}")
    if strict and p.problems:
        _fail(f"{len(p.problems)} arrangement problem(s) (--strict): {_safe(p.problems[0])}; "
              "correct the catalog", EXIT_INPUT)


def _listed(cfg: config.Config, exc: ScanError) -> ScanError:
    """A scan error that found several problems, with all of them written to HOME/reports/."""
    if len(exc.problems) < 2:
        return exc
    path = write_problems(exc, cfg.home / "reports")
    return ScanError(f"{exc}; all {len(exc.problems)} are listed in {path}", exc.problems)


@main.command()
@_home_option
@click.argument("set_id")
def burn(home, set_id):
    """Burn again the copies of SET_ID (a disc set or one disc of it) that failed or were
    interrupted, from the kept images."""
    with _errors():
        result = jobs.burn_set(_config(home), set_id, reporter=TerminalReporter())
    for r in result.images:
        _print_copies(r)
    _settle(result)


def _print_copies(result) -> None:
    for disc_id, state in result.copies.items():
        why = result.failures.get(disc_id)
        click.echo(f"  {disc_id}: {state}{f' ({_safe(why)})' if why else ''}")


def _settle(result) -> None:
    bad = [r for r in result.images if not r.ok]
    if bad:
        _fail(f"disc {bad[0].set_id} is not archived: a copy failed; put a new blank "
              f"medium in the drive and run `discarchive burn {bad[0].set_id}`", EXIT_FAILED)


_DISC_FIELDS = ["disc_id", "set_id", "copy_label", "state", "medium", "drive", "adapter",
                "medium_path", "burned_at", "due_at", "verification", "verified_at",
                "image_sha256", "image_sectors", "failure", "failure_class"]


@main.command()
@_home_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def discs(home, as_json):
    """List every disc copy with its state, burn date and re-burn due date."""
    with _errors():
        inv = _inventory(home)
        rows = inv.discs() + inv.unburned()
        inv.close()
    if as_json:
        _emit_json([{k: r.get(k) for k in _DISC_FIELDS + ["record_count"]} for r in rows])
        return
    if not rows:
        click.echo("no discs yet: run `discarchive archive SOURCE`")
        return
    width = max(18, *(len(r["disc_id"]) + 1 for r in rows))
    states = max(9, *(len(r["state"]) for r in rows))
    media = max(7, *(len(r["medium"] or "") for r in rows))
    fmt = f"{{:<{width}}} {{:<{states}}} {{:<{media}}} {{:>7}} {{:<10}} {{:<10}} {{:<8}}"
    click.echo(fmt.format("DISC", "STATE", "MEDIUM", "RECORDS", "BURNED", "DUE", "VERIFIED"))
    for r in rows:
        current = r["state"] in ("verified", "damaged")
        click.echo(fmt.format(r["disc_id"], r["state"], r["medium"] or "-", r["record_count"],
                              (r.get("burned_at") or "-")[:10],
                              (r.get("due_at") if current else None) or "-",
                              r.get("verification") or "-").rstrip())
    waiting = sorted({r["set_id"] for r in rows if r["state"] == "not burned"})
    if waiting:
        click.echo(f"{len(waiting)} image(s) recorded but not burned (a job was stopped): "
                   f"`discarchive burn {waiting[0]}`" + (" and so on" if len(waiting) > 1 else ""))


@main.command()
@_home_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def drives(home, as_json):
    """List the configured drives and their media, and drives found but not configured.

    Exit status 3 when a configured drive cannot answer.
    """
    with _errors():
        rows = jobs.drive_report(_config(home))
    if as_json:
        _emit_json(rows)
    else:
        fmt = "{:<10} {:<9} {:<14} {:<12} {:>10}  {}"
        click.echo(fmt.format("DRIVE", "ADAPTER", "STATE", "MEDIUM", "FREE", "DEVICE / DRIVE"))
        for r in rows:
            what = r.get("message") or " ".join(
                x for x in (r.get("vendor"), r.get("model"), r.get("firmware")) if x)
            click.echo(fmt.format(r["name"] or "-", r["adapter"] or "-", r["state"],
                                  r.get("medium_type") or "-", r.get("free_sectors") or "-",
                                  _safe(f"{r['device']}  {what}".strip())).rstrip())
    broken = [r for r in rows if r["configured"] and r["state"] == "error"]
    if broken:
        config_error = any(r["failure_class"] == "config" for r in broken)
        _fail(f"{len(broken)} configured drive(s) cannot answer: {broken[0]['message']}",
              EXIT_INPUT if config_error else EXIT_DRIVE)


@main.command()
@_home_option
@click.argument("disc_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(home, disc_id, as_json):
    """Show one disc copy: its set, image, burn, verification and events."""
    with _errors():
        inv = _inventory(home)
        disc = inv.disc(disc_id)
        if disc is None:
            why = lifecycle.not_a_copy(inv, disc_id)
            inv.close()
            _fail(why, EXIT_INPUT)
        events = inv.events(disc_id=disc_id)
        disc["burns"] = inv.burns(disc_id)
        inv.close()
    disc["events"] = events
    if as_json:
        _emit_json(disc)
        return
    for k in ["disc_id", "set_id", "group_id", "volume", "volumes", "side", "copy_label", "state",
              "medium", "drive", "medium_path",
              "burned_at", "due_at", "verification", "verified_at", "failure",
              "record_count", "file_count", "payload_bytes", "years", "retention",
              "image_sha256", "image_sectors", "image_bytes", "image_path", "generation",
              "replaces", "superseded_by", "superseded_at", "inspected_at", "reburn_reason"]:
        if disc.get(k) is not None:
            click.echo(f"{k:<14} {disc[k]}")
    click.echo(_safe(f"{'place':<14} {lifecycle.place(disc)}"))
    burns = disc.pop("burns")
    if burns:
        click.echo("burn attempts:")
    for b in burns:
        click.echo(_safe(f"  {b['started_at']}  {b['drive']:<8} {b['outcome']:<8} "
                         f"{b['failure_class'] or ''} {b['message'] or b['speed'] or ''}".rstrip()))
    click.echo("events:")
    _echo_lines([f"  {e['at']}  {e['event_type']:<12} {e['outcome']:<8} "
                 f"{_event_detail(e['detail'])}".rstrip() for e in events])


def _event_detail(detail, width: int = 100) -> str:
    """An event's detail (JSON text) on one line: ``key=value`` pairs, empty ones left out,
    SHA-256 values shortened to 12 hex digits, lists by their items, at most ``width``
    characters (``…`` when cut)."""
    try:
        data = json.loads(detail) if isinstance(detail, str) else detail
    except ValueError:
        data = detail
    if not isinstance(data, dict):
        text = "" if data is None else str(data)
    else:
        parts = []
        for k, v in data.items():
            if v in (None, "", [], {}):
                continue
            if isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v):
                v = v[:12] + "…"
            elif isinstance(v, (list, dict)):
                v = ",".join(str(x) for x in v) if isinstance(v, list) else json.dumps(
                    v, ensure_ascii=False)
            parts.append(f"{k}={v}")
        text = " ".join(parts)
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


@main.command()
@_home_option
@click.argument("text")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def find(home, text, as_json):
    """Find records by 档号, 件号, title words, path or SHA-256, with their discs."""
    if not text.strip():
        _fail("give some text to find: an archival code, item number, title words, a path "
              "or a SHA-256", EXIT_INPUT)
    with _errors():
        inv = _inventory(home)
        rows = inv.find(text)
        inv.close()
    if as_json:
        _emit_json(rows)
        if not rows:
            sys.exit(EXIT_FAILED)
        return
    if not rows:
        _fail(f"nothing matches {text!r}", EXIT_FAILED)
    for r in rows:
        version = f" v{r['version']}" if (r.get("version") or 1) > 1 else ""
        click.echo(f"{_safe(r['archival_code'] or '-')}{version}  "
                   f"{_safe(r['item_number'] or '-')}  {_safe(r['title'] or r['path'])}")
        click.echo(f"    {_safe(r['disc_path'])}  {r['size']} bytes  sha256 {r['sha256']}")
        copies = ", ".join(f"{c['disc_id']} ({c['verification'] or c['state']})" for c in r["copies"])
        click.echo(f"    on: {copies}")


@main.command()
@_home_option
@click.argument("disc_id")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def verify(home, disc_id, as_json):
    """Read DISC_ID back in full and check it; exit 0 only if it passes."""
    with _errors():
        cfg = _config(home)
        report = jobs.verify_disc(cfg, disc_id, reporter=TerminalReporter())
    if as_json:
        _emit_json({"disc_id": disc_id, "passed": report.passed,
                    "image_sha256": report.image_sha256, "image_ok": report.image_ok,
                    "files_checked": report.files_checked, "bag_ok": report.bag_ok,
                    "signature_ok": report.signature_ok,
                    "damaged": [{"path": p, "why": why} for p, why in report.damaged],
                    "problems": report.problems, "bad_sectors": report.bad_sectors,
                    "slow_sectors": report.slow_sectors,
                    "retried_sectors": report.retried_sectors})
        if not report.passed:
            sys.exit(EXIT_FAILED)
        return
    if report.passed:
        click.echo(f"{disc_id}: passed ({report.files_checked} files, image sha256 "
                   f"{report.image_sha256})")
        return
    for path, why in report.damaged:
        click.echo(f"{disc_id}: damaged: {_safe(path)}: {_safe(why)}")
    for p in report.problems:
        click.echo(f"{disc_id}: {_safe(p)}")
    _fail(f"{disc_id} failed verification: read it in another drive, and re-burn it from "
          "a good copy if it fails again", EXIT_FAILED)


@main.command()
@_home_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def audit(home, as_json):
    """Check the event log's hash chain and signed checkpoints; exit 1 on any break."""
    with _errors():
        cfg = _config(home)
        inv = Inventory.open(cfg.inventory_path)
        try:
            report = eventlog.audit(inv, signing.load_public_key(cfg.public_key_path))
        finally:
            inv.close()
    if as_json:
        _emit_json(report.to_dict())
    elif report.ok:
        click.echo(f"event log intact: {report.entries} entries, {report.checkpoints} signed "
                   f"checkpoints, {report.unsigned} entries after the last checkpoint")
    else:
        if report.first_break:
            click.echo(f"first break: event {report.first_break[0]} ({report.first_break[1]})")
        for p in report.problems:
            click.echo(_safe(p))
    if not report.ok and report.first_break is None and report.checkpoint_break is None:
        _fail("the event log's chain is intact but nothing signs it: if the only job was "
              "killed, run any job (e.g. `discarchive verify DISC`) to sign it; if you did not "
              "kill one, compare the inventory with an earlier export (discarchive export-log)",
              EXIT_FAILED)
    if not report.ok:
        _fail("the event log has been changed: keep the inventory as it is and compare it "
              "with an earlier export (discarchive export-log)", EXIT_FAILED)


@main.command("export-log")
@_home_option
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
def export_log(home, out):
    """Write the event log, its signed checkpoints and the public key into folder OUT.

    OUT must be new or empty, or hold only an earlier export, which is replaced."""
    ours = {eventlog.LOG_NAME, eventlog.KEY_NAME}
    found = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    others = [n for n in found if n not in ours]
    if others:
        _fail(f"{out} is not empty ({len(others)} other entries, e.g. {others[0]}): give a new "
              f"or empty folder (only a folder holding just an earlier export, "
              f"{' and '.join(sorted(ours))}, is replaced)", EXIT_INPUT)
    with _errors():
        cfg = _config(home)
        inv = Inventory.open(cfg.inventory_path)
        try:
            out.mkdir(parents=True, exist_ok=True)
            info = eventlog.export(inv, out, signing.load_public_key(cfg.public_key_path))
        finally:
            inv.close()
    if found:
        click.echo(f"the earlier export in {_safe(out)} was replaced")
    click.echo(f"{info['entries']} events and {info['checkpoints']} checkpoints written to "
               f"{_safe(out)}; check them as docs/AUDIT.md shows")


def _require_bag(path: Path, declared: bool = True) -> None:
    """One line and exit 2 unless ``path`` is a folder (holding a bagit.txt if ``declared``)."""
    if not str(path).strip() or not path.is_dir():
        _fail(f"{path} is not a folder: give the folder of a BagIt bag", EXIT_INPUT)
    if declared and not (path / "bagit.txt").is_file():
        _fail(f"{path} is not a BagIt bag (no bagit.txt): give the bag's top folder", EXIT_INPUT)


def _print_fourcheck(report, path: Path, as_json: bool) -> None:
    if as_json:
        click.echo(report.to_json())
    else:
        for prop, f in report.findings():
            if f.status != "pass":
                click.echo(_safe(f"{prop:<12} {f.status:<11} {f.subject}: {f.reason}"))
        counts = report.counts()
        click.echo(" | ".join(f"{p} {c.get('pass', 0)} pass, {c.get('fail', 0)} fail, "
                              f"{c.get('not-checked', 0)} not checked" for p, c in counts.items()))
        click.echo(f"report stored in {path}")
    if not report.passed:
        _fail(f"the four-property check failed ({len(report.failures())} finding(s)): see "
              f"the lines above or {path}", EXIT_FAILED)


@main.command("check")
@_home_option
@click.argument("disc_id")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def check_command(home, disc_id, as_json):
    """Four-property check (四性检测, DA/T 70) of one disc copy; exit 1 if any check fails."""
    with _errors():
        report, path = checks.check_disc(_config(home), disc_id, TerminalReporter())
    _print_fourcheck(report, path, as_json)


@main.command("check-bag")
@_home_option
@click.argument("bag", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def check_bag_command(home, bag, as_json):
    """Four-property check of an incoming BagIt bag folder; exit 1 if any check fails."""
    _require_bag(bag)
    with _errors():
        report, path = checks.check_bag(_config(home), bag)
    _print_fourcheck(report, path, as_json)


@main.command("validate-bag")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def validate_bag_command(path, as_json):
    """Validate the BagIt bag at PATH (RFC 8493); exit 0 if valid, 1 if not."""
    _require_bag(path, declared=False)     # a missing bagit.txt is a finding here
    report = validate_bag(path)
    if as_json:
        click.echo(report.to_json())
    else:
        for p in report.problems:
            click.echo(f"problem: {_safe(p)}")
        for w in report.warnings:
            click.echo(f"warning: {_safe(w)}")
        click.echo(f"{_safe(path)}: {'valid' if report.valid else 'invalid'} "
                   f"(BagIt {report.version or 'version unknown'})")
    if not report.valid:
        sys.exit(EXIT_FAILED)

# -- the disc lifecycle: cabinet, inspections, re-burns, appraisal ------------------------

def _today(cfg) -> dt.date:
    """Today in the archive's time zone (``[daemon] timezone``, else the computer's),
    the day the daemon's due checks and alerts count from."""
    return dt.datetime.now(dt.timezone.utc).astimezone(cfg.daemon.zone()).date()


def _at(value, cfg) -> dt.date:
    """``--at`` as a date; without it, today in the archive's time zone (:func:`_today`)."""
    return value.date() if value else _today(cfg)


@contextmanager
def _signed_inventory(home):
    """The inventory for an operator's change, (config, inventory); the log's head is signed."""
    cfg = _config(home)
    with lifecycle_jobs.signed_session(cfg, lock=False) as (inv, _):
        yield cfg, inv


class _Day(click.ParamType):
    """A calendar date written YYYY-MM-DD, from 1900 to 9899 (room for the re-burn and
    retention years added to it); the error says whether it is not a date at all."""

    name = "YYYY-MM-DD"

    def convert(self, value, param, ctx):
        if isinstance(value, dt.datetime):
            return value
        text = str(value).strip()
        try:
            day = dt.datetime.strptime(text, "%Y-%m-%d")
        except ValueError:
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
                self.fail(f"{text} is not a date (no such month or day): give a real "
                          "day, YYYY-MM-DD", param, ctx)
            self.fail(f"{text!r} is not written YYYY-MM-DD: give e.g. 2027-01-31", param, ctx)
        if not 1900 <= day.year <= 9899:
            self.fail(f"{text} is out of range: give a date from 1900 to 9899", param, ctx)
        return day


_AT = click.option("--at", "at", type=_Day(), default=None,
                   help="The date to answer for, YYYY-MM-DD (default: today).")
_NUMBER = click.IntRange(min=1, max=99_999)     # a shelf or slot number


@main.command()
@_home_option
@click.argument("disc_id")
@click.option("--cabinet", required=True, help="Cabinet (防磁柜) name or number.")
@click.option("--shelf", type=_NUMBER, required=True, help="Shelf number, from 1.")
@click.option("--slot", type=_NUMBER, required=True, help="Slot number, from 1.")
@click.option("--site", default=None, help="Off-site store holding this copy (default: here).")
def shelve(home, disc_id, cabinet, shelf, slot, site):
    """Put DISC_ID in a cabinet slot (or move it there); a slot holds one disc."""
    with _errors(), _signed_inventory(home) as (_, inv):
        old = lifecycle.shelve(inv, disc_id, cabinet, shelf, slot, site)
        now = inv.disc(disc_id)
    moved = f" (from {lifecycle.place(old)})" if old["cabinet"] is not None else ""
    click.echo(_safe(f"{disc_id}: {lifecycle.place(now)}{moved}"))


@main.command()
@_home_option
@click.argument("disc_id")
@click.option("--by", required=True, help="Who takes the disc.")
@click.option("--reason", required=True, help="What for (查阅利用: purpose, approval).")
def checkout(home, disc_id, by, reason):
    """Record that someone takes DISC_ID out of its cabinet; its slot waits for it."""
    with _errors(), _signed_inventory(home) as (_, inv):
        lifecycle.checkout(inv, disc_id, by, reason)
        now = inv.disc(disc_id)
    click.echo(_safe(f"{disc_id}: {lifecycle.place(now)} ({reason})"))


@main.command()
@_home_option
@click.argument("disc_id")
def checkin(home, disc_id):
    """Record that DISC_ID is back in its slot."""
    with _errors(), _signed_inventory(home) as (_, inv):
        was = lifecycle.checkin(inv, disc_id)
        now = inv.disc(disc_id)
    click.echo(_safe(f"{disc_id}: back from {was['out_by']}: {lifecycle.place(now)}"))


def _echo_lines(lines: list[str]) -> None:
    """Print many lines at once, each made safe (control characters escaped)."""
    if lines:
        click.echo("\n".join(line if line.isprintable() else _safe(line) for line in lines))


def _disc_note(d: dict) -> str:
    """A copy's state in words, after which disc of its set it holds (``disc 2 of 3``)."""
    note = f"disc {d['volume']} of {d['volumes']}  {d['state']}"
    if d.get("superseded_by"):
        note = f"superseded by {d['superseded_by']}"
    if d.get("destruction_approved"):
        note += ", destruction approved"
    if d.get("reburn_reason"):
        note += f", re-burn early: {d['reburn_reason']}"
    if d.get("out_by"):
        note += f"   OUT with {d['out_by']} since {d['out_at'][:10]}: {d['out_reason']}"
    return note


@main.command()
@_home_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def cabinet(home, as_json):
    """The storage map (存放示意图): every disc by cabinet, shelf and slot."""
    with _errors():
        inv = _inventory(home)
        try:
            world = lifecycle.storage_map(inv)
        finally:
            inv.close()
    if as_json:
        _emit_json(world)
        return
    lines = []
    shelved = out = 0
    for c in world["cabinets"]:
        where = f"off-site {c['site']}, cabinet {c['cabinet']}" if c["site"] else f"cabinet {c['cabinet']}"
        lines.append(where)
        for sh in c["shelves"]:
            lines.append(f"  shelf {sh['shelf']}")
            n = 0
            for d in sh["slots"]:
                for gap in range(n + 1, d["slot"]):
                    lines.append(f"    slot {gap:<4} -")
                n = d["slot"]
                shelved += 1
                out += bool(d["out_by"])
                lines.append(f"    slot {d['slot']:<4} {d['disc_id']:<21} {_disc_note(d)}")
    if world["not_shelved"]:
        lines.append("not shelved")
        out += sum(bool(d["out_by"]) for d in world["not_shelved"])
    for d in world["not_shelved"]:
        lines.append(f"    {d['disc_id']:<26} {_disc_note(d)}")
    click.echo(f"存放示意图 storage map: {shelved} discs in {len(world['cabinets'])} cabinets, "
               f"{out} out, {len(world['not_shelved'])} not shelved")
    _echo_lines(lines)


@main.command()
@_home_option
@click.argument("disc_ids", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def inspect(home, disc_ids, as_json):
    """Inspect discs: read each back in full and record its health (exit 1 if one is flagged)."""
    results = []
    with _errors():
        cfg = _config(home)
        for disc_id in disc_ids:
            results.append(lifecycle_jobs.inspect(cfg, disc_id, TerminalReporter()))
    if as_json:
        _emit_json([dict(r.row, reasons=r.reasons) for r in results])
    else:
        for r in results:
            row = r.row
            speed = f"{row['speed_kbs']:,.0f} kB/s" if row["speed_kbs"] else "-"
            click.echo(f"{r.disc_id}: {'passed' if row['passed'] else 'FAILED'}; "
                       f"{row['bad_sectors']} unreadable, {row['retried_sectors']} retried, "
                       f"{row['slow_sectors']} slow sectors; {speed}")
            for why in r.reasons:
                click.echo(_safe(f"{r.disc_id}: re-burn early: {why}"))
    flagged = [r.disc_id for r in results if r.flagged]
    if flagged:
        _fail(f"{', '.join(flagged)} flagged for an early re-burn: run `discarchive reburn "
              f"{flagged[0]}`", EXIT_FAILED)


@main.command()
@_home_option
@_AT
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def due(home, at, as_json):
    """Discs due for re-burn, and this year's inspection pull list, with their places."""
    with _errors():
        cfg = _config(home)
        inv = Inventory.open(cfg.inventory_path)
        try:
            answer = lifecycle.due(inv, _at(at, cfg), cfg.lifecycle, cfg.reburn_years)
        finally:
            inv.close()
    if as_json:
        _emit_json(answer)
        return
    click.echo(f"due on {answer['at']}: {len(answer['reburn'])} to re-burn, "
               f"{len(answer['inspect'])} to inspect ({answer['inspected_this_year']} of "
               f"{answer['current']} discs inspected this year, {answer['quota']} a year)")
    lines = []
    for title, rows in (("re-burn", answer["reburn"]), ("inspect (pull list)", answer["inspect"])):
        lines += [title] if rows else []
        lines += [f"  {r['disc_id']:<21} {lifecycle.volume_text(r)}; {r['place']}  -- {r['why']}"
                  for r in rows]
        if rows and title == "re-burn":
            lines += [f"  to re-burn {c['what']}: discarchive reburn {c['target']}"
                      for c in answer["commands"]]
    _echo_lines(lines)


@main.command()
@_home_option
@click.argument("target")
def reburn(home, target):
    """Re-burn TARGET from the best source: a copy (160-2025-S01-02-A), every current copy of
    a disc (160-2025-S01-02), or of every disc of a set (160-2025-S01)."""
    with _errors():
        cfg = _config(home)
        try:
            run = lifecycle_jobs.reburn(cfg, target, TerminalReporter())
        except lifecycle_jobs.NoSource as exc:     # the reads ran and failed: a failed job
            _fail(str(exc), EXIT_FAILED)
    for r in run.images:
        click.echo(_safe(f"disc {r.set_id} ({r.volume} of {r.volumes} of set {r.group_id}): "
                         f"source {r.source.kind}: {r.source.detail}"))
        for why in r.source.passed_over:
            click.echo(_safe(f"  passed over: {why}"))
        for new, state in r.copies.items():
            why = r.failures.get(new)
            click.echo(_safe(f"  {new} replaces {r.replaces[new]}: {state}"
                             f"{f' ({why})' if why else ''}"))
    for disc, why in run.skipped.items():
        click.echo(_safe(f"disc {disc}: not re-burned: {why}"))
    if run.ok:
        return
    again = [d for d in run.skipped]
    for r in run.images:
        failed = [r.replaces[c] for c, state in r.copies.items() if state != "verified"]
        again += [r.set_id] if failed and len(failed) == len(r.copies) > 1 else failed
    _fail(f"{len(again)} re-burn(s) not done (the copies they were to replace stay current): "
          f"put a good source or a new blank medium in a drive and run `discarchive reburn "
          f"{again[0]}`{' (then ' + ', '.join(again[1:]) + ')' if len(again) > 1 else ''}",
          EXIT_FAILED)


def _register_dir(cfg, out):
    return Path(out) if out else cfg.home / "registers"


def _approve(cfg, inv, listing: dict, refs, by: str, out) -> dict:
    """Export the destruction register for the chosen rows, then record the decision."""
    chosen = lifecycle.select(listing, refs)
    now = dt.datetime.now(dt.timezone.utc)
    day = _today(cfg).isoformat()
    files = registers.write_register(
        _register_dir(cfg, out), f"销毁清册-{now:%Y%m%dT%H%M%SZ}", "销毁清册",
        [f"批准人: {by}", f"批准日期: {day}", f"鉴定基准日: {listing['at']}",
         f"全宗号: {cfg.fonds}"],
        registers.DESTRUCTION_COLUMNS, registers.destruction_rows(chosen, by, day))
    decided = lifecycle.approve(inv, listing, refs, by, files, today=_today(cfg))
    decided["register"] = files
    return decided


@main.command()
@_home_option
@_AT
@click.option("--approve", "refs", multiple=True,
              help="Approve destroying this listed disc ID or 档号 (repeat; 'all' for the list).")
@click.option("--by", default=None, help="Who approved (with --approve).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the destruction register (default HOME/registers).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def appraisal(home, at, refs, by, out, as_json):
    """Records and discs due for appraisal (鉴定); --approve records a decision and
    exports the destruction register (销毁清册) as CSV and XLSX. Nothing is deleted."""
    if refs and not (by or "").strip():
        _fail("--approve needs who approved it: add --by NAME", EXIT_INPUT)
    if by and not refs:
        _fail("--by goes with --approve: name what is approved", EXIT_INPUT)
    if refs and at:
        _fail("--at goes with the listing only: an approval is judged at today's date; "
              "drop --at to approve what is due today", EXIT_INPUT)
    with _errors():
        if not refs:
            cfg = _config(home)
            inv = Inventory.open(cfg.inventory_path)
            try:
                listing = lifecycle.appraisal_list(inv, _at(at, cfg), cfg.lifecycle)
            finally:
                inv.close()
            decided = None
        else:
            with _signed_inventory(home) as (cfg, inv):
                listing = lifecycle.appraisal_list(inv, _at(at, cfg), cfg.lifecycle)
                decided = _approve(cfg, inv, listing, refs, by, out)
    if as_json:
        _emit_json(dict(listing, decision=decided))
        return
    if decided:
        click.echo(f"appraisal {decided['id']}: destruction of {len(decided['items'])} records "
                   f"and {len(decided['discs'])} discs approved by {_safe(by)}; nothing was deleted")
        click.echo(_safe(f"  register: {decided['register']['register_csv']}"))
        click.echo(_safe(f"  register: {decided['register']['register_xlsx']}"))
        return
    click.echo(f"due for appraisal on {listing['at']}: {len(listing['items'])} records, "
               f"{len(listing['discs'])} discs")
    for i in listing["items"]:
        click.echo(_safe(f"  {i['archival_code']}  {i['title']}  ({i['reason']}; on "
                         f"{i['set_id']}, {lifecycle.volume_text(i)})"))
    for d in listing["discs"]:
        click.echo(_safe(f"  {d['disc_id']:<21} {lifecycle.volume_text(d)}; {d['place']}  "
                         f"-- {d['why']}"))


@main.command()
@_home_option
@click.argument("year")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the list (default HOME/registers).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def handover(home, year, out, as_json):
    """Export the handover list (交接清单) of YEAR's records as CSV and XLSX."""
    if not (year.isdigit() and len(year) == 4):
        _fail(f"YEAR {year!r} is not a year: give four digits, e.g. 2024", EXIT_INPUT)
    with _errors():
        cfg = _config(home)
        inv = Inventory.open(cfg.inventory_path)
        try:
            count, rows = lifecycle.handover_rows(inv, year, cfg.category_order)
            day = _today(cfg).isoformat()
            files = registers.write_register(
                _register_dir(cfg, out), f"交接清单-{year}-{day}", f"{year}年度 交接清单",
                [f"全宗号: {cfg.fonds}", f"移交单位: {cfg.source_organization}",
                 f"件数: {count}", f"编制日期: {day}", "移交人:          接收人:"],
                registers.HANDOVER_COLUMNS, registers.handover_table(rows), count,
                TerminalReporter().progress("handover list"))
        finally:
            inv.close()
    if as_json:
        _emit_json({"year": year, "records": count, **files})
        return
    click.echo(f"handover list of {year}: {count} records")
    click.echo(_safe(f"  {files['register_csv']}"))
    click.echo(_safe(f"  {files['register_xlsx']}"))


@main.command("daemon")
@_home_option
@click.option("--once", is_flag=True,
              help="Run the jobs due now (missed runs included) and exit, without waiting.")
def daemon_command(home, once):
    """Run the scheduled jobs (intake, packing, due checks, inspections, alert digests).

    One line per event on stderr (key=value). Exit status 2 when another
    daemon already serves this home (the line names its PID). Under systemd:
    Type=notify (see systemd/discarchive.service).
    """
    from daemon.service import Daemon, pid_lock

    with _errors():
        d = Daemon(_config(home))
        if once:
            with pid_lock(d.cfg.home):
                outcomes = d.tick()
            failed = [j for j, o in outcomes.items() if o == "failed"]
            if failed:
                _fail(f"job(s) failed: {', '.join(failed)}: see the log lines above",
                      EXIT_FAILED)
            return
        d.run_forever()


_ALERT_FIELDS = ["id", "state", "kind", "threshold", "subject", "due_at", "location",
                 "raised_at", "notified_at", "acked_at", "acked_by", "message"]


@main.command("alerts")
@_home_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--all", "everything", is_flag=True, help="Cleared alerts too.")
@click.option("--ack", "ack_id", type=int, default=None, metavar="ID",
              help="Acknowledge alert ID (it stays listed as acked until it clears).")
def alerts_command(home, as_json, everything, ack_id):
    """List the alerts (open and acknowledged), or acknowledge one with --ack ID."""
    import datetime as dt
    import getpass

    from daemon import alerts as alerts_mod

    with _errors():
        inv = _inventory(home)
        try:
            if ack_id is not None:
                try:
                    row = alerts_mod.ack(inv, ack_id, getpass.getuser(),
                                         dt.datetime.now(dt.timezone.utc))
                except alerts_mod.AlertError as exc:
                    _fail(str(exc), EXIT_INPUT)
                if as_json:
                    _emit_json({k: row[k] for k in _ALERT_FIELDS})
                else:
                    click.echo(f"alert {ack_id} acknowledged")
                return
            rows = alerts_mod.list_alerts(inv, everything)
        finally:
            inv.close()
    if as_json:
        _emit_json([{k: r[k] for k in _ALERT_FIELDS} for r in rows])
        return
    if not rows:
        click.echo("no alerts")
        return
    fmt = "{:>4} {:<6} {:<18} {:<12} {:<20} {:<10} {}"
    click.echo(fmt.format("ID", "STATE", "KIND", "THRESHOLD", "SUBJECT", "DUE", "MESSAGE"))
    for r in rows:
        click.echo(fmt.format(r["id"], r["state"], r["kind"], r["threshold"],
                              _safe(r["subject"]), (r["due_at"] or "-")[:10],
                              _safe(r["message"])).rstrip())


_REQUEST_FIELDS = ["id", "state", "kind", "drive", "disc_id", "set_id", "media", "message",
                   "note", "outcome", "created_at", "updated_at"]


@main.command("queue")
@_home_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--all", "everything", is_flag=True, help="Done and cancelled requests too.")
def queue_command(home, as_json, everything):
    """List the daemon's requests to the operator: discs and blank media to insert."""
    from daemon import queue as queue_mod

    with _errors():
        inv = _inventory(home)
        try:
            rows = queue_mod.list_requests(inv, everything)
        finally:
            inv.close()
    if as_json:
        _emit_json([{k: r[k] for k in _REQUEST_FIELDS} for r in rows])
        return
    if not rows:
        click.echo("no requests: the daemon needs no disc now")
        return
    for r in rows:
        click.echo(_safe(f"#{r['id']} {r['state']:<9} {r['created_at'][:16]}  {r['message']}"))
        for extra in (r["note"], r["outcome"]):
            if extra:
                click.echo(_safe(f"    {extra}"))


if __name__ == "__main__":
    main()
