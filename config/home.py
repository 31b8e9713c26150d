"""Make a new archive home (``discarchive init``).

The home is built in a sibling scratch folder and renamed into place at the
end, so a crash leaves either no home or a complete one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

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
    ``work/`` and a new Ed25519 key pair in ``keys/`` (private key 0600).
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
        for sub in ("images", "work") + (("media",) if file_drives else ()):
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
