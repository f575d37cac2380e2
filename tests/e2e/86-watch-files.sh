#!/usr/bin/env bash
# 86-watch-files: watch_files = on (the default) reloads by itself when a
# certificate file changes, as SIGHUP does, while clients keep connecting:
#   1. a PFX renewed in place (rewritten, same inode) is served within a
#      bounded time, no SIGHUP sent
#   2. a PFX renewed by rename (mv over it, as certbot/cert-manager do) too
#   3. a broken renewal (garbage) is rejected, logged, and the previous
#      certificate keeps being served; fixing the file reloads again
#   4. a PEM cert/key pair swapped through symlinks in a second directory
#      (certbot's live/ -> archive/ layout) is picked up as well, and so is
#      a CA rewritten in place inside a hashed client_ca directory
#   5. control: with watch_files = off the same in-place renewal is not
#      picked up (so 1. can fail)
# Throughout 1-4 two client threads handshake (verifying the chain) and
# echo in a bounded loop: zero failures allowed.
. "$(dirname "$0")/lib.sh"
require_cmd openssl

BPORT=$(free_port); PORT=$(free_port); PORT2=$(free_port)
start_echo "$BPORT"
mkdir -p "$WORK/live" "$WORK/le/live" "$WORK/le/archive"

renew() {  # renew NAME -- a new key and certificate for localhost from the dev CA, + NAME.pfx
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/$1.key" 2>/dev/null
    openssl req -x509 -new -key "$WORK/$1.key" -CA "$CERTS/ca.pem" -CAkey "$CERTS/ca.key" \
        -subj "/O=tlsgate/CN=localhost" -days 30 \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -addext "basicConstraints=critical,CA:FALSE" \
        -addext "extendedKeyUsage=serverAuth" -out "$WORK/$1.pem" 2>"$WORK/$1.err" \
        || fail "cannot make certificate $1: $(cat "$WORK/$1.err")"
    openssl pkcs12 -export -in "$WORK/$1.pem" -inkey "$WORK/$1.key" -certfile "$CERTS/ca.pem" \
        -passout "file:$CERTS/pfx-password" -out "$WORK/$1.pfx" || fail "cannot make $1.pfx"
}
serial_of() { openssl x509 -noout -serial -in "$WORK/$1.pem"; }
serial() {  # serial PORT -> serial of the certificate served
    echo | timeout 5 openssl s_client -connect "127.0.0.1:$1" -servername localhost 2>/dev/null \
        | openssl x509 -noout -serial 2>/dev/null
}
wait_serial() {  # wait_serial PORT SERIAL WHAT -- bounded (10 s)
    local end=$(( $(now_ms) + 10000 )) got
    while :; do
        got=$(serial "$1")
        [ "$got" = "$2" ] && { log "$3: now serving $got"; return 0; }
        [ "$(now_ms)" -ge "$end" ] && { error "$3: still serving '$got', wanted $2"; return 1; }
        sleep 0.1
    done
}
for r in r1 r2 r3 r4 p1 p2; do renew "$r"; done
cp "$CERTS/server.pfx" "$WORK/live/site.pfx"
# certbot layout: live/*.pem are relative symlinks into archive/
cp "$WORK/p1.pem" "$WORK/le/archive/cert1.pem"; cp "$WORK/p1.key" "$WORK/le/archive/key1.pem"
cp "$WORK/p2.pem" "$WORK/le/archive/cert2.pem"; cp "$WORK/p2.key" "$WORK/le/archive/key2.pem"
ln -s ../archive/cert1.pem "$WORK/le/live/cert.pem"; ln -s ../archive/key1.pem "$WORK/le/live/key.pem"

# a hashed CA directory whose file is first the wrong CA, later rewritten in place
HASH=$(openssl x509 -hash -noout -in "$CERTS/ca.pem")
mkdir -p "$WORK/cadir"; cp "$CERTS/foreign-ca.pem" "$WORK/cadir/$HASH.0"
PORT3=$(free_port)
write_config watch.ini <<EOF
$(global_section workers=2 log_level=info)

[listener:site]
bind = 127.0.0.1:$PORT
pfx = $WORK/live/site.pfx
pfx_password = file:$CERTS/pfx-password
backend = 127.0.0.1:$BPORT

[listener:le]
bind = 127.0.0.1:$PORT2
cert = $WORK/le/live/cert.pem
key = $WORK/le/live/key.pem
backend = 127.0.0.1:$BPORT

[listener:mtls]
bind = 127.0.0.1:$PORT3
$SERVER_PFX
verify_client = require
client_ca = $WORK/cadir
backend = 127.0.0.1:$BPORT
EOF
start_tlsgate "$CONFIG" "$PORT" "$PORT2" "$PORT3"
[ "$(serial "$PORT")" = "$(openssl x509 -noout -serial -in "$CERTS/server.pem")" ] || fail "not serving server.pem at start"

# light load: 2 threads, handshake with verification + one echo, until the stop file (max 60 s)
write_py load <<'EOF'
import os, sys, threading, time, e2elib
ports, stopfile = [int(p) for p in sys.argv[1].split(",")], sys.argv[2]
ok, bad, errs = [0], [0], []
def run(port):
    end = time.time() + 60
    while not os.path.exists(stopfile) and time.time() < end:
        try:
            s = e2elib.tls_connect(port)
            s.sendall(b"hello\n")
            assert e2elib.recv_exact(s, 6) == b"hello\n"
            s.close()
            ok[0] += 1
        except Exception as e:
            bad[0] += 1
            errs.append("%s: %r" % (port, e))
        time.sleep(0.01)
