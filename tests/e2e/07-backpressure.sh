#!/usr/bin/env bash
# e2e: serial
# 07-backpressure: a fast side must not make tlsgate buffer without bound.
#  down: a backend streams 64 KiB chunks forever to a TLS client that never
#        reads; over ~5 s tlsgate's RSS grows < 30 MiB and the backend is
#        blocked (< 64 MiB sent). Then the client reads 48 MiB: the stream is
#        intact (offset pattern) and the backend resumes.
#  up:   a TLS client uploads as fast as it can to a backend that never reads:
#        same RSS bound, and the client is blocked (< 64 MiB accepted).
. "$(dirname "$0")/lib.sh"

FPORT=$(free_port)
SPORT=$(free_port)
LDOWN=$(free_port)
LUP=$(free_port)
start_py_server flood "$FPORT" "$WORK/flood.count" 60 $((4 << 30))
start_py_server stall "$SPORT"

write_config bp.ini <<EOF
$(global_section workers=1 log_level=info drain_timeout=2s)

[listener:down]
bind = 127.0.0.1:$LDOWN
secure = on
$SERVER_PFX
backend = 127.0.0.1:$FPORT

[listener:up]
bind = 127.0.0.1:$LUP
secure = on
$SERVER_PFX
backend = 127.0.0.1:$SPORT
EOF
start_tlsgate "$CONFIG"

"$PY" - "$LDOWN" "$LUP" "$TLSGATE_PID" "$WORK/flood.count" <<'EOF' || fail "backpressure checks failed"
import os, sys, threading, time
import e2elib

ldown, lup, pid, counter = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
MiB = 1 << 20
RSS_BOUND = 30 * MiB
SENT_BOUND = 64 * MiB

def rss():
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("tlsgate (pid %d) is gone" % pid)

def flood_sent():
    try:
        with open(counter) as f:
            return int(f.read().strip() or 0)
    except (FileNotFoundError, ValueError):
        return None

failed = False
def check(cond, what):
    global failed
    print(("ok: " if cond else "FAILED: ") + what, flush=True)
    failed |= not cond

def sample(seconds, counter_fn):
    peak, samples, t0 = 0, [], time.monotonic()
    while time.monotonic() - t0 < seconds:
        r = rss()
        peak = max(peak, r)
        samples.append((round(time.monotonic() - t0, 2), r // 1024, counter_fn()))
        time.sleep(0.25)
    return peak, samples

# ---- down: backend floods, client does not read -------------------------------------------
base = rss()
print("baseline RSS %.1f MiB" % (base / MiB), flush=True)
s = e2elib.tls_connect(ldown, rcvbuf=4096, timeout=20)
t0 = time.monotonic()
while flood_sent() is None:
    if time.monotonic() - t0 > 10:
        print("FAILED: the backend never got a connection from tlsgate", flush=True)
        sys.exit(1)
    time.sleep(0.05)
peak, samples = sample(5.0, flood_sent)
for t, r, c in samples[::4]:
    print("  t=%5.2fs rss=%6d KiB backend_sent=%s" % (t, r, c), flush=True)
sent_blocked = flood_sent()
check(peak - base < RSS_BOUND, "down: RSS growth %.1f MiB < %d MiB" % ((peak - base) / MiB, RSS_BOUND // MiB))
check(sent_blocked < SENT_BOUND, "down: backend blocked after %.1f MiB (< %d MiB)" % (sent_blocked / MiB, SENT_BOUND // MiB))
growth = samples[-1][2] - samples[len(samples) // 2][2]
check(growth < 4 * MiB, "down: backend sent only %.1f MiB in the last 2.5 s" % (growth / MiB))

# the connection is alive and the stream intact once the client reads
want = 48 * MiB
data = e2elib.recv_exact(s, want)
check(e2elib.check_pattern(data, 0), "down: %d MiB read by the client, stream intact" % (want // MiB))
t0 = time.monotonic()
while flood_sent() <= sent_blocked and time.monotonic() - t0 < 5:
    time.sleep(0.05)
check(flood_sent() > sent_blocked, "down: backend resumed (%.1f MiB sent)" % (flood_sent() / MiB))
s.close()

# ---- up: client floods, backend does not read ------------------------------------------------
base = rss()
u = e2elib.tls_connect(lup, timeout=60)
accepted = [0]
def pump():
    chunk = os.urandom(64 * 1024)
    try:
        while True:
            accepted[0] += u.send(chunk)
    except OSError:
        pass
threading.Thread(target=pump, daemon=True).start()
peak, samples = sample(5.0, lambda: accepted[0])
for t, r, c in samples[::4]:
    print("  t=%5.2fs rss=%6d KiB client_sent=%s" % (t, r, c), flush=True)
check(peak - base < RSS_BOUND, "up: RSS growth %.1f MiB < %d MiB" % ((peak - base) / MiB, RSS_BOUND // MiB))
check(accepted[0] < SENT_BOUND, "up: client blocked after %.1f MiB (< %d MiB)" % (accepted[0] / MiB, SENT_BOUND // MiB))
check(accepted[0] > 64 * 1024, "up: client could send at all (%d bytes)" % accepted[0])
sys.exit(1 if failed else 0)
EOF

kill -0 "$TLSGATE_PID" 2>/dev/null || fail "tlsgate died"
log "ok"
