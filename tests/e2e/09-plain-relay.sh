#!/usr/bin/env bash
# 09-plain-relay: secure = off on both sides is a plain TCP relay. 1 MiB of
# random bytes through a socat echo comes back byte-exact; a client that shuts
# down its write side still receives the rest of the echo, then EOF (half-close
# propagates both ways). Also: one relay carrying 8 connections at once.
. "$(dirname "$0")/lib.sh"
require_cmd socat

EPORT=$(free_port)
LPORT=$(free_port)
start_echo "$EPORT"
write_config relay.ini <<EOF
$(global_section workers=1 log_level=debug)

[listener:relay]
bind = 127.0.0.1:$LPORT
transport = tcp
secure = off
backend = 127.0.0.1:$EPORT
EOF
start_tlsgate "$CONFIG"

"$PY" - "$LPORT" <<'EOF' || fail "plain relay checks failed"
import os, socket, sys, threading, time
import e2elib

port = int(sys.argv[1])

def roundtrip(tag, size, results):
    data = os.urandom(size)
    s = e2elib.tcp_connect(port, timeout=20)
    def writer():
        view = memoryview(data)
        for i in range(0, len(view), 32768):
            s.sendall(view[i:i + 32768])
        s.shutdown(socket.SHUT_WR)          # half-close right after the last byte
    w = threading.Thread(target=writer)
    w.start()
    t0 = time.monotonic()
    got = e2elib.recv_until_eof(s)        # must end with EOF, not a timeout
    w.join()
    s.close()
    results[tag] = (got == data, len(got), time.monotonic() - t0)

results = {}
try:
    roundtrip("single", 1 << 20, results)
except Exception as e:
    print("FAILED: single: %r" % e, flush=True); sys.exit(1)
ok, n, dt = results["single"]
print(("ok" if ok else "FAILED") + ": 1 MiB echoed byte-exact with half-close (%d bytes, EOF after %.2f s)" % (n, dt), flush=True)
if not ok:
    sys.exit(1)

# half-close with the echo still in flight: send, shut the write side at once,
# then wait before reading: everything must still arrive, then EOF
s = e2elib.tcp_connect(port, timeout=20)
data = os.urandom(200000)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
time.sleep(0.3)
got = e2elib.recv_until_eof(s)
s.close()
if got != data:
    print("FAILED: after shutdown(SHUT_WR) got %d of %d bytes" % (len(got), len(data)), flush=True); sys.exit(1)
print("ok: data sent before shutdown(SHUT_WR) all echoed, then EOF", flush=True)

# 8 connections at once
threads, results = [], {}
for i in range(8):
    t = threading.Thread(target=roundtrip, args=("c%d" % i, 256 * 1024 + i, results))
    t.start(); threads.append(t)
for t in threads:
    t.join(60)
bad = [k for k in ("c%d" % i for i in range(8)) if k not in results or not results[k][0]]
if bad:
    print("FAILED: concurrent connections wrong: %s %s" % (bad, results), flush=True); sys.exit(1)
print("ok: 8 concurrent connections echoed byte-exact", flush=True)
EOF

stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || fail "tlsgate exited $TLSGATE_RC on SIGTERM"
log "ok"
