#!/usr/bin/env bash
# 56-crl-revoked-intermediate: a client certificate issued by an intermediate
# CA that the root's CRL revokes must be refused.
#   client_ca = the dev root; crl = the root's CRL (revoking the dev
#   intermediate "tlsgate dev intermediate" and the leaf client-revoked)
#   followed by the intermediate's own CRL (revoking nothing), so every
#   level has a CRL.  Controls: client1 (root leaf) is admitted,
#   client-revoked (root leaf in the CRL) is refused with "certificate
#   revoked", and int-client through the intermediate is admitted when the
#   root's CRL does not list the intermediate.
#   Attack (found by attack2): a compromised sub-CA revoked by its root.
#   Expected: int-client is refused ("certificate revoked", depth 1).  Both
#   builds admit it today: revocation is checked on the leaf only
#   (X509_V_FLAG_CRL_CHECK without CRL_CHECK_ALL), so the revoked
#   intermediate's certificates keep getting in.  TLS 1.2 and 1.3.
#   A missing CRL above the leaf's issuer is tolerated, the issuer's is not:
#   with the intermediate's CRL alone, int-client is admitted and client1
#   (whose issuer, the root, has no CRL there) is refused.
#   Resumption: int-client's session made while the CRL revokes nothing
#   is refused after a reload with a CRL that revokes its intermediate
#   ("certificate revoked ... a CA certificate above it ... resumed
#   session"); client1's session resumes (control).
. "$(dirname "$0")/lib.sh"
require_cmd openssl socat

EPORT=$(free_port); P=$(free_port); Q=$(free_port); R=$(free_port)
# the backend echoes one line and closes, which ends the client
bg_start backend socat -t 5 "TCP-LISTEN:$EPORT,bind=127.0.0.1,fork,reuseaddr" "SYSTEM:head -n 1"
wait_listen "$EPORT" 10 "$BG_PID" || fail "backend did not start"

# the root's CRL (ca_config: openssl ca over the dev root), the intermediate's
ca_config 01
for c in int-ca client-revoked; do
    openssl ca -config "$WORK/ca.cnf" -revoke "$CERTS/$c.pem" -batch >>"$WORK/ca.log" 2>&1 ||
        fail "cannot revoke $c: $(cat "$WORK/ca.log")"
done
openssl ca -config "$WORK/ca.cnf" -gencrl -out "$WORK/root-crl.pem" -batch >>"$WORK/ca.log" 2>&1 ||
    fail "cannot make the root CRL: $(cat "$WORK/ca.log")"
: >"$WORK/ca/index.txt"
openssl ca -config "$WORK/ca.cnf" -gencrl -out "$WORK/root-crl-empty.pem" -batch >>"$WORK/ca.log" 2>&1 ||
    fail "cannot make the empty root CRL: $(cat "$WORK/ca.log")"
sed -e "s|^certificate = .*|certificate = $CERTS/int-ca.pem|" -e "s|^private_key = .*|private_key = $CERTS/int-ca.key|" \
    "$WORK/ca.cnf" >"$WORK/int.cnf"
openssl ca -config "$WORK/int.cnf" -gencrl -out "$WORK/int-crl.pem" -batch >>"$WORK/ca.log" 2>&1 ||
    fail "cannot make the intermediate's CRL: $(cat "$WORK/ca.log")"
cat "$WORK/root-crl.pem" "$WORK/int-crl.pem" >"$WORK/crl-revoking.pem"
cat "$WORK/root-crl-empty.pem" "$WORK/int-crl.pem" >"$WORK/crl-clean.pem"

