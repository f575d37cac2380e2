#!/usr/bin/env bash
# 85-health: the metrics address answers /healthz (alive) and /readyz
# (every listener bound, each TCP listener with a backend up; a UDP
# listener counts once bound), and backend_check marks backends down before
# a client reaches them and up again when they recover.
#   1. without checks: /readyz stays 200 when the backend dies (nobody knows
#      yet), turns 503 once a client failed on it, and 200 again after the
#      backend is back and its rest is over; a client of a listener with one
#      dead and one live backend hits the dead one (control for 2.)
#   2. backend_check = connect: the dead backend is marked down with no
#      client at all (log, tlsgate_backend_up 0, check failures counted,
#      /readyz 503 when it is the only one), then 20 clients never touch it
#      (its failure counter stays 0), and a restarted backend is marked up
#      again (log, /readyz 200)
#   3. backend_check = tls: a TLS backend passes; a plaintext one that
#      accepts TCP fails the check with a handshake error
#   4. config: backend_check on a udp listener and tls without
#      backend_secure are refused with file:line, beside passing controls
. "$(dirname "$0")/lib.sh"
require_cmd curl socat openssl

MPORT=$(free_port); EPORT=$(free_port); DEAD=$(free_port)
SOLO=$(free_port); PAIR=$(free_port); UPORT=$(free_port udp); UECHO=$(free_port udp)

readyz() {  # readyz -> HTTP status in RZ_CODE, body in RZ_BODY
    RZ_BODY=$(curl -s --max-time 5 -o - -w '\n%{http_code}' "http://127.0.0.1:$MPORT/readyz")
    RZ_CODE=${RZ_BODY##*$'\n'}; RZ_BODY=${RZ_BODY%$'\n'*}
}
wait_readyz() {  # wait_readyz CODE [TIMEOUT_S=10]
    local end=$(( $(now_ms) + ${2:-10} * 1000 ))
    while :; do
        readyz
        [ "$RZ_CODE" = "$1" ] && { log "/readyz $RZ_CODE: $(echo "$RZ_BODY" | tr '\n' '|')"; return 0; }
        [ "$(now_ms)" -ge "$end" ] && { error "/readyz is $RZ_CODE, wanted $1: $RZ_BODY"; return 1; }
        sleep 0.1
    done
}
metric() { curl -s --max-time 5 "http://127.0.0.1:$MPORT/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }
clients() {  # clients PORT N -- N echo round trips through a plaintext listener; prints how many worked
    "$PY" - "$1" "$2" <<'EOF'
import socket, sys
port, n, ok = int(sys.argv[1]), int(sys.argv[2]), 0
for i in range(n):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"ping\n")
        if s.recv(16) == b"ping\n":
            ok += 1
        s.close()
    except OSError:
        pass
print(ok)
EOF
}

config() {  # config FILE CHECK -- CHECK: "off" or "connect"
    write_config "$1" <<EOF
$(global_section workers=2 log_level=info metrics=127.0.0.1:$MPORT)

[listener:solo]
bind = 127.0.0.1:$SOLO
secure = off
backend = 127.0.0.1:$EPORT
connect_timeout = 2s
backend_check = $2
$( [ "$2" = off ] || echo "backend_check_interval = 200ms" )

[listener:pair]
bind = 127.0.0.1:$PAIR
secure = off
backend = 127.0.0.1:$DEAD, 127.0.0.1:$EPORT
connect_timeout = 2s
backend_check = $2
$( [ "$2" = off ] || echo "backend_check_interval = 200ms" )

[listener:udp]
bind = 127.0.0.1:$UPORT
transport = udp
secure = off
backend = 127.0.0.1:$UECHO
EOF
}

# ---- 1. no active checks ----------------------------------------------------------
start_echo "$EPORT"; ECHO_PID=$BG_PID
config passive.ini off
start_tlsgate "$CONFIG" "$SOLO" "$PAIR" "$MPORT"
HZ=$(curl -s --max-time 5 -w " %{http_code}" "http://127.0.0.1:$MPORT/healthz" | tr -d "\n")
[ "$HZ" = "ok 200" ] || error "/healthz answered '$HZ', wanted 'ok 200'"
wait_readyz 200
echo "$RZ_BODY" | grep >/dev/null -c '^listener udp: ready (udp' || error "/readyz does not count the udp listener ready: $RZ_BODY"
CT=$(curl -s --max-time 5 -o /dev/null -w '%{content_type}' "http://127.0.0.1:$MPORT/readyz")
case $CT in text/plain*) ;; *) error "/readyz content type '$CT', wanted text/plain" ;; esac
[ "$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MPORT/nope")" = 404 ] \
    || error "an unknown path does not answer 404"

# the pair listener's clients: with no checks, the dead backend is tried by some client
[ "$(clients "$PAIR" 10)" = 10 ] || error "pair listener: not every client got through"
F=$(metric "tlsgate_backend_failures_total{listener=\"pair\",backend=\"127.0.0.1:$DEAD\"}")
log "without checks: failures of the dead backend after 10 clients: $F"
[ "${F:-0}" -ge 1 ] || error "control: without backend_check no client hit the dead backend (failures '$F')"

stop_pid "$ECHO_PID"
sleep 0.3  # nothing checks: /readyz cannot know yet (bounded, single wait)
readyz
[ "$RZ_CODE" = 200 ] || error "without checks /readyz turned $RZ_CODE before any client failed"
[ "$(clients "$SOLO" 1)" = 0 ] || error "a client got through to a stopped backend"
wait_readyz 503 3
echo "$RZ_BODY" | grep >/dev/null -c '^listener solo: not ready (0 of 1' || error "/readyz body does not name listener solo: $RZ_BODY"
start_echo "$EPORT"; ECHO_PID=$BG_PID
wait_readyz 200 5   # the rest after one failure is 1s
stop_tlsgate

