#!/usr/bin/env bash
# 40-backend-faults: a misbehaving backend costs only its own connection.
# One TLS listener in front of a scripted backend (the first line a client
# sends picks how the backend behaves), while a bystander connection echoes
# every 200 ms from start to end and must never miss a beat:
#   reset     backend sends a few bytes, then resets (RST) mid-stream:
#             client gets the bytes then a close; log "backend reset the connection"
#   blast     backend resets right after 1 MiB that the client is not reading:
#             what was buffered arrives, then a close; log "backend reset the
#             connection" or "backend went away" (ASan pass: no leak/UAF)
#   hang      backend accepts and reads but never answers:
#             closed by idle_timeout (1.5 s); log "idle timeout"
#   slow      backend answers 150 bytes one byte every 20 ms (3 s, longer
#             than idle_timeout): every byte arrives intact, then EOF; the
#             close line counts "150 bytes from backend"
#   tls-hang  (second listener, backend_secure = on) the first backend
#             accepts TCP but never answers the TLS handshake: after
#             connect_timeout (1 s) the next backend serves the client; log
#             "no connection within connect_timeout"
#   client-reset  the client resets while the backend streams to it:
#             log "client reset the connection" or "write to client failed"
# Afterwards tlsgate is alive and serves a fresh client, and exits 0 on SIGTERM.
. "$(dirname "$0")/lib.sh"

write_py faultsrv <<'EOF'
"""Scripted backend: python3 faultsrv.py PORT [tls CERT KEY].
First line from a client: ECHO | RESET | BLAST | HANG | SLOW n | STREAM.
With 'tls' it is a TLS echo server; with 'silent' it accepts and never talks."""
import socket, ssl, struct, sys, threading, time
port, mode = int(sys.argv[1]), (sys.argv[2] if len(sys.argv) > 2 else "plain")
held = []

def rst(c):
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()

def readline(c):
    buf = b""
    while not buf.endswith(b"\n"):
        d = c.recv(1)
        if not d:
            raise EOFError
        buf += d
    return buf.decode().strip()

def handle(c, n):
    try:
        if mode == "silent":
            held.append(c)
            return
        line = readline(c)
        print("#%d: %s" % (n, line), flush=True)
        if line == "ECHO":
            c.sendall(b"ECHO ok\n")
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)
            c.close()
        elif line == "RESET":
            c.sendall(b"partial-\n")
            readline(c)            # the client has the bytes: "GO"
            rst(c)
        elif line == "BLAST":
            c.setblocking(False)
            sent = 0
            t0 = time.monotonic()
            while sent < (1 << 20) and time.monotonic() - t0 < 5:
                try:
                    sent += c.send(b"x" * 65536)
                except BlockingIOError:
                    time.sleep(0.01)
            print("#%d: blasted %d bytes, resetting" % (n, sent), flush=True)
            rst(c)
        elif line == "HANG":
            held.append(c)          # read, never answer, never close
        elif line.startswith("SLOW"):
            count = int(line.split()[1])
            for i in range(count):
                c.sendall(bytes([65 + i % 26]))
                time.sleep(0.02)
            c.shutdown(socket.SHUT_WR)
            while c.recv(65536):
                pass
            c.close()
        elif line == "STREAM":
            try:
                while True:
                    c.sendall(b"s" * 65536)
            except OSError as e:
                print("#%d: stream ended: %s" % (n, e), flush=True)
            c.close()
    except (OSError, EOFError) as e:
        print("#%d: %s" % (n, e), flush=True)

ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port))
ls.listen(64)
ctx = None
if mode == "tls":
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[3], sys.argv[4])
print("listening on 127.0.0.1:%d (%s)" % (port, mode), flush=True)
n = 0
while True:
    c, _ = ls.accept()
    n += 1
    if ctx:
        def tls_echo(c=c, n=n):
            try:
                s = ctx.wrap_socket(c, server_side=True)
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    s.sendall(d)
                s.close()
            except (OSError, ssl.SSLError) as e:
                print("#%d: %s" % (n, e), flush=True)
        threading.Thread(target=tls_echo, daemon=True).start()
    else:
        threading.Thread(target=handle, args=(c, n), daemon=True).start()
