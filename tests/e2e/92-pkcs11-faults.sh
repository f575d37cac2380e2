#!/usr/bin/env bash
# 92-pkcs11-faults: token faults through a test module (tests/pkcs11-shim)
# that forwards to SoftHSM2: -t costs no login; a wrong PIN is one clear
# error, the process exits and exactly one C_Login was made (SoftHSM2 then
# flags "user PIN count low"); a token at its final PIN try is not logged
# into; a reload while logged in makes no login; a missing module, token or object names what was looked for; a slow
# token (200 ms per C_Sign) does not stall other connections of the same
# worker (both builds: BoringSSL waits for the signature asynchronously,
# OpenSSL runs the handshake step on the token's signer thread): plaintext
# echo round trips and full handshakes with a file key complete while the
# signature is pending; a
# token removed while running fails only the handshakes that need it, and
# the key is found again when it comes back.
. "$(dirname "$0")/lib.sh"
. "$E2E_DIR/pkcs11-helpers.sh"
require_cmd socat

make_token
build_shim
SLOW=$(free_port); ECHO=$(free_port); FILEKEY=$(free_port); EPORT=$(free_port)
start_echo "$EPORT"
BADPIN=$WORK/badpin; printf '9999\n' >"$BADPIN"; chmod 600 "$BADPIN"

# neighbours -- listeners on the same worker that must keep flowing while a
# token signs: plaintext echo, and TLS with a file key
neighbours() {
    cat <<EOC
[listener:echo]
bind = 127.0.0.1:$ECHO
secure = off
backend = 127.0.0.1:$EPORT

[listener:filekey]
bind = 127.0.0.1:$FILEKEY
secure = on
pfx = $CERTS/server.pfx
pfx_password = file:$CERTS/pfx-password
backend = 127.0.0.1:$EPORT
EOC
}

conf() { # FILE KEY_URI MODULE PIN_SPEC
    write_config "$1" <<EOC
[global]
workers = 1
log_level = info

[listener:slow]
bind = 127.0.0.1:$SLOW
secure = on
cert = $CERTS/server.pem
key = $2
pkcs11_module = $3
pkcs11_pin = $4
backend = 127.0.0.1:$EPORT
handshake_timeout = 5s

$(neighbours)
EOC
}
token_flags() { pkcs11-tool --module "$SOFTHSM" --token-label tlsgate-dev -T 2>/dev/null | grep -i 'token flags'; }
# one_line NAME OUTPUT REGEX -- exactly one tlsgate error line, matching REGEX
one_line() {
    local n
    n=$(grep -c '^tlsgate: .*\.ini:[0-9]*: ' <<<"$2")
    [ "$n" = 1 ] || { error "$1: want one error line, got $n: $2"; return; }
    grep -qE -- "$3" <<<"$2" || { error "$1: error line does not match /$3/: $2"; return; }
    log "$1: $(grep '^tlsgate: .*\.ini:' <<<"$2")"
}

# tls_ok -- 0 when a full TLS handshake with the slow listener verifies
tls_ok() {
    "$PY" -c 'import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as s:
    ctx.wrap_socket(s, server_hostname="localhost").close()' "$SLOW" "$CERTS/ca.pem" >"$WORK/tls_ok.out" 2>&1
}

# -- tlsgate -t finds module, token and object without a login
conf check.ini "$TOKEN_URI;object=server" "$SHIM" "file:$PINFILE"
check_config "$CONFIG"
[ "$CHECK_RC" = 0 ] || fail "tlsgate -t: $CHECK_OUT"
grep -q "PIN not tried" <<<"$CHECK_OUT" || error "-t does not say the PIN was not tried"
[ "$(shim_logins)" = 0 ] || error "tlsgate -t called C_Login $(shim_logins) time(s)"
log "-t: no C_Login, says 'PIN not tried'"

