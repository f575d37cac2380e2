#!/usr/bin/env bash
# 14-metrics: the Prometheus endpoint reports exactly the traffic this test
# generated: connections, handshakes by result (ok, no client certificate,
# not in allow_clients), TLS versions, bytes each way, backend failures and
# state, certificate expiry, and reloads by result.
. "$(dirname "$0")/lib.sh"
require_cmd curl

BPORT=$(free_port); DEAD=$(free_port); MPORT=$(free_port)
WEB=$(free_port); MTLS=$(free_port)
start_echo "$BPORT"
write_config metrics.ini <<EOF
$(global_section workers=2 log_level=info metrics=127.0.0.1:$MPORT)

[listener:web]
bind = 127.0.0.1:$WEB
$SERVER_PFX
backend = 127.0.0.1:$DEAD, 127.0.0.1:$BPORT

[listener:mtls]
bind = 127.0.0.1:$MTLS
$SERVER_PFX
verify_client = require
client_ca = $CERTS/ca.pem
allow_clients = cn:client1
backend = 127.0.0.1:$BPORT
EOF
start_tlsgate "$CONFIG" "$WEB" "$MTLS" "$MPORT"

"$PY" - "$WEB" "$MTLS" <<'EOF' || fail "traffic failed"
import ssl, sys, e2elib
web, mtls = int(sys.argv[1]), int(sys.argv[2])
# 3 connections on web: two TLS 1.3, one TLS 1.2; 1000 bytes each way each
for v in ("1.3", "1.3", "1.2"):
    s = e2elib.tls_connect(web, version=v)
    s.sendall(b"x" * 1000)
    assert e2elib.recv_exact(s, 1000) == b"x" * 1000
    s.close()
# mtls: one accepted, one without a certificate, one not in allow_clients
s = e2elib.tls_connect(mtls, certfile="client.pem", keyfile="client.key")
s.sendall(b"y"); assert e2elib.recv_exact(s, 1) == b"y"; s.close()
for kw in ({}, {"certfile": "client2.pem", "keyfile": "client2.key"}):
    try:
        s = e2elib.tls_connect(mtls, **kw)
        s.sendall(b"z"); s.recv(1)
    except (ssl.SSLError, OSError):
        pass
print("traffic done")
EOF

scrape() { curl -s --max-time 5 "http://127.0.0.1:$MPORT/metrics"; }
metric() {  # metric 'name{labels}' -> value (waits until the counters settle)
    scrape | awk -v k="$1" '$1 == k { print $2 }'
}
expect() {  # expect 'name{labels}' VALUE
    local got t
    for t in $(seq 50); do
        got=$(metric "$1")
        [ "$got" = "$2" ] && { log "ok: $1 = $got"; return; }
        sleep 0.1
    done
    error "$1 = '${got}', wanted $2"
}
expect 'tlsgate_connections_total{listener="web"}' 3
expect 'tlsgate_connections_active{listener="web"}' 0
expect 'tlsgate_handshakes_total{listener="web",result="ok"}' 3
expect 'tlsgate_tls_version_total{listener="web",version="TLSv1.3"}' 2
expect 'tlsgate_tls_version_total{listener="web",version="TLSv1.2"}' 1
expect 'tlsgate_bytes_total{listener="web",from="client"}' 3000
expect 'tlsgate_bytes_total{listener="web",from="backend"}' 3000
expect 'tlsgate_connections_total{listener="mtls"}' 3
expect 'tlsgate_handshakes_total{listener="mtls",result="ok"}' 1
expect 'tlsgate_handshakes_total{listener="mtls",result="no_client_certificate"}' 1
expect 'tlsgate_handshakes_total{listener="mtls",result="not_in_allow_clients"}' 1
expect "tlsgate_backend_up{listener=\"web\",backend=\"127.0.0.1:$BPORT\"}" 1
dead_failures=$(metric "tlsgate_backend_failures_total{listener=\"web\",backend=\"127.0.0.1:$DEAD\"}")
[ "${dead_failures:-0}" -ge 1 ] && log "ok: dead backend failures = $dead_failures" || error "dead backend failures not counted ($dead_failures)"
expiry=$(metric 'tlsgate_certificate_expiry_seconds{listener="web"}')
want=$(date -d "$(openssl x509 -in "$CERTS/server.pem" -noout -enddate | cut -d= -f2)" +%s)
[ -n "$expiry" ] && [ $(( expiry - want )) -le 2 ] && [ $(( want - expiry )) -le 2 ] \
    && log "ok: certificate expiry $expiry" || error "certificate expiry $expiry, wanted $want"
page=$(scrape)  # not piped into grep -q: an early exit would SIGPIPE curl under pipefail
grep -q '^tlsgate_tls_cipher_total{listener="web",cipher="TLS_AES' <<<"$page" || error "no TLS 1.3 cipher counted"

# reloads: one rejected, one good
cp "$CONFIG" "$WORK/good.ini"
echo "bogus line" >> "$CONFIG"
kill -HUP "$TLSGATE_PID"
expect 'tlsgate_reloads_total{result="failed"}' 1
expect 'tlsgate_last_reload_ok' 0
cp "$WORK/good.ini" "$CONFIG"
kill -HUP "$TLSGATE_PID"
expect 'tlsgate_reloads_total{result="ok"}' 1
expect 'tlsgate_last_reload_ok' 1
expect 'tlsgate_config_generation' 2
# counters survive the reload
expect 'tlsgate_connections_total{listener="web"}' 3
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MPORT/nope")
[ "$code" = 404 ] || error "GET /nope answered $code, wanted 404"
n=$(scrape | grep -c '^# TYPE')
[ "$n" -ge 15 ] || error "only $n metric families"
finish
