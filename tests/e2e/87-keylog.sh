#!/usr/bin/env bash
# 87-keylog: keylog_file writes the NSS key log of both sides of a listener.
#   1. a TLS 1.3 and a TLS 1.2 session through a listener that also speaks
#      TLS to its backend: every line `openssl s_client -keylogfile` wrote
#      (client side) and every line `openssl s_server -keylogfile` wrote
#      (backend side) is in tlsgate's key log, labels included
#      (CLIENT_RANDOM for 1.2, *_TRAFFIC_SECRET_* for 1.3)
#   2. the file did not exist: it is created with mode 0600
#   3. a warning at start-up and at every reload while it is on
#   4. an existing key log with group or other access refuses start-up
#      (file:line, mode named); after chmod 600 the same config starts
#   5. off by default: the same traffic without keylog_file logs nothing new
. "$(dirname "$0")/lib.sh"
require_cmd openssl

SPORT=$(free_port); PORT=$(free_port)
bg_start s_server openssl s_server -accept "$SPORT" -naccept 1000 -cert "$CERTS/server.pem" \
    -key "$CERTS/server.key" -www -keylogfile "$WORK/backend.keys"
S_PID=$BG_PID
wait_listen "$SPORT" 10 "$S_PID" || fail "s_server did not start: $(cat "$WORK/s_server.log")"

write_config keylog.ini <<EOF
$(global_section workers=2)

[listener:front]
bind = 127.0.0.1:$PORT
$SERVER_PFX
backend = 127.0.0.1:$SPORT
backend_secure = on
backend_ca = $CERTS/ca.pem
keylog_file = $WORK/keys.log
EOF
[ ! -e "$WORK/keys.log" ] || fail "keys.log exists before the start"
start_tlsgate "$CONFIG" "$PORT"
assert_log_contains "warning: .*keylog_file: .*keys.log: TLS session secrets of this listener are written there" 5
MODE=$(stat -c %a "$WORK/keys.log")
[ "$MODE" = 600 ] || error "keylog file created with mode $MODE, wanted 600"

session() {  # session VERSION-FLAG OUTFILE -- one HTTP request through tlsgate with s_client
    printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$PORT" \
        -servername localhost -CAfile "$CERTS/ca.pem" "$1" -keylogfile "$WORK/$2" -quiet \
        >"$WORK/$2.out" 2>&1
    grep -q "s_server" "$WORK/$2.out" || grep >/dev/null -c "HTTP/1" "$WORK/$2.out" \
        || error "$1 session through tlsgate got no answer: $(head -c 300 "$WORK/$2.out")"
}
session -tls1_3 client13.keys
session -tls1_2 client12.keys

contains_all() {  # contains_all WHAT FILE -- every line of FILE (but openssl's comment) is in keys.log
    local n missing
    n=$(grep -vc '^#' "$WORK/$2" 2>/dev/null)
    [ "$n" -gt 0 ] || { error "$1: openssl wrote no key log lines ($2)"; return; }
    missing=$(grep -v '^#' "$WORK/$2" | grep -Fvx -f "$WORK/keys.log" | cut -c1-60)
    if [ -n "$missing" ]; then error "$1: lines of $2 missing from tlsgate's key log: $missing"
    else log "$1: all $n lines of $2 are in tlsgate's key log"; fi
}
for t in $(seq 50); do [ -s "$WORK/backend.keys" ] && break; sleep 0.1; done
contains_all "client side, TLS 1.3" client13.keys
contains_all "client side, TLS 1.2" client12.keys
contains_all "backend side" backend.keys
grep -q '^CLIENT_RANDOM ' "$WORK/client12.keys" || error "no CLIENT_RANDOM line for TLS 1.2"
for label in CLIENT_HANDSHAKE_TRAFFIC_SECRET SERVER_HANDSHAKE_TRAFFIC_SECRET CLIENT_TRAFFIC_SECRET_0 SERVER_TRAFFIC_SECRET_0; do
    grep -q "^$label " "$WORK/client13.keys" && grep -q "^$label " "$WORK/keys.log" \
        || error "label $label missing for TLS 1.3"
done
# the labels and field layout are NSS's: LABEL <64 hex client random> <hex secret>
BAD=$(grep -Evc '^[A-Z_0-9]+ [0-9a-f]{64} [0-9a-f]+$' "$WORK/keys.log")
[ "$BAD" = 0 ] || error "$BAD lines of the key log are not in NSS key log format"

log_mark
kill -HUP "$TLSGATE_PID"
assert_log_contains "reload: .*keylog_file: .*TLS session secrets" 5 --since-mark
assert_log_contains "reloaded: generation 2" 5 --since-mark
stop_tlsgate

# 4. an existing file readable by others refuses start-up; the control starts
chmod 644 "$WORK/keys.log"
check_config "$CONFIG"
echo "$CHECK_OUT" | grep >/dev/null -c "keylog.ini:11: \[listener:front\] keylog_file: .*keys.log: mode 0644 gives group/other access" \
    && [ "$CHECK_RC" = 1 ] || error "mode 0644 key log not refused by -t: $CHECK_OUT"
"$TLSGATE" -c "$CONFIG" >"$WORK/refused.log" 2>&1 </dev/null &
RPID=$!; track_pid "$RPID" tlsgate-refused
wait_exit "$RPID" 10 || fail "tlsgate did not exit with a world-readable key log"
[ "$WAIT_RC" = 1 ] && grep -q "mode 0644 gives group/other access" "$WORK/refused.log" \
    || error "start-up with a 0644 key log: status $WAIT_RC, $(cat "$WORK/refused.log")"
[ "$(grep -c "mode 0644" "$WORK/refused.log")" = 1 ] || error "the refusal is reported more than once"
chmod 640 "$WORK/keys.log"
check_config "$CONFIG"
[ "$CHECK_RC" = 1 ] || error "mode 0640 key log not refused"
chmod 600 "$WORK/keys.log"
check_config "$CONFIG"
[ "$CHECK_RC" = 0 ] || error "control: mode 0600 key log refused: $CHECK_OUT"

# 5. off by default
sed -i '/^keylog_file/d' "$CONFIG"
BEFORE=$(wc -l <"$WORK/keys.log")
start_tlsgate "$CONFIG" "$PORT"
session -tls1_3 client-off.keys
[ "$(wc -l <"$WORK/keys.log")" = "$BEFORE" ] || error "keys logged without keylog_file"
assert_log_not_contains "keylog_file"
finish
