#!/usr/bin/env bash
# 08-drain: SIGTERM stops accepting but lets established connections finish.
#  1. drain_timeout=10s: after SIGTERM new connections are refused, the open
#     TLS connection still echoes; once it closes tlsgate exits 0 promptly.
#  2. drain_timeout=1s with a client that stays: tlsgate closes it and exits 0
#     by itself within a few seconds.
. "$(dirname "$0")/lib.sh"

EPORT=$(free_port)
start_echo "$EPORT"

conf() {  # conf FILE PORT DRAIN
    write_config "$1" <<EOF
$(global_section workers=1 log_level=debug drain_timeout=$3)

[listener:drain]
bind = 127.0.0.1:$2
secure = on
$SERVER_PFX
backend = 127.0.0.1:$EPORT
EOF
}

# --- 1: drain until the last client leaves ------------------------------------------------
P1=$(free_port)
conf drain10.ini "$P1" 10s
start_tlsgate "$CONFIG"
"$PY" - "$P1" "$TLSGATE_PID" <<'EOF' || fail "drain case 1 failed"
import os, signal, socket, ssl, sys, time
import e2elib

port, pid = int(sys.argv[1]), int(sys.argv[2])

def alive():
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False

def echo(s, data):
    s.sendall(data)
    got = e2elib.recv_exact(s, len(data))
    if got != data:
        print("FAILED: echo mismatch", flush=True); sys.exit(1)

a = e2elib.tls_connect(port)
echo(a, b"before SIGTERM\n")
print("ok: connection A echoes", flush=True)

os.kill(pid, signal.SIGTERM)
t0 = time.monotonic()
while True:
    try:
        s = e2elib.tcp_connect(port, timeout=2)
        s.close()
    except (ConnectionRefusedError, ConnectionResetError):
        break   # reset: the SYN raced with the closing listener -- also a refusal
    if time.monotonic() - t0 > 5:
        print("FAILED: new connections still accepted 5 s after SIGTERM", flush=True); sys.exit(1)
    time.sleep(0.05)
print("ok: new connections refused %.2f s after SIGTERM" % (time.monotonic() - t0), flush=True)

if not alive():
    print("FAILED: tlsgate exited while connection A was still open", flush=True); sys.exit(1)
blob = os.urandom(256 * 1024)
echo(a, blob)
print("ok: connection A still echoes 256 KiB after SIGTERM", flush=True)
time.sleep(0.5)
if not alive():
    print("FAILED: tlsgate exited while connection A was still open", flush=True); sys.exit(1)
echo(a, b"still here\n")
a.close()
print("closed A", flush=True)
EOF
t_close=$(now_ms)
wait_exit "$TLSGATE_PID" 8 || fail "tlsgate did not exit within 8 s after its last connection closed (drain_timeout 10s)"
elapsed=$(( $(now_ms) - t_close ))
[ "$WAIT_RC" = 0 ] || fail "tlsgate exited with status $WAIT_RC after draining"
log "case 1: tlsgate exited 0, ${elapsed} ms after the last client closed"
[ "$elapsed" -lt 5000 ] || fail "tlsgate took ${elapsed} ms to exit after its last connection closed"

# --- 2: drain_timeout expires with a client still connected ---------------------------------
P2=$(free_port)
conf drain1.ini "$P2" 1s
start_tlsgate "$CONFIG"
write_py stayer <<'EOF'
import sys, time
import e2elib
s = e2elib.tls_connect(int(sys.argv[1]))
s.sendall(b"hello\n")
assert e2elib.recv_exact(s, 6) == b"hello\n"
print("connected", flush=True)
d = e2elib.closed_within(s, 30)
print("eof after %.2f s" % d if d is not None else "no eof in 30 s", flush=True)
EOF
bg_start stayer "$PY" "$WORK/stayer.py" "$P2"
STAYER=$BG_PID
end=$(( $(now_ms) + 10000 ))
until grep -q connected "$WORK/stayer.log"; do
    is_alive "$STAYER" || fail "stayer client failed: $(cat "$WORK/stayer.log")"
    [ "$(now_ms)" -ge "$end" ] && fail "stayer client did not connect"
    sleep 0.05
done
t0=$(now_ms)
kill -TERM "$TLSGATE_PID"
wait_exit "$TLSGATE_PID" 6 || fail "tlsgate still running 6 s after SIGTERM with drain_timeout = 1s"
elapsed=$(( $(now_ms) - t0 ))
[ "$WAIT_RC" = 0 ] || fail "tlsgate exited with status $WAIT_RC after drain_timeout"
[ "$elapsed" -ge 700 ] || fail "tlsgate exited after ${elapsed} ms, before drain_timeout (1 s) expired"
log "case 2: tlsgate exited 0 ${elapsed} ms after SIGTERM"
wait_exit "$STAYER" 5 || fail "stayer client was not disconnected"
grep -q "^eof after" "$WORK/stayer.log" || fail "stayer client: $(cat "$WORK/stayer.log")"
log "case 2: stayer client: $(tail -n1 "$WORK/stayer.log")"
log "ok"
