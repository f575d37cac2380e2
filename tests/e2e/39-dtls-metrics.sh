#!/usr/bin/env bash
# 39-dtls-metrics: the Prometheus endpoint reports a UDP listener's traffic:
# associations, handshakes, datagrams dropped without reply (garbage, short,
# not a ClientHello) and, on the OpenSSL build, HelloVerifyRequests and
# cookie verdicts (BoringSSL: none, cookies are off there).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/dtls-helpers.sh"
require_cmd openssl curl

EPORT=$(free_port udp); DPORT=$(free_port udp); MPORT=$(free_port)
start_udp_echo "$EPORT"
write_config dm.ini <<EOF
$(global_section workers=1 log_level=info metrics=127.0.0.1:$MPORT)

[listener:coap]
bind = 127.0.0.1:$DPORT
transport = udp
$SERVER_PFX
backend = 127.0.0.1:$EPORT
EOF
start_tlsgate "$CONFIG" "$MPORT"
wait_running

"$PY" - "$DPORT" <<'EOF' || fail "DTLS traffic failed"
import socket, sys
import dtlslib as d
port = int(sys.argv[1])
c = d.s_client(port, "-CAfile", d.cert("ca.pem"))
got = c.roundtrip(["one", "two"])
c.close()
assert got == ["one", "two"], got
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for dgram in (b"x", b"GET / HTTP/1.1\r\n\r\n" * 3,           # short, garbage
              bytes([23, 0xfe, 0xfd]) + bytes(10) + b"\x00\x05hello"):  # a record from a stranger
    s.sendto(dgram, ("127.0.0.1", port))
print("ok: traffic sent")
EOF

metric() { curl -s --max-time 5 "http://127.0.0.1:$MPORT/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }
expect() {  # expect NAME OP VALUE
    local got t
    for t in $(seq 50); do
        got=$(metric "$1")
        [ -n "$got" ] && [ "$got" "$2" "$3" ] && { log "ok: $1 = $got"; return; }
        sleep 0.1
    done
    error "$1 = '$got', wanted $2 $3"
}
expect 'tlsgate_connections_total{listener="coap"}' -eq 1
expect 'tlsgate_handshakes_total{listener="coap",result="ok"}' -eq 1
expect 'tlsgate_udp_dropped_total{listener="coap"}' -eq 3
if [ "$TG_LIB" = OpenSSL ]; then
    expect 'tlsgate_dtls_hello_verify_total{listener="coap"}' -ge 1
    expect 'tlsgate_dtls_cookies_total{listener="coap",result="ok"}' -ge 1
else
    expect 'tlsgate_dtls_hello_verify_total{listener="coap"}' -eq 0
fi
expect 'tlsgate_dtls_half_open_refused_total{listener="coap"}' -eq 0
finish