EOF

FPORT=$(free_port)     # scripted plaintext backend
SILENT=$(free_port)    # accepts, never answers (TLS backend that hangs)
TLSECHO=$(free_port)   # TLS echo backend
LTLS=$(free_port)
LBACK=$(free_port)
for spec in "$FPORT plain" "$SILENT silent" "$TLSECHO tls $CERTS/server.pem $CERTS/server.key"; do
    # shellcheck disable=SC2086
    set -- $spec
    bg_start "faultsrv-$1" "$PY" "$WORK/faultsrv.py" "$@"
    wait_listen "$1" 10 "$BG_PID" || fail "backend on port $1 did not start: $(cat "$WORK/faultsrv-$1.log")"
done

write_config faults.ini <<EOF
$(global_section workers=1 log_level=debug drain_timeout=2s)

[listener:faults]
bind = 127.0.0.1:$LTLS
$SERVER_PFX
backend = 127.0.0.1:$FPORT
idle_timeout = 1500ms

[listener:tlsback]
bind = 127.0.0.1:$LBACK
$SERVER_PFX
backend = 127.0.0.1:$SILENT, 127.0.0.1:$TLSECHO
backend_secure = on
backend_ca = $CERTS/ca.pem
connect_timeout = 1s
EOF
start_tlsgate "$CONFIG"

"$PY" - "$LTLS" "$LBACK" "$WORK/ports" <<'EOF' || fail "backend fault checks failed (see above)"
import socket, ssl, struct, sys, threading, time
import e2elib

ltls, lback, portfile = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
failed = False
def check(cond, what):
    global failed
    print(("ok: " if cond else "FAILED: ") + what, flush=True)
    failed |= not cond

ports = {}
def connect(tag, port=ltls):
    s = e2elib.tls_connect(port)
    ports[tag] = s.getsockname()[1]
    with open(portfile, "a") as f:
        f.write("%s %d\n" % (tag, ports[tag]))
    return s

# the bystander: echoes every 200 ms for the whole scenario
stop = threading.Event()
by = {"n": 0, "err": None, "worst": 0.0}
def bystander():
    try:
        s = connect("bystander")
        s.sendall(b"ECHO\n")
        if e2elib.recv_exact(s, 8) != b"ECHO ok\n":
            raise RuntimeError("no ECHO ok")
        while not stop.is_set():
            t0 = time.monotonic()
            msg = b"tick %d\n" % by["n"]
            s.sendall(msg)
            if e2elib.recv_exact(s, len(msg)) != msg:
                raise RuntimeError("wrong echo")
            by["worst"] = max(by["worst"], time.monotonic() - t0)
            by["n"] += 1
            stop.wait(0.2)
        s.close()
    except Exception as e:
        by["err"] = repr(e)
t = threading.Thread(target=bystander)
t.start()
time.sleep(0.5)

# reset: a few bytes, then RST
s = connect("reset")
s.sendall(b"RESET\n")
got = e2elib.recv_exact(s, 9)
check(got == b"partial-\n", "reset: bytes sent before the reset arrive (%r)" % got)
s.sendall(b"GO\n")
d = e2elib.closed_within(s, 5)
check(d is not None, "reset: client connection closed after the backend reset (%s s)" % (d and round(d, 2)))
s.close()

# blast: 1 MiB queued towards a client that does not read, then RST
raw = e2elib.tcp_connect(ltls, rcvbuf=4096)
s = e2elib.tls_context().wrap_socket(raw, server_hostname="localhost")
ports["blast"] = s.getsockname()[1]
open(portfile, "a").write("blast %d\n" % ports["blast"])
s.sendall(b"BLAST\n")
time.sleep(0.5)             # not reading meanwhile (well under idle_timeout)
try:
    got = len(e2elib.recv_until_eof(s, 4 << 20))
