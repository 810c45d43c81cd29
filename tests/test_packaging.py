"""Release configuration: which wheels cibuildwheel builds, and by which job.

These read the checkout's pyproject.toml and workflow files, so they skip
where there is no checkout (e.g. when cibuildwheel tests a built wheel).
They need the ``packaging`` extra; without it they skip, except under
CI=true, where a missing tool is a failure.  The slow checks (building
the sdist and wheels, testing the wheel in a fresh venv) are in
.ci/check_packaging.sh.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"

if not WORKFLOWS.is_dir():
    pytest.skip("needs a source checkout", allow_module_level=True)

_MISSING = [m for m in ("cibuildwheel", "yaml") if importlib.util.find_spec(m) is None]
if _MISSING:
    _REASON = (
        f"packaging tools missing ({', '.join(_MISSING)}); "
        "install them with: pip install -e '.[packaging]' (Python >= 3.11)"
    )
    if os.environ.get("CI", "").lower() != "true":
        pytest.skip(_REASON, allow_module_level=True)

    @pytest.fixture(autouse=True)
    def _require_tools() -> None:
        pytest.fail(_REASON, pytrace=False)


PYTHONS = ["cp310", "cp311", "cp312", "cp313", "cp314", "cp314t"]
PLATFORM_TAGS = {
    "linux": [
        "manylinux_x86_64",
        "manylinux_aarch64",
        "musllinux_x86_64",
        "musllinux_aarch64",
    ],
    "macos": ["macosx_x86_64", "macosx_arm64"],
    "windows": ["win_amd64", "win_arm64"],
}
# cibuildwheel only lists non-native architectures when asked for them.
ARCHS = {"linux": "x86_64,aarch64", "macos": "x86_64,arm64", "windows": "AMD64,ARM64"}
EXPECTED = {
    platform: {f"{py}-{tag}" for py in PYTHONS for tag in tags}
    for platform, tags in PLATFORM_TAGS.items()
}


def build_identifiers(platform: str, archs: str) -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIBW_")}
    result = subprocess.run(
        [sys.executable, "-m", "cibuildwheel", "--print-build-identifiers"]
        + ["--platform", platform, "--archs", archs],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def workflow(name: str) -> dict:
    import yaml

    with open(WORKFLOWS / name, encoding="utf-8") as f:
        return yaml.safe_load(f)


def all_workflows() -> dict[str, dict]:
    return {p.name: workflow(p.name) for p in sorted(WORKFLOWS.glob("*.yml"))}


def steps_using(job: dict, action: str) -> list[dict]:
    return [s for s in job["steps"] if s.get("uses", "").split("@")[0] == action]


@pytest.mark.parametrize("platform", sorted(EXPECTED))
def test_cibuildwheel_builds_exactly_the_intended_wheels(platform: str) -> None:
    assert build_identifiers(platform, ARCHS[platform]) == EXPECTED[platform]


def test_each_wheel_is_built_by_exactly_one_job() -> None:
    job = workflow("wheels.yml")["jobs"]["wheels"]
    (step,) = steps_using(job, "pypa/cibuildwheel")
    assert step["env"] == {
        "CIBW_PLATFORM": "${{ matrix.platform }}",
        "CIBW_ARCHS": "${{ matrix.archs }}",
    }
    seen: dict[str, str] = {}
    for entry in job["strategy"]["matrix"]["include"]:
        built = build_identifiers(entry["platform"], entry["archs"])
        assert built, entry
        for identifier in built:
            assert identifier not in seen, (identifier, seen[identifier], entry["runner"])
            seen[identifier] = entry["runner"]
    assert set(seen) == set().union(*EXPECTED.values())


def test_wheels_are_built_from_the_sdist() -> None:
    jobs = workflow("wheels.yml")["jobs"]
    for name in ("wheels", "pure-wheel"):
        assert jobs[name]["needs"] == "sdist"
        assert not steps_using(jobs[name], "actions/checkout"), name
    (step,) = steps_using(jobs["wheels"], "pypa/cibuildwheel")
    assert step["with"]["package-dir"] == "${{ steps.sdist.outputs.path }}"


def test_cibuildwheel_tests_every_wheel_against_the_extension() -> None:
    import tomllib

    with open(ROOT / "pyproject.toml", "rb") as f:
        config = tomllib.load(f)["tool"]["cibuildwheel"]
    assert config["test-environment"]["PYPROXYPROTO_REQUIRE_EXTENSIONS"] == "1"
    assert "pytest" in config["test-command"]
    assert config["test-extras"] == ["test"]
    assert "tests" in config["test-sources"]
    (free_threaded,) = config["overrides"]
    assert free_threaded["select"] == "cp314t-*"
    # The GIL is not forced off: the check imports the extension and fails
    # if that turned the GIL back on (PYTHON_GIL=0 would hide it).
    assert "test-environment" not in free_threaded
    assert free_threaded["inherit"]["test-command"] == "prepend"
    (check,) = free_threaded["test-command"]
    assert "import sys, pyproxyproto._parser_c, pyproxyproto._handshake_c, pyproxyproto._aio_protocol_c" in check
    assert "_is_gil_enabled()" in check


def test_test_matrix_covers_every_interpreter_and_backend() -> None:
    matrix = workflow("tests.yml")["jobs"]["test"]["strategy"]["matrix"]
    legs = {(p, b) for p in matrix["python"] for b in matrix["backend"]}
    legs |= {(e["python"], e["backend"]) for e in matrix["include"]}
    for python in ["3.10", "3.11", "3.12", "3.13", "3.14", "3.14t"]:
        assert {(python, "extension"), (python, "pure")} <= legs
    assert any(p.startswith("pypy") and b == "pure" for p, b in legs)


def test_permissions_are_minimal() -> None:
    publishers = []
    for name, wf in all_workflows().items():
        assert wf["permissions"] == {}, name
        for job_name, job in wf["jobs"].items():
            grants = job["permissions"]
            if grants.get("id-token") == "write":
                publishers.append((name, job_name))
                assert grants == {"id-token": "write"}
                continue
            assert set(grants.values()) <= {"read"}, (name, job_name, grants)
    assert publishers == [("wheels.yml", "publish")]


def test_publish_job_uses_trusted_publishing_on_tags_only() -> None:
    job = workflow("wheels.yml")["jobs"]["publish"]
    assert "refs/tags/v" in job["if"]
    assert set(job["needs"]) == {"sdist", "pure-wheel", "wheels"}
    (step,) = steps_using(job, "pypa/gh-action-pypi-publish")
    assert "with" not in step  # no password: PyPI trusts this workflow's OIDC token


# A full commit: a tag or branch can be moved to other code.
PINNED = re.compile(r"@[0-9a-f]{40}$")


def test_actions_are_pinned() -> None:
    for name, wf in all_workflows().items():
        for job in wf["jobs"].values():
            for step in job["steps"]:
                if "uses" in step:
                    assert PINNED.search(step["uses"]), (name, step["uses"])


def test_the_test_jobs_run_the_tiers_of_ci() -> None:
    # One definition: every test command is .ci/tier.sh, as in .ci/run,
    # and the jobs together run every heavy tier.
    from tests.conftest import HEAVY

    jobs = workflow("tests.yml")["jobs"]
    runs = [step["run"] for job in jobs.values() for step in job["steps"] if "run" in step]
    assert not [r for r in runs if "pytest" in r], "pytest run outside .ci/tier.sh"
    covered = set()
    for run in runs:
        words = run.split()
        if ".ci/tier.sh" not in words:
            continue
        tier, *args = words[words.index(".ci/tier.sh") + 1:]
        if tier == "heavy":
            covered |= set(HEAVY) - set(args)
        elif tier == "marked":
            covered |= set(args)
    assert covered == set(HEAVY), sorted(set(HEAVY) - covered)
    (install,) = [r for r in runs if "tier.sh install" in r and "packaging" not in r]
    assert install.split()[-1] == "test,typing"  # test_typing.py demands mypy when CI=true
    assert any("tier.sh threads" in r for r in runs)  # free-threaded: the stress
