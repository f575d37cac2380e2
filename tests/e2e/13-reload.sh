#!/usr/bin/env bash
# 13-reload: SIGHUP re-reads the config and the certificates it names.
# - Certificate renewal under load: clients connect in a loop (bounded) while
#   the PFX file is replaced and SIGHUP sent several times; zero failed
#   connections, and connections after the reload present the new certificate.
# - A connection opened before the reloads keeps working after them.
# - A broken config is rejected with its errors; the service stays up.
# - Listeners added and removed by a reload take effect.
. "$(dirname "$0")/lib.sh"

BPORT=$(free_port); PORT=$(free_port); PORT2=$(free_port)
start_echo "$BPORT"
cp "$CERTS/server.pfx" "$WORK/current.pfx"

listener() {  # listener NAME PORT
    cat <<EOF

[listener:$1]
bind = 127.0.0.1:$2
pfx = $WORK/current.pfx
pfx_password = file:$CERTS/pfx-password
backend = 127.0.0.1:$BPORT
EOF
}
{ printf '[global]\nworkers = 2\nlog_level = info\n'; listener main "$PORT"; } > "$WORK/reload.ini"
start_tlsgate "$WORK/reload.ini" "$PORT"

serial() {  # serial PORT -> serial number of the certificate served
    echo | timeout 5 openssl s_client -connect "127.0.0.1:$1" -servername localhost 2>/dev/null \
        | openssl x509 -noout -serial 2>/dev/null
}
old_serial=$(serial "$PORT")
new_other_serial=$(openssl pkcs12 -in "$CERTS/other.pfx" -passin "file:$CERTS/pfx-password" -nokeys -clcerts 2>/dev/null | openssl x509 -noout -serial)
[ -n "$old_serial" ] || fail "no certificate served before the reload"
log "serving $old_serial; will switch to other.pfx ($new_other_serial)"

# A long-lived connection opened before any reload.
write_py longlived <<'EOF'
import sys, time, e2elib
port, stopfile = int(sys.argv[1]), sys.argv[2]
s = e2elib.tls_connect(port, verify=False)
print("connected", flush=True)
n = 0
import os
while not os.path.exists(stopfile) and n < 2000:
    msg = b"ping %d\n" % n
    s.sendall(msg)
    if e2elib.recv_exact(s, len(msg)) != msg:
        print("FAILED: echo mismatch"); sys.exit(1)
    n += 1
    time.sleep(0.02)
print("ok: long-lived connection echoed %d times across the reloads" % n)
EOF
bg_start longlived "$PY" "$WORK/longlived.py" "$PORT" "$WORK/stop"
LONG_PID=$BG_PID
for _ in $(seq 100); do grep -q connected "$WORK/longlived.log" 2>/dev/null && break; sleep 0.05; done
grep -q connected "$WORK/longlived.log" || fail "long-lived client did not connect"

# Load: 2 client threads connect, handshake (verify off: the cert changes),
# exchange a line and close, until the stop file appears (max 60 s).
write_py load <<'EOF'
import os, sys, threading, time, e2elib
port, stopfile = int(sys.argv[1]), sys.argv[2]
ok = fail = 0
errors = []
lock = threading.Lock()
def worker():
    global ok, fail
    t0 = time.monotonic()
    while not os.path.exists(stopfile) and time.monotonic() - t0 < 60:
        try:
            s = e2elib.tls_connect(port, verify=False, timeout=10)
            s.sendall(b"x\n")
            assert e2elib.recv_exact(s, 2) == b"x\n"
            s.close()
            with lock: ok += 1
        except Exception as e:
            with lock:
                fail += 1
                errors.append(repr(e))
ts = [threading.Thread(target=worker) for _ in range(2)]
for t in ts: t.start()
for t in ts: t.join()
print("load: %d ok, %d failed %s" % (ok, fail, errors[:5]))
sys.exit(1 if fail or ok == 0 else 0)
EOF
bg_start load "$PY" "$WORK/load.py" "$PORT" "$WORK/stop"
LOAD_PID=$BG_PID

for i in 1 2 3 4 5 6; do
    if [ $((i % 2)) = 1 ]; then cp "$CERTS/other.pfx" "$WORK/next.pfx"; else cp "$CERTS/server.pfx" "$WORK/next.pfx"; fi
    mv "$WORK/next.pfx" "$WORK/current.pfx"     # atomic replacement, as renewal tools do
    log_mark
    kill -HUP "$TLSGATE_PID"
    assert_log_contains "reloaded: generation $((i + 1))" 10 --since-mark >/dev/null || fail "reload $i not done"
    # the load must overlap every reload: wait for a handshake after it
    log_mark
    assert_log_contains "handshake: TLS" 10 --since-mark >/dev/null || fail "no client served after reload $i"
done
# the last reload installed server.pfx again; one more to other.pfx, then check
cp "$CERTS/other.pfx" "$WORK/current.pfx"; kill -HUP "$TLSGATE_PID"
assert_log_contains "reloaded: generation 8" 10 >/dev/null || fail "reload 7 not done"
touch "$WORK/stop"
wait_exit "$LOAD_PID" 30 || fail "load client did not stop"
cat "$WORK/load.log"
[ "$WAIT_RC" = 0 ] || error "connections failed during certificate reloads"
wait_exit "$LONG_PID" 30 || fail "long-lived client did not stop"
cat "$WORK/longlived.log"
[ "$WAIT_RC" = 0 ] || error "the connection opened before the reloads broke"
got=$(serial "$PORT")
[ "$got" = "$new_other_serial" ] && log "after reload: serves $got (the new certificate)" \
    || error "after reload the served certificate is $got, wanted $new_other_serial"

# A broken config is rejected; the old one keeps serving.
cp "$WORK/reload.ini" "$WORK/good.ini"
printf '\n[listener:broken]\nbind = 127.0.0.1:%s\nsecure = maybe\n' "$PORT2" >> "$WORK/reload.ini"
log_mark
kill -HUP "$TLSGATE_PID"
assert_log_contains "reload rejected" 10 --since-mark || error "broken config not rejected"
assert_log_contains "reload: .*reload.ini:[0-9]+: \[listener:broken\] secure: 'maybe' is not a boolean" 5 --since-mark \
    || error "rejection does not name file:line: [section] key"
[ "$(serial "$PORT")" = "$new_other_serial" ] || error "service not up after a rejected reload"

# Adding a listener, then removing the first one.
{ printf '[global]\nworkers = 2\nlog_level = info\n'; listener main "$PORT"; listener second "$PORT2"; } > "$WORK/reload.ini"
kill -HUP "$TLSGATE_PID"
assert_log_contains "reloaded: generation 9" 10 >/dev/null || fail "reload with a new listener not done"
wait_listen "$PORT2" 10 || error "added listener not listening"
[ -n "$(serial "$PORT2")" ] || error "added listener does not serve TLS"
{ printf '[global]\nworkers = 2\nlog_level = info\n'; listener second "$PORT2"; } > "$WORK/reload.ini"
kill -HUP "$TLSGATE_PID"
assert_log_contains "reloaded: generation 10" 10 >/dev/null || fail "reload removing a listener not done"
wait_not_listening "$PORT" 10 && log "removed listener no longer listens" || error "removed listener still listening"
[ -n "$(serial "$PORT2")" ] || error "remaining listener stopped serving"

stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || error "tlsgate exited $TLSGATE_RC"
finish