ts = [threading.Thread(target=run, args=(p,)) for p in ports]
for t in ts: t.start()
for t in ts: t.join()
print("handshakes ok=%d failed=%d" % (ok[0], bad[0]))
for e in errs[:5]: print("  " + e)
sys.exit(1 if bad[0] or ok[0] == 0 else 0)
EOF
bg_start load "$PY" "$WORK/load.py" "$PORT,$PORT2" "$WORK/stop"
LOAD_PID=$BG_PID

# 1. in place: same inode, new bytes
INODE=$(stat -c %i "$WORK/live/site.pfx")
cat "$WORK/r1.pfx" > "$WORK/live/site.pfx"
[ "$(stat -c %i "$WORK/live/site.pfx")" = "$INODE" ] || fail "the in-place rewrite changed the inode"
wait_serial "$PORT" "$(serial_of r1)" "renewal in place"
assert_log_contains "watch_files: .*site.pfx changed: reloading" 5

# 2. by rename
log_mark
cp "$WORK/r2.pfx" "$WORK/live/.site.pfx.new" && mv "$WORK/live/.site.pfx.new" "$WORK/live/site.pfx"
wait_serial "$PORT" "$(serial_of r2)" "renewal by rename"
assert_log_contains "reloaded: generation" 5 --since-mark

# 3. broken renewal, then fixed
log_mark
head -c 700 /dev/urandom > "$WORK/live/.site.pfx.new" && mv "$WORK/live/.site.pfx.new" "$WORK/live/site.pfx"
assert_log_contains "reload rejected .*still running the previous config" 5 --since-mark
assert_log_contains "reload: .*site.pfx" 1 --since-mark
[ "$(serial "$PORT")" = "$(serial_of r2)" ] || error "after a broken renewal the previous certificate is no longer served"
cp "$WORK/r3.pfx" "$WORK/live/.site.pfx.new" && mv "$WORK/live/.site.pfx.new" "$WORK/live/site.pfx"
wait_serial "$PORT" "$(serial_of r3)" "fixed renewal after a broken one"

# 4. certbot-style symlink swap of a PEM pair
[ "$(serial "$PORT2")" = "$(serial_of p1)" ] || error "le listener does not serve p1 at start"
ln -s ../archive/key2.pem "$WORK/le/live/.key.new" && mv -T "$WORK/le/live/.key.new" "$WORK/le/live/key.pem"
ln -s ../archive/cert2.pem "$WORK/le/live/.cert.new" && mv -T "$WORK/le/live/.cert.new" "$WORK/le/live/cert.pem"
wait_serial "$PORT2" "$(serial_of p2)" "symlink swap (certbot layout)"

# 4b. a CA file inside a hashed client_ca directory rewritten in place
mtls_ok() {
    "$PY" - "$PORT3" <<'EOF' >/dev/null 2>&1
import sys, e2elib
s = e2elib.tls_connect(int(sys.argv[1]), certfile="client.pem", keyfile="client.key")
s.sendall(b"ca\n")
assert e2elib.recv_exact(s, 3) == b"ca\n"
EOF
}
mtls_ok && error "client certificate accepted while the CA directory holds the wrong CA"
cat "$CERTS/ca.pem" > "$WORK/cadir/$HASH.0"
for _ in $(seq 50); do mtls_ok && break; sleep 0.2; done
mtls_ok && log "CA directory rewritten in place: client certificate now accepted" \
    || error "a CA rewritten in place inside the client_ca directory was not picked up"

touch "$WORK/stop"
wait_exit "$LOAD_PID" 70 || fail "load client did not finish"
log "load: $(head -n 6 "$WORK/load.log" | tr '\n' ' ')"
[ "$WAIT_RC" = 0 ] || error "clients failed during the renewals: $(cat "$WORK/load.log")"
N=$(grep -o 'ok=[0-9]*' "$WORK/load.log" | cut -d= -f2)
[ "${N:-0}" -ge 20 ] || error "too little load to mean anything ($N handshakes)"
stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || error "tlsgate exited with $TLSGATE_RC"

# 5. control: watch_files = off
cp "$CERTS/server.pfx" "$WORK/live/site.pfx"
sed -i 's/^workers = 2/workers = 1\nwatch_files = off/' "$CONFIG"
start_tlsgate "$CONFIG" "$PORT" "$PORT2" "$PORT3"
cat "$WORK/r4.pfx" > "$WORK/live/site.pfx"
sleep 1.5   # three settle periods: a watcher would have reloaded by now (bounded, single wait)
[ "$(serial "$PORT")" = "$(openssl x509 -noout -serial -in "$CERTS/server.pem")" ] \
    || error "watch_files = off: the certificate changed without SIGHUP"
assert_log_not_contains "watch_files: .* changed"
kill -HUP "$TLSGATE_PID"
wait_serial "$PORT" "$(serial_of r4)" "watch_files = off, then SIGHUP"
finish
