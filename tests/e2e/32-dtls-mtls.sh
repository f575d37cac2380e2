#!/usr/bin/env bash
# 32-dtls-mtls: client certificates over DTLS work as over TLS (the same
# verify callback and allow_clients ACL). verify_client = require: no
# certificate is refused with "certificate required", client1 (in
# allow_clients) gets its echoes, client2 (same CA, not in the ACL) and a
# client of a foreign CA are refused with the reason logged.
# verify_client = optional on a second listener admits a client without one.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/dtls-helpers.sh"
require_cmd openssl

EPORT=$(free_port udp)
RPORT=$(free_port udp)
OPORT=$(free_port udp)
start_udp_echo "$EPORT"
write_config mtls.ini <<EOF
$(global_section workers=1 log_level=info)

[listener:require]
bind = 127.0.0.1:$RPORT
transport = udp
$SERVER_PFX
verify_client = require
client_ca = $CERTS/ca.pem
allow_clients = cn:client1
backend = 127.0.0.1:$EPORT

[listener:optional]
bind = 127.0.0.1:$OPORT
transport = udp
$SERVER_PFX
verify_client = optional
client_ca = $CERTS/ca.pem
backend = 127.0.0.1:$EPORT
EOF
start_tlsgate "$CONFIG"
wait_running

"$PY" - "$RPORT" "$OPORT" <<'EOF' || fail "DTLS client certificate checks failed"
import sys
import dtlslib as d

rport, oport = int(sys.argv[1]), int(sys.argv[2])
ca = d.cert("ca.pem")
failed = []

def attempt(name, port, want_echo, *extra):
    c = d.s_client(port, "-CAfile", ca, *extra)
    got = c.roundtrip([name], timeout=4 if not want_echo else 10)
    c.close()
    ok = bool(got) == want_echo
    print("%s: %s: %s" % ("ok" if ok else "FAILED", name,
          "echoed" if got else "refused"), flush=True)
    if not ok:
        failed.append(name)
        print(c.text()[-800:], flush=True)

attempt("no-certificate", rport, False)
attempt("client1", rport, True, "-cert", d.cert("client.pem"), "-key", d.cert("client.key"))
attempt("client2-not-allowed", rport, False, "-cert", d.cert("client2.pem"), "-key", d.cert("client2.key"))
attempt("foreign-ca", rport, False, "-cert", d.cert("foreign-client.pem"), "-key", d.cert("foreign-client.key"))
attempt("optional-without", oport, True)
attempt("optional-with", oport, True, "-cert", d.cert("client.pem"), "-key", d.cert("client.key"))
sys.exit(1 if failed else 0)
EOF

assert_log_contains "on require: close: handshake failed: certificate required"
assert_log_contains "on require: handshake: DTLSv1.2 .*peer CN=client1"
assert_log_contains "on require: close: handshake failed: client certificate CN=client2.* is not in allow_clients"
assert_log_contains "on require: close: handshake failed: certificate verify failed"
assert_log_contains "on optional: handshake: DTLSv1.2 .*peer CN=client1"
stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || fail "tlsgate exited $TLSGATE_RC on SIGTERM"
log "ok"
