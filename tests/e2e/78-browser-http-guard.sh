#!/usr/bin/env bash
# e2e: long timeout=300
# 78-browser-http-guard: the local client-certificate proxy's guard against real web pages.
# A remote tlsgate requires client certificates (proxy_protocol = v2 to a ws/http echo
# backend that answers CORS like a remote serving its own web app). The local tlsgate is
# config/client-cert-proxy.ini (guarded by default) plus allow_origins naming site A.
# Headless Chromium:
#   - a page from site A (http://localhost:SA, allowed) uses the local proxy: WebSocket
#     echo, whoami reports CN=client1, and a fetch() with a custom header (CORS preflight
#     first, passed on to the remote, which answers it) reads the response;
#   - a page from site B (http://127.0.0.1:SB, not allowed): the WebSocket and the
#     preflighted fetch are refused with 403 by the local tlsgate, and the remote never
#     sees a connection;
#   - DNS rebinding: rebind.test mapped to 127.0.0.1 (--host-resolver-rules); loading
#     http://rebind.test:LOCAL/ gets 403 from the Host check, the remote sees nothing.
. "$(dirname "$0")/lib.sh"
. "$ROOT/tests/browser/lib-browser.sh"
ensure_chromium

BPORT=$(free_port); RPORT=$(free_port); LPORT=$(free_port); SA=$(free_port); SB=$(free_port)
start_node_echo "$BPORT" --proxy-v2 backend
BLOG=$WORK/backend.log
start_node_echo "$SA" site-a
start_node_echo "$SB" site-b

use_case_config wss-front.ini remote.ini "127.0.0.1:8443=127.0.0.1:$RPORT" "127.0.0.1:8080=127.0.0.1:$BPORT"
cat >>"$WORK/remote.ini" <<'EOF'
verify_client = require
client_ca = certs/ca.pem
proxy_protocol = v2
EOF
use_case_config client-cert-proxy.ini local.ini "127.0.0.1:8081=127.0.0.1:$LPORT" "127.0.0.1:9443=127.0.0.1:$RPORT"
echo "allow_origins = http://localhost:$SA" >>"$WORK/local.ini"
for f in remote.ini local.ini; do
    check_config "$WORK/$f"; [ "$CHECK_RC" = 0 ] || fail "tlsgate -t $f: $CHECK_OUT"
done
grep -q "http guard: origins http://localhost:$SA; hosts 127.0.0.1:$LPORT localhost:$LPORT \[::1\]:$LPORT" <<<"$CHECK_OUT" \
    || error "local.ini: -t does not show the guard: $CHECK_OUT"
start_tlsgate "$WORK/remote.ini"; REMOTE_LOG=$TLSGATE_LOG; REMOTE_PID=$TLSGATE_PID
start_tlsgate "$WORK/local.ini"; LOCAL_LOG=$TLSGATE_LOG; LOCAL_PID=$TLSGATE_PID
remote_conns() { grep -c 'accept: new connection' "$REMOTE_LOG"; }
nss_trust_ca "$WORK/chromium-a"

# --- site A: allowed ------------------------------------------------------------------------------
run_browser chromium-a --page "http://localhost:$SA/" \
    --echo "ws://127.0.0.1:$LPORT/echo" --whoami "ws://127.0.0.1:$LPORT/whoami" \
    --fetch "http://127.0.0.1:$LPORT/whoami" \
    || error "Chromium, page from allowed http://localhost:$SA: WebSocket and fetch through the local proxy"
grep -q '"cn":"client1"' "$WORK/chromium-a.out" || error "site A: whoami did not report CN=client1"
assert_file_contains "$BLOG" "WebSocket /echo origin=http://localhost:$SA" "remote backend got site A's WebSocket"
assert_file_contains "$BLOG" "CORS OPTIONS /whoami origin=http://localhost:$SA" "remote backend answered site A's preflight (tlsgate passed it on)"
assert_file_contains "$BLOG" "CORS GET /whoami origin=http://localhost:$SA" "remote backend got site A's fetch"

# --- site B: refused, the remote sees nothing -------------------------------------------------------
before=$(remote_conns)
TLSGATE_LOG=$LOCAL_LOG; log_mark
nss_trust_ca "$WORK/chromium-b"
run_browser chromium-b --page "http://127.0.0.1:$SB/" \
    --refused "ws://127.0.0.1:$LPORT/echo" --fetch-refused "http://127.0.0.1:$LPORT/whoami" \
    || error "Chromium, page from http://127.0.0.1:$SB (not allowed): WebSocket and fetch refused"
grep -q 'Unexpected response code: 403' "$WORK/chromium-b.out" || error "site B: the browser did not report a 403 for the WebSocket"
assert_log_contains "http-refused: 403 origin: Origin \"http://127.0.0.1:$SB\" not in allow_origins" 5 --since-mark
n=$(log_since | grep -c "http-refused: 403 origin: Origin \"http://127.0.0.1:$SB\"")
[ "$n" -ge 2 ] || error "site B: $n refusals logged, want the WebSocket and the preflight"
if grep -q "origin=http://127.0.0.1:$SB" "$BLOG"; then error "the remote backend saw site B: $(grep "origin=http://127.0.0.1:$SB" "$BLOG" | head -n 2)"; fi
after=$(remote_conns)
[ "$after" = "$before" ] || error "the remote accepted $((after - before)) connection(s) during site B's run"
log "site B: local tlsgate refused $n requests, remote connections $before -> $after"

# --- DNS rebinding ---------------------------------------------------------------------------------------
before=$(remote_conns)
log_mark
nss_trust_ca "$WORK/chromium-rebind"
run_browser chromium-rebind --resolve "MAP rebind.test 127.0.0.1" --page "http://rebind.test:$LPORT/" \
    --expect-status 403 || error "Chromium: http://rebind.test:$LPORT/ (rebinding to 127.0.0.1) not refused"
assert_log_contains "http-refused: 403 host: Host \"rebind.test:$LPORT\" not in allow_hosts" 5 --since-mark
after=$(remote_conns)
[ "$after" = "$before" ] || error "the remote accepted $((after - before)) connection(s) during the rebinding run"

stop_pid "$REMOTE_PID" >/dev/null
TLSGATE_PID=$LOCAL_PID; TLSGATE_LOG=$LOCAL_LOG; stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || error "local tlsgate exited $TLSGATE_RC on SIGTERM"
finish
