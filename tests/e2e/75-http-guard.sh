#!/usr/bin/env bash
# 75-http-guard: the Origin/Host guard of protocol = http, with its safe defaults.
# A plaintext loopback listener whose backend side presents certs/client.pfx (the local
# client-certificate proxy) is protocol = http without saying so; browser Origins are
# refused until allow_origins lists them; Host must be one of its own loopback names and
# port (DNS rebinding); Sec-Fetch-Site cross-site/same-site without an allowed Origin is
# refused; an absolute-form authority is checked like Host; on a TLS listener a Host other
# than the SNI name gets 421. Every refusal: the status, a text body naming the reason,
# Connection: close, a log line and a metric, and the backend never sees a connection.
# A CORS preflight from a listed origin goes to the backend; from another origin: 403.
# Every refusal has a passing control beside it. Config checks: the non-loopback
# plaintext listener with a client identity is refused unless unsafe_listen = on, an
# explicit protocol = tcp is reported, allow_origins = * warns, ALPN h2 on a protocol = http
# listener is refused (HTTP/2 is not parsed), -t prints the guard.
. "$(dirname "$0")/lib.sh"
require_cmd curl

BT=$(free_port)   # TLS backend requiring client1 (the "remote")
BP=$(free_port)   # plaintext backend (behind the TLS listener)
PG=$(free_port); PG2=$(free_port); PT=$(free_port); MPORT=$(free_port)
bg_start backend-tls "$PY" "$E2E_DIR/py/http_helpers.py" backend "$BT" "$WORK/bt.jsonl" --tls "$CERTS"
wait_listen "$BT" 10 "$BG_PID" || fail "TLS backend did not start: $(cat "$WORK/backend-tls.log")"
bg_start backend-plain "$PY" "$E2E_DIR/py/http_helpers.py" backend "$BP" "$WORK/bp.jsonl"
wait_listen "$BP" 10 "$BG_PID" || fail "plain backend did not start: $(cat "$WORK/backend-plain.log")"

IDENT="backend_secure = on
backend_ca = $CERTS/ca.pem
backend_sni = localhost
backend_pfx = $CERTS/client.pfx
backend_pfx_password = file:$CERTS/pfx-password"
write_config guard.ini <<EOF
$(global_section workers=1 log_level=info metrics=127.0.0.1:$MPORT)

; the local client-certificate proxy, nothing said about HTTP: guarded by default
[listener:g]
bind = 127.0.0.1:$PG
secure = off
backend = 127.0.0.1:$BT
$IDENT

[listener:g2]
bind = 127.0.0.1:$PG2
secure = off
backend = 127.0.0.1:$BT
$IDENT
allow_origins = https://app.example, https://*.trusted.example

[listener:t]
bind = 127.0.0.1:$PT
secure = on
$SERVER_PFX
backend = 127.0.0.1:$BP
protocol = http
EOF

# ---- -t prints the effective guard ----------------------------------------------------
check_config "$CONFIG"
[ "$CHECK_RC" = 0 ] || fail "tlsgate -t guard.ini: $CHECK_OUT"
printf '%s\n' "$CHECK_OUT" | sed 's/^/    | /'
grep -q "listener g: .*http guard: origins own only (pages of other origins refused); hosts 127.0.0.1:$PG localhost:$PG \[::1\]:$PG" <<<"$CHECK_OUT" \
    || error "-t does not print the default guard of listener g"
grep -q "listener g2: .*origins https://app.example https://\*.trusted.example; hosts 127.0.0.1:$PG2" <<<"$CHECK_OUT" \
    || error "-t does not print allow_origins of listener g2"
grep -q "listener t: .*http guard: origins not checked; hosts not checked" <<<"$CHECK_OUT" \
    || error "-t does not print the (unchecked) guard of listener t"

# ---- config refusals, each beside its passing control ----------------------------------------
cfg() {  # cfg NAME BIND EXTRA... -- a one-listener config with the client identity
    local name=$1 bind=$2; shift 2
    { printf '[listener:x]\nbind = %s\nsecure = off\nbackend = 127.0.0.1:%s\n%s\n' "$bind" "$BT" "$IDENT"
      printf '%s\n' "$@"; } >"$WORK/$name.ini"
}
cfg open "0.0.0.0:$(free_port)"
check_config "$WORK/open.ini"
if [ "$CHECK_RC" = 0 ] || ! grep -q "open.ini:2: \[listener:x\] bind: 0.0.0.0:[0-9]* is not a loopback address.*unsafe_listen = on" <<<"$CHECK_OUT"; then
    error "non-loopback plaintext listener with a client identity not refused: $CHECK_OUT"