# -- wrong PIN: one line, exit, exactly one login attempt
before=$(token_flags)
grep -qi "count low" <<<"$before" && fail "token already has a failed login before the test: $before"
conf badpin.ini "$TOKEN_URI;object=server" "$SHIM" "file:$BADPIN"
: >"$TG_SHIM_LOG"
out=$(timeout 20 "$TLSGATE" -c "$CONFIG" 2>&1 </dev/null); rc=$?
[ "$rc" != 0 ] || error "tlsgate kept running with a wrong PIN"
one_line "wrong PIN" "$out" "badpin.ini:[0-9]+: \[listener:slow\] key: token 'tlsgate-dev': wrong PIN"
[ "$(shim_logins)" = 1 ] || error "wrong PIN: $(shim_logins) C_Login calls, want exactly 1"
grep -q "login rv=0xa0" "$TG_SHIM_LOG" || error "the one login did not fail with CKR_PIN_INCORRECT: $(cat "$TG_SHIM_LOG")"
after=$(token_flags)
grep -qi "count low" <<<"$after" || error "SoftHSM2 does not flag a failed login: $after"
log "wrong PIN: exit $rc, 1 C_Login (CKR_PIN_INCORRECT), token now: ${after#*: }"

# -- final PIN try: no login at all
conf final.ini "$TOKEN_URI;object=server" "$SHIM" "file:$PINFILE"
: >"$TG_SHIM_LOG"
out=$(TG_SHIM_FINAL_TRY=1 timeout 20 "$TLSGATE" -c "$CONFIG" 2>&1 </dev/null); rc=$?
[ "$rc" != 0 ] || error "tlsgate logged in at the final PIN try"
one_line "final try" "$out" "final PIN try"
[ "$(shim_logins)" = 0 ] || error "final try: $(shim_logins) C_Login calls, want 0"

# -- missing module, token, object
conf nomod.ini "$TOKEN_URI;object=server" "$WORK/no-such-module.so" "file:$PINFILE"
check_config "$CONFIG"; [ "$CHECK_RC" != 0 ] || error "missing module accepted"
one_line "missing module" "$CHECK_OUT" "pkcs11_module $WORK/no-such-module.so: cannot load"
conf notoken.ini "pkcs11:token=no-such-token;object=server" "$SHIM" "file:$PINFILE"
check_config "$CONFIG"; [ "$CHECK_RC" != 0 ] || error "missing token accepted"
one_line "missing token" "$CHECK_OUT" "no token matching token=no-such-token .*tokens present: 'tlsgate-dev'"
conf noobj.ini "$TOKEN_URI;object=no-such-key" "$SHIM" "file:$PINFILE"
check_config "$CONFIG"; [ "$CHECK_RC" != 0 ] || error "missing object accepted by -t"
one_line "missing object (-t)" "$CHECK_OUT" "token 'tlsgate-dev' has no object object=no-such-key"
out=$(timeout 20 "$TLSGATE" -c "$CONFIG" 2>&1 </dev/null); rc=$?
[ "$rc" != 0 ] || error "missing object accepted at start"
one_line "missing object (start)" "$out" "token 'tlsgate-dev' has no private key object=no-such-key"

