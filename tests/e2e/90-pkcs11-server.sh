#!/usr/bin/env bash
# 90-pkcs11-server: the listener identity's key on a SoftHSM2 token (RFC 7512
# URIs): ECDSA P-256 with the certificate from a file, RSA-2048 with the
# certificate from the token, and the EC key again through p11-kit's proxy
# module (the default pkcs11_module). curl and openssl s_client verify the
# chain over TLS 1.2 and 1.3. tlsgate -t finds the keys without logging in;
# a token key that does not belong to the certificate is refused at start.
. "$(dirname "$0")/lib.sh"
. "$E2E_DIR/pkcs11-helpers.sh"

make_token
BPORT=$(free_port)
start_demo_backend "$BPORT"
EC=$(free_port); RSA=$(free_port); PROXY=$(free_port)

listener() { # NAME PORT LINES...
    local name=$1 port=$2; shift 2
    printf '\n[listener:%s]\nbind = 127.0.0.1:%s\nsecure = on\nbackend = 127.0.0.1:%s\nhandshake_timeout = 5s\n' \
        "$name" "$port" "$BPORT"
    printf '%s\n' "$@"
}
write_config p11-server.ini < <(
    printf '[global]\nworkers = 1\nlog_level = info\n'
    listener ec "$EC" "cert = $CERTS/server.pem" "key = $TOKEN_URI;object=server" \
        "pkcs11_module = $SOFTHSM" "pkcs11_pin = file:$PINFILE"
    listener rsa "$RSA" "cert = $TOKEN_URI;object=server-rsa;type=cert" \
        "key = $TOKEN_URI;object=server-rsa;type=private" \
        "pkcs11_module = $SOFTHSM" "pkcs11_pin = file:$PINFILE"
    listener proxy "$PROXY" "cert = $CERTS/server-chain.pem" "key = $TOKEN_URI;id=%01" \
        "pkcs11_pin = file:$PINFILE"
)

check_config "$CONFIG"
[ "$CHECK_RC" = 0 ] || fail "tlsgate -t: $CHECK_OUT"
grep -q "PIN not tried" <<<"$CHECK_OUT" || fail "tlsgate -t does not say that the PIN was not tried: $CHECK_OUT"
log "tlsgate -t: $(grep -m1 'listener ec' <<<"$CHECK_OUT" | sed 's/^ *//')"

start_tlsgate "$CONFIG"
assert_log_contains "listener ec: .*EC key object=server on token 'tlsgate-dev' \(logged in\)"
assert_log_contains "listener rsa: .*RSA key object=server-rsa on token 'tlsgate-dev'"

for name in ec rsa proxy; do
    port=$(eval echo "\$${name^^}")
    code=$(curl -sS --max-time 10 -o "$WORK/curl-$name.out" -w '%{http_code}' \
        --cacert "$CERTS/ca.pem" "https://localhost:$port/" 2>"$WORK/curl-$name.err")
    [ "$code" = 200 ] || { error "$name: curl got '$code': $(cat "$WORK/curl-$name.err")"; continue; }
    log "$name: curl verified the chain and got HTTP 200"
    for v in 1.2 1.3; do
        out=$(echo | timeout 10 openssl s_client -connect "127.0.0.1:$port" -servername localhost \
            -CAfile "$CERTS/ca.pem" -verify_return_error "-tls${v/./_}" 2>&1)
        grep -q "Verify return code: 0 (ok)" <<<"$out" || { error "$name TLS $v: s_client did not verify: $(grep -m3 -i 'error\|verify' <<<"$out")"; continue; }
        sig=$(grep -m1 "Peer signature type" <<<"$out" | sed 's/.*: //')
        want=ECDSA; [ "$name" = rsa ] && { [ "$v" = 1.3 ] && want=RSA-PSS || want='RSA'; }
        [[ $sig == $want* ]] || error "$name TLS $v: peer signature type '$sig', want $want"
        log "$name TLS $v: s_client verified, signature $sig"
    done
done
assert_log_not_contains "handshake failed"
stop_tlsgate

# The control above used key object=server with server.pem; with other.pem the
# test signature cannot verify and the listener is refused at start.
write_config p11-mismatch.ini < <(
    printf '[global]\nworkers = 1\n'
    listener ec "$EC" "cert = $CERTS/other.pem" "key = $TOKEN_URI;object=server" \
        "pkcs11_module = $SOFTHSM" "pkcs11_pin = file:$PINFILE"
)
out=$(timeout 20 "$TLSGATE" -c "$CONFIG" 2>&1 </dev/null); rc=$?
[ "$rc" != 0 ] || fail "a token key that does not match its certificate was accepted"
grep -q "p11-mismatch.ini:[0-9]*: \[listener:ec\] key: .*does not match the certificate" <<<"$out" \
    || fail "no clear mismatch error: $out"
log "mismatch refused: $(grep -m1 'does not match' <<<"$out")"
finish
