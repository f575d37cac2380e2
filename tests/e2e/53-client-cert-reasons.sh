#!/usr/bin/env bash
# 53-client-cert-reasons: what 04-mtls does not cover about client
# certificates.
#  1. Six ways a client certificate is refused on one listener
#     (verify_client = require, client_ca, crl, allow_clients = cn:client1),
#     each with its own log reason -- the six reasons are pairwise distinct:
#       expired        client-expired.pem            "certificate has expired"
#       not-yet-valid  made here, valid from 2090    "certificate is not yet valid"
#       wrong-CA       foreign-client.pem            "unable to get local issuer certificate"
#       revoked        client-revoked.pem + crl.pem  "certificate revoked"
#       wrong-purpose  server.pem (EKU serverAuth only) as a client certificate
#                                    "unsupported (BoringSSL) / unsuitable (OpenSSL) certificate purpose"
#       ACL-denied     client2.pem                   "is not in allow_clients"
#     while client.pem (CN client1) gets through.
#  2. A client certificate is never vouched for on behalf of a
#     verify_client = none listener: its PROXY v2 header (to a backend that
#     decodes it) never has the "certificate presented" bits, a CN, or
#     verify = 0 -- not when the client has a certificate configured, and
#     not when the client offers a session (TLS 1.2 session id or TLS 1.3
#     ticket) from a verify_client = optional listener where that
#     certificate was verified. The optional listener's own header does say
#     verified (so the check can tell), and says not verified without one.
. "$(dirname "$0")/lib.sh"
require_cmd openssl

# --- a client certificate from the dev CA that is not valid before 2090 ----------------
ca_config 1000 "subjectAltName = DNS:future.test"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/future.key" 2>/dev/null &&
openssl req -new -key "$WORK/future.key" -subj "/CN=client1" -out "$WORK/future.csr" &&
openssl ca -batch -config "$WORK/ca.cnf" -cert "$CERTS/ca.pem" -keyfile "$CERTS/ca.key" -notext \
    -extensions leaf -startdate 20900101000000Z -enddate 20991231235959Z \
    -in "$WORK/future.csr" -out "$WORK/future.pem" 2>"$WORK/ca.err" ||
    fail "cannot make the not-yet-valid certificate: $(cat "$WORK/ca.err")"
# CN client1 on purpose: it would pass allow_clients, so only its dates can refuse it
openssl x509 -in "$CERTS/server.pem" -noout -ext extendedKeyUsage 2>/dev/null | grep >/dev/null -c 'TLS Web Server Authentication' ||
    fail "certs/server.pem is expected to carry EKU serverAuth"
openssl x509 -in "$CERTS/server.pem" -noout -ext extendedKeyUsage 2>/dev/null | grep >/dev/null -c 'Client Authentication' &&
    fail "certs/server.pem unexpectedly allows clientAuth"

# --- a backend that decodes the PROXY v2 header and answers with what it says -------------
write_py pp2backend <<'EOF'
import json, socket, struct, sys, threading
SIG = b"\r\n\r\n\x00\r\nQUIT\n"
def recv_exact(c, n):
    b = b""
    while len(b) < n:
        d = c.recv(n - len(b))
        if not d:
            raise EOFError
        b += d
    return b
def tlvs(data):
    out, i = [], 0
    while i + 3 <= len(data):
        t, l = data[i], struct.unpack(">H", data[i + 1:i + 3])[0]
        out.append((t, data[i + 3:i + 3 + l]))
        i += 3 + l
    return out
