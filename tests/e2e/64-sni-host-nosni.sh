#!/usr/bin/env bash
# 64-sni-host-nosni: on a bind shared by SNI sections with protocol = http, a
# request whose Host names another section's server_name must get 421 even
# when the ClientHello carried no server name.
#   Setup: one bind, two sections, one name-based HTTP backend behind both
#   (one application, two client policies): "web" (the default, nothing asked)
#   and "staff" (staff.test, *.staff.test: dev-CA client certificate required).
#   Controls: staff.test with client1 -> 200, the backend sees Host staff.test;
#   staff.test without a certificate -> handshake refused; SNI localhost with
#   Host staff.test -> 421 (the check that exists); no SNI with Host localhost
#   -> 200.
#   Attack (found by attack2): no server_name extension at all (openssl
#   s_client -noservername; old clients, raw TLS libraries) lands on the
#   default section, and the Host/SNI check is skipped when there is no SNI,
#   so "Host: staff.test" reaches the shared backend as a staff.test request
#   with no client certificate.  Expected: 421, and the backend sees nothing.
#   Also one trailing dot and case ignored on both sides: SNI "staff.test."
#   with Host "staff.test" is not refused.
. "$(dirname "$0")/lib.sh"
require_cmd openssl

B=$(free_port); P=$(free_port)
bg_start backend "$PY" "$E2E_DIR/py/http_helpers.py" backend "$B" "$WORK/b.jsonl"
wait_listen "$B" 10 "$BG_PID" || fail "backend did not start: $(cat "$WORK/backend.log")"

write_config vhosts.ini <<EOF
$(global_section workers=1 log_level=info)

[listener:web]
bind = 127.0.0.1:$P
$SERVER_PFX
protocol = http
backend = 127.0.0.1:$B

[listener:staff]
bind = 127.0.0.1:$P
server_name = staff.test, *.staff.test
pfx = $CERTS/other.pfx
pfx_password = file:$CERTS/pfx-password
verify_client = require
client_ca = $CERTS/ca.pem
protocol = http
backend = 127.0.0.1:$B
EOF
start_tlsgate "$CONFIG"

C1=(-cert "$CERTS/client.pem" -key "$CERTS/client.key")
# get HOST [s_client args...] -> STATUS (first line of the answer, or none)
# and SEEN (requests with that Host the backend got so far)
get() {
    local host=$1; shift
    STATUS=$(printf 'GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$host" |
        timeout 10 openssl s_client -connect "127.0.0.1:$P" -quiet -ign_eof "$@" 2>/dev/null | head -n 1 | tr -d '\r')
    [ -n "$STATUS" ] || STATUS=none
    SEEN=$(grep -c "\"Host\", \"$host\"" "$WORK/b.jsonl" 2>/dev/null)
}
expect() {  # expect WHAT STATUS-REGEX
    if [[ $STATUS =~ $2 ]]; then log "ok: $1 ($STATUS)"; else error "$1: got '$STATUS', wanted /$2/"; fi
}

get staff.test -servername staff.test "${C1[@]}";  expect "staff.test with client1 (control)" "^HTTP/1.1 200"
[ "$SEEN" = 1 ] || error "the backend did not see the staff.test request (control): $SEEN"
get staff.test -servername staff.test;             expect "staff.test without a certificate is refused (control)" "^none$"
get staff.test -servername localhost;              expect "SNI localhost, Host staff.test: 421 (control)" "^HTTP/1.1 421"
get localhost -noservername;                       expect "no SNI, Host localhost -> web (control)" "^HTTP/1.1 200"
# one trailing dot and case are ignored on both sides (SNI and Host)
get staff.test -servername staff.test. "${C1[@]}"; expect "SNI staff.test., Host staff.test: 200" "^HTTP/1.1 200"
get STAFF.test. -servername staff.test "${C1[@]}"; expect "SNI staff.test, Host STAFF.test.: 200" "^HTTP/1.1 200"
get localhost -servername localhost.;              expect "SNI localhost., Host localhost: 200" "^HTTP/1.1 200"
get localhost:$P -noservername;                    expect "no SNI, Host localhost:port -> web: 200" "^HTTP/1.1 200"

for host in staff.test STAFF.test x.staff.test; do
    before=$(grep -c "\"Host\", \"$host\"" "$WORK/b.jsonl" 2>/dev/null)
    get "$host" -noservername
    expect "no SNI, Host $host (a name of the staff section) on the default section: 421" "^HTTP/1.1 421"
    [ "$SEEN" = "$before" ] || error "no SNI: the backend got a '$host' request without a client certificate"
done

stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || error "tlsgate exited $TLSGATE_RC on SIGTERM"
finish