# -- an RSA key on a token without RSA-PSS: TLS 1.3 off, said at start;
#    min_version = 1.3 refused (control: the same key does TLS 1.3 in 90)
conf nopss.ini "$TOKEN_URI;object=server-rsa" "$SHIM" "file:$PINFILE"
sed -i "s|^cert = .*|cert = $CERTS/server-rsa.pem|" "$CONFIG"
out=$(TG_SHIM_NO_PSS=1 timeout 20 "$TLSGATE" -t -c "$CONFIG" 2>&1)
grep -q "cannot sign RSA-PSS, which TLS 1.3 needs: TLS 1.3 is off" <<<"$out" || error "tlsgate -t does not say that TLS 1.3 is off: $out"
sed -i 's|^handshake_timeout = 5s|handshake_timeout = 5s\nmin_version = 1.3|' "$CONFIG"
out13=$(TG_SHIM_NO_PSS=1 timeout 20 "$TLSGATE" -c "$CONFIG" 2>&1 </dev/null); rc=$?
[ "$rc" != 0 ] || error "min_version = 1.3 accepted with an RSA key that cannot do PSS"
one_line "no PSS, min_version 1.3" "$out13" "key: token 'tlsgate-dev' cannot sign RSA-PSS .*TLS 1.3"
sed -i '/^min_version = 1.3/d' "$CONFIG"
TG_SHIM_NO_PSS=1 start_tlsgate "$CONFIG"
assert_log_contains "token 'tlsgate-dev' cannot sign RSA-PSS, which TLS 1.3 needs: TLS 1.3 is off"
for v in 1.2 1.3; do
    o=$(echo | timeout 10 openssl s_client -connect "127.0.0.1:$SLOW" -servername localhost \
        -CAfile "$CERTS/ca.pem" -verify_return_error "-tls${v/./_}" 2>&1)
    # PKCS#1 v1.5 ("RSA"), never RSA-PSS, which this token cannot sign
    if grep -q "Peer signature type: RSA$" <<<"$o"; then r=ok; else r=refused; fi
    want=ok; [ "$v" = 1.3 ] && want=refused
    [ "$r" = "$want" ] || error "no PSS: TLS $v $r, want $want"
done
log "no PSS on the token: TLS 1.2 works, TLS 1.3 refused, min_version = 1.3 is an error"
stop_tlsgate

# -- a slow token: other connections of the same worker keep flowing
conf slow.ini "$TOKEN_URI;object=server" "$SHIM" "file:$PINFILE"
export TG_SHIM_SIGN_DELAY_MS=200 TG_SHIM_REMOVED=$WORK/removed
start_tlsgate "$CONFIG"
write_py slowtoken <<'PYEOF'
import socket, ssl, sys, threading, time
slow, echo, ca, shimlog, filekey = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
mode = sys.argv[6] if len(sys.argv) > 6 else "tls"
res = {}
def handshake():
    # tls: a handshake that needs the token's signature; plain: a line
    # through a listener whose backend handshake needs it (backend_key)
    ctx = ssl.create_default_context(cafile=ca)
    try:
        with socket.create_connection(("127.0.0.1", slow), timeout=10) as s:
            if mode == "tls":
                with ctx.wrap_socket(s, server_hostname="localhost"):
                    res["ok"] = True
            else:
                s.sendall(b"through\n"); buf = b""
                while not buf.endswith(b"\n"):
                    d = s.recv(100)
                    if not d: break
                    buf += d
                if buf == b"through\n": res["ok"] = True
                else: res["err"] = "got %r" % buf
    except Exception as e:
        res["err"] = repr(e)
e = socket.create_connection(("127.0.0.1", echo), timeout=5)
def rtt():
    a = time.time(); e.sendall(b"ping\n"); buf = b""
    while not buf.endswith(b"\n"):
        d = e.recv(100)
        if not d: raise SystemExit("echo connection closed")
        buf += d
    return a, time.time()
