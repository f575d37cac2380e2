#!/usr/bin/env bash
# 77-http-forward: forward_headers = on tells plaintext backends who connected.
# A protocol = http TLS listener with client certificates (verify_client = optional) in
# front of (1) a Python websockets server and (2) the recording HTTP backend. Python
# websockets and Node ws clients with certs/client.pfx get byte-exact echoes over the
# upgraded (101) connection, and the ws server saw X-Forwarded-For 127.0.0.1,
# X-Forwarded-Proto https, Forwarded for=127.0.0.1;proto=https;host=..., and a
# Client-Cert (RFC 9440) that decodes to the client's certificate; the forged copies the
# Python client sent are gone. On a keep-alive HTTP connection forged X-Forwarded-*,
# Forwarded, Client-Cert and Client-Cert-Chain are replaced on every request (the 2nd and
# 3rd too); a client that sends only its certificate gets no Client-Cert-Chain, one that
# sends its CA along gets it in Client-Cert-Chain; a client without a
# certificate gets no Client-Cert; a plaintext listener says proto=http; without
# forward_headers the request head reaches the backend unchanged (control).
. "$(dirname "$0")/lib.sh"
. "$ROOT/tests/browser/lib-browser.sh"
require_cmd openssl
"$PY" -c 'import websockets' 2>/dev/null || skip "python3-websockets is not installed"
ensure_node_modules

WSB=$(free_port); HB=$(free_port); PW=$(free_port); PH=$(free_port); PP=$(free_port); PN=$(free_port)
write_py wsbackend <<'EOF'
# ws echo server that records the handshake headers of every connection (one JSON line each)
import asyncio, json, sys, websockets
port, logfile = int(sys.argv[1]), sys.argv[2]
async def process_request(path, headers):
    with open(logfile, "a") as f:
        f.write(json.dumps({"path": path, "headers": list(headers.raw_items())}) + "\n")
async def echo(ws, path=None):
    async for m in ws:
        await ws.send(m)
async def main():
    async with websockets.serve(echo, "127.0.0.1", port, process_request=process_request,
                                max_size=64 << 20, compression=None):
        print("listening on %d" % port, flush=True)
        await asyncio.Future()
asyncio.run(main())
EOF
bg_start wsbackend "$PY" "$WORK/wsbackend.py" "$WSB" "$WORK/ws.jsonl"
wait_listen "$WSB" 10 "$BG_PID" || fail "ws backend did not start: $(cat "$WORK/wsbackend.log")"
bg_start backend "$PY" "$E2E_DIR/py/http_helpers.py" backend "$HB" "$WORK/b.jsonl"
wait_listen "$HB" 10 "$BG_PID" || fail "http backend did not start: $(cat "$WORK/backend.log")"

TLS="secure = on
pfx = $CERTS/server.pfx
pfx_password = file:$CERTS/pfx-password
verify_client = optional
client_ca = $CERTS/ca.pem
protocol = http"
write_config forward.ini <<EOF
$(global_section workers=1 log_level=info)

[listener:ws]
bind = 127.0.0.1:$PW
$TLS
backend = 127.0.0.1:$WSB
forward_headers = on

[listener:http]
bind = 127.0.0.1:$PH
$TLS
backend = 127.0.0.1:$HB
forward_headers = on

[listener:plain]
bind = 127.0.0.1:$PP
secure = off
protocol = http
backend = 127.0.0.1:$HB
forward_headers = on

[listener:noforward]
bind = 127.0.0.1:$PN
$TLS
backend = 127.0.0.1:$HB
EOF
start_tlsgate "$CONFIG"

openssl x509 -in "$CERTS/client.pem" -outform DER | base64 -w0 >"$WORK/client.b64"
openssl x509 -in "$CERTS/ca.pem" -outform DER | base64 -w0 >"$WORK/ca.b64"
cat "$CERTS/client.pem" "$CERTS/ca.pem" >"$WORK/client+ca.pem"

# ---- WebSockets: Python websockets with forged headers, then Node ws --------------------------
"$PY" - "$PW" <<'EOF' || error "Python websockets client through tlsgate"
import asyncio, os, ssl, sys, websockets, e2elib
port = int(sys.argv[1])
async def main():
    ctx = e2elib.tls_context(certfile="client.pem", keyfile="client.key")
    forged = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "http", "Forwarded": "for=6.6.6.6",
              "Client-Cert": ":Zm9yZ2Vk:", "Client-Cert-Chain": ":Zm9yZ2Vk:"}
    async with websockets.connect("wss://localhost:%d/echo" % port, ssl=ctx, extra_headers=forged,
                                  max_size=64 << 20, compression=None) as ws:
        for m in ("hello", b"\x00\x01\xff" * 1000, os.urandom(3 << 20)):
            await ws.send(m)
            if await ws.recv() != m:
                print("FAILED: echo differs"); sys.exit(1)
    print("ok: Python websockets %s: text and binary (3 MiB) echoed exactly over wss:// + client cert"
          % websockets.__version__)
asyncio.run(main())
EOF
run_ws_client node-ws "wss://localhost:$PW/echo" --ca "$CERTS/ca.pem" --pfx "$CERTS/client.pfx" \
    --pfx-password-file "$CERTS/pfx-password" || error "Node ws client through tlsgate"