else log "refused as it should: $(head -n1 <<<"$CHECK_OUT")"; fi
# the same shape with a PEM identity (backend_cert/backend_key): guarded, and refused off loopback
printf '[listener:x]\nbind = %s\nsecure = off\nbackend = 127.0.0.1:%s\nbackend_secure = on\nbackend_ca = %s\nbackend_cert = %s\nbackend_key = %s\n' \
    "127.0.0.1:$(free_port)" "$BT" "$CERTS/ca.pem" "$CERTS/client.pem" "$CERTS/client.key" >"$WORK/pem.ini"
check_config "$WORK/pem.ini"
{ [ "$CHECK_RC" = 0 ] && grep -q "http guard: origins own only" <<<"$CHECK_OUT"; } || error "backend_cert/backend_key on loopback: not guarded: $CHECK_OUT"
sed -i 's/^bind = 127.0.0.1:/bind = 0.0.0.0:/' "$WORK/pem.ini"
check_config "$WORK/pem.ini"
{ [ "$CHECK_RC" != 0 ] && grep -q "pem.ini:2: \[listener:x\] bind: 0.0.0.0:[0-9]* is not a loopback address" <<<"$CHECK_OUT"; } \
    || error "backend_cert/backend_key off loopback not refused: $CHECK_OUT"
cfg open-ok "0.0.0.0:$(free_port)" "unsafe_listen = on"
check_config "$WORK/open-ok.ini"
[ "$CHECK_RC" = 0 ] || error "unsafe_listen = on did not allow the listener: $CHECK_OUT"
cfg tcp "127.0.0.1:$(free_port)" "protocol = tcp"
check_config "$WORK/tcp.ini"
{ [ "$CHECK_RC" = 0 ] && grep -q "protocol = tcp: any local process and any web page the user opens can use the backend client identity" <<<"$CHECK_OUT"; } \
    || error "explicit protocol = tcp on the local proxy: no note in -t: $CHECK_OUT"
cfg star "127.0.0.1:$(free_port)" "allow_origins = *"
check_config "$WORK/star.ini"
{ [ "$CHECK_RC" = 0 ] && grep -q "warning: .*allow_origins: \* lets every web page" <<<"$CHECK_OUT"; } \
    || error "allow_origins = * without a warning: $CHECK_OUT"
cfg badorigin "127.0.0.1:$(free_port)" "allow_origins = https://app.example/"
check_config "$WORK/badorigin.ini"
{ [ "$CHECK_RC" != 0 ] && grep -q "allow_origins: 'https://app.example/': an origin has no path" <<<"$CHECK_OUT"; } \
    || error "an origin with a path was not refused: $CHECK_OUT"
cfg explicit "127.0.0.1:$(free_port)" "protocol = http" "max_request_head = 8k"
check_config "$WORK/explicit.ini"; [ "$CHECK_RC" = 0 ] || error "protocol = http + max_request_head refused: $CHECK_OUT"
alpn() {  # alpn NAME VALUE -- a TLS protocol = http listener offering VALUE
    printf '[listener:a]\nbind = 127.0.0.1:%s\npfx = %s\npfx_password = file:%s\nbackend = 127.0.0.1:%s\nprotocol = http\nalpn = %s\n' \
        "$(free_port)" "$CERTS/server.pfx" "$CERTS/pfx-password" "$BP" "$2" >"$WORK/$1.ini"
}
alpn h2 "h2, http/1.1"
check_config "$WORK/h2.ini"
{ [ "$CHECK_RC" != 0 ] && grep -q "h2.ini:7: \[listener:a\] alpn: 'h2, http/1.1': protocol = http relays HTTP/1.x only" <<<"$CHECK_OUT"; } \
    || error "alpn h2 on a protocol = http listener not refused: $CHECK_OUT"
alpn h1 "http/1.1"
check_config "$WORK/h1.ini"; [ "$CHECK_RC" = 0 ] || error "alpn http/1.1 on a protocol = http listener refused: $CHECK_OUT"

