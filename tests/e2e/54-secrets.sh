#!/usr/bin/env bash
# 54-secrets: no password and no private key byte ever reaches tlsgate's
# output. Secrets made here are distinctive strings: a PFX password (given
# as env:, file: and pass:), a PEM key password, and a backend PFX password.
# Checked in: `tlsgate -t` output (good config and configs with a wrong
# password, an unset variable, a mistyped key, a duplicated key, a bad
# secret scheme), and the debug log (text and JSON) of a run that serves
# good, failing and garbage clients and is stopped. Neither any secret nor
# any base64 line of the private key PEMs may appear; nor the secret in the
# process's command line.
# Also: a private key file (PEM key, or PFX) readable by everyone draws a
# warning naming the file (in -t and in the run log); a 0600 one does not.
. "$(dirname "$0")/lib.sh"
require_cmd openssl

rnd=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
PFX_PW="Pfx-$rnd-s3cret"
KEY_PW="Key-$rnd-s3cret"
BPFX_PW="Bpfx-$rnd-s3cret"
WRONG_PW="Wrong-$rnd-guess"
printf '%s\n' "$PFX_PW" >"$WORK/pfx-pw"
printf '%s\n' "$KEY_PW" >"$WORK/key-pw"
chmod 600 "$WORK/pfx-pw" "$WORK/key-pw"

# identities under those passwords (private files: 0600)
umask 077
openssl pkcs12 -export -in "$CERTS/server.pem" -inkey "$CERTS/server.key" -certfile "$CERTS/ca.pem" \
    -passout "pass:$PFX_PW" -out "$WORK/server.pfx" 2>"$WORK/openssl.err" || fail "pkcs12: $(cat "$WORK/openssl.err")"
openssl pkcs12 -export -in "$CERTS/client.pem" -inkey "$CERTS/client.key" -certfile "$CERTS/ca.pem" \
    -passout "pass:$BPFX_PW" -out "$WORK/client.pfx" 2>"$WORK/openssl.err" || fail "pkcs12: $(cat "$WORK/openssl.err")"
openssl pkey -in "$CERTS/server.key" -aes256 -passout "pass:$KEY_PW" -out "$WORK/server-enc.key" 2>"$WORK/openssl.err" ||
    fail "pkey: $(cat "$WORK/openssl.err")"
cp "$CERTS/server.key" "$WORK/plain.key"
umask 022
cp "$CERTS/server.key" "$WORK/world.key" && chmod 644 "$WORK/world.key"
cp "$WORK/server.pfx" "$WORK/world.pfx" && chmod 644 "$WORK/world.pfx"

# every base64 line of every private key PEM involved: none may be printed
: >"$WORK/secrets.txt"
for k in "$CERTS/server.key" "$CERTS/client.key" "$WORK/server-enc.key"; do
    grep -v -- '-----' "$k" | awk 'length($0) >= 16' >>"$WORK/secrets.txt"
done
printf '%s\n' "$PFX_PW" "$KEY_PW" "$BPFX_PW" "$WRONG_PW" >>"$WORK/secrets.txt"
log "$(wc -l <"$WORK/secrets.txt") secret strings to look for"

# no_secrets WHAT FILE -- FILE holds none of the secret strings
no_secrets() {
    local hit
    hit=$(grep -aF -f "$WORK/secrets.txt" "$2" | head -n 3)
    [ -z "$hit" ] || error "$1 shows a secret: $hit"
}

BPORT=$(free_port)
start_echo "$BPORT"
# a TLS backend that wants a client certificate, so backend_pfx is used
TBPORT=$(free_port)
bg_start tls-backend openssl s_server -quiet -accept "127.0.0.1:$TBPORT" -cert "$CERTS/server.pem" \
    -key "$CERTS/server.key" -CAfile "$CERTS/ca.pem" -Verify 1 -naccept 100
