#!/usr/bin/env bash
# The test tiers, defined once for every place that runs them: .ci/run,
# .ci/pythons.sh (inside its chroots) and the GitHub workflows.
#
#   bash .ci/tier.sh TIER [ARGS...]        from the checkout; PYTHON=interpreter (default python)
#
#   install EXTRAS    pip install -e ".[EXTRAS]" (compat mode), then check the backend; EXTRAS
#                     "NAME:without REQ..." installs the extra NAME's requirements
#                     (pyproject.toml) but these, with a reason where it is used
#   backend           the package's backend is the one the switches ask for
#   types             mypy --strict over the package
#   quick             the README's test command: python -m pytest -q
#   heavy [MARKER..]  every heavy tier (tests/conftest.py HEAVY) but these markers
#   heavy-markers [MARKER..]   print those markers
#   all               every tier
#   marked EXPR       the tests these markers select (pytest -m EXPR)
#   threads           the thread tests under -X dev, then tests/stress_threads.py
#                     ($PYPROXYPROTO_STRESS_RUNS rounds, 5 by default)
#   workflows         actionlint and zizmor over .github/workflows, shellcheck over
#                     the CI scripts (tools of the packaging extra)
#
# PYPROXYPROTO_NO_EXTENSIONS=1 selects pure Python as the package's backend;
# otherwise the extension is required (PYPROXYPROTO_REQUIRE_EXTENSIONS=1):
# a test run that silently fell back to pure Python would prove nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
flag() { [ -n "${!1:-}" ] && [ "${!1}" != 0 ]; }
if ! flag PYPROXYPROTO_NO_EXTENSIONS; then
    export PYPROXYPROTO_REQUIRE_EXTENSIONS=1
fi
tier=${1:?usage: tier.sh TIER [ARGS...]}
shift

case $tier in
    install)
        extras=${1:?install needs the extras, e.g. test,typing}
        if [[ $extras == *:without* ]]; then
            read -ra without <<<"${extras#*:without}"
            mapfile -t what < <("$PYTHON" .ci/requirements.py "${extras%%:*}" "${without[@]}")
        else
            # compat: the checkout on sys.path, as the README's set-up
            # command (Twisted's plugin and mypy find the package there).
            what=(-e ".[$extras]" --config-settings editable_mode=compat)
        fi
        # pip's output only if it fails (its warnings would bury the rest).
        log=$(mktemp)
        if ! { "$PYTHON" -m pip install -q --upgrade pip && "$PYTHON" -m pip install -q "${what[@]}"; } >"$log" 2>&1; then
            cat "$log" >&2
            exit 1
        fi
        rm -f "$log"
        exec bash "$0" backend
        ;;
    backend)
        exec "$PYTHON" -c '
import os, sys, pyproxyproto
pure = os.environ.get("PYPROXYPROTO_NO_EXTENSIONS", "") not in ("", "0")
expected = "python" if pure else "cython"
assert pyproxyproto.BACKEND == expected, (pyproxyproto.BACKEND, expected)
if not pure:
    from pyproxyproto import _parser_c
    assert pyproxyproto.parse is _parser_c.parse
    detail = f"crc32c: {_parser_c.crc32c_impl()}"
else:
    detail = "pure Python selected"
gil = "on" if getattr(sys, "_is_gil_enabled", lambda: True)() else "off"
print(f"backend: {pyproxyproto.BACKEND} | {detail} | {sys.implementation.name} {sys.version.split()[0]}, GIL {gil}")'
        ;;
    types)
        exec "$PYTHON" -m mypy
        ;;
    quick)
        exec "$PYTHON" -m pytest -q "$@"
        ;;
    heavy-markers)
        # The heavy tiers' markers (one list: tests/conftest.py), less these.
        exec "$PYTHON" -c '
import sys
from tests.conftest import HEAVY
print(*(m for m in HEAVY if m not in sys.argv[1:]))' "$@"
        ;;
    heavy)
        markers=$(bash "$0" heavy-markers "$@")
        exec "$PYTHON" -m pytest -q -m "${markers// / or }"
        ;;
    all)
        exec "$PYTHON" -m pytest -q --all "$@"
        ;;
    marked)
        exec "$PYTHON" -m pytest -q -m "${1:?marked needs a marker expression}"
        ;;
    threads)
        "$PYTHON" -X dev -m pytest -q -p no:cacheprovider tests/test_header_threads.py
        exec "$PYTHON" tests/stress_threads.py --runs "${PYPROXYPROTO_STRESS_RUNS:-5}"
        ;;
    workflows)
        # The tools are in the interpreter's bin folder; shellcheck there
        # also checks the workflows' run: scripts for actionlint.
        bin=$(dirname "$("$PYTHON" -c 'import sys; print(sys.executable)')")
        PATH=$bin:$PATH actionlint -no-color .github/workflows/*.yml
        echo "actionlint: clean"
        "$bin/shellcheck" .ci/run .ci/*.sh
        echo "shellcheck: clean"
        exec "$bin/zizmor" --offline --no-progress .github/workflows
        ;;
    *)
        echo "tier.sh: no such tier: $tier" >&2
        exit 2
        ;;
esac
