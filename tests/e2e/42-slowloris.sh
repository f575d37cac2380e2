#!/usr/bin/env bash
# e2e: serial
# 42-slowloris: 300 connections that never complete a handshake -- 200 send
# nothing, 100 trickle a ClientHello one byte every 300 ms -- on a one-worker
# listener with handshake_timeout = 2s:
#   - every one of them is closed by tlsgate 2 s after it connected (the
#     deadline is absolute: trickling bytes does not extend it), each with
#     a log line "handshake timeout (2000 ms)";
#   - meanwhile a normal client completes a TLS request every 100 ms, each
#     within 2 s (the slow ones do not starve it);
#   - afterwards tlsgate's open descriptors are back where they started and
#     a fresh client is served.
. "$(dirname "$0")/lib.sh"

EPORT=$(free_port)
LPORT=$(free_port)
start_echo "$EPORT"
write_config slowloris.ini <<EOF
$(global_section workers=1 log_level=info drain_timeout=2s)

[listener:sl]
bind = 127.0.0.1:$LPORT
$SERVER_PFX
backend = 127.0.0.1:$EPORT
handshake_timeout = 2s
EOF
start_tlsgate "$CONFIG"
nfds() { find "/proc/$TLSGATE_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
# Warm-up: a few connections (every worker gets some), so that per-loop
# descriptors libuv opens lazily (its own reserve fd, on the first TCP
# handle) are in the baseline and only what the attack leaves counts.
"$PY" - "$LPORT" <<'EOF' || fail "warm-up client failed"
import sys, e2elib
for _ in range(8):
    s = e2elib.tls_connect(int(sys.argv[1]))
    s.sendall(b"w\n"); assert e2elib.recv_exact(s, 2) == b"w\n"; s.close()
EOF
FDS0=$(nfds)
log "tlsgate has $FDS0 descriptors open before the attack"

"$PY" - "$LPORT" <<'EOF' || fail "slowloris checks failed (see above)"
import selectors, socket, ssl, sys, threading, time
import e2elib

port = int(sys.argv[1])
SILENT, TRICKLE, TIMEOUT = 200, 100, 2.0
failed = False
def check(cond, what):
    global failed
    print(("ok: " if cond else "FAILED: ") + what, flush=True)
    failed |= not cond

# a real ClientHello to trickle
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
try:
    obj.do_handshake()
except ssl.SSLWantReadError:
    pass
hello = out.read()

sel = selectors.DefaultSelector()
conns = []   # [sock, opened_at, closed_after or None, kind, bytes_sent]
for i in range(SILENT + TRICKLE):
    s = socket.socket()
    s.setblocking(True)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    s.setblocking(False)
    c = [s, time.monotonic(), None, "silent" if i < SILENT else "trickle", 0]
    conns.append(c)
    sel.register(s, selectors.EVENT_READ, c)
print("opened %d silent and %d trickling connections" % (SILENT, TRICKLE), flush=True)

# the normal client, in a thread, meanwhile
lat = []
errs = []
stop = threading.Event()
def normal():
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            s = e2elib.tls_connect(port, timeout=5)
            s.sendall(b"ping\n")
            if e2elib.recv_exact(s, 5) != b"ping\n":
                raise RuntimeError("bad echo")
            s.close()
            lat.append(time.monotonic() - t0)
        except Exception as e:
            errs.append(repr(e))
        stop.wait(0.1)
t = threading.Thread(target=normal)
t.start()

t_end = time.monotonic() + TIMEOUT + 6
next_trickle = time.monotonic()
while time.monotonic() < t_end and any(c[2] is None for c in conns):
    now = time.monotonic()
    if now >= next_trickle:
        next_trickle = now + 0.3
        for c in conns:
            if c[3] == "trickle" and c[2] is None and c[4] < len(hello):
                try:
                    c[0].send(hello[c[4]:c[4] + 1])
                    c[4] += 1
                except OSError:
                    pass
    for key, _ in sel.select(timeout=0.05):
        c = key.data
        try:
            d = c[0].recv(4096)
        except BlockingIOError:
            continue
        except OSError:
            d = b""
        if not d:
            c[2] = time.monotonic() - c[1]
            sel.unregister(c[0])
            c[0].close()
stop.set()
t.join(10)

for kind in ("silent", "trickle"):
    group = [c for c in conns if c[3] == kind]
    open_ = [c for c in group if c[2] is None]
    times = [c[2] for c in group if c[2] is not None]
    check(not open_, "%s: all %d closed by tlsgate (%d still open)" % (kind, len(group), len(open_)))
    if times:
        check(min(times) >= TIMEOUT * 0.7 and max(times) <= TIMEOUT + 4,
              "%s: closed %.2f..%.2f s after connecting (handshake_timeout %.0f s)"
              % (kind, min(times), max(times), TIMEOUT))
sent = [c[4] for c in conns if c[3] == "trickle"]
check(min(sent) >= 3, "trickle: each sent %d..%d bytes before being cut off" % (min(sent), max(sent)))
check(not errs, "normal client: no errors (%s)" % errs[:3])
check(len(lat) >= 10 and max(lat) < 2.0,
      "normal client: %d requests during the attack, slowest %.3f s" % (len(lat), max(lat or [99])))
for c in conns:
    if c[2] is None:
        c[0].close()
sys.exit(1 if failed else 0)
EOF

n=$(grep -c 'on sl: close: handshake timeout (2000 ms)' "$TLSGATE_LOG")
[ "$n" -ge 300 ] || fail "only $n 'handshake timeout (2000 ms)' close lines for 300 stalled connections"
log "$n close lines 'handshake timeout (2000 ms)'"

end=$(( $(now_ms) + 5000 ))
while [ "$(nfds)" -gt "$FDS0" ] && [ "$(now_ms)" -lt "$end" ]; do sleep 0.1; done
FDS1=$(nfds)
[ "$FDS1" -le "$FDS0" ] || fail "tlsgate holds $FDS1 descriptors after the attack, $FDS0 before"
log "descriptors: $FDS0 before, $FDS1 after"

"$PY" - "$LPORT" <<'EOF' || fail "a fresh client was not served after the attack"
import sys, e2elib
s = e2elib.tls_connect(int(sys.argv[1]))
s.sendall(b"after\n")
assert e2elib.recv_exact(s, 6) == b"after\n"
print("ok: a fresh client is served after the attack")
EOF
is_alive "$TLSGATE_PID" || fail "tlsgate died"
stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || fail "tlsgate exited $TLSGATE_RC on SIGTERM"
log "ok"
