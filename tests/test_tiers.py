"""The test tiers: a bare pytest is the quick tier, markers select the heavy ones."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import HEAVY

ROOT = Path(__file__).resolve().parent.parent


def test_heavy_tiers_are_the_markers_of_pyproject(pytestconfig):
    registered = {line.partition(":")[0].strip() for line in pytestconfig.getini("markers")}
    assert set(HEAVY) <= registered
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with open(ROOT / "pyproject.toml", "rb") as f:
        markers = tomllib.load(f)["tool"]["pytest"]["ini_options"]["markers"]
    assert {line.partition(":")[0] for line in markers} == set(HEAVY)


def test_ci_runs_every_heavy_tier():
    run = ROOT / ".ci" / "run"
    if not run.is_file():
        pytest.skip("needs a source checkout")
    # .ci/run runs tier.sh's heavy tier leaving no marker out, and every
    # tier again with pure Python; tier.sh takes the markers from HEAVY.
    stages = re.findall(r"^stage .*$", run.read_text(), re.M)
    assert any(line.endswith(" tier heavy") for line in stages), stages
    assert any(line.endswith(" pure tier all") for line in stages), stages
    done = subprocess.run(
        ["bash", str(ROOT / ".ci" / "tier.sh"), "heavy-markers"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env={**os.environ, "PYTHON": sys.executable},
    )
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.split()) == sorted(HEAVY)


def collected(*args):
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         str(ROOT / "tests" / "test_leaks.py"), *args],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert done.returncode in (0, 5), done.stdout + done.stderr  # 5: nothing selected
    return [line for line in done.stdout.splitlines() if "::" in line]


def test_quick_tier_leaves_heavy_tests_out_and_markers_select_them():
    assert collected() == []
    by_marker = collected("-m", "leaks")
    assert by_marker and collected("--all") == by_marker
