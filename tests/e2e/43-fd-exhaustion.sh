#!/usr/bin/env bash
# e2e: serial
# 43-fd-exhaustion: tlsgate runs out of file descriptors. Its limit is cut to
# 64 (prlimit on the running process) and 150 clients connect and stay
# silent (handshake_timeout is long), so accept() fails with EMFILE:
#   - the error is logged (README: "listener NAME: accept failed: too many
#     open files"), at most about once a second -- connections that libuv's
#     reserve-descriptor trick accepts and closes must not vanish without a
#     trace -- and the accept loop does not spin: tlsgate's CPU
#     time (utime + stime from /proc/PID/stat) grows by < 0.5 s over 2 s;
#   - a connection established before the flood keeps echoing;
#   - once the flood goes away, a new client is served (within 10 s).
. "$(dirname "$0")/lib.sh"
require_cmd prlimit

EPORT=$(free_port)
LPORT=$(free_port)
start_echo "$EPORT"
write_config fd.ini <<EOF
$(global_section workers=1 log_level=info drain_timeout=2s)

[listener:fd]
bind = 127.0.0.1:$LPORT
$SERVER_PFX
backend = 127.0.0.1:$EPORT
handshake_timeout = 60s
EOF
start_tlsgate "$CONFIG"
prlimit --pid "$TLSGATE_PID" --nofile=64:64 || fail "prlimit --pid $TLSGATE_PID failed"
log "tlsgate: $(prlimit --pid "$TLSGATE_PID" --nofile --noheadings), $(find "/proc/$TLSGATE_PID/fd" -mindepth 1 | wc -l) descriptors open"

"$PY" - "$LPORT" "$TLSGATE_PID" <<'EOF' || fail "fd exhaustion checks failed (see above)"
import os, socket, sys, threading, time
import e2elib

port, pid = int(sys.argv[1]), int(sys.argv[2])
FLOOD = 150
failed = False
def check(cond, what):
    global failed
    print(("ok: " if cond else "FAILED: ") + what, flush=True)
    failed |= not cond

tick = os.sysconf("SC_CLK_TCK")
def cpu():
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick   # utime + stime
def nfds():
    return len(os.listdir("/proc/%d/fd" % pid))

# an established connection, before the flood
by = e2elib.tls_connect(port)
by.sendall(b"before\n")
check(e2elib.recv_exact(by, 7) == b"before\n", "bystander echoes before the flood")

flood = []
for i in range(FLOOD):
    try:
        flood.append(e2elib.tcp_connect(port, timeout=5))
    except OSError as e:
        print("flood connection %d: %s" % (i, e))
        break
print("%d flood connections open, tlsgate holds %d descriptors" % (len(flood), nfds()), flush=True)
time.sleep(0.5)
c0, t0 = cpu(), time.monotonic()
time.sleep(2)
dc, dt = cpu() - c0, time.monotonic() - t0
check(dc < 0.5, "tlsgate used %.2f s of CPU in %.1f s while out of descriptors (< 0.5 s: no busy loop)" % (dc, dt))

# more clients arrive while it is out of descriptors: refused or closed, never hang tlsgate
extra_closed = 0
for i in range(20):
    try:
        s = e2elib.tcp_connect(port, timeout=2)
        if e2elib.closed_within(s, 0.5) is not None:
            extra_closed += 1
        s.close()
    except OSError:
        extra_closed += 1
print("%d of 20 extra clients were turned away at once" % extra_closed, flush=True)
c1 = cpu()
time.sleep(1)
check(cpu() - c1 < 0.3, "still no busy loop after more clients came (%.2f s CPU in 1 s)" % (cpu() - c1))

by.sendall(b"during\n")
by.settimeout(5)
try:
    got = e2elib.recv_exact(by, 7)
except Exception as e:
    got = repr(e).encode()
check(got == b"during\n", "the established connection still echoes while out of descriptors (%r)" % got)

for s in flood:
    s.close()
print("flood closed", flush=True)
t0 = time.monotonic()
ok = False
while time.monotonic() - t0 < 10:
    try:
        s = e2elib.tls_connect(port, timeout=3)
        s.sendall(b"after\n")
        if e2elib.recv_exact(s, 6) == b"after\n":
            ok = True
            s.close()
            break
        s.close()
    except Exception as e:
        last = repr(e)
    time.sleep(0.2)
check(ok, "a new client is served %.1f s after the flood went away" % (time.monotonic() - t0))
by.sendall(b"end\n")
check(e2elib.recv_exact(by, 4) == b"end\n", "the bystander still echoes at the end")
by.close()
sys.exit(1 if failed else 0)
EOF

EMFILE_RE='listener fd: .*(too many open files|out of (file )?descriptors|EMFILE)'
assert_log_contains "$EMFILE_RE"
n=$(grep -cE "$EMFILE_RE" "$TLSGATE_LOG")
secs=$(( ( $(date +%s) - $(stat -c %Y "$CONFIG") ) + 1 ))
log "$n 'out of descriptors' lines over about $secs s"
[ "$n" -le $((secs + 2)) ] || fail "accept errors are not rate-limited: $n lines in about $secs s"
is_alive "$TLSGATE_PID" || fail "tlsgate died"
stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || fail "tlsgate exited $TLSGATE_RC on SIGTERM"
log "ok"
