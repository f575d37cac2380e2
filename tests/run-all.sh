#!/usr/bin/env bash
# tests/run-all.sh OUT ASAN_OUT [--e2e-only] -- what `make test` runs:
#   1. the C unit tests, built with ASan/UBSan;
#   2. the black-box suite against the release binary OUT/tlsgate;
#   3. the black-box suite again against the ASan/UBSan binary, where any
#      sanitizer report (including leaks at exit) fails the scenario.
# Most scenarios wait on peers and timers, so passes 2 and 3 run their
# parallel scenarios at the same time (E2E_JOBS each); the "serial" ones
# (they measure the machine) come after that, alone, one pass after the
# other. With E2E_LONG=only (make test-long: fuzzing, valgrind, soak, which
# keep the CPUs busy) the two passes run one after the other instead.
# Ends with one line "N passed, N failed" summing all three.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$1
ASAN=$2
E2E_ONLY=${3:-}
pass=0 fail=0
log=$(mktemp)
asan_log=$(mktemp)
trap 'rm -f "$log" "$asan_log"' EXIT

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

# suite release|asan SERIAL -- run-e2e.sh on one binary (E2E_SERIAL=SERIAL)
suite() {
    local bin=$OUT san=
    [ "$1" = asan ] && { bin=$ASAN; san=1; }
    E2E_SERIAL=$2 E2E_WORKDIR=$wd/${bin//\//_} TLSGATE=$bin/tlsgate TLSGATE_SANITIZED=$san \
        "$ROOT/tests/run-e2e.sh" 2>&1
}

if [ "${E2E_LONG:-0}" = only ]; then
    echo "== black-box tests: $OUT/tlsgate"
    suite release 1 | tee "$log"; count
    echo "== black-box tests: $ASAN/tlsgate (ASan/UBSan)"
    suite asan 1 | tee "$log"; count
else
    "$ROOT/tools/mkcerts" "${CERTS:-$ROOT/certs}" >/dev/null 2>&1   # once, before two suites share it
    echo "== black-box tests: $OUT/tlsgate, parallel scenarios ($ASAN/tlsgate alongside)"
    suite asan 0 >"$asan_log" &
    asan_pid=$!
    suite release 0 | tee "$log"; count
    wait "$asan_pid"
    echo "== black-box tests: $ASAN/tlsgate (ASan/UBSan), parallel scenarios"
    cat "$asan_log"; cp "$asan_log" "$log"; count
    echo "== black-box tests: $OUT/tlsgate, serial scenarios"
    suite release only | tee "$log"; count
    echo "== black-box tests: $ASAN/tlsgate (ASan/UBSan), serial scenarios"
    suite asan only | tee "$log"; count
fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
