#!/usr/bin/env bash
# 69-log-injection: a client certificate whose CN holds a newline and a
# forged log line cannot forge lines in tlsgate's log.  Text logs escape
# control and non-ASCII bytes as \xNN; JSON logs stay one valid object per
# line with the CN intact inside the string.  The CN reaches the log three
# ways: an ACL refusal (CA-signed certificate), a verification failure
# (self-signed, "unverified client certificate inside a failure reason"),
# and a successful handshake's peer description; client1 is the control.
. "$(dirname "$0")/lib.sh"
require_cmd openssl

FORGED='2026-01-01T00:00:00.000Z info  [1] client 10.9.9.9: FORGED'
CN=$'evil\n'"$FORGED"
# CN is at most 64 characters
[ "${#CN}" -le 64 ] || fail "test CN too long (${#CN})"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/evil.key" 2>/dev/null ||
    fail "cannot make a key"
openssl req -new -key "$WORK/evil.key" -subj "/CN=$CN" -out "$WORK/evil.csr" 2>"$WORK/req.err" ||
    fail "cannot make the CSR: $(cat "$WORK/req.err")"
printf 'extendedKeyUsage = clientAuth\n' >"$WORK/ext.cnf"
openssl x509 -req -in "$WORK/evil.csr" -CA "$CERTS/ca.pem" -CAkey "$CERTS/ca.key" -days 2 \
    -extfile "$WORK/ext.cnf" -out "$WORK/evil.pem" 2>"$WORK/x509.err" ||
    fail "cannot sign the certificate: $(cat "$WORK/x509.err")"
openssl req -x509 -key "$WORK/evil.key" -subj "/CN=$CN" -days 2 -out "$WORK/evil-self.pem" 2>"$WORK/self.err" ||
    fail "cannot make the self-signed certificate: $(cat "$WORK/self.err")"
openssl x509 -in "$WORK/evil.pem" -noout -subject -nameopt RFC2253 | grep >/dev/null -c 'evil\\0AZ\|evil\\0A2026' ||
    log "note: subject is $(openssl x509 -in "$WORK/evil.pem" -noout -subject -nameopt RFC2253)"

EPORT=$(free_port)
start_echo "$EPORT"

# run_case FORMAT -- one tlsgate with log_format FORMAT, four clients
run_case() {
    local fmt=$1 acl opt
    acl=$(free_port); opt=$(free_port)
    write_config "log-$fmt.ini" <<EOF
$(global_section workers=1 log_level=info log_format=$fmt)

[listener:acl]
bind = 127.0.0.1:$acl
$SERVER_PFX
verify_client = require
client_ca = $CERTS/ca.pem
allow_clients = cn:client1
backend = 127.0.0.1:$EPORT

[listener:opt]
bind = 127.0.0.1:$opt
$SERVER_PFX
verify_client = optional
client_ca = $CERTS/ca.pem
backend = 127.0.0.1:$EPORT
EOF
    start_tlsgate "$CONFIG"
    "$PY" - "$acl" "$opt" "$WORK" <<'EOF' || error "$fmt: clients did not behave as expected"
import ssl, sys
import e2elib
acl, opt, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def attempt(port, cert, key):
    try:
        s = e2elib.tls_connect(port, certfile=cert, keyfile=key, timeout=5)
        s.sendall(b"ping")
        ok = e2elib.recv_exact(s, 4) == b"ping"
        s.close()
        return ok
    except (OSError, EOFError, ssl.SSLError):
        return False
bad = 0
for name, port, cert, key, want in [
        ("client1 (control)", acl, "client.pem", "client.key", True),
        ("evil CN, CA-signed, not in allow_clients", acl, work + "/evil.pem", work + "/evil.key", False),
        ("evil CN, self-signed", acl, work + "/evil-self.pem", work + "/evil.key", False),
        ("evil CN, CA-signed, verify_client = optional", opt, work + "/evil.pem", work + "/evil.key", True)]:
    got = attempt(port, cert, key)
    print("%s: %s" % (name, "accepted" if got else "refused"), flush=True)
    bad += got != want
sys.exit(1 if bad else 0)
EOF
    stop_tlsgate
}

run_case text
TEXT_LOG=$TLSGATE_LOG
if grep -naE '^(2026-01-01T00:00:00\.000Z|.*FORGED)' "$TEXT_LOG" | grep -v 'evil\\x0a' >"$WORK/forged.txt"; then
    error "text log has forged lines: $(head -3 "$WORK/forged.txt")"
fi
n=$(grep -cF "CN=evil\\x0a$FORGED" "$TEXT_LOG")
log "text log: $n lines carry the escaped CN"
[ "$n" -ge 3 ] || error "text log: expected the escaped CN in the ACL refusal, the verify failure and the handshake line, found $n"
grep -qF "not in allow_clients" <(grep -F "CN=evil\\x0a" "$TEXT_LOG") || error "text log: no escaped CN in the ACL refusal"
grep -qF "certificate verify failed" <(grep -F "CN=evil\\x0a" "$TEXT_LOG") || error "text log: no escaped CN in the verification failure"
grep -q "on acl: handshake: .*CN=client1" "$TEXT_LOG" || error "text log: the control client1 was not logged"
if LC_ALL=C grep -naP '[\x00-\x08\x0b-\x1f\x7f-\xff]' "$TEXT_LOG" >"$WORK/raw.txt"; then
    error "text log has raw control or non-ASCII bytes: $(head -2 "$WORK/raw.txt")"
fi

run_case json
"$PY" - "$TLSGATE_LOG" "$CN" <<'EOF' || error "json log check failed"
import json, sys
path, cn = sys.argv[1], sys.argv[2]
n = found = 0
for i, line in enumerate(open(path, "rb").read().decode("utf-8").splitlines(), 1):
    if not line.startswith("{"):
        continue        # sanitizer or startup noise is not ours to parse
    n += 1
    try:
        obj = json.loads(line)
    except ValueError as e:
        print("line %d is not JSON: %s: %r" % (i, e, line[:120])); sys.exit(1)
    if ("CN=" + cn) in obj.get("msg", ""):
        found += 1
print("json log: %d lines, all valid; %d carry the CN with its newline intact" % (n, found))
sys.exit(0 if found >= 3 else 1)
EOF
finish
