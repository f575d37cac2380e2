#!/usr/bin/env bash
# e2e: long timeout=300
# 21-browser-client-cert-proxy: use case 2 with a real browser. A "remote" tlsgate (the
# use-case-1 front plus verify_client = require, client_ca, proxy_protocol = v2) guards a
# ws:// echo server that parses PROXY v2 and reports the client CN from the SSL TLV. A local
# tlsgate runs config/client-cert-proxy.ini (plaintext listener, TLS + certs/client.pfx to
# the remote). Headless Chromium (dev CA trusted through NSS, no client certificate of its
# own) loads the page from http://127.0.0.1:LOCAL/ and gets byte-exact echoes over
# ws://127.0.0.1:LOCAL/echo; the backend reports CN=client1 to the page (whoami) and in
# its log, the remote logs "peer CN=client1". The same page served over https:// by another
# site (a use-case-1 front) may use ws://127.0.0.1:LOCAL (loopback is no mixed content), but
# opening wss:// straight to the remote is refused for want of a client certificate, and that
# attempt never reaches the backend. Node `ws` through the local proxy and straight to the
# remote: same outcome.
. "$(dirname "$0")/lib.sh"
. "$ROOT/tests/browser/lib-browser.sh"
ensure_chromium

BPORT=$(free_port)   # ws echo backend (expects PROXY v2)
RPORT=$(free_port)   # remote tlsgate: wss://, client certificate required
LPORT=$(free_port)   # local tlsgate: ws:// on loopback
SBPORT=$(free_port)  # another web site's plaintext server (serves the same page) ...
SPORT=$(free_port)   # ... behind its own https:// front
start_node_echo "$BPORT" --proxy-v2 backend
BLOG=$WORK/backend.log
start_node_echo "$SBPORT" site-backend

# the remote: use case 1 with client certificates required (appended to its listener section)
use_case_config wss-front.ini remote.ini "127.0.0.1:8443=127.0.0.1:$RPORT" "127.0.0.1:8080=127.0.0.1:$BPORT"
cat >>"$WORK/remote.ini" <<'EOF'
verify_client = require
client_ca = certs/ca.pem
proxy_protocol = v2
EOF
use_case_config wss-front.ini site.ini "127.0.0.1:8443=127.0.0.1:$SPORT" "127.0.0.1:8080=127.0.0.1:$SBPORT"
use_case_config client-cert-proxy.ini local.ini "127.0.0.1:8081=127.0.0.1:$LPORT" "127.0.0.1:9443=127.0.0.1:$RPORT"
# the other site's pages may use the local proxy (protocol = http guard, on by default here;
# pages from any other origin get 403: tests/e2e/78-browser-http-guard.sh)
echo "allow_origins = https://localhost:$SPORT" >>"$WORK/local.ini"
log "local proxy config (config/client-cert-proxy.ini, ports moved):"
grep -vE '^[[:space:]]*(;|$)' "$WORK/local.ini" | sed 's/^/    | /'

check_shipped_config client-cert-proxy.ini
[ "$CHECK_RC" = 0 ] || fail "tlsgate -t config/client-cert-proxy.ini (as shipped): $CHECK_OUT"
for f in remote.ini local.ini site.ini; do
    check_config "$WORK/$f"; [ "$CHECK_RC" = 0 ] || fail "tlsgate -t $f: $CHECK_OUT"
done
start_tlsgate "$WORK/remote.ini"; REMOTE_LOG=$TLSGATE_LOG; REMOTE_PID=$TLSGATE_PID
start_tlsgate "$WORK/local.ini"; LOCAL_LOG=$TLSGATE_LOG; LOCAL_PID=$TLSGATE_PID
start_tlsgate "$WORK/site.ini"; SITE_PID=$TLSGATE_PID

# --- the browser: plain ws:// to the local proxy ----------------------------------------------------
nss_trust_ca "$WORK/chromium"
run_browser chromium --page "http://127.0.0.1:$LPORT/" \
    --echo "ws://127.0.0.1:$LPORT/echo" --whoami "ws://127.0.0.1:$LPORT/whoami" \
    || error "Chromium: echoes through the local client-certificate proxy"