except (OSError, ssl.SSLError) as e:
    got = repr(e)
check(isinstance(got, int) and got <= (1 << 20), "blast: client got %s bytes, then a close" % got)
s.close()

# hang: backend never answers -> idle_timeout
s = connect("hang")
s.sendall(b"HANG\n")
d = e2elib.closed_within(s, 8)
check(d is not None and 1.0 <= d <= 5, "hang: idle_timeout=1.5s closes the connection (after %s s)" % (d and round(d, 2)))
s.close()

# slow: 150 bytes, one per 20 ms
s = connect("slow")
t0 = time.monotonic()
s.sendall(b"SLOW 150\n")
data = e2elib.recv_until_eof(s, 1 << 16)
dt = time.monotonic() - t0
want = bytes(65 + i % 26 for i in range(150))
check(data == want, "slow: 150 bytes arrive intact in %.1f s (got %d bytes)" % (dt, len(data)))
check(dt >= 2.0, "slow: the transfer outlived idle_timeout (%.1f s > 1.5 s)" % dt)
s.close()

# tls-hang: first backend accepts but never answers the TLS handshake
s = connect("tlshang", lback)
t0 = time.monotonic()
s.sendall(b"hello through the second backend\n")
try:
    got = e2elib.recv_exact(s, 33)
except Exception as e:
    got = repr(e).encode()
dt = time.monotonic() - t0
check(got == b"hello through the second backend\n",
      "tls-hang: the next backend answered after %.1f s (%r)" % (dt, got[:40]))
check(0.8 <= dt <= 4, "tls-hang: switched after about connect_timeout (%.1f s)" % dt)
s.close()

# client-reset: the client resets while the backend streams to it
s = connect("clientreset")
s.sendall(b"STREAM\n")
e2elib.recv_exact(s, 100000)
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()

time.sleep(0.5)
# a fresh client is served
s = connect("fresh")
s.sendall(b"ECHO\nfresh\n")
check(e2elib.recv_exact(s, 14) == b"ECHO ok\nfresh\n", "a fresh client is served afterwards")
s.close()

stop.set()
t.join(10)
check(by["err"] is None and by["n"] >= 20,
      "bystander echoed %d times without error (worst round trip %.3f s, error %s)"
      % (by["n"], by["worst"], by["err"]))
check(by["worst"] < 2.0, "bystander round trips stayed under 2 s")
sys.exit(1 if failed else 0)
EOF

# The log names each fault, on the line of the client it hit.
port_of() { awk -v t="$1" '$1 == t { print $2 }' "$WORK/ports"; }
line_for() {  # line_for TAG REGEX -- a log line about TAG's client port matching REGEX
    local p
    p=$(port_of "$1")
    assert_log_contains "127\\.0\\.0\\.1:$p on [a-z]+: .*$2"
}
line_for reset 'close: backend reset the connection'
# the reset may reach tlsgate as a read error or, after the buffered bytes, as an end
# of stream whose hand-on then fails: either way a close line naming the backend
line_for blast 'close: backend (reset the connection|closed the connection)'
line_for hang 'close: idle timeout'
line_for slow 'close: .* 9 bytes from client, 150 bytes from backend'
line_for tlshang "backend 127\\.0\\.0\\.1:[0-9]+: no connection within connect_timeout \\(1000 ms\\)"
line_for tlshang 'connected to 127\.0\.0\.1:[0-9]+ over TLS'
line_for clientreset 'close: (client reset the connection|write to client failed: connection reset)'
line_for bystander 'close: '

is_alive "$TLSGATE_PID" || fail "tlsgate died"
stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || fail "tlsgate exited $TLSGATE_RC on SIGTERM"
log "ok"
