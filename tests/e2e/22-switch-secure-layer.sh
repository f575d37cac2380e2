#!/usr/bin/env bash
# e2e: long timeout=300
# 22-switch-secure-layer: use case 3, switching the secure layer by configuration alone.
# config/plain-relay.ini chains two listeners, edge -> origin -> a plaintext ws:// echo
# server; they run here as two tlsgate processes (one section each). For all four
# combinations of
#   client side:  [edge] secure = off | on
#   the hop:      [edge] backend_secure = off | on  together with  [origin] secure = on
#                 (mutual TLS: the edge presents certs/client.pfx, the origin requires it)
# the same client code runs unchanged: Chromium loads the same page (http:// or https://)
# and lets it pick ws:// or wss:// from its own URL, and the same Node `ws` client script gets
# ws:// or wss://. The only differences between the four configs are the switch lines and
# the lines written commented out under them in the example (checked here, and printed as
# diffs). The logs prove which hops were TLS: the edge logs a TLS handshake with the client
# only when its secure = on, the origin logs "peer CN=client1" only when the hop is TLS.
. "$(dirname "$0")/lib.sh"
. "$ROOT/tests/browser/lib-browser.sh"
ensure_chromium

BPORT=$(free_port)
EPORT=$(free_port)
OPORT=$(free_port)
start_node_echo "$BPORT"
BLOG=$WORK/echo-$BPORT.log

use_case_config plain-relay.ini base.ini "127.0.0.1:8082=127.0.0.1:$EPORT" "127.0.0.1:8083=127.0.0.1:$OPORT" \
    "127.0.0.1:8080=127.0.0.1:$BPORT"
check_shipped_config plain-relay.ini
[ "$CHECK_RC" = 0 ] || fail "tlsgate -t config/plain-relay.ini (as shipped): $CHECK_OUT"

# normalise FILE -- the config with every switch off and the lines under it commented out:
# two variants that differ in nothing else normalise to the same text
normalise() {
    sed -E -e 's/^([[:space:]]*(secure|backend_secure)[[:space:]]*=[[:space:]]*)on/\1off/' \
           -e 's/^(pfx|pfx_password|verify_client|client_ca|backend_pfx|backend_pfx_password|backend_ca|backend_sni)([[:space:]]*=)/;\1\2/' "$1"
}

# combo EDGE_SECURE HOP_SECURE
combo() {
    local es=$1 hs=$2 name="edge-$1-hop-$2" scheme=http wscheme=ws
    local conf=$WORK/$name.ini
    log "===== [edge] secure = $es; hop (edge backend_secure, origin secure) = $hs"
    cp "$WORK/base.ini" "$conf"
    [ "$es" = on ] && { flip secure edge "$conf"; scheme=https; wscheme=wss; }
    [ "$hs" = on ] && { flip backend_secure edge "$conf"; flip secure origin "$conf"; }
    log "the change against config/plain-relay.ini (ports moved):"
    if cmp -s "$WORK/base.ini" "$conf"; then log "    (none: the example as it is)"
    else diff -u "$WORK/base.ini" "$conf" | tail -n +3 | grep -E '^[-+@]' | sed 's/^/    | /'; fi
    [ "$(normalise "$conf")" = "$(normalise "$WORK/base.ini")" ] \
        || { error "$name: the config differs in more than the switches"; diff <(normalise "$WORK/base.ini") <(normalise "$conf"); }
    check_config "$conf"
    [ "$CHECK_RC" = 0 ] || { error "$name: tlsgate -t: $CHECK_OUT"; return; }
    printf '%s\n' "$CHECK_OUT" | sed 's/^/    | /'

    config_section "$conf" origin >"$WORK/$name-origin.ini"
    config_section "$conf" edge >"$WORK/$name-edge.ini"
    start_tlsgate "$WORK/$name-origin.ini"; local olog=$TLSGATE_LOG opid=$TLSGATE_PID
    start_tlsgate "$WORK/$name-edge.ini"; local elog=$TLSGATE_LOG epid=$TLSGATE_PID

    local before; before=$(grep -c 'WebSocket /echo' "$BLOG")
    nss_trust_ca "$WORK/chromium-$name"
    run_browser "chromium-$name" --page "$scheme://localhost:$EPORT/" --echo auto \
        || error "$name: Chromium echo through $scheme://localhost:$EPORT/"
    if [ "$es" = on ]; then
        grep -q '^page TLS: TLS 1\.[23], subject localhost, issuer tlsgate dev CA' "$WORK/chromium-$name.out" \
            || error "$name: Chromium did not get the page over TLS from the edge"
    else
        grep -q '^page TLS: none' "$WORK/chromium-$name.out" || error "$name: the page was not plaintext"
    fi
    grep -q "^ok: \[$wscheme://localhost:$EPORT/echo\] clean close" "$WORK/chromium-$name.out" \
        || error "$name: the page did not pick $wscheme:// by itself"
    run_ws_client "node-ws-$name" "$wscheme://localhost:$EPORT/echo" --ca "$CERTS/ca.pem" \
        || error "$name: Node ws client through $wscheme://localhost:$EPORT/echo"
    local after; after=$(grep -c 'WebSocket /echo' "$BLOG")
    [ "$after" -ge $((before + 2)) ] || error "$name: the backend saw $((after - before)) WebSocket(s), want 2"

    # which hops were TLS, from the two tlsgates' own logs
    if [ "$es" = on ]; then
        grep -qE 'handshake: TLSv1\.[23]' "$elog" || error "$name: the edge logged no TLS handshake with the clients"
    else
        ! grep -qE 'handshake: TLS' "$elog" || error "$name: the edge logged a TLS handshake but secure = off"
    fi
    if [ "$hs" = on ]; then
        grep -qE 'backend: connected to 127\.0\.0\.1:'"$OPORT"' over TLSv1\.[23]' "$elog" \
            || error "$name: the edge did not connect to the origin over TLS"
        grep -qE 'handshake: TLSv1\.[23] .*peer CN=client1' "$olog" \
            || error "$name: the origin did not see the edge's client1 certificate"
    else
        grep -qE 'backend: connected to 127\.0\.0\.1:'"$OPORT"'$' "$elog" \
            || error "$name: the edge did not connect to the origin in plaintext"
        ! grep -qE 'handshake: TLS' "$olog" || error "$name: the origin logged a TLS handshake but secure = off"
    fi
    grep -hE 'handshake: TLS|backend: connected' "$elog" "$olog" | head -n 4 | sed 's/^/    | /'

    TLSGATE_PID=$epid; TLSGATE_LOG=$elog; stop_tlsgate
    [ "$TLSGATE_RC" = 0 ] || error "$name: edge tlsgate exited $TLSGATE_RC"
    TLSGATE_PID=$opid; TLSGATE_LOG=$olog; stop_tlsgate
    [ "$TLSGATE_RC" = 0 ] || error "$name: origin tlsgate exited $TLSGATE_RC"
}

combo off off
combo on off
combo off on
combo on on
finish
