#!/usr/bin/env bash
# 61-resumption-policy: a resumed session does not get around the policy
# that admitted it (openssl s_client -sess_out / -sess_in, TLS 1.2 and 1.3,
# with ticket_key_file so tickets survive a reload).
#  1. allow_clients: client1's session resumes, also after a reload that
#     changes nothing (control); after a reload that drops client1 from
#     allow_clients the same session (offered without a certificate) is
#     refused: sessions are bound to a digest of the verification policy,
#     so the offer falls back to a full handshake, which needs a certificate.
#     A session from another listener sharing the ticket keys (verify_client
#     = none there) does not resume on the require listener either.
#     A session whose certificate has expired since is refused ("has expired
#     since the session began").
#  2. crl: the policy digest does not cover the CRL's content (a CRL refresh
#     must not end all resumption): after a reload with a CRL that revokes
#     client1, client2's session still resumes (control) while client1's
#     resumed session is refused with "certificate revoked ... resumed
#     session", from the peer certificate stored in the session.
. "$(dirname "$0")/lib.sh"
require_cmd openssl socat

BPORT=$(free_port)
# a backend that answers one line and closes, so s_client ends by itself
bg_start oneline socat -t 5 "TCP-LISTEN:$BPORT,bind=127.0.0.1,fork,reuseaddr" "EXEC:head -n 1"
wait_listen "$BPORT" 10 "$BG_PID" || fail "socat backend did not start"
head -c 80 /dev/urandom > "$WORK/ticket.key"; chmod 600 "$WORK/ticket.key"

# a CRL from the dev CA that revokes client.pem (and nothing else)
ca_config 5001
openssl ca -batch -config "$WORK/ca.cnf" -revoke "$CERTS/client.pem" >"$WORK/ca.log" 2>&1 &&
openssl ca -batch -config "$WORK/ca.cnf" -gencrl -out "$WORK/crl-client1.pem" >>"$WORK/ca.log" 2>&1 ||
    fail "cannot make a CRL revoking client.pem: $(cat "$WORK/ca.log")"
openssl crl -in "$WORK/crl-client1.pem" -noout -text | grep >/dev/null -ci "$(openssl x509 -in "$CERTS/client.pem" -noout -serial | sed 's/serial=//')" ||
    fail "the new CRL does not list client.pem"
cp "$CERTS/crl.pem" "$WORK/crl.pem"
# short_cert SECONDS: a client2 certificate that expires SECONDS from now (SHORT_END)
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/short.key" 2>/dev/null &&
openssl req -new -key "$WORK/short.key" -subj "/CN=client2" -out "$WORK/short.csr" || fail "openssl req failed"
short_cert() {
    SHORT_END=$(( $(date +%s) + $1 ))
    openssl ca -batch -config "$WORK/ca.cnf" -notext -extensions leaf -in "$WORK/short.csr" \
        -startdate "$(date -u -d @$(( SHORT_END - 3600 )) +%Y%m%d%H%M%SZ)" -enddate "$(date -u -d @$SHORT_END +%Y%m%d%H%M%SZ)" \
        -out "$WORK/short.pem" >>"$WORK/ca.log" 2>&1 || fail "cannot make the short-lived certificate: $(cat "$WORK/ca.log")"
}

P=$(free_port); PO=$(free_port)
conf() {  # conf ALLOW_CLIENTS
    write_config resume.ini <<EOF
$(global_section workers=1 log_level=info)

[listener:r]
bind = 127.0.0.1:$P
$SERVER_PFX
backend = 127.0.0.1:$BPORT
verify_client = require
client_ca = $CERTS/ca.pem
crl = $WORK/crl.pem
allow_clients = $1
ticket_key_file = $WORK/ticket.key

[listener:open]
bind = 127.0.0.1:$PO
$SERVER_PFX
backend = 127.0.0.1:$BPORT
ticket_key_file = $WORK/ticket.key
EOF
}
GEN=1
reload() {
    GEN=$((GEN + 1))
    kill -HUP "$TLSGATE_PID"
    assert_log_contains "reloaded: generation $GEN" 10 >/dev/null
}

# sclient NAME VERSION [s_client args...] -> RESULT=echo|refused, REUSED=0|1;
# output in WORK/NAME.out
sclient() {
    local name=$1 v=$2 mark port=${PORT_OVERRIDE:-$P}; shift 2
    mark=$(stat -c %s "$TLSGATE_LOG")
    timeout 10 openssl s_client -connect "127.0.0.1:$port" -servername localhost -CAfile "$CERTS/ca.pem" \
        "-tls$v" -quiet -ign_eof "$@" < <(printf 'ping\n') >"$WORK/$name.out" 2>&1
    if grep -qx ping "$WORK/$name.out"; then RESULT=echo; else RESULT=refused; fi
    # whether the server resumed: its handshake line (s_client -quiet does not say)
    sleep 0.1
    if tail -c +"$((mark + 1))" "$TLSGATE_LOG" | grep >/dev/null -c "handshake: TLS.* resumed"; then REUSED=1; else REUSED=0; fi
}
expect() {  # expect NAME RESULT REUSED
    local name=$1
    if [ "$RESULT" = "$2" ] && [ "$REUSED" = "$3" ]; then
        log "ok: $name: $RESULT, reused=$REUSED"
    else
        error "$name: expected $2 reused=$3, got $RESULT reused=$REUSED ($(grep -aE 'alert|error' "$WORK/$name.out" | head -3 | tr '\n' ' '))"
    fi
}
C1=(-cert "$CERTS/client.pem" -key "$CERTS/client.key")
C2=(-cert "$CERTS/client2.pem" -key "$CERTS/client2.key")

