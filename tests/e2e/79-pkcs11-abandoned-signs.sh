#!/usr/bin/env bash
# 79-pkcs11-abandoned-signs: a token signs nothing for clients that have gone,
# and a reload is not queued behind their signatures.
#   A slow token (tests/pkcs11-shim, 500 ms per C_Sign) behind one listener.
#   20 clients each send a ClientHello and leave 0.3 s later, long before
#   their turn at the token.  Then a SIGHUP reloads the config (the reload makes its own test signature on the same
#   token).  Expected: the token signs for at most the few handshakes that
#   had reached it before their client left, plus the reload's test
#   signature; then a new client completes a handshake (control).
#   Then 70 clients that stay want a signature at once: beyond 64 queued
#   the handshake is refused with "token 'X' busy: 64 signatures pending",
#   and after they leave a new client completes a handshake (control).
#   Found by attack2: both builds still make every abandoned signature, one
#   after the other on the token's signer thread (21 signatures for 0
#   completed handshakes; the OpenSSL build does not even notice the clients
#   left until their step comes back), and the reload's test signature waits
#   behind all of them on the main loop, which meanwhile answers neither
#   /metrics nor signals (10 s here for 20 ClientHellos: any client can
#   stall the main loop and starve the token's real clients at will).
# e2e: timeout=120
. "$(dirname "$0")/lib.sh"
. "$E2E_DIR/pkcs11-helpers.sh"
require_cmd socat
make_token
build_shim
P=$(free_port); EPORT=$(free_port)
start_echo "$EPORT"
export TG_SHIM_SIGN_DELAY_MS=500
write_config tok.ini <<EOF
$(global_section workers=1 log_level=info)

[listener:tok]
bind = 127.0.0.1:$P
cert = $CERTS/server.pem
key = $TOKEN_URI;object=server
pkcs11_module = $SHIM
pkcs11_pin = file:$PINFILE
backend = 127.0.0.1:$EPORT
EOF
start_tlsgate "$CONFIG" "$P"
: >"$TG_SHIM_LOG"
log_mark
# hellos N PATTERN: N clients each send a ClientHello and wait (without
# reading) until PATTERN is in the log after the mark, or 0.3 s when
# PATTERN is empty, then leave.
hellos() {
    "$PY" -c 'import socket, ssl, sys, time
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
conns = []
for _ in range(int(sys.argv[2])):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
    t = ctx.wrap_socket(s, server_hostname="localhost", do_handshake_on_connect=False)
    t.setblocking(False)
    try: t.do_handshake()
    except ssl.SSLWantReadError: pass
    except (ssl.SSLError, OSError): pass  # refused at once
    conns.append(t)
end = time.time() + (30 if sys.argv[3] else 0.3)
while time.time() < end:
    with open(sys.argv[4], "rb") as f:
        f.seek(int(sys.argv[5]))
        if sys.argv[3] and sys.argv[3].encode() in f.read(): break
    time.sleep(0.1)
for t in conns: t.close()' "$P" "$1" "$2" "$TLSGATE_LOG" "${LOG_MARK:-0}" || fail "could not send the ClientHellos"
}
# 20 ClientHellos, all sent before the first signature is done; the clients
# leave 0.3 s later
hellos 20 ""
nap 0.5
done_hs=$(log_since | grep -ac 'handshake: TLS')
kill -HUP "$TLSGATE_PID"
assert_log_contains "reloaded" 60 --since-mark >/dev/null
signs=$(grep -c '^sign-end' "$TG_SHIM_LOG")
if [ "$signs" -le $((done_hs + 4)) ]; then
    log "ok: $signs signatures for $done_hs completed handshakes of 20 abandoned ones (+ the reload's test)"
else
    error "the token made $signs signatures for $done_hs completed handshakes: it signed for clients that had gone, and the reload waited behind them"
fi
# the queue is bounded: 70 clients that stay while their signatures wait;
# beyond TG_P11_MAX_PENDING (64) queued, a handshake is refused at once with
# the reason instead of queueing.  The clients leave once a refusal is
# logged; their queued signatures are then dropped.
log_mark
hellos 70 "busy: 64 signatures pending"
busy=$(log_since | grep -ac "token 'tlsgate-dev' busy: 64 signatures pending")
if [ "$busy" -ge 1 ]; then
    log "ok: $busy of 70 handshakes refused with the token busy"
else
    error "no handshake was refused with 70 signatures wanted at once: the queue is unbounded"
fi
# control: the token still serves a client that stays
o=$(echo | timeout 20 openssl s_client -connect "127.0.0.1:$P" -tls1_3 -CAfile "$CERTS/ca.pem" -verify_return_error 2>&1)
grep >/dev/null -c "Verify return code: 0 (ok)" <<<"$o" || error "no handshake with the token key afterwards: $(tail -n 3 <<<"$o")"
stop_tlsgate 60
[ "$TLSGATE_RC" = 0 ] || error "tlsgate exited $TLSGATE_RC on SIGTERM (sanitizer report?)"
finish