def handle(c):
    try:
        h = recv_exact(c, 16)
        info = {"sig_ok": h[:12] == SIG}
        body = recv_exact(c, struct.unpack(">H", h[14:16])[0])
        addrlen = {0x11: 12, 0x21: 36}.get(h[13], 0)
        for t, v in tlvs(body[addrlen:]):
            if t == 0x20:
                info["client"] = v[0]
                info["verify"] = struct.unpack(">I", v[1:5])[0]
                for st, sv in tlvs(v[5:]):
                    info[{0x21: "version", 0x22: "cn", 0x23: "cipher"}.get(st, "sub%x" % st)] = sv.decode("latin-1")
        c.sendall(json.dumps(info).encode() + b"\n")
        while c.recv(4096):
            pass
    except (OSError, EOFError):
        pass
    finally:
        c.close()
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1])))
ls.listen(64)
print("listening", flush=True)
while True:
    c, _ = ls.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
EOF
BPORT=$(free_port)
bg_start pp2backend "$PY" "$WORK/pp2backend.py" "$BPORT"
wait_listen "$BPORT" 10 "$BG_PID" || fail "PROXY v2 backend did not start: $(cat "$WORK/pp2backend.log")"

P_REQ=$(free_port)
P_NONE=$(free_port)
P_OPT=$(free_port)
common() {
    printf 'pfx = %s\npfx_password = file:%s\nbackend = 127.0.0.1:%s\nproxy_protocol = v2\n' \
        "$CERTS/server.pfx" "$CERTS/pfx-password" "$BPORT"
}
write_config certs.ini <<EOF
$(global_section workers=1 log_level=info drain_timeout=2s)

[listener:req]
bind = 127.0.0.1:$P_REQ
$(common)
verify_client = require
client_ca = $CERTS/ca.pem
crl = $CERTS/crl.pem
allow_clients = cn:client1

[listener:none]
bind = 127.0.0.1:$P_NONE
$(common)
verify_client = none

[listener:opt]
bind = 127.0.0.1:$P_OPT
$(common)
verify_client = optional
client_ca = $CERTS/ca.pem
EOF
start_tlsgate "$CONFIG"

"$PY" - "$P_REQ" "$P_NONE" "$P_OPT" "$WORK" <<'EOF' || fail "client certificate checks failed (see above)"
import json, os, ssl, sys
import e2elib

p_req, p_none, p_opt, work = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
failed = False
def check(cond, what):
    global failed
    print(("ok: " if cond else "FAILED: ") + what, flush=True)
    failed |= not cond

def ctx(cert=None, key=None, version=None):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.load_verify_locations(e2elib.cert("ca.pem"))
    if cert:
        c.load_cert_chain(cert, key)
    if version == "1.2":
        c.maximum_version = ssl.TLSVersion.TLSv1_2
    return c

def pp2(port, c, session=None):
    """Connects, returns (PROXY v2 info from the backend, session, reused)."""
    s = c.wrap_socket(e2elib.tcp_connect(port), server_hostname="localhost", session=session)
    line = b""
    while not line.endswith(b"\n"):
        d = s.recv(4096)
        if not d:
            break
        line += d
    info = json.loads(line or b"{}")
    sess, reused = s.session, s.session_reused
    s.close()
    return info, sess, reused

# 1. six refusals
C = lambda n: (e2elib.cert(n + ".pem"), e2elib.cert(n + ".key"))
cases = {
    "expired": C("client-expired"),
    "not-yet-valid": (os.path.join(work, "future.pem"), os.path.join(work, "future.key")),
    "wrong-CA": C("foreign-client"),
    "revoked": C("client-revoked"),
    "wrong-purpose": C("server"),
    "ACL-denied": C("client2"),
}
with open(os.path.join(work, "ports"), "w") as f:
    for name, (cert, key) in cases.items():
        for version in ("1.2", None):
            raw = e2elib.tcp_connect(p_req)
            f.write("%s %d\n" % (name, raw.getsockname()[1]))
            f.flush()
            try:
                s = ctx(cert, key, version).wrap_socket(raw, server_hostname="localhost")
                s.sendall(b"x")
                got = s.recv(4096)      # TLS 1.3: the refusal arrives after the handshake
                check(not got, "%s (TLS %s): refused (got %r)" % (name, version or "1.3", got[:40]))
            except (ssl.SSLError, OSError) as e:
                check(True, "%s (TLS %s): refused (%s)" % (name, version or "1.3", e.__class__.__name__))
            raw.close()