# ---- 2. backend_check = connect -----------------------------------------------------
config active.ini connect
start_tlsgate "$CONFIG" "$SOLO" "$PAIR" "$MPORT"
assert_log_contains "listener pair: backend 127.0.0.1:$DEAD is down \(backend_check connect: Connection refused\)" 5
wait_readyz 200
UP=$(metric "tlsgate_backend_up{listener=\"pair\",backend=\"127.0.0.1:$DEAD\"}")
[ "$UP" = 0 ] || error "tlsgate_backend_up of the dead backend is '$UP', wanted 0"
CF=$(metric "tlsgate_backend_check_failures_total{listener=\"pair\",backend=\"127.0.0.1:$DEAD\"}")
[ "${CF:-0}" -ge 1 ] || error "tlsgate_backend_check_failures_total is '$CF'"
[ "$(clients "$PAIR" 20)" = 20 ] || error "pair listener with checks: not every client got through"
F=$(metric "tlsgate_backend_failures_total{listener=\"pair\",backend=\"127.0.0.1:$DEAD\"}")
log "with checks: failures of the dead backend after 20 clients: $F"
[ "${F:-0}" = 0 ] || error "with backend_check a client still hit the dead backend ($F failures)"

log_mark
stop_pid "$ECHO_PID"
assert_log_contains "listener solo: backend 127.0.0.1:$EPORT is down" 5 --since-mark
wait_readyz 503 3
[ "$(metric "tlsgate_backend_up{listener=\"solo\",backend=\"127.0.0.1:$EPORT\"}")" = 0 ] \
    || error "tlsgate_backend_up of the stopped backend is not 0"
log_mark
start_echo "$EPORT"; ECHO_PID=$BG_PID
assert_log_contains "listener solo: backend 127.0.0.1:$EPORT is up again \(backend_check connect\)" 5 --since-mark
wait_readyz 200 3
[ "$(clients "$SOLO" 3)" = 3 ] || error "clients fail after the backend came back"
stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || error "tlsgate exited with $TLSGATE_RC"

# ---- 3. backend_check = tls ------------------------------------------------------
TPORT=$(free_port); GOOD=$(free_port); BAD=$(free_port)
bg_start s_server openssl s_server -accept "$TPORT" -naccept 100000 -cert "$CERTS/server.pem" \
    -key "$CERTS/server.key" -www
wait_listen "$TPORT" 10 "$BG_PID" || fail "s_server did not start"
write_config tls.ini <<EOF
$(global_section workers=1 metrics=127.0.0.1:$MPORT)

[listener:good]
bind = 127.0.0.1:$GOOD
secure = off
backend = 127.0.0.1:$TPORT
backend_secure = on
backend_ca = $CERTS/ca.pem
backend_check = tls
backend_check_interval = 200ms

[listener:bad]
bind = 127.0.0.1:$BAD
secure = off
backend = 127.0.0.1:$EPORT
backend_secure = on
backend_ca = $CERTS/ca.pem
backend_check = tls
backend_check_interval = 200ms
handshake_timeout = 2s
EOF
start_tlsgate "$CONFIG" "$GOOD" "$BAD" "$MPORT"
assert_log_contains "listener bad: backend 127.0.0.1:$EPORT is down \(backend_check tls: (TLS handshake|connect)" 5
sleep 0.5   # a few check rounds (bounded)
[ "$(metric "tlsgate_backend_up{listener=\"good\",backend=\"127.0.0.1:$TPORT\"}")" = 1 ] \
    || error "the TLS backend is not up under backend_check = tls"
[ "$(metric "tlsgate_backend_check_failures_total{listener=\"good\",backend=\"127.0.0.1:$TPORT\"}")" = 0 ] \
    || error "checks of the TLS backend failed"
assert_log_not_contains "listener good: backend .* is down"
readyz
[ "$RZ_CODE" = 503 ] && echo "$RZ_BODY" | grep >/dev/null -c '^listener good: ready' && echo "$RZ_BODY" | grep >/dev/null -c '^listener bad: not ready' \
    || error "/readyz with one good and one bad listener: $RZ_CODE $RZ_BODY"
stop_tlsgate

# ---- 4. configuration ------------------------------------------------------------------
write_config udpcheck.ini <<EOF
[listener:u]
bind = 127.0.0.1:$UPORT
transport = udp
secure = off
backend = 127.0.0.1:$UECHO
backend_check = connect
EOF
check_config "$CONFIG"
[ "$CHECK_RC" = 1 ] && echo "$CHECK_OUT" | grep >/dev/null -c "udpcheck.ini:6: \[listener:u\] backend_check: must be off with transport = udp" \
    || error "backend_check on a udp listener not refused: $CHECK_OUT"
sed -i 's/^backend_check = connect/backend_check = off/' "$CONFIG"
check_config "$CONFIG"
[ "$CHECK_RC" = 0 ] || error "control: backend_check = off on a udp listener refused: $CHECK_OUT"
write_config tlsplain.ini <<EOF
[listener:t]
bind = 127.0.0.1:$SOLO
secure = off
backend = 127.0.0.1:$EPORT
backend_check = tls
EOF
check_config "$CONFIG"
[ "$CHECK_RC" = 1 ] && echo "$CHECK_OUT" | grep >/dev/null -c "tlsplain.ini:5: \[listener:t\] backend_check: tls needs backend_secure = on" \
    || error "backend_check = tls without backend_secure not refused: $CHECK_OUT"
sed -i 's/^backend_check = tls/backend_check = connect/' "$CONFIG"
check_config "$CONFIG"
[ "$CHECK_RC" = 0 ] || error "control: backend_check = connect refused: $CHECK_OUT"
finish
