#!/usr/bin/env bash
# Build pyproxyproto._parser_c with AddressSanitizer + UndefinedBehaviorSanitizer
# and run the test suite and the fuzz corpus against it.
#
#   tests/fuzz/sanitize.sh [CORPUS_DIR...]
#
# The working tree (less build output, .git and venvs) is copied to
# build/sanitize/src and the extension is built in place there, so the
# normal in-place build and build/ of the checkout are left alone.  The tests
# then run from that copy with the ASan runtime preloaded into Python (not
# into other programs the tests start) and PYTHONMALLOC=malloc, so Python
# objects come from ASan's allocator too.
#
# Runs, in order:
#  1. canaries: a heap overflow and a signed overflow in a throwaway library
#     built with the same flags must be caught, or the run is not trusted;
#  2. the suite: tests/test_*.py except those needing packaging tools or
#     external peers, and the leak test (ASan's quarantine grows RSS by
#     design); this includes tests/test_fuzz_corpus.py, i.e. every seed and
#     every prefix of it through the differential checks;
#  3. each CORPUS_DIR given (say, the corpus a run of tests/fuzz/run.sh grew
#     with FUZZ_CORPUS=DIR) through the same checks, by tests/fuzz/replay.py.
#     Fuzzing itself is not done under ASan here: a preloaded ASan runtime
#     takes over libFuzzer's coverage hooks, which leaves atheris blind, so
#     the coverage-guided search runs on the normal build and its findings
#     are replayed here.
#
# Environment:
#   PYTHON        interpreter (default python3); needs Cython, setuptools, pytest
#   SANITIZE_CC   gcc (default; ASan/UBSan runtimes come with gcc itself) or
#                 clang (Debian: clang and libclang-rt-<version>-dev)
#   SANITIZE_EXCLUDE  space-separated test file globs to leave out (default below)
# ASAN_OPTIONS has detect_leaks=0: CPython does not free everything at exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
python=${PYTHON:-python3}
cc=${SANITIZE_CC:-gcc}
out=$root/build/sanitize
exclude=${SANITIZE_EXCLUDE:-"test_packaging.py test_leaks.py test_peer*.py test_haproxy*.py test_nginx*.py test_interop*.py test_load*.py"}
corpora=()
for dir in "$@"; do
    corpora+=("$(cd "$dir" && pwd)")
done
start=$SECONDS
say() { echo "sanitize [$((SECONDS - start))s]: $*"; }

flags="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1"
case $cc in
gcc*)
    runtime=$("$cc" -print-file-name=libasan.so)
    ldflags="-fsanitize=address,undefined"
    ;;
clang*)
    # A shared object must use the shared runtime; UBSan rides in ASan's.
    flags="$flags -shared-libasan"
    runtime=$("$cc" -print-file-name=libclang_rt.asan-x86_64.so)
    ldflags="-fsanitize=address,undefined -shared-libasan"
    ;;
*)
    echo "SANITIZE_CC must be gcc or clang, not $cc" >&2
    exit 2
    ;;
esac
if [ ! -e "$runtime" ]; then
    echo "sanitize: $cc has no ASan runtime ($runtime); install it (Debian: libasan8 for gcc," \
        "libclang-rt-14-dev for clang)" >&2
    exit 2
fi
export ASAN_OPTIONS=detect_leaks=0:detect_stack_use_after_return=1:strict_init_order=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

rm -rf "$out"
mkdir -p "$out/src" "$out/canary" "$out/shim"
# Only Python gets the ASan runtime: curl and the other programs the tests
# start must not inherit LD_PRELOAD (curl hangs with it).  So Python runs
# through a wrapper that sets it, a sitecustomize takes it out of os.environ
# again, and sys.executable names the wrapper, so that Python subprocesses
# of the tests are sanitized too.
real_python=$("$python" -c 'import sys; print(sys.executable)')
printf '#!/bin/sh\nLD_PRELOAD=%s PYTHONMALLOC=malloc exec %s "$@"\n' "$runtime" "$real_python" >"$out/shim/python"
chmod +x "$out/shim/python"
# It also drops the finder of an editable install of the checkout (as in
# .ci/run's venv), which would otherwise supply modules missing from the copy.
cat >"$out/shim/sitecustomize.py" <<EOF
import os, sys
os.environ.pop("LD_PRELOAD", None)
sys.executable = "$out/shim/python"
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
EOF
export PYTHONPATH=$out/shim${PYTHONPATH:+:$PYTHONPATH}
python=$out/shim/python

say "copying the sources to $out/src"
(cd "$root" && tar -cf - --exclude=./build --exclude=./.git --exclude='./.venv*' --exclude=./dist \
    --exclude='*.so' --exclude=__pycache__ --exclude='./pyproxyproto/*.c' --exclude='*.egg-info' \
    --exclude=./.pytest_cache --exclude=./.hypothesis --exclude=./.benchmarks --exclude=./wheelhouse .) |
    tar -xf - -C "$out/src"