start_tlsgate "$CONFIG"

# ---- requests --------------------------------------------------------------------------------
"$PY" - "$PG" "$PG2" "$PT" "$WORK/bt.jsonl" "$WORK/bp.jsonl" <<'EOF' || error "request checks failed (see above)"
import sys, time, e2elib, http_helpers as H
PG, PG2, PT = (int(x) for x in sys.argv[1:4])
BT_LOG, BP_LOG = sys.argv[4:6]
bad = 0

def check(ok, what):
    global bad
    print(("ok: " if ok else "FAILED: ") + what, flush=True)
    bad += not ok

def send(port, head, tls=False, sni="localhost"):
    s = e2elib.tls_connect(port, sni=sni) if tls else e2elib.tcp_connect(port)
    s.sendall(head.encode("latin-1") if isinstance(head, str) else head)
    return s

def conns(log):
    return len(H.events(log, "conn"))

def expect(port, head, status, word=None, log=BT_LOG, what="", **kw):
    before = conns(log)
    s = send(port, head, **kw)
    rs = H.read_responses(s, limit=1)
    got = rs[0][0] if rs else None
    if status >= 400:
        body = rs[0][2].decode() if rs else ""
        ok = (got == status and rs[0][1].get("connection") == "close" and (word is None or word in body)
              and H.closed(s, 5))
        time.sleep(0.2)
        after = conns(log)
        check(ok and after == before, "%s: %s (body %r), backend connections %d -> %d"
              % (what, got, body.strip(), before, after))
    else:
        check(got == status, "%s: %s" % (what, got))
    s.close()
    return rs

def get(host, extra="", target="/"):
    return "GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (target, host, extra)

L = "127.0.0.1:%d" % PG
# controls: a non-browser client and a same-origin page reach the remote with client1
rs = expect(PG, get(L), 200, what="no Origin (curl-like) on the default guard")
check(bool(rs) and b'"cn": "client1"' in rs[0][2], "the remote saw the client1 identity")
expect(PG, get("localhost:%d" % PG), 200, what="Host localhost:PORT")
expect(PG, get(L, "Origin: http://127.0.0.1:%d\r\nSec-Fetch-Site: same-origin\r\n" % PG), 200,
       what="same-origin page (Origin = http://Host)")
expect(PG, get(L, "Sec-Fetch-Site: none\r\n"), 200, what="Sec-Fetch-Site: none (typed URL)")
# refusals
expect(PG, get(L, "Origin: https://evil.example\r\n"), 403, "Origin", what="foreign Origin on the default guard")
expect(PG, get(L, "Origin: null\r\n"), 403, "Origin", what="Origin: null on the default guard")
expect(PG, get(L, "Origin: http://127.0.0.1:%d\r\n" % (PG + 1)), 403, "Origin", what="Origin of another local port")
expect(PG, "GET /echo HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
       "Origin: https://evil.example\r\n\r\n" % L, 403, "Origin", what="cross-site WebSocket hijacking")
expect(PG, get("rebind.attacker.example:%d" % PG, "Origin: http://rebind.attacker.example:%d\r\n" % PG), 403,
       "Host", what="DNS rebinding (same-origin with the attacker's name)")
expect(PG, get("rebind.attacker.example:%d" % PG), 403, "Host", what="DNS rebinding, no Origin")
expect(PG, get("127.0.0.1:%d" % (PG + 1)), 403, "Host", what="Host with another port")
expect(PG, get("127.0.0.1"), 403, "Host", what="Host without the port (means :80)")
expect(PG, get(L, "Sec-Fetch-Site: cross-site\r\n"), 403, "cross-site", what="Sec-Fetch-Site: cross-site, no Origin")
expect(PG, get(L, "Sec-Fetch-Site: same-site\r\n"), 403, "cross-site", what="Sec-Fetch-Site: same-site, no Origin")
# absolute-form: the authority is checked like Host
expect(PG, "GET http://%s/x HTTP/1.1\r\nHost: %s\r\n\r\n" % (L, L), 200, what="absolute-form with our own authority")
expect(PG, "GET http://evil.example:%d/x HTTP/1.1\r\nHost: %s\r\n\r\n" % (PG, L), 400, "malformed",
       what="absolute-form authority differing from Host")