info, _, _ = pp2(p_req, ctx(*C("client")))
check(info.get("verify") == 0 and info.get("cn") == "client1",
      "client1 gets through the same listener, verified (%s)" % info)

# 2. never "verified" on behalf of verify_client = none
for version in ("1.2", None):
    tag = "TLS " + (version or "1.3")
    c = ctx(*C("client"), version=version)      # one context: sessions move between listeners
    info, _, _ = pp2(p_none, c)
    check(info.get("sig_ok") and "client" in info, "%s none: PROXY v2 with an SSL TLV (%s)" % (tag, info))
    check(info.get("verify", 0) != 0 and not info.get("client", 0) & 0x06 and "cn" not in info,
          "%s none + client cert configured: not presented, not verified, no CN (%s)" % (tag, info))
    info, sess, _ = pp2(p_opt, c)
    check(info.get("verify") == 0 and info.get("client", 0) & 0x06 and info.get("cn") == "client1",
          "%s optional + client1: verified with CN (%s)" % (tag, info))
    check(sess is not None, "%s optional: the client got a session to offer" % tag)
    info2, _, reused2 = pp2(p_opt, c, session=sess)
    print("   %s optional again with that session: resumed=%s, %s" % (tag, reused2, info2), flush=True)
    info3, _, reused3 = pp2(p_none, c, session=sess)
    check(info3.get("verify", 0) != 0 and not info3.get("client", 0) & 0x06 and "cn" not in info3,
          "%s none + the session from the optional listener (resumed=%s): not verified (%s)"
          % (tag, reused3, info3))
    info, _, _ = pp2(p_opt, ctx(version=version))
    check(info.get("verify", 0) != 0 and not info.get("client", 0) & 0x06,
          "%s optional without a certificate: not verified (%s)" % (tag, info))
sys.exit(1 if failed else 0)
EOF

# every refusal has its own reason, and the six reasons differ
declare -A WANT=(
    [expired]='certificate has expired'
    [not-yet-valid]='certificate is not yet valid'
    [wrong-CA]='unable to get local issuer certificate'
    [revoked]='certificate revoked'
    [wrong-purpose]='un(supported|suitable) certificate purpose'
    [ACL-denied]='is not in allow_clients'
)
declare -A SEEN=()
while read -r name port; do
    assert_log_contains "client 127\\.0\\.0\\.1:$port on req: close: " 5 >/dev/null
    line=$(grep -a "client 127\\.0\\.0\\.1:$port on req: close: " "$TLSGATE_LOG" | head -n1)
    reason=${line#*close: handshake failed: }
    reason=${reason%%; backend*}
    if [ "$reason" = "$line" ]; then
        error "$name (port $port): not a handshake failure: $line"
    elif ! grep -qiE -- "${WANT[$name]}" <<<"$reason"; then
        error "$name (port $port): reason does not say '${WANT[$name]}': $reason"
    fi
    # the class of the reason: the text before the certificate details
    SEEN[$name]=${reason%% (*}
    log "$name: $reason"
done <"$WORK/ports"
for a in "${!SEEN[@]}"; do
    for b in "${!SEEN[@]}"; do
        [ "$a" \< "$b" ] && [ "${SEEN[$a]}" = "${SEEN[$b]}" ] &&
            error "$a and $b are refused with the same reason: ${SEEN[$a]}"
    done
done
[ "${#SEEN[@]}" = 6 ] || error "expected 6 distinct cases, saw ${#SEEN[@]}"
is_alive "$TLSGATE_PID" || fail "tlsgate died"
stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || fail "tlsgate exited $TLSGATE_RC on SIGTERM"
finish
