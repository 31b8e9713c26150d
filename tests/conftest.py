"""Shared fixtures: archive homes with file-backed drives, the demo and sample archives."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli
from config.home import init_home

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SAMPLE = SHARED / "sample-archive"


def _demo_module():
    spec = importlib.util.spec_from_file_location("make_archive", ROOT / "demo" / "make_archive.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def demo_archive(tmp_path_factory) -> Path:
    """The project's own demo archive, generated once per test session (read-only by convention)."""
    out = tmp_path_factory.mktemp("demo") / "archive"
    _demo_module().make(out)
    return out


@pytest.fixture
def sample_archive() -> Path:
    """../shared/sample-archive (real OFD, PDF, TIFF, JPEG files); skipped when absent."""
    if not SAMPLE.is_dir():
        pytest.skip("../shared/sample-archive is not present")
    return SAMPLE


@pytest.fixture
def source_copy(demo_archive, tmp_path) -> Path:
    """A private copy of the demo archive that a test may change."""
    dest = tmp_path / "source"
    shutil.copytree(demo_archive, dest)
    return dest


@pytest.fixture
def home(tmp_path) -> Path:
    """A fresh archive home with two xorriso file-backed drives."""
    return init_home(tmp_path / "home", file_drives=True)


class Cli:
    """Runs discarchive's commands in-process; returns click's Result (stdout and stderr apart)."""

    def __init__(self, home: Path):
        self.home = home
        self.runner = CliRunner()

    def __call__(self, *args: str, env: dict | None = None):
        cmd, rest = args[0], list(args[1:])
        full = [cmd] + (["--home", str(self.home)] if self.home and cmd != "init" else []) + rest
        return self.runner.invoke(cli.main, full, env=env, catch_exceptions=False)


@pytest.fixture
def run(home) -> Cli:
    return Cli(home)


def tree_state(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every path below ``root`` with its mode, mtime and content: to prove a tree untouched."""
    state = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        state[str(p.relative_to(root))] = (st.st_mode, st.st_mtime_ns,
                                           p.read_bytes() if p.is_file() else b"")
    return state


def extract_bag(home: Path, dest: Path) -> Path:
    """Extract the home's (only) kept image into folder ``dest`` with bsdtar; make it writable."""
    import subprocess
    (image,) = sorted((home / "images").glob("*.iso"))
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["bsdtar", "-xf", str(image), "-C", str(dest)], check=True)
    for p in dest.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dest


def flip_byte(path, offset: int, mask: int = 0x20) -> None:
    """Change one byte of a file in place (XOR ``mask``): a damaged sector, a tampered file."""
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ mask]))


@pytest.fixture(scope="session")
def one_set_archive(demo_archive, tmp_path_factory) -> Path:
    """The demo archive's 2024 collection (收) records alone: one disc set of one disc.

    For tests of what happens to one image and its copies; an archive run of
    the whole demo archive makes four sets (two years, 收 and 支).
    """
    import csv
    out = tmp_path_factory.mktemp("one-set") / "archive"
    with open(demo_archive / "归档文件目录.csv", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["文件"].startswith("2024/") and r["收支"] != "支"]
    for r in rows:
        (out / r["文件"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(demo_archive / r["文件"], out / r["文件"])
    with open(out / "归档文件目录.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return out
