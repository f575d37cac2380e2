#!/usr/bin/env bash
# 04-mtls: client certificates on the listener: verify_client=require with a CA
# file, a CRL and allow_clients; a hashed CA directory; verify_client=optional;
# ACLs by SAN URI, SAN DNS and certificate fingerprint. Every rejection must
# leave a log line naming the client address and the reason.
. "$(dirname "$0")/lib.sh"
require_cmd curl openssl

BPORT=$(free_port)
start_demo_backend "$BPORT"
HELLO="hello from the tlsgate demo backend"

P_REQ=$(free_port)     # require + ca.pem + crl + allow cn:client1
P_OPT=$(free_port)     # optional
P_ACL=$(free_port)     # require + allow san:uri:client2, sha256:client1
P_DNS=$(free_port)     # require + allow san:dns:client2.test
P_DIR=$(free_port)     # require + ca-dir (second instance)

FP1=$(openssl x509 -in "$CERTS/client.pem" -outform DER | sha256sum | cut -d' ' -f1)

write_config mtls.ini <<EOF
$(global_section workers=1 log_level=debug)

[listener:req]
bind = 127.0.0.1:$P_REQ
secure = on
$SERVER_PFX
verify_client = require
client_ca = $CERTS/ca.pem
crl = $CERTS/crl.pem
allow_clients = cn:client1
backend = 127.0.0.1:$BPORT

[listener:opt]
bind = 127.0.0.1:$P_OPT
secure = on
$SERVER_PFX
verify_client = optional
client_ca = $CERTS/ca.pem
backend = 127.0.0.1:$BPORT

[listener:acl]
bind = 127.0.0.1:$P_ACL
secure = on
$SERVER_PFX
verify_client = require
client_ca = $CERTS/ca.pem
allow_clients = san:uri:spiffe://tlsgate.test/client2, sha256:$FP1
backend = 127.0.0.1:$BPORT

[listener:dns]
bind = 127.0.0.1:$P_DNS
secure = on
$SERVER_PFX
verify_client = require
client_ca = $CERTS/ca.pem
allow_clients = san:dns:client2.test
backend = 127.0.0.1:$BPORT
EOF
check_config "$CONFIG"; [ "$CHECK_RC" = 0 ] || fail "tlsgate -t mtls.ini: $CHECK_OUT"
start_tlsgate "$CONFIG"

# client_args NAME -- curl options presenting certs/NAME.pem + NAME.key ("none": no cert)
client_args() {
    [ "$1" = none ] && return
    printf '%s\n' --cert "$CERTS/$1.pem" --key "$CERTS/$1.key"
}

# accept_case LABEL PORT CLIENT [curl args...]
accept_case() {
    local label=$1 port=$2 client=$3; shift 3
    local body
    mapfile -t args < <(client_args "$client")
    body=$(curl -sS --max-time 10 --cacert "$CERTS/ca.pem" "${args[@]}" "$@" "https://localhost:$port/$label" 2>&1)
    grep -q "$HELLO" <<<"$body" && grep -q "path: /$label" <<<"$body" \
        || { error "$label: client '$client' on port $port should get through, got: $body"; return; }
    log "$label: client '$client' accepted"
}

# reject_case LABEL PORT CLIENT REASON_REGEX [curl args...] -- the request must fail and
# the log must get a line naming 127.0.0.1:<curl's port> with a failure and REASON_REGEX
reject_case() {
    local label=$1 port=$2 client=$3 reason=$4; shift 4
    local out lport lines end
    mapfile -t args < <(client_args "$client")
    log_mark
    out=$(curl -sS --max-time 10 -w '\nlocal_port=%{local_port}\n' --cacert "$CERTS/ca.pem" "${args[@]}" "$@" \
            "https://localhost:$port/$label" 2>&1)
    grep -q "$HELLO" <<<"$out" && { error "$label: client '$client' got through to the backend: $out"; return; }
    lport=$(sed -n 's/^local_port=//p' <<<"$out" | tail -n1)
    log "$label: client '$client' refused: $(grep -m1 '^curl' <<<"$out")"
    local who='127\.0\.0\.1'
    [ -n "$lport" ] && [ "$lport" != 0 ] && who="127\\.0\\.0\\.1:$lport([^0-9]|\$)"
    end=$(( $(now_ms) + 5000 ))
    while :; do
        lines=$(log_since | grep -aE -- "$who" | grep -aiE 'fail|denied|reject|refus|not allowed|forbidden|error|alert')
        [ -n "$lines" ] && grep -qiE -- "$reason" <<<"$lines" && break
        if [ "$(now_ms)" -ge "$end" ]; then
            echo "--- log since the attempt:"; log_since | tail -n 20
            if [ -z "$lines" ]; then error "$label: no log line names the rejected client /$who/"; return; fi
            error "$label: the log line about the rejected client does not give the reason /$reason/: $lines"; return
        fi
        sleep 0.05
    done
    printf '%s\n' "$lines" | head -n 3 | sed 's/^/    | /'
}

accept_case  req-client1   "$P_REQ" client
reject_case  req-nocert    "$P_REQ" none           'certificate required|no (client |peer )?certificate|did not return a certificate'
reject_case  req-nocert12  "$P_REQ" none           'certificate required|no (client |peer )?certificate|did not return a certificate' --tlsv1.2 --tls-max 1.2
reject_case  req-foreign   "$P_REQ" foreign-client 'unable to get (local )?issuer|unknown ca|issuer|untrusted|unable to verify'
reject_case  req-revoked   "$P_REQ" client-revoked 'revoked'
reject_case  req-expired   "$P_REQ" client-expired 'expired'
reject_case  req-client2   "$P_REQ" client2        'client2.*(allow|denied|not allowed|acl|forbidden|permit)|(allow|denied|not allowed|acl|forbidden|permit).*client2'
reject_case  req-client2-12 "$P_REQ" client2       'client2' --tlsv1.2 --tls-max 1.2
accept_case  req-client1-12 "$P_REQ" client --tlsv1.2 --tls-max 1.2

accept_case  opt-nocert    "$P_OPT" none
accept_case  opt-client1   "$P_OPT" client
reject_case  opt-foreign   "$P_OPT" foreign-client 'unable to get (local )?issuer|unknown ca|issuer|untrusted|unable to verify'

accept_case  acl-sha256    "$P_ACL" client
accept_case  acl-uri       "$P_ACL" client2
reject_case  acl-expired "$P_ACL" client-expired 'expired'
reject_case  dns-client1   "$P_DNS" client         'client1'
accept_case  dns-client2   "$P_DNS" client2

stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || fail "tlsgate exited $TLSGATE_RC on SIGTERM"

# --- client_ca as an OpenSSL hashed directory -----------------------------------------------
write_config cadir.ini <<EOF
$(global_section workers=1 log_level=debug)

[listener:cadir]
bind = 127.0.0.1:$P_DIR
secure = on
$SERVER_PFX
verify_client = require
client_ca = $CERTS/ca-dir
backend = 127.0.0.1:$BPORT
EOF
check_config "$CONFIG"; [ "$CHECK_RC" = 0 ] || fail "tlsgate -t cadir.ini: $CHECK_OUT"
start_tlsgate "$CONFIG"
accept_case  dir-client1   "$P_DIR" client
accept_case  dir-client2   "$P_DIR" client2
reject_case  dir-foreign   "$P_DIR" foreign-client 'unable to get (local )?issuer|unknown ca|issuer|untrusted|unable to verify'
reject_case  dir-nocert    "$P_DIR" none           'certificate required|no (client |peer )?certificate|did not return a certificate'
stop_tlsgate
finish
