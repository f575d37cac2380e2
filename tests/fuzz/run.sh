#!/usr/bin/env bash
# tests/fuzz/run.sh [SECONDS] -- build the libFuzzer harnesses and run each one
# for SECONDS (default 60) from its committed seed corpus.
#
#   TLS=boringssl|openssl   TLS library to build against (default boringssl)
#   BUILD=dir               build folder, as for make (default build); the
#                           harnesses land in BUILD/fuzz[/openssl]/
#   FUZZ_ONLY=regex         run only harnesses whose name matches
#   FUZZ_ARGS="..."         extra libFuzzer flags (e.g. -jobs=4 -workers=4)
#
# Harnesses (tests/fuzz/fuzz_NAME.c, seeds in tests/fuzz/corpus/NAME/,
# optional dictionary tests/fuzz/NAME.dict): config, tls_server, acl, dgram (the DTLS
# datagram classifier), http (protocol = http, both directions) and
# proxy_parse (built only when proxy/tcp/proxyproto.h declares tg_proxy_parse).
# New inputs go to BUILD/fuzz[/openssl]/corpus/NAME/ (kept between runs;
# the committed seeds are never modified), crashes to .../artifacts/.
# Prints one line per harness with its executions; exits 0 when every
# harness ran clean, 1 on a crash, leak, timeout or failed build, and 77 when
# clang or libFuzzer is missing (Debian: clang libclang-rt-14-dev).
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SECONDS_EACH=${1:-60}
case $SECONDS_EACH in ''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;; esac
TLS=${TLS:-boringssl}
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
ONLY=${FUZZ_ONLY:-}
cd "$ROOT" || exit 1

if [ "$TLS" = openssl ]; then OUT=$BUILD/fuzz/openssl; else OUT=$BUILD/fuzz; fi
mkdir -p "$OUT" || exit 1

# --- is libFuzzer there? ---------------------------------------------------------------
CC=${FUZZ_CC:-clang}
if ! command -v "$CC" >/dev/null 2>&1; then
    echo "fuzz: $CC not found (Debian: apt-get install clang libclang-rt-14-dev)"
    exit 77
fi
probe=$OUT/.probe
printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return 0; }\n' >"$probe.c"
if ! "$CC" -fsanitize=fuzzer,address,undefined -o "$probe" "$probe.c" >"$probe.log" 2>&1; then
    echo "fuzz: $CC cannot link -fsanitize=fuzzer,address,undefined (Debian: libclang-rt-14-dev):"
    sed 's/^/  | /' "$probe.log" | head -5
    exit 77
fi

# --- build -------------------------------------------------------------------------------
MK=(make --no-print-directory -f tests/fuzz/fuzz.mk TLS="$TLS" BUILD="$BUILD")
echo "fuzz: building harnesses ($TLS) into $OUT"
if ! "${MK[@]}" -j"$(nproc 2>/dev/null || echo 2)" fuzz >"$OUT/build.log" 2>&1; then
    echo "fuzz: build failed:"
    grep -E 'error|Error' "$OUT/build.log" | head -20 | sed 's/^/  | /'
    echo "fuzz: 0 harnesses run, build failed"
    exit 1
fi
read -r -a NAMES <<<"$("${MK[@]}" fuzz-names)"
grep -qs tg_proxy_parse proxy/tcp/proxyproto.h ||
    echo "fuzz: proxy_parse left out: proxy/tcp/proxyproto.h does not declare tg_proxy_parse yet"

# --- run ---------------------------------------------------------------------------------
ran=0 failed=0 total=0
for name in "${NAMES[@]}"; do
    if [ -n "$ONLY" ] && ! [[ $name =~ $ONLY ]]; then continue; fi
    bin=$OUT/fuzz_$name
    seeds=tests/fuzz/corpus/$name
    corpus=$OUT/corpus/$name
    art=$OUT/artifacts
    log=$OUT/$name.log
    mkdir -p "$corpus" "$art"
    args=(-max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=4096 -error_exitcode=1
          -print_final_stats=1 -artifact_prefix="$art/$name-")
    [ -f "tests/fuzz/$name.dict" ] && args+=(-dict="tests/fuzz/$name.dict")
    # shellcheck disable=SC2206
    [ -n "${FUZZ_ARGS:-}" ] && args+=($FUZZ_ARGS)
    nseeds=$(find "$seeds" -type f 2>/dev/null | wc -l)
    t0=$(date +%s%N)
    timeout -k 10 $((SECONDS_EACH + 120)) "$bin" "${args[@]}" "$corpus" "$seeds" >"$log" 2>&1
    rc=$?
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    cov=$(grep -aoE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$log" | tail -n1)
    ran=$((ran + 1))
    total=$((total + ${execs:-0}))
    rate=$(( ${execs:-0} * 1000 / (ms > 0 ? ms : 1) ))
    if [ "$rc" = 0 ] && [ -n "$execs" ]; then
        printf 'fuzz: %-12s %9d executions in %3ds (%d/s), %d seeds, %s\n' \
            "$name" "$execs" $((ms / 1000)) "$rate" "$nseeds" "${cov:-?}"
    else
        failed=$((failed + 1))
        printf 'fuzz: %-12s FAILED (exit %s) after %d executions, log %s\n' \
            "$name" "$rc" "${execs:-0}" "$log"
        grep -aE -A25 '^==[0-9]+==ERROR|runtime error:|deadly signal|Timeout|out-of-memory|fuzz_[a-z_]+: ' "$log" |
            head -40 | sed 's/^/  | /'
        grep -aE 'Test unit written to' "$log" | sed 's/^/  | /'
    fi
done
echo "fuzz: $ran harnesses run, $failed failed, $total executions in all"
[ "$failed" = 0 ]
