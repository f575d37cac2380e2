#!/usr/bin/env bash
# 36-udp-reload: SIGHUP with UDP listeners. A DTLS session and a plain UDP
# relay association established before the reload keep working after it
# (same socket, same association), new clients get the new config, and a
# listener removed by the reload stops taking new clients while its open
# association goes on.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/dtls-helpers.sh"
require_cmd openssl

EPORT=$(free_port udp)
DPORT=$(free_port udp)
RPORT=$(free_port udp)
listener_dtls() {
    cat <<EOF
[listener:dtls]
bind = 127.0.0.1:$DPORT
transport = udp
$SERVER_PFX
backend = 127.0.0.1:$EPORT
EOF
}
start_udp_echo "$EPORT"
write_config reload.ini <<EOF
$(global_section workers=2 log_level=debug drain_timeout=3s)

$(listener_dtls)

[listener:relay]
bind = 127.0.0.1:$RPORT
transport = udp
secure = off
backend = 127.0.0.1:$EPORT
EOF
start_tlsgate "$CONFIG"
wait_running

mkfifo "$WORK/ctl"
"$PY" - "$DPORT" "$RPORT" "$WORK/ctl" "$WORK/phase" <<'EOF' &
import os, socket, sys, time
import dtlslib as d
dport, rport, ctl, phase = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
def say(p):
    with open(phase + ".tmp", "w") as f: f.write(p)
    os.replace(phase + ".tmp", phase)
ok = True
c = d.s_client(dport, "-CAfile", d.cert("ca.pem"))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(5)
u.sendto(b"relay-before", ("127.0.0.1", rport))
ok &= c.roundtrip(["dtls-before"]) == ["dtls-before"] and u.recvfrom(100)[0] == b"relay-before"
say("established" if ok else "failed")
with open(ctl) as f: f.read()          # the shell reloaded (twice)
ok2 = c.roundtrip(["dtls-after"]) == ["dtls-after"]
u.sendto(b"relay-after", ("127.0.0.1", rport))
try:
    ok2 &= u.recvfrom(100)[0] == b"relay-after"
except socket.timeout:
    ok2 = False
n = d.s_client(dport, "-CAfile", d.cert("ca.pem"))
ok2 &= n.roundtrip(["dtls-new"]) == ["dtls-new"]
n.close()
# a new client of the removed relay listener gets nothing
v = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); v.settimeout(1)
v.sendto(b"relay-new", ("127.0.0.1", rport))
try:
    v.recvfrom(100); ok2 = False; print("FAILED: removed listener answered a new client", flush=True)
except socket.timeout:
    pass
c.close()
print("old sessions after reload: %s" % ("ok" if ok2 else "FAILED"), flush=True)
say("done-ok" if ok and ok2 else "done-failed")
EOF
DRIVER=$!
track_pid "$DRIVER" driver

end=$(( $(now_ms) + 20000 ))
until [ -f "$WORK/phase" ]; do
    [ "$(now_ms)" -ge "$end" ] && fail "clients did not get established"
    sleep 0.05
done
[ "$(cat "$WORK/phase")" = established ] || fail "clients failed before the reload"

log_mark
kill -HUP "$TLSGATE_PID"
assert_log_contains "reloaded: generation 2" 10 --since-mark
# second reload drops the relay listener
{ printf '[global]\nworkers = 2\nlog_level = debug\ndrain_timeout = 3s\n\n'; listener_dtls; } >"$CONFIG"
log_mark
kill -HUP "$TLSGATE_PID"
assert_log_contains "reloaded: generation 3" 10 --since-mark
assert_log_contains "listener relay \(worker [01]\): no new clients" 5 --since-mark
echo go >"$WORK/ctl"

wait_exit "$DRIVER" 40 || fail "client driver did not finish"
[ "$(cat "$WORK/phase")" = done-ok ] || fail "sessions broke across the reload (phase $(cat "$WORK/phase"))"
stop_tlsgate 20
[ "$TLSGATE_RC" = 0 ] || fail "tlsgate exited $TLSGATE_RC on SIGTERM"
assert_log_contains "on relay: close: drain timeout"
log "ok"
