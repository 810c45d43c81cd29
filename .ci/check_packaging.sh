#!/usr/bin/env bash
# Release checks on what users would install, run by .ci/run:
#  - the workflows validate against GitHub's workflow schema;
#  - `python -m build` makes the sdist, and the binary wheel from that sdist;
#  - the sdist holds every build input and every tracked source and test;
#  - a py3-none-any wheel builds from the sdist with PYPROXYPROTO_NO_EXTENSIONS=1;
#  - twine check --strict and check-wheel-contents pass on all of them;
#  - the binary wheel, installed into a fresh venv, passes the sdist's test
#    suite with PYPROXYPROTO_REQUIRE_EXTENSIONS=1, run from a scratch directory
#    (so nothing can import the checkout); the pure wheel, holding the same
#    files but the extension, then imports its pure backend there.
# Needs the `packaging` extra (pip install -e '.[packaging]'), a C compiler
# and PyPI. The cibuildwheel identifier sets are asserted in
# tests/test_packaging.py.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}

if ! "$PYTHON" -c 'import build, check_jsonschema, check_wheel_contents, twine' 2>/dev/null; then
    echo "check_packaging: tools missing; run: $PYTHON -m pip install -e '.[packaging]'" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Run a step quietly; show its output only if it fails.
step() {
    local name=$1
    shift
    local start=$SECONDS
    if ! "$@" >"$work/log" 2>&1; then
        cat "$work/log" >&2
        echo "check_packaging: FAILED: $name" >&2
        exit 1
    fi
    echo "check_packaging: ok: $name ($((SECONDS - start))s)"
}

# Build and test environments must not see the caller's switches or path.
clean_env=(env -u PYTHONPATH -u PYPROXYPROTO_NO_EXTENSIONS -u PYPROXYPROTO_REQUIRE_EXTENSIONS)

step "workflows match the GitHub workflow schema" \
    "$PYTHON" -m check_jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

step "python -m build: sdist, then the binary wheel from it" \
    "${clean_env[@]}" PYPROXYPROTO_REQUIRE_EXTENSIONS=1 "$PYTHON" -m build --outdir "$work/dist" .
