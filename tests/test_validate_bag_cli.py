"""`discarchive validate-bag`: exit status and output on the conformance suite."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import cli
from conftest import SHARED, extract_bag

SUITE = SHARED / "conformance" / "bagit"


def _cases(kind: str) -> list:
    if not SUITE.is_dir():
        return []
    return sorted(p for v in ("v0.97", "v1.0") for p in (SUITE / v / kind).glob("*") if p.is_dir())


def _run(*args):
    return CliRunner().invoke(cli.main, ["validate-bag", *map(str, args)], catch_exceptions=False)


@pytest.mark.parametrize("case", _cases("valid"), ids=lambda p: p.name)
def test_valid_bags_exit_0(case):
    res = _run(case)
    assert res.exit_code == 0 and res.stdout.strip().endswith(")") and ": valid" in res.stdout


@pytest.mark.parametrize("case", _cases("invalid") + _cases("linux-only"), ids=lambda p: p.name)
def test_invalid_bags_exit_1_with_reasons(case):
    res = _run(case, "--json")
    assert res.exit_code == 1
    report = json.loads(res.stdout)
    assert report["valid"] is False and report["problems"]


def test_the_whitespace_case_that_bagit_python_accepts_is_refused():
    case = SUITE / "v1.0" / "invalid" / "bagit-with-invalid-whitespace"
    if not case.is_dir():
        pytest.skip("conformance suite not present")
    res = _run(case)
    assert res.exit_code == 1 and "problem: bagit.txt line 1" in res.stdout


def test_a_bag_we_burn_validates(home, run, one_set_archive, tmp_path):
    assert run("archive", str(one_set_archive), "--copies", "1").exit_code == 0
    out = extract_bag(home, tmp_path / "bag")
    assert _run(out).exit_code == 0
