"""systemd's service notification protocol (sd_notify(3)), in a few lines.

A service of ``Type=notify`` tells systemd it is ready (``READY=1``), what it
is doing (``STATUS=...``, shown by ``systemctl status``), that it is alive
(``WATCHDOG=1``, at least every ``WATCHDOG_USEC`` microseconds / 2) and that
it is stopping (``STOPPING=1``), as newline-separated ``KEY=VALUE`` lines in
one datagram sent to the AF_UNIX socket named by ``$NOTIFY_SOCKET``. A name
starting with ``@`` is in the abstract namespace. Without ``$NOTIFY_SOCKET``
(not under systemd) every call does nothing.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    """Sends sd_notify messages to ``$NOTIFY_SOCKET`` (or the ``path`` given)."""

    def __init__(self, path: str | None = None):
        self.path = path if path is not None else os.environ.get("NOTIFY_SOCKET", "")
        if self.path.startswith("@"):
            self.path = "\0" + self.path[1:]

    @property
    def enabled(self) -> bool:
        """True when there is a socket to tell."""
        return bool(self.path)

    def send(self, **fields: str | int) -> bool:
        """Send one message, e.g. ``send(READY=1, STATUS="idle")``; True if it was sent.

        Newlines in values are replaced by spaces (one field per line).
        Errors (no listener, socket gone) are swallowed: systemd may have
        stopped listening, and the daemon's work must go on.
        """
        if not self.path:
            return False
        text = "\n".join(f"{k}={str(v).replace(chr(10), ' ')}" for k, v in fields.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.connect(self.path)
                s.sendall(text.encode("utf-8"))
            return True
        except OSError:
            return False

    def ready(self, status: str = "") -> bool:
        """``READY=1`` (with a status line): startup is done."""
        return self.send(READY=1, STATUS=status) if status else self.send(READY=1)

    def status(self, text: str) -> bool:
        """``STATUS=``: the current step, for ``systemctl status``."""
        return self.send(STATUS=text)

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: still alive."""
        return self.send(WATCHDOG=1)

    def stopping(self, status: str = "") -> bool:
        """``STOPPING=1``: shutting down."""
        return self.send(STOPPING=1, STATUS=status) if status else self.send(STOPPING=1)

    def reloading(self) -> bool:
        """``RELOADING=1``: reading the configuration again (send ready() after it)."""
        return self.send(RELOADING=1)


def watchdog_seconds() -> float | None:
    """Seconds between watchdog pings asked by systemd (half of ``WATCHDOG_USEC``), or None.

    ``WATCHDOG_PID``, when set, must be this process.
    """
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6
