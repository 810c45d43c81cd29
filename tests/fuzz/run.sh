#!/usr/bin/env bash
# Run the differential fuzzer (tests/fuzz/fuzz_parse.py) for a bounded time.
#
#   tests/fuzz/run.sh [SECONDS] [extra libFuzzer flags...]     (default 60 s)
#
# Needs atheris (pip install -e '.[fuzz]') and the built extension.  Environment:
#   PYTHON          interpreter to use (default: python3)
#   FUZZ_CORPUS     directory for the inputs the fuzzer finds; kept between runs
#                   (default: a temporary directory, removed afterwards).  The
#                   committed seeds in tests/fuzz/corpus are read, never written.
#   FUZZ_ARTIFACTS  where a failing input is saved (default: build/fuzz-artifacts)
#
# Prints how many inputs ran; exits non-zero on a finding (a failed check, an
# exception other than ProxyProtocolError, a crash, a hang past 10 s per input
# or 2 GB of memory), after printing the input as hex.
#
# For hours, on every core, with a corpus that grows across runs:
#   FUZZ_CORPUS=$HOME/pyproxyproto-fuzz tests/fuzz/run.sh 28800 -fork=$(nproc)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
seconds=${1:-60}
shift || true
python=${PYTHON:-python3}
artifacts=${FUZZ_ARTIFACTS:-$root/build/fuzz-artifacts}
mkdir -p "$artifacts"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
corpus=${FUZZ_CORPUS:-$tmp/corpus}
mkdir -p "$corpus"

log=$tmp/fuzz.log
status=0
# The first corpus directory receives new inputs; the seeds come second.
"$python" "$here/fuzz_parse.py" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" -dict="$here/proxy.dict" \
    "$@" "$corpus" "$here/corpus" >"$log" 2>&1 || status=$?

grep -m1 '^fuzz_parse: differential' "$log" || true
runs=$(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1 | grep -Eo '[0-9]+' | head -n 1 || true)
if [ -z "$runs" ]; then
    # -fork mode and early stops report the last status line instead.
    runs=$(grep -Eo '#[0-9]+' "$log" | tail -n 1 | tr -d '#' || true)
fi
cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1 || true)

if [ "$status" -ne 0 ] || grep -qE '^(=+ (Uncaught Python exception|ERROR)|==[0-9]+== ?ERROR)' "$log"; then
    tail -n 60 "$log"
    for f in $(grep -Eo "Test unit written to [^ ]+" "$log" | awk '{print $5}'); do
        echo "fuzz: failing input $f:"
        od -An -tx1 -v "$f" | tr -d ' \n' | fold -w 64
        echo
    done
    echo "fuzz: FINDING after ${runs:-?} inputs (exit $status)"
    exit 1
fi
echo "fuzz: ${runs:-0} inputs ran in ${seconds}s, no finding (${cov:-no coverage stats}, $(ls "$corpus" | wc -l) new corpus entries)"
