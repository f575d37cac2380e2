#!/usr/bin/env bash
# tests/run-all.sh OUT ASAN_OUT -- what `make test` runs:
#   1. the C unit tests, built with ASan/UBSan;
#   2. the black-box suite against the release binary OUT/tlsgate;
#   3. the black-box suite again against the ASan/UBSan binary, where any
#      sanitizer report (including leaks at exit) fails the scenario.
# Ends with one line "N passed, N failed" summing all three.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$1
ASAN=$2
E2E_ONLY=${3:-}
pass=0 fail=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

count() {  # adds the last "N passed, N failed" line of $log; no line = 1 failure
    local line p f
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n1)
    if [ -z "$line" ]; then fail=$((fail + 1)); return; fi
    p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}
    pass=$((pass + p)); fail=$((fail + f))
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:exitcode=23}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

if [ "$E2E_ONLY" != --e2e-only ]; then
    echo "== unit tests (ASan/UBSan)"
    "$ROOT/tests/run-unit.sh" $(find "$ASAN/tests" -name "test_*" ! -name "*.d" -type f | sort) 2>&1 | tee "$log"
    count
fi

# Work directories per binary, so that both builds' suites can run at once.
wd=${E2E_WORKDIR:-$ROOT/tests/e2e/.work}

echo "== black-box tests: $OUT/tlsgate"
E2E_WORKDIR=$wd/${OUT//\//_} TLSGATE=$OUT/tlsgate "$ROOT/tests/run-e2e.sh" 2>&1 | tee "$log"
count

echo "== black-box tests: $ASAN/tlsgate (ASan/UBSan)"
E2E_WORKDIR=$wd/${ASAN//\//_} TLSGATE=$ASAN/tlsgate TLSGATE_SANITIZED=1 "$ROOT/tests/run-e2e.sh" 2>&1 | tee "$log"
count

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
