#!/usr/bin/env bash
# e2e: long timeout=300
# 20-browser-wss-front: use case 1 with a real browser. tlsgate runs config/wss-front.ini
# (ports moved to free ones) in front of a plaintext HTTP + ws:// echo server (Node `ws`,
# tests/browser/echo-server.js). Headless Chromium, driven by playwright-core, trusts the
# dev CA through an NSS database in its own $HOME (no certificate errors ignored), loads
# https://localhost:PORT/ through tlsgate and opens wss:// to the echo: the page's JS checks
# text and binary echoes byte-exact. A second profile without the CA must get
# ERR_CERT_AUTHORITY_INVALID (the trust really comes from the NSS database). Node `ws` as a
# second client, and tlsgate's and the backend's logs show what went through.
. "$(dirname "$0")/lib.sh"
. "$ROOT/tests/browser/lib-browser.sh"
ensure_chromium

BPORT=$(free_port)
LPORT=$(free_port)
start_node_echo "$BPORT"

use_case_config wss-front.ini wss.ini "127.0.0.1:8443=127.0.0.1:$LPORT" "127.0.0.1:8080=127.0.0.1:$BPORT"
check_shipped_config wss-front.ini
[ "$CHECK_RC" = 0 ] || fail "tlsgate -t config/wss-front.ini (as shipped): $CHECK_OUT"
check_config "$WORK/wss.ini"
[ "$CHECK_RC" = 0 ] || fail "tlsgate -t wss.ini: $CHECK_OUT"
start_tlsgate "$WORK/wss.ini"

# --- Chromium, CA trusted through NSS ---------------------------------------------------
nss_trust_ca "$WORK/chromium"
run_browser chromium --page "https://localhost:$LPORT/" --issuer "tlsgate dev CA" \
    --echo "wss://localhost:$LPORT/echo" --echo "wss://127.0.0.1:$LPORT/echo" \
    || error "Chromium: page over https:// and wss:// echoes through tlsgate"
grep -q '^page TLS: TLS 1\.[23]' "$WORK/chromium.out" || error "Chromium did not report the page's TLS details"

# --- Chromium without the CA: must refuse the certificate -----------------------------------
log_mark
run_browser chromium-untrusted --page "https://localhost:$LPORT/" --expect-cert-error \
    || error "Chromium without the CA in its NSS database did not refuse the certificate"
assert_log_contains 'handshake failed|alert|unknown ca|certificate' 5 --since-mark

# --- Node ws as a second client ------------------------------------------------------------
run_ws_client node-ws "wss://localhost:$LPORT/echo" --ca "$CERTS/ca.pem" \
    || error "Node ws client: wss:// echo through tlsgate"

# --- what tlsgate and the backend saw ------------------------------------------------------
assert_log_contains 'handshake: TLSv1\.3' 5
assert_file_contains "$WORK/echo-$BPORT.log" 'WebSocket /echo origin=https://localhost:'"$LPORT" \
    "backend got the browser's WebSocket (origin https://localhost:$LPORT)"
assert_file_contains "$WORK/echo-$BPORT.log" 'echoed binary message #[0-9]+, 1048576 bytes' \
    "backend echoed the 1 MiB binary message"
# the page itself: a plain HTTP GET at the backend, HTTPS only between browser and tlsgate
assert_file_contains "$WORK/echo-$BPORT.log" 'HTTP GET /$' "backend served the page to the browser through tlsgate"

stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || error "tlsgate exited $TLSGATE_RC on SIGTERM"
finish