def filekey_handshake():
    # a full handshake (no resumption) with the file-key listener, and one
    # echo round trip through it
    ctx = ssl.create_default_context(cafile=ca)
    a = time.time()
    with socket.create_connection(("127.0.0.1", filekey), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            t.sendall(b"tls\n"); buf = b""
            while not buf.endswith(b"\n"):
                d = t.recv(100)
                if not d: raise SystemExit("file-key connection closed")
                buf += d
    return a, time.time()
rtt()
trips, tls = [], []
th = threading.Thread(target=handshake); th.start()
while th.is_alive() and len(trips) < 2000:
    trips.append(rtt())
    if len(trips) % 4 == 0: tls.append(filekey_handshake())
    time.sleep(0.002)
th.join()
lines = open(shimlog).read().split()
starts = [int(lines[i + 1]) / 1000 for i, w in enumerate(lines) if w == "sign-start"]
ends = [int(lines[i + 1]) / 1000 for i, w in enumerate(lines) if w == "sign-end"]
s0, s1 = starts[-1], ends[-1]
inside = [b - a for a, b in trips if a >= s0 and b <= s1]
tls_inside = [b - a for a, b in tls if a >= s0 and b <= s1]
print("handshake=%s signature=%dms trips_inside=%d max_rtt_ms=%.1f filekey_handshakes_inside=%d max_filekey_ms=%.1f" % (
    "ok" if res.get("ok") else res.get("err"), (s1 - s0) * 1000, len(inside),
    max(inside) * 1000 if inside else -1, len(tls_inside),
    max(tls_inside) * 1000 if tls_inside else -1))
PYEOF
r=$("$PY" "$WORK/slowtoken.py" "$SLOW" "$ECHO" "$CERTS/ca.pem" "$TG_SHIM_LOG" "$FILEKEY" 2>&1) || fail "slow token client: $r"
log "slow token ($TG_LIB): $r"
grep -q "handshake=ok" <<<"$r" || error "slow token: the handshake failed: $r"
n=$(sed -n 's/.*trips_inside=\([0-9]*\).*/\1/p' <<<"$r")
[ "${n:-0}" -ge 3 ] || error "slow token: only ${n:-0} echo round trips completed while the signature was pending"
n=$(sed -n 's/.*filekey_handshakes_inside=\([0-9]*\).*/\1/p' <<<"$r")
[ "${n:-0}" -ge 1 ] || error "slow token: no file-key handshake completed while the signature was pending"

# -- a client that leaves while its signature is pending: the signature is
#    dropped when it arrives, nothing else notices
log_mark
"$PY" -c 'import socket, ssl, sys, time
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
t = ctx.wrap_socket(s, server_hostname="localhost", do_handshake_on_connect=False)
t.setblocking(False)
try: t.do_handshake()
except ssl.SSLWantReadError: pass
time.sleep(0.05); t.close()' "$SLOW" || error "could not send a ClientHello"
assert_log_contains "client closed the connection during the TLS handshake" 5 --since-mark
sleep 0.3 # the pending signature (200 ms) arrives for a connection that is gone
tls_ok || error "no handshake after a client left with its signature pending: $(tail -n 2 "$WORK/tls_ok.out")"
is_alive "$TLSGATE_PID" || fail "tlsgate died after a client left with its signature pending"
log "a client that left during its signature: dropped, next handshake fine"

# -- a reload while the token is logged in does not log in again
logins=$(shim_logins)
log_mark
kill -HUP "$TLSGATE_PID"
assert_log_contains "reloaded: generation 2" 10 --since-mark
[ "$(shim_logins)" = "$logins" ] || error "the reload logged in again ($logins -> $(shim_logins) C_Login calls)"
log "reload: no new C_Login ($logins in all)"


# -- token removed while running, and put back
touch "$TG_SHIM_REMOVED"
log_mark
tls_ok && error "a handshake succeeded with the token removed"
assert_log_contains "handshake failed: .*PKCS#11 signature failed: token 'tlsgate-dev': C_Sign: CKR_DEVICE_REMOVED" 5 --since-mark
tls_ok && error "a second handshake succeeded with the token removed"
assert_log_contains "handshake failed: .*PKCS#11 signature failed: token 'tlsgate-dev' is not present" 5 --since-mark
is_alive "$TLSGATE_PID" || fail "tlsgate died when the token was removed"
r=$(printf 'still here\n' | timeout 5 socat -t 2 - "TCP:127.0.0.1:$ECHO" 2>&1)
[ "$r" = "still here" ] || error "the plaintext listener stopped working with the token removed: '$r'"
log "token removed: handshakes needing it fail with a reason, the echo listener still answers"
rm -f "$TG_SHIM_REMOVED"
tls_ok || error "no handshake after the token came back: $(tail -n 2 "$WORK/tls_ok.out")"
assert_log_contains "token 'tlsgate-dev' is back; key found again" 5 --since-mark
stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || error "tlsgate exited with $TLSGATE_RC"

# -- the backend side: a slow signature for backend_key stalls nothing
#    else; and timers that fire while a signature is pending (OpenSSL: while
#    the handshake step is on the signer thread) end that connection only
REMOTE=$(free_port); SB=$(free_port); BT=$(free_port); HT=$(free_port)
token_client() { # NAME PORT CONNECT_TIMEOUT -- backend client identity on the token
    cat <<EOC
[listener:$1]
bind = 127.0.0.1:$2
secure = off
protocol = tcp
backend = 127.0.0.1:$REMOTE
backend_secure = on
backend_ca = $CERTS/ca.pem
backend_cert = $CERTS/client.pem
backend_key = $TOKEN_URI;object=client
backend_pkcs11_pin = file:$PINFILE
pkcs11_module = $SHIM
connect_timeout = $3
EOC
}
write_config slowback.ini <<EOC
[global]
workers = 1
log_level = info

[listener:remote]
bind = 127.0.0.1:$REMOTE
secure = on
cert = $CERTS/server.pem
key = $CERTS/server.key
verify_client = require
client_ca = $CERTS/ca.pem
backend = 127.0.0.1:$EPORT

$(token_client slowback "$SB" 5s)

$(token_client backto "$BT" 100ms)

[listener:hsto]
bind = 127.0.0.1:$HT
secure = on
cert = $CERTS/server.pem
key = $TOKEN_URI;object=server
pkcs11_pin = file:$PINFILE
pkcs11_module = $SHIM
backend = 127.0.0.1:$EPORT
handshake_timeout = 100ms

$(neighbours)
EOC
export TG_SHIM_SIGN_DELAY_MS=300
: >"$TG_SHIM_LOG"
start_tlsgate "$CONFIG"
log_mark
r=$("$PY" "$WORK/slowtoken.py" "$SB" "$ECHO" "$CERTS/ca.pem" "$TG_SHIM_LOG" "$FILEKEY" plain 2>&1) || fail "slow backend token client: $r"
log "slow backend_key ($TG_LIB): $r"
grep -q "handshake=ok" <<<"$r" || error "slow backend_key: the line did not come back through the remote: $r"
n=$(sed -n 's/.*trips_inside=\([0-9]*\).*/\1/p' <<<"$r")
[ "${n:-0}" -ge 3 ] || error "slow backend_key: only ${n:-0} echo round trips completed while the signature was pending"
n=$(sed -n 's/.*filekey_handshakes_inside=\([0-9]*\).*/\1/p' <<<"$r")
[ "${n:-0}" -ge 1 ] || error "slow backend_key: no file-key handshake completed while the signature was pending"
assert_log_contains "on remote: handshake: .*peer CN=client1" 5 --since-mark

log_mark
printf 'x\n' | timeout 5 socat -t 2 - "TCP:127.0.0.1:$BT" >/dev/null 2>&1
assert_log_contains "on backto: backend: .*no connection within connect_timeout" 5 --since-mark
assert_log_contains "on backto: close: " 5 --since-mark
o=$("$PY" -c 'import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
try:
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5) as s:
        ctx.wrap_socket(s, server_hostname="localhost").close()
    print("handshake ok")
except Exception as e: print("refused:", e)' "$HT" "$CERTS/ca.pem" 2>&1)
[[ $o == refused* ]] || error "hsto: a handshake that needs a 300 ms signature beat a 100 ms handshake_timeout: $o"
assert_log_contains "on hsto: close: handshake timeout" 5 --since-mark
sleep 0.5 # the pending signatures arrive for connections that are gone
is_alive "$TLSGATE_PID" || fail "tlsgate died when timers fired during pending signatures"
r=$(printf 'after\n' | timeout 10 socat -t 5 - "TCP:127.0.0.1:$SB" 2>&1)
[ "$r" = after ] || error "slowback stopped working after the timeouts: '$r'"
log "timers during pending signatures (connect_timeout, handshake_timeout) ended only those connections"
stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || error "tlsgate exited with $TLSGATE_RC"
finish