expect(PG, "GET http://evil.example/x HTTP/1.1\r\nHost: evil.example\r\n\r\n", 403, "Host",
       what="absolute-form with a foreign authority and Host")
# listed origins
L2 = "127.0.0.1:%d" % PG2
expect(PG2, get(L2, "Origin: https://app.example\r\nSec-Fetch-Site: cross-site\r\n"), 200, what="listed Origin, cross-site")
expect(PG2, get(L2, "Origin: https://app.example:443\r\n"), 200, what="listed Origin with its default port")
expect(PG2, get(L2, "Origin: https://a.trusted.example\r\n"), 200, what="Origin under *.trusted.example")
expect(PG2, get(L2, "Origin: http://app.example\r\n"), 403, "Origin", what="listed host, other scheme")
expect(PG2, get(L2, "Origin: https://trusted.example.evil\r\n"), 403, "Origin", what="suffix look-alike")
expect(PG2, get(L2, "Origin: https://app.example.evil\r\n"), 403, "Origin", what="prefix look-alike")
# CORS preflights: an allowed origin's goes to the backend (which answers CORS), others get 403
PRE = ("OPTIONS /api HTTP/1.1\r\nHost: %s\r\nOrigin: %s\r\nAccess-Control-Request-Method: PUT\r\n"
       "Access-Control-Request-Headers: x-custom\r\nSec-Fetch-Mode: cors\r\nSec-Fetch-Site: cross-site\r\n\r\n")
rs = expect(PG2, PRE % (L2, "https://app.example"), 200, what="preflight from a listed origin")
check(bool(rs) and b'"method": "OPTIONS"' in rs[0][2], "the backend got the preflight (it decides CORS)")
expect(PG2, PRE % (L2, "https://evil.example"), 403, "Origin", what="preflight from another origin")
# refusals come after the responses to earlier requests on the same connection
before = conns(BT_LOG)
s = send(PG, get(L, target="/slow") + get(L, "Origin: https://evil.example\r\n"))
rs = H.read_responses(s, limit=2)
check([r[0] for r in rs] == [200, 403] and H.closed(s), "pipelined: 200 of the earlier request first, then 403: %s"
      % [r[0] for r in rs])
reqs = [e for e in H.events(BT_LOG, "req") if e["conn"] > before]
check(len(reqs) == 1, "the backend saw only the allowed request (%d)" % len(reqs))
s.close()
# TLS listener: Host must match the SNI name
T = "localhost:%d" % PT
expect(PT, get(T), 200, log=BP_LOG, what="TLS: Host matches SNI", tls=True)
expect(PT, get("other.example:%d" % PT), 421, "server name", log=BP_LOG, what="TLS: Host other than SNI", tls=True)
expect(PT, get("Localhost"), 200, log=BP_LOG, what="TLS: Host matches SNI, case and port aside", tls=True)
sys.exit(1 if bad else 0)
EOF

assert_log_contains 'http-refused: 403 origin: Origin "https://evil.example" not in allow_origins'
assert_log_contains 'http-refused: 403 host: Host "rebind.attacker.example:[0-9]+" not in allow_hosts'
assert_log_contains 'http-refused: 403 fetch-site: Sec-Fetch-Site "cross-site" without an allowed Origin'
assert_log_contains 'http-refused: 421 sni-mismatch: Host "other.example:[0-9]+" does not match the TLS server name "localhost"'
M=$(curl -s --max-time 5 "http://127.0.0.1:$MPORT/metrics")
for want in 'listener="g",status="403",reason="origin"} 5' 'listener="g",status="403",reason="host"} 5' \
            'listener="g",status="403",reason="fetch-site"} 2' 'listener="g",status="400",reason="malformed"} 1' \
            'listener="g2",status="403",reason="origin"} 4' 'listener="t",status="421",reason="sni-mismatch"} 1'; do
    grep -qF "tlsgate_http_refused_total{$want" <<<"$M" || error "metrics: no tlsgate_http_refused_total{$want: $(grep http_refused <<<"$M" | grep -v ' 0$')"
done
log "metrics: $(grep http_refused <<<"$M" | grep -v ' 0$' | tr '\n' ';')"
stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || error "tlsgate exited $TLSGATE_RC on SIGTERM"
finish
