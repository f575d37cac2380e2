#!/usr/bin/env bash
# 73-dtls-psk-resumption: a DTLS-PSK session ticket does not outlive its key.
# With ticket_key_file (so tickets survive a reload), a PSK client's saved
# session must not resume once its identity was removed from (or re-keyed
# in) the psk file and tlsgate reloaded: the psk file is part of the
# session's policy context.
#  - control: a reload that leaves the psk file alone still resumes;
#  - client1 removed, SIGHUP: its saved ticket is not "Reused", no data
#    reaches the backend, and tlsgate logs the refused full handshake;
#  - client2, still listed, is served (a full handshake).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/dtls-helpers.sh"
require_cmd openssl

EPORT=$(free_port udp)
DPORT=$(free_port udp)
start_udp_echo "$EPORT"
K1=$(openssl rand -hex 16)
K2=$(openssl rand -hex 16)
printf 'client1:%s\nclient2:%s\n' "$K1" "$K2" >"$WORK/psk.txt"
chmod 600 "$WORK/psk.txt"
head -c 80 /dev/urandom >"$WORK/ticket.key"
chmod 600 "$WORK/ticket.key"
write_config psk.ini <<EOF
$(global_section log_level=info)

[listener:dtls]
bind = 127.0.0.1:$DPORT
transport = udp
psk = file:$WORK/psk.txt
ticket_key_file = $WORK/ticket.key
backend = 127.0.0.1:$EPORT
dtls_cookie = off
EOF
start_tlsgate "$CONFIG"
wait_running
GEN=1
reload() {
    GEN=$((GEN + 1))
    kill -HUP "$TLSGATE_PID"
    assert_log_contains "reloaded: generation $GEN" 10 >/dev/null
}

# session NAME IDENT KEY [s_client args] -> RESULT=echo|none, KIND=New|Reused|?
session() {
    local name=$1 ident=$2 key=$3; shift 3
    # sends one line, waits for its echo (at most 10 s), ends with close_notify
    if "$PY" "$E2E_DIR/py/dtlslib.py" s_client "$DPORT" "ping-$name" -cipher PSK \
        -psk_identity "$ident" -psk "$key" "$@" >"$WORK/$name.out" 2>&1; then RESULT=echo; else RESULT=none; fi
    KIND=?
    grep -q "^Reused, " "$WORK/$name.out" && KIND=Reused
    grep -q "^New, " "$WORK/$name.out" && KIND=New
    log "$name: $RESULT, $KIND"
}

session full1 client1 "$K1" -sess_out "$WORK/s1.pem"
[ "$RESULT/$KIND" = echo/New ] || fail "client1's first session: $RESULT/$KIND"
session resumed1 client1 "$K1" -sess_in "$WORK/s1.pem"
[ "$RESULT/$KIND" = echo/Reused ] || fail "client1 did not resume before any change: $RESULT/$KIND"

reload   # nothing changed: the ticket still resumes (control)
session same1 client1 "$K1" -sess_in "$WORK/s1.pem"
[ "$RESULT/$KIND" = echo/Reused ] || fail "an unchanged reload ended resumption: $RESULT/$KIND"

printf 'client2:%s\n' "$K2" >"$WORK/psk.txt"   # client1 removed
reload
log_mark
session removed1 client1 "$K1" -sess_in "$WORK/s1.pem"
[ "$KIND" = Reused ] && fail "client1's ticket resumed after client1 was removed from the psk file"
[ "$RESULT" = none ] || fail "client1 got data through after its removal"
log_since | grep >/dev/null -c "unknown PSK identity 'client1'" ||
    fail "no refused full handshake for client1 in the log"
session full2 client2 "$K2"
[ "$RESULT/$KIND" = echo/New ] || fail "client2 (still listed) was not served: $RESULT/$KIND"
stop_tlsgate 10   # every session ended with close_notify: nothing to drain
[ "$TLSGATE_RC" = 0 ] || fail "tlsgate exited $TLSGATE_RC on SIGTERM"
log "ok"
