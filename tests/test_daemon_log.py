"""The daemon's log lines: key=value, one line per event, journald priorities, masking."""

from __future__ import annotations

import datetime as dt
import io
import re
import shutil
from zoneinfo import ZoneInfo

from daemon.log import EventLog, format_line, mask_id_cards, mask_path, mask_text
from daemon.service import Daemon

ID = "110105199003071234"
ID_X = "11010519900307123X"


def test_identity_card_numbers_keep_only_their_last_four():
    assert mask_id_cards(f"card {ID} and {ID_X}.") == "card **************1234 and **************123X."
    assert mask_id_cards(f"x{ID}") == f"x{ID}"               # part of a longer word: not a card
    assert mask_id_cards("1" + ID) == "1" + ID               # 19 digits: not a card
    sha = "ab" + ID + "c" * 44
    assert mask_id_cards(sha) == sha                         # inside a SHA-256: left alone
    assert mask_id_cards("91500103MA5U7K8L9M") == "91500103MA5U7K8L9M"   # a unit's credit code


def test_names_in_paths_are_masked_codes_and_extensions_kept():
    path = "/srv/incoming/2024/91500103MA5U7K8L9M_示例五金制品有限公司/02_参保人员类/0001_张三参保登记表.pdf"
    assert mask_path(path) == ("/srv/incoming/2024/91500103MA5U7K8L9M_*/02_*/0001_*.pdf")
    assert mask_path("/srv/incoming/张三") == "/srv/incoming/*"
    assert mask_path(f"/srv/{ID}_王五/a.pdf") == "/srv/*/a.pdf"   # nothing of the card left
    assert mask_text(f"cannot read /srv/2024/01_李四.pdf now") == "cannot read /srv/2024/01_*.pdf now"


def test_a_line_is_key_value_and_one_line_whatever_the_values():
    line = format_line("warning", "job.note", {"text": 'two\nlines "quoted"', "n": 3,
                                               "none": None, "path": "/a b/c"},
                       journal=False, now=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc))
    assert line == ('at=2026-01-02T03:04:05Z level=warning event=job.note '
                    'text="two\\\\nlines \\"quoted\\"" n=3 path="/a b/c"')
    assert "\n" not in line


def test_under_journald_lines_carry_their_priority_and_no_time(monkeypatch):
    out = io.StringIO()
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    log = EventLog(out)
    log("daemon.started", pid=1)
    log("job.failed", "error", job="intake")
    log("alert.raised", "warning", kind="damaged")
    assert out.getvalue().splitlines() == [
        "<6>level=info event=daemon.started pid=1", "<3>level=error event=job.failed job=intake",
        "<4>level=warning event=alert.raised kind=damaged"]


def test_a_daemon_packing_a_batch_logs_no_names_and_no_card_numbers(home, tmp_path, demo_archive):
    from tests.test_daemon import configure
    batch = tmp_path / "incoming" / f"2024_张三_{ID}"
    shutil.copytree(demo_archive, batch)
    cfg = configure(home, f"""
[daemon]
timezone = "Asia/Shanghai"
sources = ["{tmp_path / 'incoming'}"]
settle_minutes = 0
""")
    out = io.StringIO()
    d = Daemon(cfg, log=EventLog(out, journal=False))
    inv_now = dt.datetime(2025, 1, 31, 7, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    from inventory.store import Inventory
    inv = Inventory.open(cfg.inventory_path)
    try:
        d.job_deadline(inv, cfg, inv_now)
    finally:
        inv.close()
    text = out.getvalue()
    assert "event=pack.done" in text and "2024_*" in text
    assert ID not in text and "张三" not in text
    assert not re.search(r"[\u4e00-\u9fff]", "".join(
        v for line in text.splitlines() for k, v in re.findall(r"(\w+)=(\S+)", line)
        if k in ("batch", "path", "source")))
