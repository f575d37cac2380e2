#!/usr/bin/env bash
# 02-https-curl: https:// in front of the plaintext demo backend, with curl and
# openssl s_client (TLS 1.3 and 1.2); identities from a PFX (OpenSSL 3 default
# encryption), a legacy PFX (RC2-40/3DES) and PEM cert + encrypted key.
. "$(dirname "$0")/lib.sh"
require_cmd curl openssl

BPORT=$(free_port)
start_demo_backend "$BPORT"

HELLO=$'hello from the tlsgate demo backend\npath: /some/where?x=1\n'

# check_https PORT LABEL -- the full set of client checks against one listener
check_https() {
    local port=$1 label=$2 body out
    body=$(curl -sS --max-time 10 --cacert "$CERTS/ca.pem" "https://localhost:$port/some/where?x=1"; echo x)
    body=${body%x}
    [ "$body" = "$HELLO" ] || fail "$label: curl https://localhost:$port/ got '$body', want '$HELLO'"
    log "$label: curl hello ok"

    # also by IP (certificate has IP:127.0.0.1) and ::1 when the listener is v6
    body=$(curl -sS --max-time 10 --cacert "$CERTS/ca.pem" "https://127.0.0.1:$port/ip")
    [ "$body" = $'hello from the tlsgate demo backend\npath: /ip' ] || fail "$label: curl by IP got '$body'"

    # 5 MB body, byte-exact
    curl -sS --max-time 30 --cacert "$CERTS/ca.pem" -o "$WORK/big.$label" "https://localhost:$port/big?n=5000000" \
        || fail "$label: curl /big failed"
    local size; size=$(stat -c %s "$WORK/big.$label")
    [ "$size" = 5000000 ] || fail "$label: /big?n=5000000 returned $size bytes"
    "$PY" -c '
import sys, e2elib
d = open(sys.argv[1], "rb").read()
sys.exit(0 if e2elib.check_pattern(d, 0) else 1)' "$WORK/big.$label" || fail "$label: /big body corrupted"
    log "$label: 5000000-byte body exact"

    # openssl s_client, TLS 1.3 and TLS 1.2, with chain and hostname verification
    local v
    for v in 1_3 1_2; do
        out=$(timeout 15 openssl s_client -connect "127.0.0.1:$port" -servername localhost \
                -verify_hostname localhost -CAfile "$CERTS/ca.pem" -verify_return_error "-tls$v" \
                </dev/null 2>&1)
        grep -q "Verify return code: 0 (ok)" <<<"$out" || fail "$label: s_client -tls$v: no 'Verify return code: 0': $out"
        grep -qE "Protocol *: TLSv${v/_/.}|New, TLSv${v/_/.}" <<<"$out" || fail "$label: s_client -tls$v: not TLSv${v/_/.}: $out"
        log "$label: openssl s_client -tls$v verified"
    done

    # an HTTP request through s_client (TLS 1.2) gets the hello page
    out=$(printf 'GET /s_client HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' | timeout 15 openssl s_client -quiet \
            -connect "127.0.0.1:$port" -servername localhost -CAfile "$CERTS/ca.pem" -verify_return_error -tls1_2 2>/dev/null)
    grep -q "path: /s_client" <<<"$out" || fail "$label: HTTP over s_client -tls1_2 did not get the page: $out"
}

# --- 1: PFX with OpenSSL 3 default encryption, two listeners (v4 and v6) ----------------
P1=$(free_port)
P6=$(free_port)
write_config pfx.ini <<EOF
$(global_section workers=1 log_level=debug)

[listener:https]
bind = 127.0.0.1:$P1
transport = tcp
secure = on
$SERVER_PFX
backend = 127.0.0.1:$BPORT

[listener:https6]
bind = [::1]:$P6
secure = on
pfx = $CERTS/server.pfx
pfx_password = pass:tlsgate-dev
backend = 127.0.0.1:$BPORT
EOF
check_config "$CONFIG"; [ "$CHECK_RC" = 0 ] || fail "tlsgate -t pfx.ini: $CHECK_OUT"
start_tlsgate "$CONFIG"
check_https "$P1" pfx
body=$(curl -sS --max-time 10 --cacert "$CERTS/ca.pem" "https://[::1]:$P6/v6")
[ "$body" = $'hello from the tlsgate demo backend\npath: /v6' ] || fail "curl https://[::1]:$P6/ got '$body'"
log "pfx: IPv6 listener ok"
stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || fail "tlsgate exited $TLSGATE_RC on SIGTERM"

# --- 2: legacy PFX (RC2-40 certs, 3DES key) --------------------------------------------------
P2=$(free_port)
write_config legacy.ini <<EOF
$(global_section workers=1 log_level=debug)

[listener:legacy]
bind = 127.0.0.1:$P2
secure = on
pfx = $CERTS/server-legacy.pfx
pfx_password = file:$CERTS/pfx-password
backend = 127.0.0.1:$BPORT
EOF
check_config "$CONFIG"; [ "$CHECK_RC" = 0 ] || fail "tlsgate -t legacy.ini: $CHECK_OUT"
start_tlsgate "$CONFIG"
check_https "$P2" legacy
stop_tlsgate

# --- 3: PEM certificate + encrypted PKCS#8 key ---------------------------------------------------
P3=$(free_port)
write_config pem.ini <<EOF
$(global_section workers=1 log_level=debug)

[listener:pem]
bind = 127.0.0.1:$P3
secure = on
cert = $CERTS/server-chain.pem
key = $CERTS/server-enc.key
key_password = file:$CERTS/pfx-password
backend = 127.0.0.1:$BPORT
EOF
check_config "$CONFIG"; [ "$CHECK_RC" = 0 ] || fail "tlsgate -t pem.ini: $CHECK_OUT"
start_tlsgate "$CONFIG"
check_https "$P3" pem
stop_tlsgate

log "ok"
