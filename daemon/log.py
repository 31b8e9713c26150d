"""The daemon's log: one line per event on stderr, ``key=value``, with personal data masked.

A line looks like ``level=info event=job.done job=intake outcome=ok batches=2``:
``level`` and ``event`` first, then the fields in the order given. Values
with spaces, quotes or ``=`` are double-quoted (backslash escapes inside),
control characters are escaped, so one event is always one line. Under
systemd (``JOURNAL_STREAM`` set) each line starts with its syslog priority
(``<6>`` info, ``<4>`` warning, ``<3>`` error), which journald turns into the
entry's priority, and carries no time (journald stamps it); elsewhere it
starts with ``at=`` and the time in UTC.

Masking rule (no personal data in the log):

* A resident identity-card number (GB 11643: 17 digits and a digit or X)
  standing on its own keeps only its last four characters:
  ``110105199003071234`` -> ``**************1234``.
* In a path (any value holding ``/``, and every ``path``/``source``/``batch``
  field) each component with non-ASCII characters (a Chinese unit, person or
  title name) keeps only its leading code (ASCII letters, digits, ``.-``
  before the first ``_`` or the first non-ASCII character) and its file
  extension; the rest becomes ``*``: ``2024/91110000_某公司/02_参保人员类/0001_张三.pdf``
  -> ``2024/91110000_*/02_*/0001_*.pdf``. ASCII components (years, codes,
  the home's own folders) are kept. Names written in Latin letters cannot
  be told from other words and are not masked: keep person names out of
  folder names in Latin letters.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sys
import threading
from typing import Any, TextIO

_ID_CARD = re.compile(r"(?<![0-9A-Za-z])(\d{14})(\d{3}[\dXx])(?![0-9A-Za-z])")
_CODE = re.compile(r"^[0-9A-Za-z.\-]*")
_PATH_KEYS = {"path", "source", "batch", "file", "folder"}
_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3}


def mask_id_cards(text: str) -> str:
    """``text`` with every standalone 18-character identity-card number masked but its last 4."""
    return _ID_CARD.sub(lambda m: "*" * 14 + m.group(2)[-4:], text)


def mask_component(name: str) -> str:
    """One path component masked by the rule above (ASCII-only names are kept)."""
    if name.isascii():
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or not ext.isascii() or not ext or len(ext) > 8:
        stem, ext = name, ""
    code = _CODE.match(stem).group(0)
    return f"{code}{'_' if stem[len(code):len(code) + 1] == '_' else ''}*" + (f".{ext}" if ext else "")


def mask_path(path: str) -> str:
    """A path with every component masked (identity-card numbers too); separators kept."""
    return "/".join(mask_component(mask_id_cards(p)) for p in str(path).split("/"))


def mask_text(text: str) -> str:
    """Free text masked: identity-card numbers, and each whitespace-separated word with a ``/``."""
    text = mask_id_cards(text)
    return " ".join(mask_path(w) if "/" in w else w for w in text.split(" "))


def _quote(value: str) -> str:
    value = "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)
    if value and not any(c in value for c in ' "=\\'):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_line(level: str, event: str, fields: dict[str, Any], journal: bool,
                now: dt.datetime | None = None) -> str:
    """One log line (without the newline); see the module's description."""
    parts = []
    if journal:
        prefix = f"<{_PRIORITY.get(level, 6)}>"
    else:
        prefix = ""
        at = (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
        parts.append(f"at={at.strftime('%Y-%m-%dT%H:%M:%SZ')}")
    parts += [f"level={level}", f"event={_quote(event)}"]
    for key, value in fields.items():
        if value is None:
            continue
        text = str(value)
        text = mask_path(text) if key in _PATH_KEYS else mask_text(text)
        parts.append(f"{key}={_quote(text)}")
    return prefix + " ".join(parts)


class EventLog:
    """Writes event lines to a stream (stderr by default); thread-safe.

    ``journal`` defaults to whether ``JOURNAL_STREAM`` is set (systemd
    connected stderr to the journal).
    """

    def __init__(self, stream: TextIO | None = None, journal: bool | None = None):
        self.stream = stream
        self.journal = bool(os.environ.get("JOURNAL_STREAM")) if journal is None else journal
        self._lock = threading.Lock()

    def __call__(self, event: str, level: str = "info", **fields: Any) -> None:
        """Write one event: ``log("job.done", job="intake", outcome="ok")``."""
        line = format_line(level, event, fields, self.journal)
        stream = self.stream or sys.stderr
        with self._lock:
            stream.write(line + "\n")
            stream.flush()
