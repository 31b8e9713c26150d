"""Configuration: the archive home, its TOML config, and the media profiles.

An *archive home* is one folder holding everything discarchive keeps::

    HOME/discarchive.toml   the configuration (commented TOML)
    HOME/inventory.db       the inventory (SQLite, WAL)
    HOME/images/            retained ISO images, one per disc
    HOME/keys/signing.key   the Ed25519 signing key (PEM, mode 0600)
    HOME/keys/signing.pub   its public key (PEM)
    HOME/scratch/           scratch space for one job (the tag files)
    HOME/media/             medium files of file-backed drives (optional)

The defaults live in ``config/defaults.toml`` beside this module; ``init``
copies that file into the home, so every default is visible and editable.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import platformdirs

CONFIG_NAME = "discarchive.toml"
INVENTORY_NAME = "inventory.db"

MEDIA_SECTORS: dict[str, int] = {
    "cd-r": 359_849,
    "dvd-r": 2_298_496,
    "dvd+r": 2_295_104,
    "dvd-r-dl": 4_171_712,
    "dvd+r-dl": 4_173_824,
    "bd-r": 12_219_392,
    "bd-r-dl": 24_438_784,
    "bd-r-xl": 48_878_592,
}
"""Recordable capacity of each medium profile in 2048-byte sectors (the brief's table)."""

RETENTION_CODES = {"永久": "Y", "100年": "D100", "50年": "D50", "30年": "D30", "10年": "D10"}
"""Retention periods (保管期限) and their DA/T 22-2015 codes."""

RETENTION_YEARS = {"永久": None, "100年": 100, "50年": 50, "30年": 30, "10年": 10}
"""Retention periods in years; None is permanent."""


CATEGORY_ORDER = ("社保登记类", "参保人员类", "申报结算类", "保险关系转停类", "待遇类")
"""Business categories (业务类别) in the seed's order within a unit and year."""

SIDES = {"社保登记类": "收", "参保人员类": "收", "申报结算类": "收", "保险关系转停类": "收",
         "待遇类": "支"}
"""收支两条线: each category's side, collection (收, 征收) or payment (支, 支付)."""

CATEGORY_CODES = {"社保登记类": "DJ", "参保人员类": "RY", "申报结算类": "JS",
                  "保险关系转停类": "ZT", "待遇类": "DY"}
"""机构(问题)代码 of each category in an archival code (DA/T 22-2015)."""


class ConfigError(Exception):
    """The home or its config is missing or wrong; the message says what to do."""


def default_home() -> Path:
    """The archive home: ``$DISCARCHIVE_HOME``, else the platform's data directory."""
    env = os.environ.get("DISCARCHIVE_HOME")
    if env:
        return Path(env)
    return Path(platformdirs.user_data_dir("discarchive", appauthor=False))


def defaults_text() -> str:
    """The commented default config file, as shipped in ``config/defaults.toml``."""
    return resources.files(__package__).joinpath("defaults.toml").read_text(encoding="utf-8")


MAX_CUSTOM_SECTORS = 2**32 - 1
"""The largest ``custom:`` medium, in 2048-byte sectors (ISO 9660's volume space size)."""


def media_sectors(name: str) -> int:
    """Capacity in 2048-byte sectors of a medium profile.

    ``name`` is a profile from :data:`MEDIA_SECTORS` or ``custom:SECTORS``
    (a made-up medium, for tests and odd media), at most 2^32 - 1 sectors:
    the most an ISO 9660 volume counts (ECMA-119 8.4.8, a 32-bit field).
    Raises ConfigError.
    """
    key = name.strip().lower()
    if key in MEDIA_SECTORS:
        return MEDIA_SECTORS[key]
    digits = key[7:]
    if key.startswith("custom:") and digits.isascii() and digits.isdigit():
        if 0 < int(digits) <= MAX_CUSTOM_SECTORS:
            return int(digits)
        if int(digits) > MAX_CUSTOM_SECTORS:
            raise ConfigError(f"medium {name!r} has more sectors than an ISO 9660 image can "
                              f"count: give at most custom:{MAX_CUSTOM_SECTORS}")
    raise ConfigError(
        f"unknown medium {name!r}: use one of {', '.join(MEDIA_SECTORS)} or custom:SECTORS")


@dataclass
class Config:
    """The settings of one archive home (see ``config/defaults.toml``)."""

    home: Path
    source_organization: str = "区社会保险局"
    fonds: str = "160"
    media: str = "dvd-r"
    copies: int = 2
    burn_attempts: int = 2
    reburn_years: int = 4
    keep_images: bool = True
    retention: dict[str, str] = field(default_factory=dict)
    class_code: str = "SB"
    category_order: list[str] = field(default_factory=lambda: list(CATEGORY_ORDER))
    sides: dict[str, str] = field(default_factory=lambda: dict(SIDES))
    category_codes: dict[str, str] = field(default_factory=lambda: dict(CATEGORY_CODES))
    drives: list[dict] = field(default_factory=list)
    check: object = None   # verification.fourcheck.CheckSettings
    lifecycle: object = None   # inventory.lifecycle.LifecycleSettings
    daemon: object = None  # daemon.settings.DaemonSettings
    alerts: object = None  # daemon.settings.AlertSettings

    @property
    def inventory_path(self) -> Path:
        """The inventory's SQLite file."""
        return self.home / INVENTORY_NAME

    @property
    def images_dir(self) -> Path:
        """Folder of retained ISO images."""
        return self.home / "images"

    @property
    def work_dir(self) -> Path:
        """Scratch folder for running jobs."""
        return self.home / "scratch"

    @property
    def key_path(self) -> Path:
        """The Ed25519 private key (PEM, mode 0600)."""
        return self.home / "keys" / "signing.key"

    @property
    def public_key_path(self) -> Path:
        """The Ed25519 public key (PEM)."""
        return self.home / "keys" / "signing.pub"


_ARCHIVE_KEYS = {"source_organization": str, "fonds": str, "media": str, "copies": int,
                 "burn_attempts": int, "reburn_years": int, "keep_images": bool,
                 "retention": dict, "class_code": str, "category_order": list, "sides": dict,
                 "category_codes": dict}
_DRIVE_KEYS = {"name": str, "adapter": str, "media_dir": str, "timeout": (int, float)}
"""Keys every drive table may have; each adapter checks the rest (burners.open_drive)."""
_TYPE_WORDS = {str: "a quoted text", int: "a whole number", bool: "true or false",
               dict: "a table", list: "a list [...]", (int, float): "a number"}


def _letters_and_digits(value: object) -> bool:
    """True for a non-empty text of ASCII letters and digits only: safe in an ID,
    an archival code (档号, DA/T 22-2015) and a file name."""
    return isinstance(value, str) and value.isascii() and value.isalnum()


def _check(where: str, table: dict, schema: dict) -> None:
    """Refuse unknown keys and values of the wrong type (bool is not a number)."""
    for key, value in table.items():
        want = schema.get(key)
        if want is None:
            raise ConfigError(f"{where}: unknown setting {key!r}: check its spelling "
                              f"(known: {', '.join(schema)})")
        wrong_bool = isinstance(value, bool) and want is not bool
        if wrong_bool or not isinstance(value, want):
            raise ConfigError(f"{where}: {key} must be {_TYPE_WORDS[want]}, not {value!r}")


_CHECK_KEYS = {"formats": list, "virus_scan": list, "virus_scan_timeout": (int, float),
               "required_fields": list}


def _check_settings(where: str, table: dict):
    """The four-property check's settings from the ``[check]`` table (ConfigError if wrong)."""
    from verification.fourcheck import CheckSettings

    _check(f"{where} [check]", table, _CHECK_KEYS)
    for key in ("formats", "virus_scan", "required_fields"):
        if not all(isinstance(v, str) for v in table.get(key, [])):
            raise ConfigError(f"{where} [check]: {key} must be a list of quoted texts")
    try:
        return CheckSettings(**{k: tuple(v) if isinstance(v, list) else float(v)
                                for k, v in table.items()})
    except ValueError as exc:
        raise ConfigError(f"{where} [check]: {exc}") from None


def _lifecycle_settings(where: str, table: dict):
    """The disc lifecycle's settings from the ``[lifecycle]`` table (ConfigError if wrong)."""
    from inventory.lifecycle import LifecycleSettings

    try:
        return LifecycleSettings.from_table(table)
    except ValueError as exc:
        raise ConfigError(f"{where} [lifecycle]: {exc}") from None


def load(home: Path) -> Config:
    """Read and check ``HOME/discarchive.toml``.

    Every key and value type is checked here, so a job never starts on a
    config it would trip over halfway. Raises ConfigError with the fix.
    """
    home = Path(home).absolute()   # paths recorded in the inventory must not depend on the cwd
    path = home / CONFIG_NAME
    if not path.is_file():
        raise ConfigError(
            f"no archive home at {home}: run `discarchive init --home {home}` first "
            "or set DISCARCHIVE_HOME")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}): fix or restore it") from None
    _check(str(path), data, {"archive": dict, "drives": list, "check": dict, "lifecycle": dict,
                             "daemon": dict, "alerts": dict})
    arch = data.get("archive", {})
    _check(f"{path} [archive]", arch, _ARCHIVE_KEYS)
    cfg = Config(home=home)
    for key in _ARCHIVE_KEYS:
        if key in arch and key not in ("retention", "sides", "category_codes"):
            setattr(cfg, key, arch[key])
    cfg.sides = dict(arch.get("sides", SIDES))
    cfg.category_codes = dict(arch.get("category_codes", CATEGORY_CODES))
    for category, side in cfg.sides.items():
        if side not in ("收", "支"):
            raise ConfigError(f"{path}: [archive.sides] {category} = {side!r}: write \"收\" "
                              "(collection) or \"支\" (payment)")
    for category, code in cfg.category_codes.items():
        if not _letters_and_digits(code):
            raise ConfigError(f"{path}: [archive.category_codes] {category} = {code!r}: "
                              "use letters and digits, e.g. \"DJ\"")
    if not all(isinstance(c, str) for c in cfg.category_order):
        raise ConfigError(f"{path}: archive.category_order must be a list of quoted texts")
    if not _letters_and_digits(cfg.fonds):
        raise ConfigError(f"{path}: archive.fonds {cfg.fonds!r}: the fonds number (全宗号, "
                          "DA/T 22-2015) is letters and digits only, e.g. \"160\"")
    if not _letters_and_digits(cfg.class_code):
        raise ConfigError(f"{path}: archive.class_code {cfg.class_code!r}: use letters and "
                          "digits, e.g. \"SB\"")
    cfg.retention = dict(arch.get("retention", {}))
    for category, r in cfg.retention.items():
        if r not in RETENTION_CODES:
            raise ConfigError(f"{path}: retention {r!r} of {category} is not one of "
                              f"{', '.join(RETENTION_CODES)}")
    if not 1 <= cfg.copies <= 9:
        raise ConfigError(f"{path}: archive.copies must be from 1 to 9")
    if not 1 <= cfg.burn_attempts <= 9:
        raise ConfigError(f"{path}: archive.burn_attempts must be from 1 to 9")
    if not 1 <= cfg.reburn_years <= 50:
        raise ConfigError(f"{path}: archive.reburn_years must be from 1 to 50")
    cfg.media = cfg.media.strip().lower()
    media_sectors(cfg.media)
    cfg.check = _check_settings(str(path), data.get("check", {}))
    cfg.lifecycle = _lifecycle_settings(str(path), data.get("lifecycle", {}))
    from daemon.settings import alert_settings, daemon_settings
    cfg.daemon = daemon_settings(str(path), data.get("daemon", {}), home, _check)
    cfg.alerts = alert_settings(str(path), data.get("alerts", {}), _check)
    for i, d in enumerate(data.get("drives", [])):
        where = f"{path} [[drives]] number {i + 1}"
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: must be a table ([[drives]] with name, adapter, ...)")
        _check(where, {k: v for k, v in d.items() if k in _DRIVE_KEYS}, _DRIVE_KEYS)
        d = dict(d)
        d.setdefault("name", f"drive{i + 1}")
        if d.get("media_dir"):
            if not os.path.isabs(d["media_dir"]):
                d["media_dir"] = str(home / d["media_dir"])
            if os.path.exists(d["media_dir"]) and not os.path.isdir(d["media_dir"]):
                raise ConfigError(f"{where}: media_dir {d['media_dir']} is not a folder")
        if d.get("timeout", 0) < 0:
            raise ConfigError(f"{where}: timeout must be 0 (none) or more seconds")
        if not d["name"].strip() or d["name"] != d["name"].strip():
            raise ConfigError(f"{where}: name {d['name']!r} must be a name without leading or "
                              "trailing spaces, e.g. \"file-a\"")
        if any(d["name"] == other["name"] for other in cfg.drives):
            raise ConfigError(f"{where}: name {d['name']!r} is already the name of another "
                              "drive: give each [[drives]] its own name")
        cfg.drives.append(d)
    return cfg