sdists=("$work"/dist/*.tar.gz)
wheels=("$work"/dist/*.whl)
sdist=${sdists[0]}
wheel=${wheels[0]}

step "pure-Python wheel from the sdist" \
    "${clean_env[@]}" PYPROXYPROTO_NO_EXTENSIONS=1 \
    "$PYTHON" -m pip wheel --no-deps --wheel-dir "$work/pure" "$sdist"
pures=("$work"/pure/*.whl)
pure=${pures[0]}

step "sdist and wheel contents" "$PYTHON" - "$sdist" "$wheel" "$pure" <<'EOF'
import fnmatch
import struct
import subprocess
import sys
import tarfile
import zipfile

sdist, wheel, pure = sys.argv[1:]
problems = []

with tarfile.open(sdist) as tf:
    members = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
required = [
    "setup.py", "pyproject.toml", "README.md", "LICENSE", "MANIFEST.in",
    "csrc/*.c", "csrc/*.h",
    "pyproxyproto/*.py", "pyproxyproto/*.pyx", "pyproxyproto/*.pxi", "pyproxyproto/*.pxd",
    "pyproxyproto/*.pyi", "pyproxyproto/py.typed",
    "tests/conftest.py", "tests/test_*.py", "twisted/plugins/pyproxyproto_endpoint.py",
]
problems += [f"sdist lacks {p}" for p in required if not fnmatch.filter(members, p)]
tracked = subprocess.run(
    ["git", "ls-files", "csrc", "pyproxyproto", "tests", "bench", "twisted"],
    capture_output=True, text=True, check=True,
).stdout.split()
problems += [f"sdist lacks tracked file {p}" for p in sorted(set(tracked) - members)]
stale = [n for n in members if n.endswith((".so", ".pyd"))
         or n in ('pyproxyproto/_parser_c.c', 'pyproxyproto/_handshake.c', 'pyproxyproto/_asyncio_internals.c', 'pyproxyproto/_aio_protocol.c')]
problems += [f"sdist ships build output {p}" for p in sorted(stale)]

def binaries(path):
    with zipfile.ZipFile(path) as zf:
        return [n for n in zf.namelist() if n.endswith((".so", ".pyd"))]

for module in ('_aio_protocol_c', '_asyncio_internals_c', '_handshake_c', '_parser_c'):
    if wheel.endswith("-py3-none-any.whl") or not any(
        n.startswith(f"pyproxyproto/{module}.") for n in binaries(wheel)
    ):
        problems.append(f"{wheel} has no compiled pyproxyproto.{module}")

def elf_sections(data):
    """Section names of an ELF file (None for another format)."""
    if data[:4] != b"\x7fELF":
        return None
    wide, order = data[4] == 2, "<" if data[5] == 1 else ">"
    if wide:
        (shoff,) = struct.unpack_from(order + "Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from(order + "HHH", data, 0x3A)
    else:
        (shoff,) = struct.unpack_from(order + "I", data, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from(order + "HHH", data, 0x2E)
    def entry(i):  # (sh_name, sh_offset)
        base = shoff + i * shentsize
        (name,) = struct.unpack_from(order + "I", data, base)
        (offset,) = struct.unpack_from(order + ("Q" if wide else "I"), data, base + (0x18 if wide else 0x10))
        return name, offset
    strings = entry(shstrndx)[1]
    names = []
    for i in range(shnum):
        start = strings + entry(i)[0]
        names.append(data[start:data.index(b"\0", start)].decode())
    return names

# Release builds are stripped (setup.py): no symbol table, no debug sections.
with zipfile.ZipFile(wheel) as zf:
    for name in binaries(wheel):
        sections = elf_sections(zf.read(name))
        kept = [s for s in sections or [] if s == ".symtab" or s.startswith(".debug")]
        if kept:
            problems.append(f"{name} in {wheel} is not stripped: {kept}")
if not pure.endswith("-py3-none-any.whl") or binaries(pure):
    problems.append(f"{pure} is not a pure-Python py3-none-any wheel")
# The pure wheel is tested below by import only: it must hold the same files.
with zipfile.ZipFile(wheel) as zw, zipfile.ZipFile(pure) as zp:
    differ = set(zw.namelist()) ^ set(zp.namelist()) ^ set(binaries(wheel))
problems += [f"only one of the wheels has {n}" for n in sorted(differ)]
for path in (wheel, pure):
    with zipfile.ZipFile(path) as zf:
        for needed in ("pyproxyproto/py.typed", "twisted/plugins/pyproxyproto_endpoint.py"):
            if needed not in zf.namelist():
                problems.append(f"{path} lacks {needed}")
        if "twisted/plugins/__init__.py" in zf.namelist():
            problems.append(f"{path} would overwrite Twisted's twisted/plugins/__init__.py")

print("\n".join(problems))
sys.exit(bool(problems))
EOF

step "twine check --strict" "$PYTHON" -m twine check --strict "$sdist" "$wheel" "$pure"
step "check-wheel-contents" "$PYTHON" -m check_wheel_contents "$wheel" "$pure"

# A fresh venv, and a scratch directory holding only the sdist's tests (and
# the files they read), as cibuildwheel's test-sources do.
venv_python=$work/venv/bin/python
step "fresh venv" "$PYTHON" -m venv "$work/venv"
step "install the binary wheel with its test and typing extras" \
    "${clean_env[@]}" "$venv_python" -m pip install "${wheel}[test,typing]"
mkdir "$work/run"
tar -xzf "$sdist" -C "$work/run" --strip-components=1 --wildcards '*/tests' '*/pyproject.toml' '*/README.md'

# Run a command from the scratch directory, in the clean environment.
in_scratch() {
    (cd "$work/run" && "${clean_env[@]}" "$@")
}
step "the venv imports the installed wheel, not the checkout" \
    in_scratch "$venv_python" -c 'import sys, pyproxyproto
assert pyproxyproto.__file__.startswith(sys.prefix), pyproxyproto.__file__'
step "test suite against the installed binary wheel" \
    in_scratch PYPROXYPROTO_REQUIRE_EXTENSIONS=1 "$venv_python" -m pytest -q -p no:cacheprovider tests
tail -n 1 "$work/log"

step "swap in the pure-Python wheel" \
    "$venv_python" -m pip install --no-deps --force-reinstall "$pure"
step "the pure-Python wheel imports its pure backend" \
    in_scratch "$venv_python" -c 'import pyproxyproto
assert pyproxyproto.BACKEND == "python", pyproxyproto.BACKEND'

echo "check_packaging: all packaging checks passed"
