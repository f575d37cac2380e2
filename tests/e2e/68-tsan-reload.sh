#!/usr/bin/env bash
# e2e: long
# 68-tsan-reload: the ThreadSanitizer build (make tsan -> build/tsan/tlsgate,
# or TLSGATE_TSAN=PATH) with 4 workers serves TLS, plaintext, DTLS
# (openssl s_client -dtls1_2) and UDP relay clients and metrics scrapes while SIGHUP reloads flip log_level and
# log_format back and forth (the settings workers read on every line) and
# re-read the identity.  Any "WARNING: ThreadSanitizer" in the log fails the
# scenario.  Skipped (77) when there is no tsan binary.
_root=$(cd "$(dirname "$0")/../.." && pwd)
if [ -n "${TLSGATE_SANITIZED:-}" ]; then
    echo "SKIP [68-tsan-reload]: runs once per build, in the release pass"
    exit 77
fi
TSAN_BIN=${TLSGATE_TSAN:-$_root/build/tsan/tlsgate}
case $TSAN_BIN in /*) ;; *) TSAN_BIN=$_root/$TSAN_BIN ;; esac
if [ ! -x "$TSAN_BIN" ]; then
    echo "SKIP [68-tsan-reload]: no ThreadSanitizer binary at $TSAN_BIN (make tsan)"
    exit 77
fi
export TLSGATE=$TSAN_BIN
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/dtls-helpers.sh"
require_cmd curl openssl
log "ThreadSanitizer binary: $TSAN_BIN ($(stat -c %y "$TSAN_BIN" | cut -d. -f1))"
"$TLSGATE" -V 2>&1 | head -3 | sed 's/^/    /'
# tsan's own options: report every race, keep going, write to stderr (our log)
export TSAN_OPTIONS="halt_on_error=0 report_signal_unsafe=0 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"

BPORT=$(free_port); TLS=$(free_port); PLAIN=$(free_port); MPORT=$(free_port)
UECHO=$(free_port udp); UPORT=$(free_port udp); DPORT=$(free_port udp)
start_py_server echo "$BPORT"
start_udp_echo "$UECHO"
cp "$CERTS/server.pfx" "$WORK/current.pfx"

# conf LEVEL FORMAT -- the whole config with these log settings
conf() {
    cat <<EOF
[global]
workers = 4
log_level = $1
log_format = $2
metrics = 127.0.0.1:$MPORT
drain_timeout = 3s

[listener:tls]
bind = 127.0.0.1:$TLS
pfx = $WORK/current.pfx
pfx_password = file:$CERTS/pfx-password
backend = 127.0.0.1:$BPORT

[listener:plain]
bind = 127.0.0.1:$PLAIN
secure = off
backend = 127.0.0.1:$BPORT

[listener:udp]
bind = 127.0.0.1:$UPORT
transport = udp
secure = off
backend = 127.0.0.1:$UECHO
session_timeout = 2s

[listener:dtls]
bind = 127.0.0.1:$DPORT
transport = udp
pfx = $WORK/current.pfx
pfx_password = file:$CERTS/pfx-password
backend = 127.0.0.1:$UECHO
session_timeout = 2s
EOF
}
conf info text >"$WORK/tsan.ini"
start_tlsgate "$WORK/tsan.ini" "$TLS" "$PLAIN" "$MPORT"

# Load until the stop file appears (at most 90 s): TLS, plaintext, UDP, metrics.
write_py load <<'EOF'
import os, socket, ssl, sys, threading, time, urllib.request
import e2elib, dtlslib
tls, plain, udp, mport, dtls, stopfile = [int(a) for a in sys.argv[1:6]] + [sys.argv[6]]
counts = {"tls": 0, "plain": 0, "udp": 0, "dtls": 0, "metrics": 0, "errors": 0}
lock = threading.Lock()
def bump(k):
    with lock:
        counts[k] += 1
def loop(kind):
    t0 = time.monotonic()
    while not os.path.exists(stopfile) and time.monotonic() - t0 < 90:
        try:
            if kind == "tls":
                s = e2elib.tls_connect(tls, verify=False, timeout=10)
                s.sendall(b"x" * 3000)
                e2elib.recv_exact(s, 3000)
                s.close()
            elif kind == "plain":
                s = e2elib.tcp_connect(plain, timeout=10)
                s.sendall(b"y" * 5000)
                e2elib.recv_exact(s, 5000)
                s.close()
            elif kind == "udp":
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.settimeout(2)
                s.sendto(b"u" * 200, ("127.0.0.1", udp))
                s.recvfrom(2048)
                s.close()
            elif kind == "dtls":
                c = dtlslib.s_client(dtls, "-quiet")
                ok = c.roundtrip(["dtls %d" % i for i in range(3)]) == ["dtls %d" % i for i in range(3)]
                c.close()
                if not ok:
                    raise OSError("DTLS echo failed: %s" % c.text()[-200:])
            else:
                urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=10).read()
                time.sleep(0.05)
            bump(kind)
        except (OSError, EOFError, ssl.SSLError) as e:
            bump("errors")
            time.sleep(0.05)
threads = [threading.Thread(target=loop, args=(k,)) for k in ("tls", "tls", "plain", "udp", "dtls", "metrics")]
for t in threads: t.start()
for t in threads: t.join()
print("load: %r" % counts, flush=True)
sys.exit(0 if counts["tls"] and counts["plain"] and counts["udp"] and counts["dtls"] and counts["metrics"] else 1)
EOF
bg_start load "$PY" "$WORK/load.py" "$TLS" "$PLAIN" "$UPORT" "$MPORT" "$DPORT" "$WORK/stop"
LOAD_PID=$BG_PID

settings=("debug json" "info text" "warn json" "debug text" "info json" "debug text" "info text" "debug json")
gen=1
for s in "${settings[@]}"; do
    # shellcheck disable=SC2086
    conf $s >"$WORK/tsan.ini"
    cp "$CERTS/server.pfx" "$WORK/current.pfx.new" && mv "$WORK/current.pfx.new" "$WORK/current.pfx"
    kill -HUP "$TLSGATE_PID"
    gen=$((gen + 1))
    # the reload line may be below log_level: ask the metrics endpoint
    end=$(( $(now_ms) + 30000 ))
    until curl -s --max-time 5 "http://127.0.0.1:$MPORT/metrics" | grep >/dev/null -cx "tlsgate_config_generation $gen"; do
        is_alive "$TLSGATE_PID" || fail "tlsgate died during reload to '$s'"
        [ "$(now_ms)" -ge "$end" ] && fail "reload to '$s' (generation $gen) not done within 30s"
        sleep 0.1
    done
    log "reload $((gen - 1)): log_level/log_format = $s"
    # let the load run against the new settings
    end=$(( $(now_ms) + 700 )); while [ "$(now_ms)" -lt "$end" ]; do sleep 0.1; done
done
touch "$WORK/stop"
wait_exit "$LOAD_PID" 30 || fail "load did not stop"
log "$(cat "$WORK/load.log")"
[ "$WAIT_RC" = 0 ] || error "the load saw no successful exchange of some kind"
stop_tlsgate 20
[ "$TLSGATE_RC" = 0 ] || error "tlsgate exited with status $TLSGATE_RC"
if grep -q "WARNING: ThreadSanitizer" "$TLSGATE_LOG"; then
    n=$(grep -c "WARNING: ThreadSanitizer" "$TLSGATE_LOG")
    grep -A30 "WARNING: ThreadSanitizer" "$TLSGATE_LOG" | head -80 >&2
    error "$n ThreadSanitizer report(s) in $TLSGATE_LOG"
else
    log "no ThreadSanitizer report in $(wc -l <"$TLSGATE_LOG") log lines"
fi
finish
