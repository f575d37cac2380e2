#!/usr/bin/env bash
# 38-dtls-configs: the example configs config/dtls-*.ini pass `tlsgate -t`
# as shipped (in a copy of the tree's layout, checked from another
# directory: their ../certs/ paths resolve against the config's directory),
# and config/dtls-coap.ini and config/dtls-udp-relay.ini work as written
# with only their ports (and the certs directory) changed.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/dtls-helpers.sh"
require_cmd openssl

n=0
mkdir -p "$WORK/shipped/config" && ln -s "$CERTS" "$WORK/shipped/certs"
for f in "$ROOT"/config/dtls-*.ini; do
    n=$((n + 1))
    # unchanged, next to a certs link to the test certificates (not $ROOT/certs)
    cp "$f" "$WORK/shipped/config/"
    check_config "$WORK/shipped/config/$(basename "$f")"
    [ "$CHECK_RC" = 0 ] || fail "$(basename "$f"): tlsgate -t failed: $CHECK_OUT"
    log "$(basename "$f"): $(printf '%s' "$CHECK_OUT" | tail -n1 | cut -c1-160)"
done
[ "$n" -ge 4 ] || fail "expected at least 4 config/dtls-*.ini files, found $n"

# dtls-coap.ini with free ports
EPORT=$(free_port udp); CPORT=$(free_port udp)
start_udp_echo "$EPORT"
sed -e "s#\.\./certs/#$CERTS/#g" -e "s#^bind = 127.0.0.1:5684#bind = 127.0.0.1:$CPORT#" \
    -e "s#^backend = 127.0.0.1:5683#backend = 127.0.0.1:$EPORT#" -e "s#^workers = auto#workers = 1#" \
    "$ROOT/config/dtls-coap.ini" >"$WORK/coap-live.ini"
grep -q "127.0.0.1:$CPORT" "$WORK/coap-live.ini" || fail "could not rewrite the bind of dtls-coap.ini"
start_tlsgate "$WORK/coap-live.ini"
wait_running
"$PY" - "$CPORT" <<'EOF' || fail "dtls-coap.ini does not work as documented"
import sys
import dtlslib as d
port = int(sys.argv[1])
bad = 0
for name, c in (("certificate", d.s_client(port, "-CAfile", d.cert("ca.pem"), "-verify_return_error")),
                ("psk", d.s_client(port, "-psk", d.psk_key(), "-psk_identity", "client1", "-cipher", "PSK")),
                ("gnutls", d.gnutls_cli(port, "--x509cafile", d.cert("ca.pem")))):
    got = c.roundtrip(["coap-%s-1" % name, "coap-%s-2" % name])
    c.close()
    print("%s: dtls-coap.ini with %s" % ("ok" if len(got) == 2 else "FAILED", name), flush=True)
    bad += len(got) != 2
sys.exit(1 if bad else 0)
EOF
stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || fail "tlsgate exited $TLSGATE_RC"

# dtls-udp-relay.ini: first backend dead, second the echo
RPORT=$(free_port udp); DEAD=$(free_port udp)
sed -e "s#^bind = 127.0.0.1:9053#bind = 127.0.0.1:$RPORT#" \
    -e "s#^backend = .*#backend = 127.0.0.1:$DEAD, 127.0.0.1:$EPORT#" \
    -e "s#^workers = auto#workers = 1\ndrain_timeout = 1s  ; UDP associations live on while draining#" \
    "$ROOT/config/dtls-udp-relay.ini" >"$WORK/relay-live.ini"
start_tlsgate "$WORK/relay-live.ini"
wait_running
"$PY" - "$RPORT" <<'EOF' || fail "dtls-udp-relay.ini does not relay"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.5)
for k in range(20):
    s.sendto(b"relay-%d" % k, ("127.0.0.1", int(sys.argv[1])))
    try:
        if s.recvfrom(100)[0] == b"relay-%d" % k:
            print("ok: dtls-udp-relay.ini relays (after %d tries)" % (k + 1)); sys.exit(0)
    except socket.timeout:
        pass
sys.exit(1)
EOF
stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || fail "tlsgate exited $TLSGATE_RC"
log "ok"
