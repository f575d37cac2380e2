#!/usr/bin/env bash
# 71-udp-relay-caps: the plain UDP relay (secure = off) under a 256-fd limit
# (ulimit -n 256), with a plain TCP listener in the same process (issue 10,
# item 14).
#
# A. EMFILE is not the backend's fault: TCP connections held through the
#    TCP listener use up the descriptors; then new UDP peers find no socket
#    for their backend (EMFILE), and, with exactly one descriptor free, a
#    new TCP client's backend connect fails with EMFILE too. Each is logged
#    as a local limit and counted (tlsgate_backend_local_errors_total);
#    no backend rests (no "resting it" line; tlsgate_backend_up stays 1),
#    and as soon as the connections are gone UDP and TCP clients are served.
# B. Caps derived from the fd limit (192 associations in the process, 48
#    per source): 480 peers from 8 addresses x 60 ports get at most 48
#    associations per address and 192 in all, the refusals are counted
#    (source_cap, process_cap), and the TCP listener keeps serving echo
#    connections during the flood (two workers: the per-source count is
#    shared between them). A control listener without a low fd limit
#    is not needed: phase A's clients before the exhaustion are the control.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/dtls-helpers.sh"
require_cmd curl

UPORT=$(free_port udp)
EPORT=$(free_port udp)
TPORT=$(free_port)
TEPORT=$(free_port)
MPORT=$(free_port)
start_udp_echo "$EPORT"
start_py_server echo "$TEPORT"

REAL_TLSGATE=$TLSGATE
cat >"$WORK/tlsgate-lowfd" <<EOF
#!/bin/sh
ulimit -n 256 || exit 1
exec "$REAL_TLSGATE" "\$@"
EOF
chmod +x "$WORK/tlsgate-lowfd"
TLSGATE=$WORK/tlsgate-lowfd

write_config caps.ini <<EOF
$(global_section workers=2 log_level=info metrics=127.0.0.1:$MPORT)

[listener:relay]
bind = 127.0.0.1:$UPORT
transport = udp
secure = off
backend = 127.0.0.1:$EPORT
session_timeout = 4s

[listener:web]
bind = 127.0.0.1:$TPORT
secure = off
backend = 127.0.0.1:$TEPORT
EOF
start_tlsgate "$CONFIG"
wait_running
assert_log_contains "listener relay: udp caps: 48 associations per source \(derived from the fd limit\), 192 in the process"

metrics() { curl -s "http://127.0.0.1:$MPORT/metrics"; }

"$PY" - "$UPORT" "$TPORT" "$TLSGATE_PID" <<'EOF' || fail "phase A (EMFILE) failed"
import os, socket, sys, time
import e2elib as e

uport, tport, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
failed = []
def bad(msg):
    failed.append(msg); print("FAILED: " + msg, flush=True)

def tcp_echo(tag, timeout=3):
    try:
        s = e.tcp_connect(tport, timeout=timeout)
        s.sendall(tag)
        if e.recv_exact(s, len(tag)) != tag:
            s.close(); return None
        return s
    except (OSError, EOFError):
        return None