say "canaries: the sanitizers must catch planted bugs"
cat >"$out/canary/canary.c" <<'EOF'
#include <limits.h>
#include <stdlib.h>
int heap_overflow(int n) { char *p = malloc(n); int v = p[n]; free(p); return v; }
int signed_overflow(int i) { int x = INT_MAX - 1; return x + i; }
EOF
# shellcheck disable=SC2086
"$cc" $flags -shared -fPIC $ldflags -o "$out/canary/libcanary.so" "$out/canary/canary.c"
for bug in "heap_overflow:AddressSanitizer: heap-buffer-overflow" "signed_overflow:signed integer overflow"; do
    fn=${bug%%:*}
    want=${bug#*:}
    if "$python" -c "import ctypes; ctypes.CDLL('$out/canary/libcanary.so').$fn(2)" \
        >"$out/canary/$fn.log" 2>&1; then
        echo "sanitize: the $fn canary ran without a report: the sanitizers are not active" >&2
        exit 1
    fi
    if ! grep -q "$want" "$out/canary/$fn.log"; then
        cat "$out/canary/$fn.log" >&2
        echo "sanitize: the $fn canary failed without the expected '$want' report" >&2
        exit 1
    fi
done

say "building the extension with $cc: $flags"
# pip builds a wheel in an isolated environment with pyproject's build
# requirements (a venv's own setuptools may be too old); setuptools adds
# CFLAGS and LDFLAGS to the compile and link commands; PYPROXYPROTO_DEBUG_BUILD
# keeps the symbols that the sanitizer reports name.  The wheel's
# extension then goes into the copy of the package.
(cd "$out/src" && CC=$cc LDSHARED="$cc -shared" CFLAGS="$flags" LDFLAGS="$ldflags" \
    PYPROXYPROTO_DEBUG_BUILD=1 PYPROXYPROTO_REQUIRE_EXTENSIONS=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    "$real_python" -m pip wheel --no-deps --no-cache-dir --wheel-dir "$out/wheel" . >"$out/build.log" 2>&1) || {
    cat "$out/build.log" >&2
    exit 1
}
"$real_python" - "$out"/wheel/pyproxyproto-*.whl "$out/src" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    # Every extension: the parser, and the handshake, the asyncio header
    # protocol and the asyncio internals it reaches (compiled from their .py).
    names = [n for n in wheel.namelist() if n.startswith("pyproxyproto/_") and n.endswith(".so")]
    assert sorted(n.split(".")[0] for n in names) == ['pyproxyproto/_aio_protocol_c', 'pyproxyproto/_asyncio_internals_c', 'pyproxyproto/_handshake_c', 'pyproxyproto/_parser_c'], names
    for name in names:
        wheel.extract(name, sys.argv[2])
EOF
so=$(ls "$out"/src/pyproxyproto/_parser_c.*.so)
for lib in "$out"/src/pyproxyproto/_*_c.*.so; do
    for sym in __asan_report_load1 __ubsan_handle_; do
        if ! nm -D --undefined-only "$lib" | grep "$sym" >/dev/null; then
            echo "sanitize: $lib is not instrumented (no $sym)" >&2
            exit 1
        fi
    done
done

cd "$out/src"
"$python" -c '
import os, sys, pyproxyproto, pyproxyproto._parser_c as c
assert os.path.realpath(c.__file__) == os.path.realpath(sys.argv[1]), c.__file__
assert pyproxyproto.BACKEND == "cython"
maps = open("/proc/self/maps").read()
assert "asan" in maps, "the ASan runtime is not loaded"
assert "LD_PRELOAD" not in os.environ and sys.executable.endswith("/shim/python")
print("sanitize: using", c.__file__, "| crc32c:", c.crc32c_impl())
' "$so"

tests=()
for f in tests/test_*.py; do
    skip=
    for pat in $exclude; do
        # shellcheck disable=SC2053
        [[ ${f#tests/} == $pat ]] && skip=1
    done
    [ -z "$skip" ] && tests+=("$f")
done
say "pytest under ASan+UBSan: ${tests[*]}"
# The shim interpreter has no console script beside it; the tests that run
# it (the install's, the documented CLI lines') are not about the extension.
# The long property sweeps (marker slow) run too; the tiers that need
# external peers, server processes (they run the venv's interpreter, not
# this shim), packaging tools or RSS figures do not.
PYPROXYPROTO_REQUIRE_EXTENSIONS=1 "$python" -m pytest -q -p no:cacheprovider "${tests[@]}" \
    -m "not (interop or servers or netns or load or leaks or packaging)" \
    --deselect tests/test_cli.py::test_console_script \
    --deselect tests/test_doc_commands.py::test_offline_commands

if [ ${#corpora[@]} -gt 0 ]; then
    say "replaying ${corpora[*]} under ASan+UBSan"
    PYTHONPATH=$out/src:$PYTHONPATH "$python" tests/fuzz/replay.py "${corpora[@]}"
fi
say "done: no sanitizer report"
