#!/usr/bin/env bash
# e2e: long timeout=360
# 50-fuzz-smoke: a short libFuzzer run of every harness in tests/fuzz/ (config
# parser, TLS server path, allow_clients ACL, PROXY header parser), built
# with clang + ASan/UBSan against the same TLS library as the tlsgate under
# test, each for FUZZ_SMOKE_SECONDS (default 10) from its committed seeds.
# Fails on any crash, sanitizer report, leak, timeout or failed build.
# Skips when clang/libFuzzer is missing (Debian: clang libclang-rt-14-dev)
# and in the ASan/UBSan pass of `make test`: the harnesses do not use the
# tlsgate binary and are sanitizer builds already, one run is enough.
. "$(dirname "$0")/lib.sh"

[ -n "${TLSGATE_SANITIZED:-}" ] && skip "fuzzers are ASan/UBSan builds already; run once, in the release pass"
command -v clang >/dev/null 2>&1 || skip "clang not installed (Debian: clang libclang-rt-14-dev)"

# Build next to the binary under test: BUILD/tlsgate or BUILD/openssl/tlsgate.
tls=boringssl
"$TLSGATE" -V 2>/dev/null | grep >/dev/null -ci '^TLS library: *OpenSSL' && tls=openssl
build=$(dirname "$TLSGATE")
build=${build%/asan}
[ "$tls" = openssl ] && build=${build%/openssl}
log "harnesses: TLS=$tls BUILD=$build"

TLS=$tls BUILD=$build "$ROOT/tests/fuzz/run.sh" "${FUZZ_SMOKE_SECONDS:-10}" 2>&1 | tee "$WORK/fuzz.out"
rc=${PIPESTATUS[0]}
case $rc in
    0) ;;
    77) skip "$(tail -n1 "$WORK/fuzz.out")" ;;
    *) fail "tests/fuzz/run.sh exited $rc (logs and crash inputs under $build/fuzz/)" ;;
esac
n=$(grep -c '^fuzz: .* executions in ' "$WORK/fuzz.out")
[ "$n" -ge 3 ] || fail "only $n harness(es) reported executions"
# every harness must really have run (a harness that dies at start-up shows 0)
if grep -E '^fuzz: [a-z_]+ +0 executions' "$WORK/fuzz.out"; then fail "a harness executed nothing"; fi
log "ok"
