"""Optical drive adapters behind one interface (see :mod:`burners.base`).

Build a drive from its ``[[drives]]`` config table with :func:`open_drive`.
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping

from .base import SECTOR, BurnResult, Drive, DriveError, DriveInfo, MediumStatus
from .virtual import VirtualDrive
from .xorriso import XorrisoDrive

__all__ = ["SECTOR", "BurnResult", "Drive", "DriveError", "DriveInfo", "MediumStatus",
           "VirtualDrive", "XorrisoDrive", "ADAPTERS", "discover", "open_drive"]

ADAPTERS = {"xorriso": "burners.xorriso", "virtual": "burners.virtual",
            "growisofs": "burners.growisofs", "wodim": "burners.wodim",
            "imapi2": "burners.imapi2", "drutil": "burners.macos"}
"""Adapter name (a drive's ``adapter`` in the config) -> the module that implements it."""


def _module(adapter: str):
    return importlib.import_module(ADAPTERS[adapter])


def discover() -> list[DriveInfo]:
    """Every drive any adapter's tool can see on this host (tools missing: skipped)."""
    found: list[DriveInfo] = []
    for adapter in ADAPTERS:
        if adapter == "virtual":
            continue
        try:
            found.extend(_module(adapter).discover())
        except DriveError:
            continue    # a tool that hangs or fails finds nothing; `drives` shows configured ones
    return found

_KEYS = {
    "xorriso": {"name", "adapter", "device", "media_dir", "xorriso", "timeout"},
}


def open_drive(spec: Mapping[str, Any]) -> Drive:
    """Build the drive a config table describes.

    Keys: ``name``; ``adapter`` (``xorriso`` or ``virtual``); for xorriso
    exactly one of ``device`` (e.g. ``/dev/sr0``) and ``media_dir`` (folder of
    medium files), plus optional ``xorriso`` (program name or path, default
    ``xorriso``) and ``timeout`` (seconds per xorriso run; 0 or absent: none);
    for virtual ``media_dir`` and ``capacity_sectors`` (2048-byte sectors per
    medium), optional ``medium_type`` (default ``DVD-R``).

    Raises DriveError ``config`` with one line naming the drive and the fix
    for an unknown adapter, a missing or unknown key, or a bad combination.
    Does not touch the drive or check that xorriso is installed.
    """
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise DriveError("a drive in the config has no name: add name = \"sr0\" (any label)",
                         "config")
    adapter = spec.get("adapter")
    if adapter not in ADAPTERS:
        raise DriveError(f"drive {name}: unknown adapter {adapter!r}; set adapter to one of "
                         f"{', '.join(ADAPTERS)}", "config")
    if adapter not in _KEYS:
        return _module(adapter).from_config(spec)
    unknown = sorted(set(spec) - _KEYS[adapter])
    if unknown:
        raise DriveError(f"drive {name}: {', '.join(unknown)} not used by the {adapter} adapter; "
                         f"remove it (known keys: {', '.join(sorted(_KEYS[adapter]))})", "config")
    if adapter == "virtual":
        if not spec.get("media_dir") or "capacity_sectors" not in spec:
            raise DriveError(f"drive {name}: a virtual drive needs media_dir and "
                             "capacity_sectors (2048-byte sectors, e.g. 2298496 for DVD-R)",
                             "config")
        return VirtualDrive(name, spec["media_dir"], spec["capacity_sectors"],
                            spec.get("medium_type", "DVD-R"))
    device, media_dir = spec.get("device") or None, spec.get("media_dir") or None
    if (device is None) == (media_dir is None):
        raise DriveError(f"drive {name}: set exactly one of device (e.g. \"/dev/sr0\") "
                         "or media_dir (a folder of medium files)", "config")
    return XorrisoDrive(name, device=device, media_dir=media_dir,
                        xorriso=spec.get("xorriso") or "xorriso", timeout=spec.get("timeout"))