head -c 80 /dev/urandom >"$WORK/ticket.key"; chmod 600 "$WORK/ticket.key"
cp "$WORK/crl-clean.pem" "$WORK/crl-live.pem"
listener() {  # listener NAME PORT CRL
    printf '\n[listener:%s]\nbind = 127.0.0.1:%s\n%s\nverify_client = require\nclient_ca = %s\ncrl = %s\nbackend = 127.0.0.1:%s\nticket_key_file = %s\n' \
        "$1" "$2" "$SERVER_PFX" "$CERTS/ca.pem" "$3" "$EPORT" "$WORK/ticket.key"
}
write_config crl.ini <<EOF
$(global_section workers=1 log_level=info)
$(listener revoking "$P" "$WORK/crl-revoking.pem")
$(listener clean "$Q" "$WORK/crl-live.pem")
$(listener intonly "$R" "$WORK/int-crl.pem")
EOF
start_tlsgate "$CONFIG"

try() {  # try PORT VERSION CERT [CHAIN [s_client args]] -> GOT (echoed line, or none)
    local chain=() port=$1 v=$2 cert=$3
    shift 3
    [ -n "${1:-}" ] && chain=(-cert_chain "$CERTS/$1")
    shift || true
    GOT=$(echo ping | timeout 10 openssl s_client -connect "127.0.0.1:$port" "-tls$v" -quiet -ign_eof \
        -cert "$CERTS/$cert.pem" -key "$CERTS/$cert.key" "${chain[@]}" "$@" 2>/dev/null | head -n 1)
    [ -n "$GOT" ] || GOT=none
}
expect() {  # expect WHAT WANT
    if [ "$GOT" = "$2" ]; then log "ok: $1"; else error "$1: got '$GOT', wanted '$2'"; fi
}
for v in 1_2 1_3; do
    try "$P" "$v" client;                               expect "TLS $v: client1 (root leaf) admitted (control)" ping
    try "$P" "$v" client-revoked;                       expect "TLS $v: client-revoked (in the root's CRL) refused (control)" none
    try "$Q" "$v" int-client int-client-chain.pem;      expect "TLS $v: int-client admitted while its intermediate is not revoked (control)" ping
    try "$R" "$v" int-client int-client-chain.pem;      expect "TLS $v: int-client admitted with its issuer's CRL and none from the root" ping
    log_mark
    try "$R" "$v" client;                               expect "TLS $v: client1 refused without its issuer's (the root's) CRL" none
    [ "$GOT" = none ] && assert_log_contains "unable to get certificate CRL.*depth 0" 5 --since-mark >/dev/null
    log_mark
    try "$P" "$v" int-client int-client-chain.pem
    expect "TLS $v: int-client, whose intermediate the root's CRL revokes, is refused" none
    [ "$GOT" = none ] && assert_log_contains "certificate revoked" 5 --since-mark >/dev/null
done

# resumption: sessions made while the live CRL revokes nothing
for v in 1_2 1_3; do
    try "$Q" "$v" client "" -sess_out "$WORK/c1-$v.sess";  expect "TLS $v: client1 session (control)" ping
    try "$Q" "$v" int-client int-client-chain.pem -sess_out "$WORK/int-$v.sess"
    expect "TLS $v: int-client session (control)" ping
done
cp "$WORK/crl-revoking.pem" "$WORK/crl-live.pem"
kill -HUP "$TLSGATE_PID"
assert_log_contains "reloaded: generation 2" 10 >/dev/null
for v in 1_2 1_3; do
    log_mark
    try "$Q" "$v" client "" -sess_in "$WORK/c1-$v.sess"
    expect "TLS $v: client1 resumes after the CRL refresh (control)" ping
    assert_log_contains "handshake: TLS.* resumed" 5 --since-mark >/dev/null
    log_mark
    try "$Q" "$v" int-client int-client-chain.pem -sess_in "$WORK/int-$v.sess"
    expect "TLS $v: int-client's resumed session, its intermediate now revoked, is refused" none
    [ "$GOT" = none ] && assert_log_contains "a CA certificate above it, in the current crl; resumed session" 5 --since-mark >/dev/null
done
stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || error "tlsgate exited $TLSGATE_RC on SIGTERM"
finish
