#!/usr/bin/env bash
# e2e: long
# 52-soak-short: tools/soak for about a minute -- 10,000 connection cycles
# (5,000 in the ASan/UBSan pass) by 32 parallel clients through a TLS and a
# plaintext listener whose two echo backends are killed and restarted every
# 0.5 s (both at once every fifth time). Mixed cycles: full echo round
# trips, client resets, aborted handshakes, connect-and-close, half-closes.
# Passes when tlsgate's descriptor count after the run equals the one after
# warm-up (no descriptor leak), RSS grew by at most 8 MiB (release binary;
# under ASan RSS is only reported -- LeakSanitizer at exit checks instead),
# no echo came back corrupted, at least half the cycles succeeded, a fresh
# client is served at the end, and tlsgate exits 0 on SIGTERM.
# SOAK_CYCLES / SOAK_MINUTES override the size.
. "$(dirname "$0")/lib.sh"

LTLS=$(free_port)
LPLAIN=$(free_port)
BA=$(free_port)
BB=$(free_port)
write_config soak.ini <<EOF
[global]
workers = 2
log_level = warn
drain_timeout = 5s

[listener:soak]
bind = 127.0.0.1:$LTLS
pfx = $CERTS/server.pfx
pfx_password = file:$CERTS/pfx-password
backend = 127.0.0.1:$BA, 127.0.0.1:$BB
connect_timeout = 2s
handshake_timeout = 5s
idle_timeout = 30s

[listener:soakplain]
bind = 127.0.0.1:$LPLAIN
secure = off
backend = 127.0.0.1:$BA, 127.0.0.1:$BB
connect_timeout = 2s
idle_timeout = 30s
EOF
start_tlsgate "$CONFIG"

if [ -n "${TLSGATE_SANITIZED:-}" ]; then
    cycles=${SOAK_CYCLES:-5000} rss=0
else
    cycles=${SOAK_CYCLES:-10000} rss=8
fi
"$PY" "$ROOT/tools/soak" --attach "$TLSGATE_PID" --port "$LTLS" --plain-port "$LPLAIN" \
    --backend-ports "$BA,$BB" --certs "$CERTS" --cycles "$cycles" --minutes "${SOAK_MINUTES:-1.25}" \
    --workers 32 --warmup 500 --flap-every 0.5 --down-for 0.2 --rss-bound-mb "$rss" 2>&1 |
    tee "$WORK/soak.out"
rc=${PIPESTATUS[0]}
[ "$rc" = 0 ] || fail "tools/soak failed (exit $rc)"
grep -q '^soak: descriptors ' "$WORK/soak.out" || fail "tools/soak did not measure descriptors"

is_alive "$TLSGATE_PID" || fail "tlsgate died"
stop_tlsgate 15
[ "$TLSGATE_RC" = 0 ] || fail "tlsgate exited $TLSGATE_RC on SIGTERM"
log "ok"
