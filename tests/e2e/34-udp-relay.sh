#!/usr/bin/env bash
# 34-udp-relay: transport = udp with secure = off is a plain UDP relay with
# one association (and one backend socket) per client address and port.
# Eight clients at once each get their own 200 datagrams back, byte-exact
# and nothing else; an association idle for session_timeout ends and the
# next datagram from that client opens a fresh one; a backend that answers
# with ICMP port unreachable rests and the association moves on to the next
# backend.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/dtls-helpers.sh"

EPORT=$(free_port udp)
DEAD=$(free_port udp)       # nothing listens here
RPORT=$(free_port udp)
FPORT=$(free_port udp)
start_udp_echo "$EPORT"
write_config relay.ini <<EOF
$(global_section workers=2 log_level=debug drain_timeout=3s)

[listener:relay]
bind = 127.0.0.1:$RPORT
transport = udp
secure = off
backend = 127.0.0.1:$EPORT
session_timeout = 1s

[listener:failover]
bind = 127.0.0.1:$FPORT
transport = udp
secure = off
backend = 127.0.0.1:$DEAD, 127.0.0.1:$EPORT
EOF
start_tlsgate "$CONFIG"
wait_running

"$PY" - "$RPORT" "$FPORT" <<'EOF' || fail "UDP relay checks failed"
import os, socket, sys, threading, time

rport, fport = int(sys.argv[1]), int(sys.argv[2])
failed = []

def client(i, results):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    sent, got = [], []
    for k in range(200):
        d = b"c%d-%d-" % (i, k) + os.urandom(1 + (k * 7) % 1200)
        s.sendto(d, ("127.0.0.1", rport))
        sent.append(d)
        try:
            r, _ = s.recvfrom(65535)
            got.append(r)
        except socket.timeout:
            break
    results[i] = (sent, got)

results = {}
threads = [threading.Thread(target=client, args=(i, results)) for i in range(8)]
for t in threads: t.start()
for t in threads: t.join(60)
for i in range(8):
    sent, got = results.get(i, ([], []))
    if sent != got:
        failed.append("client %d" % i)
        print("FAILED: client %d: %d sent, %d echoed, equal=%s" % (i, len(sent), len(got), sent == got), flush=True)
if not failed:
    print("ok: 8 clients x 200 datagrams echoed exactly, nothing crossed", flush=True)

# idle past session_timeout, then talk again from the same port
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
s.sendto(b"before-idle", ("127.0.0.1", rport)); s.recvfrom(100)
time.sleep(2.0)
s.sendto(b"after-idle", ("127.0.0.1", rport))
if s.recvfrom(100)[0] == b"after-idle":
    print("ok: echo after the association expired", flush=True)
else:
    failed.append("after idle")

# failover: retry until an echo comes (the first try may hit the dead backend)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.5)
ok = False
for k in range(20):
    s.sendto(b"failover-%d" % k, ("127.0.0.1", fport))
    try:
        if s.recvfrom(100)[0] == b"failover-%d" % k:
            ok = True
            break
    except socket.timeout:
        pass
print(("ok" if ok else "FAILED") + ": failover echo after %d tries" % (k + 1), flush=True)
if not ok:
    failed.append("failover")
sys.exit(1 if failed else 0)
EOF

assert_log_contains "on relay: close: idle for session_timeout \(1000 ms\)"
assert_log_contains "on relay: backend: relaying to 127.0.0.1:$EPORT"
# the dead backend may or may not have been picked first; when it was, it rested
if grep -q "on failover: backend: relaying to 127.0.0.1:$DEAD" "$TLSGATE_LOG"; then
    assert_log_contains "backend 127.0.0.1:$DEAD: connection refused; resting it"
fi
stop_tlsgate 20
[ "$TLSGATE_RC" = 0 ] || fail "tlsgate exited $TLSGATE_RC on SIGTERM"
created=$(udp_stats created)
[ "$created" -ge 10 ] || fail "expected at least 10 associations, stats say $created"
log "ok"
