#!/usr/bin/env bash
# The servers tier on the lowest set: every server package at the lowest
# version pyproject.toml declares (.ci/constraints-lowest.txt), in its own
# venv, .venv-lowest/, made afresh.  bash .ci/lowest.sh, from the checkout.
#
# The install is editable (compat mode), as the README's set-up command: the
# tests import the checkout (pytest runs from it, the servers they start get
# it on PYTHONPATH), so the only difference from the newest run is the set of
# packages around it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off
start=$SECONDS
say() { echo "== .ci/lowest.sh [$((SECONDS - start))s]: $*"; }
py=.venv-lowest/bin/python

say "creating .venv-lowest with the lowest set (.ci/constraints-lowest.txt)"
python3 -m venv --clear .venv-lowest
$py -m pip install -q --upgrade pip
# setuptools is named so that its companion pin applies (see the constraints).
PYPROXYPROTO_REQUIRE_EXTENSIONS=1 $py -m pip install -q \
    -c .ci/constraints-lowest.txt -e '.[test]' --config-settings editable_mode=compat setuptools
$py -m pip check
$py - <<'EOF'
import importlib.metadata
from packaging.requirements import Requirement
with open(".ci/constraints-lowest.txt") as f:
    lines = [line.strip() for line in f]
names = [Requirement(line).name for line in lines if line and not line.startswith("#")]
print("lowest set:", ", ".join(f"{n} {importlib.metadata.version(n)}" for n in names))
EOF

export PYPROXYPROTO_REQUIRE_EXTENSIONS=1
# The lowest set is the servers'; the documentation's example apps use web
# frameworks (the docs extra) that the main servers tier runs them with.
export PYPROXYPROTO_LEFT_OUT="django fastapi flask"
say "the servers tier on the lowest set"
$py -m pytest -q -m servers
# The rest of what runs against these packages is in the quick tier: anyio
# and trio, prometheus, the guards beside other libraries' internals.
say "anyio, trio, prometheus and the internals' guards (quick tier) on the lowest set"
$py -m pytest -q tests/test_anyio.py tests/test_prometheus.py tests/test_internals.py

say "lowest set passed in $((SECONDS - start))s from nothing"