"$PY" - "$WORK/ws.jsonl" "$WORK/client.b64" "$PW" "$WORK/ca.b64" <<'EOF' || error "headers the ws backend saw"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cert = open(sys.argv[2]).read().strip()
port = sys.argv[3]
ca = open(sys.argv[4]).read().strip()
bad = 0
if len(rows) != 2:
    print("FAILED: the ws backend saw %d handshakes, not 2" % len(rows)); sys.exit(1)
for who, row in zip(("Python websockets", "Node ws"), rows):
    h = {}
    for k, v in row["headers"]:
        h.setdefault(k.lower(), []).append(v)
    want = {"x-forwarded-for": ["127.0.0.1"], "x-forwarded-proto": ["https"],
            "forwarded": ['for=127.0.0.1;proto=https;host="localhost:%s"' % port],
            "client-cert": [":%s:" % cert],
            # both clients send the CA along (OpenSSL builds the chain from its trust
            # store, the PFX carries it): the chain as sent, leaf excluded
            "client-cert-chain": [":%s:" % ca]}
    for k, v in want.items():
        ok = h.get(k) == v
        bad += not ok
        print("%s: %s: %s %s" % ("ok" if ok else "FAILED", who, k, "as expected" if ok else "= %r" % h.get(k)))
sys.exit(1 if bad else 0)
EOF

# ---- keep-alive HTTP: forged copies gone from every request -----------------------------------
"$PY" - "$PH" "$PP" "$PN" "$WORK/b.jsonl" "$WORK/client.b64" "$WORK/ca.b64" "$WORK/client+ca.pem" <<'EOF' || error "forwarded headers on keep-alive requests"
import json, sys, e2elib, http_helpers as H
PH, PP, PN = (int(x) for x in sys.argv[1:4])
LOG, CERT, CA, CHAIN = sys.argv[4], open(sys.argv[5]).read().strip(), open(sys.argv[6]).read().strip(), sys.argv[7]
bad = 0
def check(ok, what):
    global bad
    print(("ok: " if ok else "FAILED: ") + what, flush=True)
    bad += not ok
FORGED = ("X-Forwarded-For: 6.6.6.6\r\nx-forwarded-for: 7.7.7.7\r\nX-Forwarded-Proto: http\r\n"
          "X-Forwarded-Host: evil\r\nForwarded: for=6.6.6.6\r\nClient-Cert: :Zm9yZ2Vk:\r\n"
          "CLIENT-CERT-CHAIN: :Zm9yZ2Vk:\r\n")
def run(port, n, tls=True, host="localhost", **kw):
    s = e2elib.tls_connect(port, **kw) if tls else e2elib.tcp_connect(port)
    out = []
    for i in range(n):   # one request at a time on the same connection
        s.sendall(("GET /r%d HTTP/1.1\r\nHost: %s:%d\r\nX-Keep: %d\r\n%s\r\n" % (i, host, port, i, FORGED)).encode())
        rs = H.read_responses(s, limit=1)
        out.append(json.loads(rs[0][2]) if rs and rs[0][0] == 200 else None)
    s.close()
    return out
def hdrs(rec):
    h = {}
    for k, v in rec["headers"]:
        h.setdefault(k.lower(), []).append(v)
    return h
# verify=False: no trust store, so the client sends its certificate alone (no chain)
recs = run(PH, 3, certfile="client.pem", keyfile="client.key", verify=False)
check(all(recs) and len({r["conn"] for r in recs}) == 1, "3 requests answered on one backend connection")
for i, r in enumerate(recs):
    if not r:
        continue
    h = hdrs(r)
    check(h.get("x-forwarded-for") == ["127.0.0.1"] and h.get("x-forwarded-proto") == ["https"]
          and h.get("forwarded") == ['for=127.0.0.1;proto=https;host="localhost:%d"' % PH]
          and "x-forwarded-host" not in h and h.get("client-cert") == [":%s:" % CERT]
          and "client-cert-chain" not in h and h.get("x-keep") == [str(i)],
          "request %d: only tlsgate's X-Forwarded-*, Forwarded and Client-Cert: %s"
          % (i + 1, {k: v for k, v in h.items() if k not in ("host",)}))
r = run(PH, 1, certfile=CHAIN, keyfile="client.key", verify=False)[0]
check(r and hdrs(r).get("client-cert") == [":%s:" % CERT] and hdrs(r).get("client-cert-chain") == [":%s:" % CA],
      "a client that sends its CA along: Client-Cert-Chain carries it")
r = run(PH, 1)[0]
check(r and "client-cert" not in hdrs(r) and "client-cert-chain" not in hdrs(r)
      and hdrs(r).get("x-forwarded-for") == ["127.0.0.1"], "no client certificate: no Client-Cert, still X-Forwarded-For")
r = run(PP, 2, tls=False, host="127.0.0.1")[-1]
check(r and hdrs(r).get("x-forwarded-proto") == ["http"] and "client-cert" not in hdrs(r)
      and hdrs(r).get("forwarded") == ['for=127.0.0.1;proto=http;host="127.0.0.1:%d"' % PP],
      "plaintext listener: proto=http, no Client-Cert (2nd request)")
r = run(PN, 1, certfile="client.pem", keyfile="client.key")[0]
check(r and hdrs(r).get("x-forwarded-for") == ["6.6.6.6", "7.7.7.7"] and hdrs(r).get("client-cert") == [":Zm9yZ2Vk:"],
      "control: without forward_headers the head reaches the backend as sent")
sys.exit(1 if bad else 0)
EOF
stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || error "tlsgate exited $TLSGATE_RC on SIGTERM"
finish
