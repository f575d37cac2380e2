#!/usr/bin/env bash
# 91-pkcs11-backend: the client identity towards backends from a SoftHSM2 token
# (backend_key = pkcs11:..., backend_cert from a file or from the token) and,
# as the alternative to backend_pfx, from PEM files. The remote is a tlsgate
# listener with verify_client = require (TLS 1.3) and openssl s_server
# -Verify 1 -tls1_2; both must see the client1 certificate. Control: without
# a client identity the remote refuses.
. "$(dirname "$0")/lib.sh"
. "$E2E_DIR/pkcs11-helpers.sh"

make_token
BPORT=$(free_port); REMOTE=$(free_port); S12=$(free_port)
start_demo_backend "$BPORT"
bg_start s_server12 openssl s_server -accept "$S12" -naccept 100 -Verify 1 -tls1_2 \
    -CAfile "$CERTS/ca.pem" -cert "$CERTS/server.pem" -key "$CERTS/server.key" -www
wait_listen "$S12" 10 "$BG_PID" || fail "s_server did not start: $(cat "$WORK/s_server12.log")"

declare -A PORT
for n in token tokcert pem none tls12; do PORT[$n]=$(free_port); done
front() { # NAME REMOTE_PORT LINES...
    local name=$1 rport=$2; shift 2
    printf '\n[listener:%s]\nbind = 127.0.0.1:%s\nsecure = off\nbackend = 127.0.0.1:%s\nbackend_secure = on\nbackend_ca = %s\nconnect_timeout = 5s\n' \
        "$name" "${PORT[$name]}" "$rport" "$CERTS/ca.pem"
    printf '%s\n' "$@"
}
KEY=("backend_key = $TOKEN_URI;object=client" "backend_pkcs11_pin = file:$PINFILE" "pkcs11_module = $SOFTHSM")
write_config p11-backend.ini < <(
    printf '[global]\nworkers = 1\nlog_level = info\n'
    printf '\n[listener:remote]\nbind = 127.0.0.1:%s\nsecure = on\ncert = %s\nkey = %s\nverify_client = require\nclient_ca = %s\nbackend = 127.0.0.1:%s\n' \
        "$REMOTE" "$CERTS/server.pem" "$CERTS/server.key" "$CERTS/ca.pem" "$BPORT"
    front token   "$REMOTE" "backend_cert = $CERTS/client.pem" "${KEY[@]}"
    front tokcert "$REMOTE" "backend_cert = $TOKEN_URI;object=client;type=cert" "${KEY[@]}"
    front pem     "$REMOTE" "backend_cert = $CERTS/client.pem" "backend_key = $CERTS/client.key"
    front none    "$REMOTE"
    front tls12   "$S12" "backend_cert = $CERTS/client.pem" "${KEY[@]}"
)
check_config "$CONFIG"
[ "$CHECK_RC" = 0 ] || fail "tlsgate -t: $CHECK_OUT"
grep -q "listener token: .*client identity .*PKCS#11 key object=client on token 'tlsgate-dev' (PIN not tried" <<<"$CHECK_OUT" \
    || fail "tlsgate -t does not describe the token identity: $CHECK_OUT"
start_tlsgate "$CONFIG"
assert_log_contains "listener token: .*client identity .*EC key object=client on token 'tlsgate-dev'"

for name in token tokcert pem; do
    log_mark
    code=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:${PORT[$name]}/" 2>"$WORK/curl-$name.err")
    [ "$code" = 200 ] || { error "$name: curl got '$code': $(cat "$WORK/curl-$name.err")"; continue; }
    if log_since | grep >/dev/null -c "on remote: handshake: TLSv1.3.*peer CN=client1"; then
        log "$name: the remote (verify_client = require) saw CN=client1 over TLS 1.3"
    else
        error "$name: no remote handshake line with peer CN=client1: $(log_since | grep -m3 handshake)"
    fi
done

out=$(curl -sS --max-time 10 "http://127.0.0.1:${PORT[tls12]}/" 2>&1)
if grep -qE "Subject: (O ?= ?tlsgate, )?CN ?= ?client1" <<<"$out" && grep -q "TLSv1.2" <<<"$out"; then
    log "tls12: s_server -Verify 1 saw client1 over TLS 1.2"
else
    error "tls12: s_server did not show client1 over TLS 1.2: $(grep -m3 'Subject\|Protocol' <<<"$out")"
fi

log_mark
code=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:${PORT[none]}/" 2>/dev/null)
[ "$code" = 200 ] && error "none: got through without a client identity"
assert_log_contains "remote.*certificate required" 5 --since-mark
log "none: refused by the remote without a client certificate (control)"
assert_log_not_contains "PKCS#11 signature failed"
finish