# what the backend told the page about the connection (PROXY v2 from the remote tlsgate)
node -e '
const r = require(process.argv[1]);
const w = r.whoami && r.whoami.info && r.whoami.info.proxy;
const ssl = w && w.ssl;
const ok = !!ssl && ssl.cn === "client1" && ssl.client_cert_conn === true && ssl.verify === 0 && /^TLSv1\.[23]$/.test(ssl.version);
console.log((ok ? "ok" : "FAILED") + ": the page learned from the backend that the remote saw CN=" + (ssl && ssl.cn) +
            " (certificate " + (ssl && ssl.client_cert_conn) + ", verify " + (ssl && ssl.verify) + ", " + (ssl && ssl.version) + ")");
process.exit(ok ? 0 : 1);' "$WORK/chromium.json" || error "whoami through the local proxy did not report CN=client1"

# the remote tlsgate: client1 for the proxied connections, no certificate for the browser's direct try
assert_file_contains "$REMOTE_LOG" 'handshake: TLSv1\.3 .*peer CN=client1' "remote tlsgate saw the client1 identity"
# the backend: every connection it accepted carried CN=client1 (the refused one never arrived)
assert_file_contains "$BLOG" 'accepted .*proxy-v2 .*tls=TLSv1\.3 .*cn=client1 cert=yes verify=0' "backend got PROXY v2 with CN=client1"
if grep 'accepted' "$BLOG" | grep >/dev/null -cv 'cn=client1 cert=yes verify=0'; then
    error "backend accepted a connection without the client1 identity: $(grep accepted "$BLOG" | grep -v 'cn=client1')"
fi
assert_file_contains "$BLOG" 'WebSocket /echo origin=http://127\.0\.0\.1:'"$LPORT" "backend got the page's WebSocket (origin http://127.0.0.1:$LPORT)"
assert_file_contains "$BLOG" 'echoed binary message #[0-9]+, 1048576 bytes' "backend echoed the 1 MiB binary message"
assert_file_contains "$LOCAL_LOG" 'backend: connected to 127\.0\.0\.1:'"$RPORT" "local tlsgate connected to the remote"

# --- the page served over https:// by another site: the local proxy works, the remote does not ---
# (an https:// page may open ws://127.0.0.1: loopback is a secure context, no mixed content.
# The CA is trusted, so the only thing missing on the direct wss:// is the client certificate;
# Chromium answers the certificate request by giving up the handshake.)
TLSGATE_LOG=$REMOTE_LOG; log_mark
nss_trust_ca "$WORK/chromium-site"
run_browser chromium-site --page "https://localhost:$SPORT/" --issuer "tlsgate dev CA" \
    --echo "ws://127.0.0.1:$LPORT/echo" --refused "wss://localhost:$RPORT/echo" \
    || error "Chromium, page from https://localhost:$SPORT/: local proxy usable, wss:// straight to the remote refused"
assert_file_contains "$BLOG" 'WebSocket /echo origin=https://localhost:'"$SPORT" \
    "backend got the WebSocket of the https:// page through the local proxy (origin https://localhost:$SPORT)"
assert_log_contains 'close: (handshake failed: certificate required|client closed the connection during the TLS handshake)' 5 --since-mark
if log_since | grep >/dev/null -ciE 'handshake failed: .*(unknown.ca|bad.certificate|certificate.unknown)'; then
    error "remote: the browser's direct attempt failed for another reason: $(log_since | grep -i 'handshake failed' | head -n 2)"
fi

# --- Node ws: the same through the local proxy (no TLS code in the client); direct: refused ------
run_ws_client node-ws-local "ws://127.0.0.1:$LPORT/echo" || error "Node ws client through the local proxy"
log_mark
run_ws_client node-ws-direct "wss://localhost:$RPORT/echo" --ca "$CERTS/ca.pem" --expect-refused \
    || error "Node ws client without a certificate straight to the remote was not refused"
assert_log_contains 'handshake failed: certificate required' 5 --since-mark
if grep 'accepted' "$BLOG" | grep >/dev/null -cv 'cn=client1 cert=yes verify=0'; then
    error "backend accepted a connection without the client1 identity"
fi

stop_pid "$SITE_PID"
TLSGATE_PID=$LOCAL_PID; TLSGATE_LOG=$LOCAL_LOG; stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || error "local tlsgate exited $TLSGATE_RC on SIGTERM"
TLSGATE_PID=$REMOTE_PID; TLSGATE_LOG=$REMOTE_LOG; stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || error "remote tlsgate exited $TLSGATE_RC on SIGTERM"
finish
