#!/usr/bin/env bash
# 05-backend-mtls: plaintext front, TLS to the backend with a client identity
# from a PFX (the "local client-certificate proxy"). The backend is
# `openssl s_server -Verify 1 -www`, which requires a client certificate and
# prints it on its status page. Checks chain verification, pins (sha256 of the
# certificate, hex with and without colons, spki-sha256), pin-only mode,
# wrong pin, wrong CA, hostname/IP mismatch, backend_sni and a missing
# client identity; failures must be logged with the backend address and reason.
. "$(dirname "$0")/lib.sh"
require_cmd curl openssl

SPORT=$(free_port)   # s_server with server.pem (localhost, 127.0.0.1, ::1)
OPORT=$(free_port)   # s_server with other.pem (other.example only)

bg_start s_server openssl s_server -accept "$SPORT" -naccept 1000 -Verify 1 -CAfile "$CERTS/ca.pem" \
    -cert "$CERTS/server.pem" -key "$CERTS/server.key" -www
S_PID=$BG_PID
bg_start s_server-other openssl s_server -accept "$OPORT" -naccept 1000 -Verify 1 -CAfile "$CERTS/ca.pem" \
    -cert "$CERTS/other.pem" -key "$CERTS/other.key" -www
O_PID=$BG_PID
wait_listen "$SPORT" 10 "$S_PID" || fail "s_server did not start: $(cat "$WORK/s_server.log")"
wait_listen "$OPORT" 10 "$O_PID" || fail "s_server (other) did not start: $(cat "$WORK/s_server-other.log")"

PIN_HEX=$(openssl x509 -in "$CERTS/server.pem" -outform DER | sha256sum | cut -d' ' -f1)
PIN_COLON=$(openssl x509 -in "$CERTS/server.pem" -noout -fingerprint -sha256 | sed 's/^.*=//')
PIN_SPKI=$(openssl x509 -in "$CERTS/server.pem" -noout -pubkey | openssl pkey -pubin -outform DER \
           | openssl dgst -sha256 -binary | base64)
PIN_OTHER=$(openssl x509 -in "$CERTS/other.pem" -outform DER | sha256sum | cut -d' ' -f1)
log "pins: hex=$PIN_HEX colon=$PIN_COLON spki=$PIN_SPKI other=$PIN_OTHER"

declare -A PORT
for l in ca pin pinc spki pinonly sni badpin foreign mismatch noident; do PORT[$l]=$(free_port); done

# listener NAME BACKEND_PORT EXTRA-LINES...
listener() {
    local name=$1 bport=$2; shift 2
    printf '\n[listener:%s]\nbind = 127.0.0.1:%s\nsecure = off\nbackend = 127.0.0.1:%s\nbackend_secure = on\nconnect_timeout = 5s\nhandshake_timeout = 5s\n' \
        "$name" "${PORT[$name]}" "$bport"
    printf '%s\n' "$@"
}
ID=("backend_pfx = $CERTS/client.pfx" "backend_pfx_password = file:$CERTS/pfx-password")
write_config backend-mtls.ini < <(
    printf '[global]\nworkers = 1\nlog_level = debug\n'
    listener ca       "$SPORT" "${ID[@]}" "backend_ca = $CERTS/ca.pem"
    listener pin      "$SPORT" "${ID[@]}" "backend_ca = $CERTS/ca.pem" "backend_pin = sha256:$PIN_HEX"
    listener pinc     "$SPORT" "${ID[@]}" "backend_ca = $CERTS/ca.pem" "backend_pin = sha256:$PIN_COLON"
    listener spki     "$SPORT" "${ID[@]}" "backend_ca = $CERTS/ca.pem" "backend_pin = spki-sha256:$PIN_SPKI"
    listener pinonly  "$OPORT" "${ID[@]}" "backend_verify = off" "backend_pin = sha256:$PIN_OTHER"
    listener sni      "$OPORT" "${ID[@]}" "backend_ca = $CERTS/ca.pem" "backend_sni = other.example"
    listener badpin   "$SPORT" "${ID[@]}" "backend_ca = $CERTS/ca.pem" "backend_pin = sha256:$PIN_OTHER"
    listener foreign  "$SPORT" "${ID[@]}" "backend_ca = $CERTS/foreign-ca.pem"
    listener mismatch "$OPORT" "${ID[@]}" "backend_ca = $CERTS/ca.pem"
    listener noident  "$SPORT" "backend_ca = $CERTS/ca.pem"
)
check_config "$CONFIG"; [ "$CHECK_RC" = 0 ] || fail "tlsgate -t backend-mtls.ini: $CHECK_OUT"
start_tlsgate "$CONFIG"

# works NAME -- a plaintext client gets the s_server page, which shows our client1 certificate
works() {
    local name=$1 out
    out=$(curl -sS --max-time 10 "http://127.0.0.1:${PORT[$name]}/" 2>&1)
    grep -q "Client certificate" <<<"$out" || { error "$name: no s_server status page with a client certificate: $(head -c 600 <<<"$out")"; return; }
    grep -qE "Subject: (O ?= ?tlsgate, )?CN ?= ?client1" <<<"$out" || { error "$name: the backend did not see client1: $(grep -m3 Subject <<<"$out")"; return; }
    log "$name: backend saw the client1 certificate"
}

# fails NAME REASON_REGEX BACKEND_PORT -- the client gets nothing, the log names the backend and why
fails() {
    local name=$1 reason=$2 bport=$3 out lines end
    log_mark
    out=$(curl -sS --max-time 10 "http://127.0.0.1:${PORT[$name]}/" 2>&1)
    grep -q "Client certificate\|s_server" <<<"$out" && { error "$name: the request got through: $(head -c 300 <<<"$out")"; return; }
    log "$name: client refused ($(grep -m1 '^curl' <<<"$out"))"
    end=$(( $(now_ms) + 5000 ))
    while :; do
        lines=$(log_since | grep -aE "127\.0\.0\.1:$bport([^0-9]|$)")
        [ -n "$lines" ] && grep -qiE -- "$reason" <<<"$lines" && break
        if [ "$(now_ms)" -ge "$end" ]; then
            echo "--- log since the attempt:"; log_since | tail -n 20
            error "$name: no log line naming backend 127.0.0.1:$bport with /$reason/"; return
        fi
        sleep 0.05
    done
    grep -iE -- "$reason" <<<"$lines" | head -n 3 | sed 's/^/    | /'
}

works ca
works pin
works pinc
works spki
works pinonly
works sni
fails badpin   'pin'                                                   "$SPORT"
fails foreign  'verify|unable to get (local )?issuer|unknown ca|untrusted' "$SPORT"
fails mismatch 'mismatch|hostname|ip address'                           "$OPORT"
fails noident  'certificate required|alert|handshake'                   "$SPORT"
# the good listeners still work after the failures
works ca

# s_server itself saw client1 (its verify callback prints the chain)
grep -qE "CN ?= ?client1" "$WORK/s_server.log" || error "s_server log does not show client1: $(tail -5 "$WORK/s_server.log")"

stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || error "tlsgate exited $TLSGATE_RC on SIGTERM"
finish