conf "cn:client1, cn:client2"
start_tlsgate "$CONFIG"
for v in 1_2 1_3; do
    sclient "full-c1-$v" "$v" "${C1[@]}" -sess_out "$WORK/c1-$v.sess"
    expect "full handshake client1 TLS $v" echo 0
    sclient "full-c2-$v" "$v" "${C2[@]}" -sess_out "$WORK/c2-$v.sess"
    expect "full handshake client2 TLS $v" echo 0
    [ -s "$WORK/c1-$v.sess" ] || error "no session saved for TLS $v"
    sclient "resume-$v" "$v" -sess_in "$WORK/c1-$v.sess"
    expect "resumption, no certificate offered, TLS $v (control)" echo 1
done

# (a busy machine may be slower than the certificate's life: longer lives then)
for life in 6 15 40; do
    short_cert "$life"
    sclient "full-short" 1_3 -cert "$WORK/short.pem" -key "$WORK/short.key" -sess_out "$WORK/short.sess"
    [ "$RESULT" = echo ] && break
    [ "$(date +%s)" -ge "$SHORT_END" ] || break
done
expect "full handshake with a certificate that expires in seconds" echo 0

# a session from another listener with the same ticket keys (verify_client =
# none there) does not resume here
for v in 1_2 1_3; do
    PORT_OVERRIDE=$PO sclient "open-$v" "$v" -sess_out "$WORK/open-$v.sess"
    expect "full handshake on the open listener, TLS $v" echo 0
    PORT_OVERRIDE=$PO sclient "open-resume-$v" "$v" -sess_in "$WORK/open-$v.sess"
    expect "its session resumes there, TLS $v (control)" echo 1
    sclient "open-cross-$v" "$v" -sess_in "$WORK/open-$v.sess"
    expect "the open listener's session offered to the require listener, TLS $v" refused 0
done

# a reload that changes nothing keeps sessions resumable
reload
for v in 1_2 1_3; do
    sclient "resume-same-$v" "$v" -sess_in "$WORK/c1-$v.sess"
    expect "resumption after a reload without policy change, TLS $v (control)" echo 1
done

# 2. the CRL now revokes client1: same policy digest, so sessions resume, and
# the resumed client1 session is refused by the revocation re-check
cp "$WORK/crl-client1.pem" "$WORK/crl.pem"
reload
for v in 1_2 1_3; do
    sclient "resume-c2-crl-$v" "$v" -sess_in "$WORK/c2-$v.sess"
    expect "client2 resumes after a CRL refresh, TLS $v (control)" echo 1
    log_mark
    sclient "resume-c1-crl-$v" "$v" -sess_in "$WORK/c1-$v.sess"
    [ "$RESULT" = refused ] || error "TLS $v: revoked client1 resumed and got through after the CRL update"
    log_since | grep >/dev/null -cE "handshake failed: certificate verify failed: certificate revoked \(client certificate CN=client1.*resumed session\)" ||
        error "TLS $v: no 'certificate revoked ... resumed session' reason logged: $(log_since | grep -a 'close:' | head -2)"
    # and a full handshake with the certificate is refused by the library's CRL check
    log_mark
    sclient "full-c1-crl-$v" "$v" "${C1[@]}"
    [ "$RESULT" = refused ] || error "TLS $v: revoked client1 got through on a full handshake"
    log_since | grep >/dev/null -c "certificate verify failed: certificate revoked" || error "TLS $v: full handshake: no revocation reason"
done

# the short-lived certificate has expired meanwhile: its session is refused
while [ "$(date +%s)" -le "$SHORT_END" ]; do sleep 0.2; done
log_mark
sclient "resume-short" 1_3 -sess_in "$WORK/short.sess"
[ "$RESULT" = refused ] || error "a session whose certificate expired since was resumed and got through"
log_since | grep >/dev/null -c "client certificate CN=client2 has expired since the session began" ||
    error "no 'expired since the session began' reason logged: $(log_since | grep -a 'close:' | head -2)"

# 1. allow_clients drops client1 (CRL back to the old one): the session is
# not resumed (other policy) and the full handshake without a certificate fails
cp "$CERTS/crl.pem" "$WORK/crl.pem"
conf "cn:client2"
reload
for v in 1_2 1_3; do
    log_mark
    sclient "resume-acl-$v" "$v" -sess_in "$WORK/c1-$v.sess"
    expect "client1's session after allow_clients dropped client1, TLS $v" refused 0
    log_since | grep >/dev/null -c "handshake failed: certificate required" ||
        error "TLS $v: no 'certificate required' reason logged: $(log_since | grep -a 'close:' | head -2)"
    log_mark
    sclient "full-acl-$v" "$v" "${C1[@]}"
    [ "$RESULT" = refused ] || error "TLS $v: client1 with its certificate got through after being dropped"
    log_since | grep >/dev/null -c "client certificate CN=client1 .*is not in allow_clients" || error "TLS $v: no ACL reason logged"
    sclient "full-acl-c2-$v" "$v" "${C2[@]}"
    expect "client2 still admitted by a full handshake, TLS $v (control)" echo 0
done
finish
