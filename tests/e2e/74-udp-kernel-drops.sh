#!/usr/bin/env bash
# 74-udp-kernel-drops: datagrams the kernel drops because a UDP listening
# socket's receive buffer is full are counted in
# tlsgate_udp_kernel_drops_total.  Control: traffic tlsgate keeps up with
# leaves it at 0.  Then tlsgate is stopped (SIGSTOP, by PID) while a burst
# far larger than any receive buffer arrives; once it runs again, the
# counter shows the loss.  The log says what receive buffer it got.
# e2e: serial
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/dtls-helpers.sh"
require_cmd curl

EPORT=$(free_port udp); UPORT=$(free_port udp); MPORT=$(free_port)
start_udp_echo "$EPORT"
write_config kd.ini <<EOF
[global]
workers = 1
log_level = info
metrics = 127.0.0.1:$MPORT

[listener:relay]
bind = 127.0.0.1:$UPORT
transport = udp
secure = off
backend = 127.0.0.1:$EPORT
EOF
start_tlsgate "$CONFIG" "$MPORT"
wait_running
assert_log_contains 'listener relay: receive buffer [0-9]+ KiB'

metric() { curl -s --max-time 5 "http://127.0.0.1:$MPORT/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }
KEY='tlsgate_udp_kernel_drops_total{listener="relay"}'

# send N SIZE [ECHO]: N datagrams from one socket; ECHO: wait for each echo
send() {
    "$PY" - "$UPORT" "$@" <<'EOF'
import socket, sys
port, n, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
echo = len(sys.argv) > 4
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
for i in range(n):
    s.sendto(b"k" * size, ("127.0.0.1", port))
    if echo:
        assert s.recv(2048) == b"k" * size, "echo differs"
print(f"sent {n}")
EOF
}

send 20 100 echo >/dev/null || fail "relay did not echo"
sleep 1.2                      # the counter is read at most once a second, on arrival
send 20 100 echo >/dev/null || fail "relay did not echo"
got=$(metric "$KEY")
[ "$got" = 0 ] || fail "control: $KEY = '$got', wanted 0"
log "ok: control: $KEY = 0"

kill -STOP "$TLSGATE_PID"
# 40,000 x 1,200 bytes: 48 MB, beyond any receive buffer (8 MiB asked).
send 40000 1200 >/dev/null; rc=$?
kill -CONT "$TLSGATE_PID"
[ "$rc" = 0 ] || fail "burst not sent"
sleep 1.2
send 5 100 echo >/dev/null || fail "relay did not echo after the burst"
for _ in $(seq 50); do
    got=$(metric "$KEY")
    [ -n "$got" ] && [ "$got" -gt 0 ] && break
    sleep 0.1
done
[ -n "$got" ] && [ "$got" -gt 0 ] || fail "$KEY = '$got' after a burst that overflowed the buffer"
log "ok: $KEY = $got after the burst"
finish
