#!/usr/bin/env bash
# 10-timeouts: handshake_timeout closes a TCP client that never sends a
# ClientHello (and one that stops half-way); idle_timeout closes an idle
# relay (TLS and plain) but not one that keeps talking. (connect_timeout
# needs a black-hole address, which loopback cannot give: not tested here.)
. "$(dirname "$0")/lib.sh"

EPORT=$(free_port)
LTLS=$(free_port)
LPLAIN=$(free_port)
start_echo "$EPORT"
write_config timeouts.ini <<EOF
$(global_section workers=1 log_level=debug drain_timeout=2s)

[listener:tls]
bind = 127.0.0.1:$LTLS
secure = on
$SERVER_PFX
backend = 127.0.0.1:$EPORT
handshake_timeout = 1s
idle_timeout = 1500ms

[listener:plain]
bind = 127.0.0.1:$LPLAIN
secure = off
backend = 127.0.0.1:$EPORT
idle_timeout = 1s
EOF
start_tlsgate "$CONFIG"

"$PY" - "$LTLS" "$LPLAIN" <<'EOF' || fail "timeout checks failed"
import socket, ssl, sys, threading, time
import e2elib

ltls, lplain = int(sys.argv[1]), int(sys.argv[2])
failed = False
def check(cond, what):
    global failed
    print(("ok: " if cond else "FAILED: ") + what, flush=True)
    failed |= not cond

# The four cases are independent and mostly wait for a timer: they run at once.
# 1. silent TCP client on the TLS listener: closed after ~1 s
def silent_case():
    s = e2elib.tcp_connect(ltls)
    d = e2elib.closed_within(s, 6)
    check(d is not None and 0.7 <= d <= 4, "handshake_timeout=1s closes a silent client (after %s s)" % (d and round(d, 2)))
    s.close()

# 2. a client that sends half a ClientHello and stops
def stalled_case():
    s = e2elib.tcp_connect(ltls)
    s.sendall(bytes.fromhex("160301020001") + b"\x00" * 10)   # record header + a few bytes
    d = e2elib.closed_within(s, 6)
    check(d is not None and 0.7 <= d <= 4, "handshake_timeout=1s closes a stalled handshake (after %s s)" % (d and round(d, 2)))
    s.close()

# 3+4. idle relays: closed after ~idle_timeout of silence
def idle_case(tag, connect, idle):
    s = connect()
    s.sendall(b"ping\n")
    check(e2elib.recv_exact(s, 5) == b"ping\n", "%s: relay echoes" % tag)
    # keep talking for 3 x idle_timeout: must stay open
    t0 = time.monotonic()
    alive = True
    while time.monotonic() - t0 < 3 * idle:
        time.sleep(idle / 3)
        try:
            s.sendall(b"tick\n")
            alive = e2elib.recv_exact(s, 5) == b"tick\n"
        except (OSError, EOFError, ssl.SSLError):
            alive = False
        if not alive:
            break
    check(alive, "%s: a connection that keeps talking outlives idle_timeout (%.1f s)" % (tag, time.monotonic() - t0))
    d = e2elib.closed_within(s, idle + 5)
    check(d is not None and idle * 0.7 <= d <= idle + 3,
          "%s: idle_timeout=%ss closes a silent relay (after %s s)" % (tag, idle, d and round(d, 2)))
    s.close()

def run(case, *args):
    try:
        case(*args)
    except (OSError, EOFError, ssl.SSLError) as e:
        check(False, "%s%s: %s" % (case.__name__, args[:1], e))

cases = [threading.Thread(target=run, args=a) for a in (
    (silent_case,), (stalled_case,),
    (idle_case, "tls", lambda: e2elib.tls_connect(ltls), 1.5),
    (idle_case, "plain", lambda: e2elib.tcp_connect(lplain), 1.0))]
for t in cases:
    t.start()
for t in cases:
    t.join()
sys.exit(1 if failed else 0)
EOF

assert_log_contains 'handshake.*(timeout|timed out)|(timeout|timed out).*handshake'
assert_log_contains 'idle'
log "ok"