wait_listen "$TBPORT" 10 "$BG_PID" || fail "openssl s_server did not start: $(cat "$WORK/tls-backend.log")"
P1=$(free_port); P2=$(free_port); P3=$(free_port); P4=$(free_port); P5=$(free_port)

listeners() {  # listeners FORMAT -- the good config
    cat <<EOF
$(global_section workers=1 log_level=debug log_format=$1 drain_timeout=2s)

[listener:pfxenv]
bind = 127.0.0.1:$P1
pfx = $WORK/server.pfx
pfx_password = env:TG_TEST_PFX_PASSWORD
backend = 127.0.0.1:$BPORT

[listener:pfxfile]
bind = 127.0.0.1:$P2
pfx = $WORK/server.pfx
pfx_password = file:$WORK/pfx-pw
verify_client = require
client_ca = $CERTS/ca.pem
backend = 127.0.0.1:$BPORT

[listener:pempass]
bind = 127.0.0.1:$P3
cert = $CERTS/server.pem
key = $WORK/server-enc.key
key_password = pass:$KEY_PW
backend = 127.0.0.1:$BPORT

[listener:plain2tls]
bind = 127.0.0.1:$P4
secure = off
; a raw TCP tunnel on purpose (not HTTP): the informed choice
protocol = tcp
backend = 127.0.0.1:$TBPORT
backend_secure = on
backend_pfx = $WORK/client.pfx
backend_pfx_password = pass:$BPFX_PW
backend_ca = $CERTS/ca.pem
EOF
}
export TG_TEST_PFX_PASSWORD=$PFX_PW

# --- tlsgate -t: good config, then broken ones ----------------------------------------------
write_config good.ini < <(listeners text)
check_config "$CONFIG"
printf '%s\n' "$CHECK_OUT" >"$WORK/check-good.out"
[ "$CHECK_RC" = 0 ] || fail "tlsgate -t good.ini: $CHECK_OUT"
no_secrets "tlsgate -t (good config)" "$WORK/check-good.out"

bad_case() {  # bad_case NAME SED-EXPR EXPECT-REGEX -- a broken copy of good.ini
    local name=$1
    sed -e "$2" "$WORK/good.ini" >"$WORK/bad-$name.ini"
    check_config "$WORK/bad-$name.ini"
    printf '%s\n' "$CHECK_OUT" >"$WORK/check-$name.out"
    if [ "$CHECK_RC" = 0 ]; then error "tlsgate -t accepted bad-$name.ini"; return; fi
    grep -qiE -- "$3" "$WORK/check-$name.out" || error "tlsgate -t bad-$name.ini does not say /$3/: $CHECK_OUT"
    no_secrets "tlsgate -t ($name)" "$WORK/check-$name.out"
    log "$name: $(grep -aiE -- "$3" "$WORK/check-$name.out" | head -n1)"
}
bad_case wrong-pfx-pw   "s|^pfx_password = file:.*|pfx_password = pass:$WRONG_PW|"      'wrong password'
bad_case wrong-key-pw   "s|^key_password = pass:.*|key_password = pass:$WRONG_PW|"      'wrong password|cannot load private key'
bad_case wrong-bpfx-pw  "s|^backend_pfx_password = .*|backend_pfx_password = pass:$WRONG_PW|" 'wrong password'
bad_case unset-env      "s|env:TG_TEST_PFX_PASSWORD|env:TG_TEST_UNSET_VARIABLE|"         'TG_TEST_UNSET_VARIABLE'
bad_case typo-key       "s|^key_password = |key_pasword = |"                            'unknown key'
bad_case twice          "s|^\\(key_password = .*\\)|\\1\\n\\1|"                          'set twice'
bad_case bad-scheme     "s|^key_password = pass:|key_password = secret:|"               'want env:NAME, file:PATH or pass:TEXT'
bad_case not-yet-psk    "s|^\\(key_password = .*\\)|\\1\\npsk = pass:$KEY_PW|"           'psk'

