#!/usr/bin/env bash
# 06-failover: backend = DEAD, LIVE. Requests succeed (the refused backend is
# skipped within the same request and the failure is logged). Then DEAD comes
# up and LIVE goes away: requests succeed again within a bounded time (~40 s),
# i.e. the rested backend is tried again.
. "$(dirname "$0")/lib.sh"
require_cmd curl

DEAD=$(free_port)
LIVE=$(free_port)
LPORT=$(free_port)
start_demo_backend "$LIVE" live
LIVE_PID=$BG_PID

write_config failover.ini <<EOF
$(global_section workers=1 log_level=debug)

[listener:fo]
bind = 127.0.0.1:$LPORT
secure = on
$SERVER_PFX
backend = 127.0.0.1:$DEAD, 127.0.0.1:$LIVE
connect_timeout = 2s
EOF
start_tlsgate "$CONFIG"

get() {
    curl -sS --max-time 10 --cacert "$CERTS/ca.pem" "https://localhost:$LPORT/$1" 2>&1
}
want() { printf 'hello from the tlsgate demo backend\npath: /%s' "$1"; }

for i in 1 2 3 4 5 6; do
    out=$(get "phase1-$i")
    [ "$out" = "$(want "phase1-$i")" ] || fail "phase 1 request $i (dead backend first in the list) failed: $out"
done
log "phase 1: 6 requests ok with 127.0.0.1:$DEAD down"
assert_log_contains "127\.0\.0\.1:$DEAD([^0-9]|$).*(refused|fail|down|unreachable|error)|(refused|fail|down|unreachable|error).*127\.0\.0\.1:$DEAD([^0-9]|$)"

# swap: DEAD comes up, LIVE goes away
start_demo_backend "$DEAD" revived
stop_pid "$LIVE_PID"
wait_not_listening "$LIVE" 5 || fail "live backend still listening"
log "phase 2: 127.0.0.1:$DEAD up, 127.0.0.1:$LIVE stopped"

t0=$(now_ms); fails=0; first=
while :; do
    out=$(get "phase2")
    if [ "$out" = "$(want phase2)" ]; then first=$(( $(now_ms) - t0 )); break; fi
    fails=$((fails + 1))
    [ $(( $(now_ms) - t0 )) -ge 40000 ] && fail "no request succeeded within 40 s after the dead backend came back ($fails failures; last: $out)"
    sleep 0.2
done
log "phase 2: first success after ${first} ms ($fails failed requests before)"
for i in 1 2 3 4 5 6; do
    out=$(get "phase2-$i")
    [ "$out" = "$(want "phase2-$i")" ] || fail "phase 2 request $i failed after recovery: $out"
done
log "phase 2: 6 more requests ok"

stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || fail "tlsgate exited $TLSGATE_RC on SIGTERM"
log "ok"
