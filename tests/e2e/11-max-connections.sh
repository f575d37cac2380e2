#!/usr/bin/env bash
# 11-max-connections: [global] max_connections = 2. With two connections up a
# third one is refused/closed (or never served) while the two keep working;
# after one closes, a new connection is served. The limit is global: with
# workers = 2 four extra connections are all turned away.
. "$(dirname "$0")/lib.sh"

EPORT=$(free_port)
start_echo "$EPORT"

run_case() {  # run_case WORKERS
    local workers=$1 port
    port=$(free_port)
    write_config "max-$workers.ini" <<EOF
$(global_section workers=$workers log_level=debug max_connections=2 drain_timeout=2s)

[listener:limited]
bind = 127.0.0.1:$port
secure = off
backend = 127.0.0.1:$EPORT
EOF
    start_tlsgate "$CONFIG"
    "$PY" - "$port" "$workers" <<'EOF' || fail "max_connections checks failed (workers = $workers)"
import socket, sys, time
import e2elib

port, workers = int(sys.argv[1]), int(sys.argv[2])
failed = False
def check(cond, what):
    global failed
    print(("ok: " if cond else "FAILED: ") + what, flush=True)
    failed |= not cond

def echoes(s, msg, timeout=3):
    """True if s echoes msg within timeout; False if closed/refused/silent."""
    try:
        s.settimeout(timeout)
        s.sendall(msg)
        return e2elib.recv_exact(s, len(msg)) == msg
    except (OSError, EOFError):
        return False

def try_extra(tag):
    """A connection beyond the limit: refused, closed, or at least not served."""
    try:
        c = e2elib.tcp_connect(port, timeout=3)
    except OSError as e:
        return None, "refused (%s)" % e.__class__.__name__
    msg = b"extra " + tag.encode() + b"\n"
    try:
        c.settimeout(2)
        c.sendall(msg)
        got = e2elib.recv_exact(c, len(msg))
        return c, ("SERVED" if got == msg else "answered garbage %r" % got[:20])
    except EOFError:
        return c, "closed by tlsgate"
    except socket.timeout:
        return c, "not served (no answer in 2 s)"
    except OSError as e:
        return c, "closed by tlsgate (%s)" % e.__class__.__name__

a = e2elib.tcp_connect(port)
check(echoes(a, b"a1\n"), "connection A served")
b = e2elib.tcp_connect(port)
check(echoes(b, b"b1\n"), "connection B served")

extras = []
for i in range(1 if workers == 1 else 4):
    c, how = try_extra("c%d" % i)
    check(how != "SERVED", "extra connection %d beyond max_connections=2: %s" % (i, how))
    extras.append(c)

check(echoes(a, b"a2\n"), "A still served while over the limit")
check(echoes(b, b"b2\n"), "B still served while over the limit")

for c in extras:
    if c is not None:
        c.close()
a.close()

# a slot is free again: a new connection gets served (bounded retry: the close
# of A reaches tlsgate asynchronously)
t0, ok = time.monotonic(), False
while time.monotonic() - t0 < 5 and not ok:
    try:
        d = e2elib.tcp_connect(port, timeout=3)
        ok = echoes(d, b"d1\n", timeout=1)
        if not ok:
            d.close()
            time.sleep(0.1)
    except OSError:
        time.sleep(0.1)
check(ok, "after A closed, a new connection D is served (%.2f s)" % (time.monotonic() - t0))
check(echoes(b, b"b3\n"), "B still served at the end")
sys.exit(1 if failed else 0)
EOF
    assert_log_contains 'max_connections|connection limit|too many connections'
    stop_tlsgate
    [ "$TLSGATE_RC" = 0 ] || fail "tlsgate exited $TLSGATE_RC on SIGTERM"
}

run_case 1
run_case 2
log "ok"
