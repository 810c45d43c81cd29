"""How the package installs and starts: one version, the backend each
interpreter gets, a clear error for a required but missing extension,
``python -m pyproxyproto``, and the lowest set of its extras' packages."""

import importlib.machinery
import importlib.metadata
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import pyproxyproto

ROOT = Path(__file__).resolve().parent.parent


def test_version_has_one_source():
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)*", pyproxyproto.__version__)
    # The installed metadata (the wheel's) is the package's own __version__.
    assert importlib.metadata.version("pyproxyproto") == pyproxyproto.__version__
    # pyproject.toml writes none of its own: it reads __version__.
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with open(ROOT / "pyproject.toml", "rb") as f:
        config = tomllib.load(f)
    assert "version" not in config["project"]
    assert config["project"]["dynamic"] == ["version"]
    assert config["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "pyproxyproto.__version__"}


def python(code, **env):
    """Run code in a fresh interpreter with these PYPROXYPROTO_ switches only."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYPROXYPROTO_")}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
        env={**clean, **env},
    )


# Pretend to be another interpreter: a copy of sys.implementation with another name.
AS_PYPY = """
import sys, types
sys.implementation = types.SimpleNamespace(**{**vars(sys.implementation), "name": "pypy"})
import pyproxyproto
print(pyproxyproto.BACKEND)
"""


def test_other_interpreters_get_the_pure_backend():
    done = python(AS_PYPY)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["python"]


def test_other_interpreters_may_require_the_extension():
    if "cython" not in pyproxyproto._backend.available():
        pytest.skip("the extension is not in use here (not built, or PYPROXYPROTO_NO_EXTENSIONS)")
    done = python(AS_PYPY, PYPROXYPROTO_REQUIRE_EXTENSIONS="1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["cython"]


def test_required_extension_that_is_not_installed():
    # None in sys.modules: the import system reports the module as not found.
    done = python(
        "import sys; sys.modules['pyproxyproto._parser_c'] = None; import pyproxyproto",
        PYPROXYPROTO_REQUIRE_EXTENSIONS="1",
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: PYPROXYPROTO_REQUIRE_EXTENSIONS=1 is set, but "
                           "pyproxyproto's C extension (pyproxyproto._parser_c) is not installed")
    assert "circular" not in done.stderr


BROKEN = """
import sys

class Broken:
    def find_spec(self, name, path=None, target=None):
        if name == "pyproxyproto._parser_c":
            raise ImportError("undefined symbol: pp_crc32c")

sys.meta_path.insert(0, Broken())
import pyproxyproto
print(pyproxyproto.BACKEND)
"""


def test_required_extension_that_fails_to_import():
    done = python(BROKEN, PYPROXYPROTO_REQUIRE_EXTENSIONS="1")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "ImportError: PYPROXYPROTO_REQUIRE_EXTENSIONS=1 is set, but pyproxyproto's C extension "
        "(pyproxyproto._parser_c) failed to import: undefined symbol: pp_crc32c"
    )
    # Without the switch the package falls back to pure Python.
    done = python(BROKEN)
    assert done.returncode == 0 and done.stdout.split() == ["python"]


def test_python_dash_m():
    done = subprocess.run([sys.executable, "-m", "pyproxyproto", "--version"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stdout.strip().startswith(f"pyproxyproto {pyproxyproto.__version__} (")


@pytest.mark.parametrize(
    "module, check",
    [
        ("pyproxyproto._handshake_c",
         "import pyproxyproto; print(pyproxyproto.Handshake.__module__)"),
        ("pyproxyproto._aio_protocol_c",
         "from pyproxyproto import aio; print(aio.protocols.__name__)"),
    ],
)
def test_a_required_compiled_module_that_is_not_installed(module, check):
    """The modules written once for Cython's pure-Python mode are extensions
    like the parser: required under the switch, else the .py runs."""
    done = python(f"import sys; sys.modules[{module!r}] = None; {check}",
                  PYPROXYPROTO_REQUIRE_EXTENSIONS="1")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: PYPROXYPROTO_REQUIRE_EXTENSIONS=1 is set, but "
                           f"pyproxyproto's C extension ({module}) is not installed")
    # Without the switch the same source runs as Python.
    done = python(f"import sys; sys.modules[{module!r}] = None\n{check}")
    assert done.returncode == 0 and done.stdout.split() == [module.removesuffix("_c")]


# What the test extra brings that no server runs on: the test tools.
TEST_TOOLS = {"pytest", "hypothesis", "pytest-benchmark"}


def test_the_lowest_set_pins_every_declared_lower_bound():
    """.ci/constraints-lowest.txt (the lowest set, .ci/lowest.sh) pins each
    package the test extra brings, its server extras' too, at the lower
    bound pyproject.toml declares for it."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    if not (ROOT / ".ci" / "constraints-lowest.txt").exists():
        pytest.skip("needs a source checkout")
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    with open(ROOT / "pyproject.toml", "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    declared: dict[str, Version] = {}
    pending, seen = ["test"], set()
    while pending:
        extra = pending.pop()
        seen.add(extra)
        for requirement in map(Requirement, extras[extra]):
            name = canonicalize_name(requirement.name)
            if name == "pyproxyproto":
                pending += sorted(requirement.extras - seen)
            elif name not in TEST_TOOLS:
                (lower,) = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
                declared[name] = max(lower, declared.get(name, lower))
    pins = {}
    for line in (ROOT / ".ci" / "constraints-lowest.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            pins[canonicalize_name(requirement.name)] = spec
    assert "uvicorn" in declared and "twisted" in declared
    for name, lower in sorted(declared.items()):
        assert name in pins, f"{name} (>={lower}) is not in the lowest set"
        assert pins[name].operator == "==" and Version(pins[name].version) == lower, (
            f"the lowest set has {name}{pins[name]}, pyproject.toml declares >={lower}")


def shadowing_checkout(tmp_path):
    """A checkout whose package has no extension (pure sources and the
    tests' conftest), and an "installed" copy elsewhere that has one (only
    its file: nothing imports it).  Returns (checkout, installed folder)."""
    checkout = tmp_path / "checkout"
    (checkout / "pyproxyproto").mkdir(parents=True)
    for source in Path(pyproxyproto.__file__).parent.glob("*.py"):
        (checkout / "pyproxyproto" / source.name).write_bytes(source.read_bytes())
    (checkout / "tests").mkdir()
    for name in ("__init__.py", "conftest.py"):
        (checkout / "tests" / name).write_bytes((ROOT / "tests" / name).read_bytes())
    (checkout / "tests" / "test_probe.py").write_text(
        "def test_parse(backend):\n    assert backend.parse(b'PROXY UNKNOWN\\r\\n').version == 1\n")
    installed = tmp_path / "site-packages"
    (installed / "pyproxyproto").mkdir(parents=True)
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    (installed / "pyproxyproto" / f"_parser_c{suffix}").write_bytes(b"")
    return checkout, installed


def test_a_checkout_shadowing_the_installed_extension_is_named(tmp_path):
    checkout, installed = shadowing_checkout(tmp_path)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYPROXYPROTO_")}
    # -S and site-packages on the path: no .pth file runs, so an editable
    # install's import hook cannot hand out the real extension.
    path = [checkout, installed, sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    env = {**clean, "PYTHONPATH": os.pathsep.join(map(str, path))}
    python = [sys.executable, "-S"]
    done = subprocess.run([*python, "-c", "import pyproxyproto"], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env={**env, "PYPROXYPROTO_REQUIRE_EXTENSIONS": "1"})
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: PYPROXYPROTO_REQUIRE_EXTENSIONS=1 is set, but pyproxyproto "
                           f"was imported from {(checkout / 'pyproxyproto').resolve()}, which has no C extension")
    assert str(installed.resolve() / "pyproxyproto") in last
    # Without the switch the package imports its pure backend, and the
    # tests of the compiled backend fail with the reason.
    done = subprocess.run([*python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                          capture_output=True, text=True, timeout=120, cwd=checkout, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 passed, 1 error" in done.stdout, done.stdout
    assert "test_parse[cython]" in done.stdout
    assert "instead of the installed package" in done.stdout
    # Selecting pure Python on purpose is not a failure.
    done = subprocess.run([*python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                          capture_output=True, text=True, timeout=120, cwd=checkout,
                          env={**env, "PYPROXYPROTO_NO_EXTENSIONS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