# --- a run with debug logging: good, failing and garbage clients -----------------------
run_and_check() {  # run_and_check FORMAT
    write_config "run-$1.ini" < <(listeners "$1")
    start_tlsgate "$CONFIG"
    tr '\0' ' ' <"/proc/$TLSGATE_PID/cmdline" >"$WORK/cmdline-$1.txt"
    no_secrets "the command line of tlsgate" "$WORK/cmdline-$1.txt"
    "$PY" - "$P1" "$P2" "$P3" "$P4" <<'EOF' || error "clients against the $1 run failed"
import socket, ssl, sys
import e2elib
p1, p2, p3, p4 = (int(x) for x in sys.argv[1:5])
for p in (p1, p3):
    s = e2elib.tls_connect(p)
    s.sendall(b"hello\n")
    assert e2elib.recv_exact(s, 6) == b"hello\n"
    s.close()
s = e2elib.tls_connect(p2, certfile="client.pem", keyfile="client.key")
s.sendall(b"mtls\n")
assert e2elib.recv_exact(s, 5) == b"mtls\n"
s.close()
try:   # no client certificate: refused
    s = e2elib.tls_connect(p2)
    s.sendall(b"x")
    s.recv(10)
except (ssl.SSLError, OSError):
    pass
s = e2elib.tcp_connect(p1)      # garbage
s.sendall(b"GET / HTTP/1.0\r\n\r\n")
e2elib.closed_within(s, 5)
s = e2elib.tcp_connect(p4)      # through backend_pfx to openssl s_server
s.sendall(b"through the backend identity\n")
s.settimeout(5)
try:
    s.recv(100)
except OSError:
    pass
s.close()
print("ok: clients done")
EOF
    assert_log_contains 'plain2tls.*connected to 127\.0\.0\.1:[0-9]+ over TLS' 5
    stop_tlsgate
    [ "$TLSGATE_RC" = 0 ] || error "tlsgate ($1 log) exited $TLSGATE_RC on SIGTERM"
    no_secrets "the $1 debug log" "$TLSGATE_LOG"
    log "$1 log: $(wc -l <"$TLSGATE_LOG") lines, no secret in them"
}
run_and_check text
run_and_check json

# --- world-readable private keys -------------------------------------------------------
keyfile_case() {  # keyfile_case NAME KEYLINES WANT(yes|no) FILE
    write_config "perm-$1.ini" <<EOF
$(global_section workers=1)

[listener:perm]
bind = 127.0.0.1:$P5
$2
backend = 127.0.0.1:$BPORT
EOF
    check_config "$CONFIG"
    [ "$CHECK_RC" = 0 ] || { error "tlsgate -t perm-$1.ini: $CHECK_OUT"; return; }
    if [ "$3" = yes ]; then
        grep -qE "$4.*readable by everyone" <<<"$CHECK_OUT" ||
            error "$1: no warning that $4 is readable by everyone in -t output: $CHECK_OUT"
    else
        grep -qiE 'readable by everyone' <<<"$CHECK_OUT" && error "$1: warning for a private file: $CHECK_OUT"
    fi
    log "$1 (-t): $(grep -i 'readable' <<<"$CHECK_OUT" || echo 'no warning')"
}
keyfile_case world-key "cert = $CERTS/server.pem
key = $WORK/world.key" yes "$WORK/world.key"
keyfile_case private-key "cert = $CERTS/server.pem
key = $WORK/plain.key" no "$WORK/plain.key"
keyfile_case world-pfx "pfx = $WORK/world.pfx
pfx_password = file:$WORK/pfx-pw" yes "$WORK/world.pfx"
keyfile_case private-pfx "pfx = $WORK/server.pfx
pfx_password = file:$WORK/pfx-pw" no "$WORK/server.pfx"
# and in the log of a running tlsgate
start_tlsgate "$WORK/perm-world-key.ini"
assert_log_contains "$WORK/world.key.*readable by everyone"
stop_tlsgate
finish
