"""A source that is itself a BagIt bag is validated first (the conformance suite)."""

from __future__ import annotations

import pytest

from conftest import SHARED
from inventory.store import Inventory
from test_main_job import _discs, _nothing_recorded, _one_line_error

SUITE = SHARED / "conformance" / "bagit"


def _cases(*kinds: str) -> list:
    if not SUITE.is_dir():
        return []
    return sorted(p for kind in kinds for v in ("v0.97", "v1.0")
                  for p in (SUITE / v / kind).glob("*") if p.is_dir())


@pytest.mark.parametrize("case", _cases("invalid", "linux-only"), ids=lambda p: p.name)
def test_an_invalid_bag_is_refused_with_its_reason(home, run, case):
    res = run("archive", str(case))
    _one_line_error(res, 2, "is a BagIt bag that does not validate", "validate-bag")
    _nothing_recorded(home)


def test_a_valid_bag_is_archived_as_its_payload(home, run):
    case = SUITE / "v1.0" / "valid" / "basicBag"
    if not case.is_dir():
        pytest.skip("conformance suite not present")
    res = run("archive", str(case), "--copies", "1")
    assert res.exit_code == 0, res.stderr
    assert "its payload (data/) is archived" in res.stderr
    (disc,) = _discs(run)
    assert disc["state"] == "verified"
    payload = sorted(p.relative_to(case / "data").as_posix()
                     for p in (case / "data").rglob("*") if p.is_file())
    inv = Inventory.open(home / "inventory.db")
    assert sorted(i["path"] for i in inv.items(disc["set_id"])) == payload
