"""Make a new archive home (``discarchive init``).

The home is built in a sibling scratch folder and renamed into place at the
end, so a crash leaves either no home or a complete one.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from . import CONFIG_NAME, INVENTORY_NAME, ConfigError, defaults_text

REAL_DRIVE = """
[[drives]]
name = "sr0"
adapter = "xorriso"
device = "/dev/sr0"
timeout = 7200
"""

FILE_DRIVES = """
# Two file-backed drives: xorriso burns each medium into a file under media/
# through its stdio: pseudo-drives. For trying discarchive without a burner.
[[drives]]
name = "file-a"
adapter = "xorriso"
media_dir = "media"
timeout = 3600

[[drives]]
name = "file-b"
adapter = "xorriso"
media_dir = "media"
timeout = 3600
"""


def init_home(home: Path, file_drives: bool = False) -> Path:
    """Create an archive home at ``home`` and return it.

    Writes the commented config (with one real drive ``/dev/sr0``, or with
    ``file_drives`` two xorriso drives writing medium files into
    ``HOME/media``), an empty inventory (SQLite, WAL), ``images/``,
    ``scratch/`` and a new Ed25519 key pair in ``keys/`` (private key 0600).
    Raises ConfigError if ``home`` exists and is not an empty folder.
    """
    from inventory.store import Inventory
    from manifests import signing

    home = Path(home).absolute()
    if home.exists() and (not home.is_dir() or any(home.iterdir())):
        raise ConfigError(f"{home} already exists and is not empty: choose another --home "
                          "(an archive home is never overwritten)")
    home.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{home.name}.init-", dir=home.parent))
    try:
        os.chmod(tmp, 0o750)
        text = defaults_text() + (FILE_DRIVES if file_drives else REAL_DRIVE)
        (tmp / CONFIG_NAME).write_text(text, encoding="utf-8")
        for sub in ("images", "scratch") + (("media",) if file_drives else ()):
            (tmp / sub).mkdir()
        signing.generate_key(tmp / "keys" / "signing.key", tmp / "keys" / "signing.pub")
        Inventory.create(tmp / INVENTORY_NAME).close()
        if home.exists():
            home.rmdir()
        os.rename(tmp, home)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return home


class HomeBusy(ConfigError):
    """Another discarchive job holds the home's lock."""


@contextmanager
def pid_file_lock(path: Path, busy: Callable[[str], Exception], mode: int = 0o640):
    """Hold an advisory flock on ``path`` with this process's PID written in it.

    The lock dies with its process, so a killed holder never leaves it stuck.
    When another process holds it, raises ``busy(pid)``: the exception to
    raise, given that holder's PID as written in the file ("unknown" if none).
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise busy(pid) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


@contextmanager
def locked(home: Path):
    """Hold the home's job lock (``HOME/lock``, an advisory flock) for one job.

    Jobs that write the inventory or the images run one at a time per home;
    the lock dies with its process, so a killed job never leaves it stuck.
    Raises HomeBusy naming the PID that holds it.
    """
    with pid_file_lock(Path(home) / "lock", lambda pid: HomeBusy(
            f"another discarchive job (PID {pid}) is using {home}: wait for it to finish, "
            "then run this again")):
        yield