def udp_echo(tag, timeout=1.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    s.sendto(tag, ("127.0.0.1", uport))
    try:
        return s.recvfrom(65535)[0] == tag, s
    except socket.timeout:
        return False, s

def free_fds(settle=0.2):
    time.sleep(settle)   # tlsgate has handled what we did
    return 256 - len(os.listdir("/proc/%d/fd" % pid))

held = []
for i in range(200):
    if free_fds(0 if i < 80 else 0.2) < 3:
        break
    s = tcp_echo(b"hold-%d" % i)
    if s is None:
        bad("TCP connection %d refused with %d descriptors free" % (i, free_fds()))
        break
    held.append(s)
udp_socks = []
if free_fds() == 2:           # one UDP association takes one
    ok, s = udp_echo(b"udp-parity", timeout=2)
    udp_socks.append(s)
    if not ok:
        bad("a UDP peer was not served with two descriptors free")
f = free_fds()
print("%d TCP connections held; %d descriptor(s) free" % (len(held), f), flush=True)
if f != 1:
    bad("expected exactly one free descriptor, found %d" % f)
# one descriptor: the accept takes it, the backend connect meets EMFILE
s = tcp_echo(b"tcp-with-one-fd")
print("%s: TCP client with one descriptor free: %s" % ("FAILED" if s else "ok", "served (?)" if s else "refused"), flush=True)
if s:
    bad("TCP client served with one descriptor free: EMFILE path not reached")
    held.append(s)
# the refused connection gave its descriptor back: one UDP peer gets it,
# the next ones meet EMFILE
udp_ok = 0
for i in range(4):
    ok, s = udp_echo(b"udp-exhausted-%d" % i)
    udp_socks.append(s)
    udp_ok += ok
print("UDP peers served while exhausted: %d of 4 (the first takes the last descriptor)" % udp_ok, flush=True)
if udp_ok != 1:
    bad("expected exactly one UDP peer served with one descriptor free, got %d" % udp_ok)
for s in held:
    s.close()
for s in udp_socks:
    s.close()
time.sleep(0.5)
# right away (a rest would last at least 1 s): both kinds served again
ok, s = udp_echo(b"udp-after", timeout=2)
print("%s: UDP client served right after the exhaustion" % ("ok" if ok else "FAILED"), flush=True)
if not ok:
    bad("UDP client not served after the exhaustion")
s = tcp_echo(b"tcp-after")
print("%s: TCP client served right after the exhaustion" % ("ok" if s else "FAILED"), flush=True)
if not s:
    bad("TCP client not served after the exhaustion")
sys.exit(1 if failed else 0)
EOF
metrics >metrics-a.txt || fail "metrics endpoint did not answer"
grep '^tlsgate_backend_local_errors_total\|^tlsgate_backend_up' metrics-a.txt | sed 's/^/    | /'
grep -q '^tlsgate_backend_local_errors_total{listener="relay"} [1-9]' metrics-a.txt || fail "UDP EMFILE not counted"
grep -q '^tlsgate_backend_local_errors_total{listener="web"} [1-9]' metrics-a.txt || fail "TCP EMFILE not counted"
grep -q '^tlsgate_backend_up{listener="relay",.*} 1' metrics-a.txt || fail "the UDP backend rests after EMFILE"
grep -q '^tlsgate_backend_up{listener="web",.*} 1' metrics-a.txt || fail "the TCP backend rests after EMFILE"
assert_log_contains "cannot open a socket to backend 127.0.0.1:$EPORT: too many open files \(a local limit: the backend does not rest\)"
assert_log_contains "cannot connect to backend 127.0.0.1:$TEPORT: too many open files \(a local limit: the backend does not rest\)"
assert_log_not_contains "resting it"

# session_timeout (4 s): phase A's associations end; under load that takes
# longer, and leftovers would turn phase B's per-source refusals into
# process-cap ones
for _ in $(seq 200); do
    m=$(metrics)
    grep >/dev/null -cx 'tlsgate_connections_active{listener="relay"} 0' <<<"$m" && break
    sleep 0.1
done
grep >/dev/null -cx 'tlsgate_connections_active{listener="relay"} 0' <<<"$m" ||
    fail "phase A's associations did not time out: $(grep relay <<<"$m" | grep active)"
"$PY" - "$UPORT" "$TPORT" <<'EOF' || fail "phase B (caps) failed"
import selectors, socket, sys, threading, time
import e2elib as e

uport, tport = int(sys.argv[1]), int(sys.argv[2])
failed = []
def bad(msg):
    failed.append(msg); print("FAILED: " + msg, flush=True)

socks = []
for a in range(1, 9):
    for _ in range(60):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.2.%d" % a, 0)); s.setblocking(False)
        socks.append(s)
sel = selectors.DefaultSelector()
for s in socks:
    sel.register(s, selectors.EVENT_READ)
served = set()
def collect(seconds, want=None):
    end = time.monotonic() + seconds
    while time.monotonic() < end and (want is None or not want()):
        for k, _ in sel.select(0.05):
            try:
                while True:
                    k.fileobj.recv(100); served.add(k.fileobj)
            except BlockingIOError:
                pass
# One address after the other, so that the first ones reach the per-source
# cap before the process cap is reached whatever the load: a burst of all
# 480 overflows the socket buffer under load, and the datagrams the kernel
# drops leave every source below its cap. A peer whose datagram got no
# answer sends again once (a refused one is refused again).
for a in range(8):
    mine = socks[a * 60:(a + 1) * 60]
    for rnd in range(2):
        for s in mine:
            if s not in served:
                s.sendto(b"flood", ("127.0.0.1", uport))
        collect(1.0, lambda: sum(s in served for s in mine) >= 48 or len(served) >= 192)
collect(0.3)
per_addr = {}
for s in served:
    a = s.getsockname()[0]
    per_addr[a] = per_addr.get(a, 0) + 1
print("flood: %d of %d peers served; per address %s" % (len(served), len(socks), sorted(per_addr.values())), flush=True)
if len(served) > 192:
    bad("more than 192 associations (the process cap)")
if max(per_addr.values(), default=0) > 48:
    bad("more than 48 associations for one source")
if len(served) < 150:
    bad("only %d peers served: the caps are tighter than configured" % len(served))
# the TCP listener in the same process keeps working
ok = 0
for i in range(5):
    try:
        c = e.tcp_connect(tport, timeout=3)
        tag = b"tcp-%d" % i
        c.sendall(tag)
        ok += e.recv_exact(c, len(tag)) == tag
        c.close()
    except (OSError, EOFError) as ex:
        print("tcp client %d: %s" % (i, ex), flush=True)
print("%s: %d of 5 TCP echo clients served during the UDP flood" % ("ok" if ok == 5 else "FAILED", ok), flush=True)
if ok != 5:
    bad("the TCP listener broke under the UDP flood")
for s in socks:
    s.close()
sys.exit(1 if failed else 0)
EOF
metrics >metrics-b.txt || fail "metrics endpoint did not answer"
grep '^tlsgate_udp_refused_total{listener="relay"' metrics-b.txt | sed 's/^/    | /'
grep -q '^tlsgate_udp_refused_total{listener="relay",reason="source_cap"} [1-9]' metrics-b.txt || fail "per-source refusals not counted"
grep -q '^tlsgate_udp_refused_total{listener="relay",reason="process_cap"} [1-9]' metrics-b.txt || fail "process-cap refusals not counted"
assert_log_contains "listener relay: max_associations_per_source \(48\) reached: ignoring 127\.0\.2\."
assert_log_contains "listener relay: udp associations at the process cap \(192, derived from the fd limit\)"
assert_log_not_contains "resting it"

stop_tlsgate 20
[ "$TLSGATE_RC" = 0 ] || fail "tlsgate exited $TLSGATE_RC on SIGTERM"
log "ok"
