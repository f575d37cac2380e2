#!/usr/bin/env bash
# 16-json-log: log_format = json writes one JSON object per line; connection
# events carry conn, listener, peer, event and msg, and a failed handshake's
# reason survives JSON escaping intact. No line is anything but JSON.
. "$(dirname "$0")/lib.sh"

BPORT=$(free_port); PORT=$(free_port)
start_echo "$BPORT"
write_config json.ini <<EOF
$(global_section workers=1 log_level=debug log_format=json)

[listener:j"son]
bind = 127.0.0.1:$PORT
EOF
check_config "$CONFIG"
[ "$CHECK_RC" = 1 ] || error "a listener name with a quote was accepted"
write_config json.ini <<EOF
$(global_section workers=1 log_level=debug log_format=json)

[listener:json]
bind = 127.0.0.1:$PORT
$SERVER_PFX
verify_client = require
client_ca = $CERTS/ca.pem
backend = 127.0.0.1:$BPORT
EOF
start_tlsgate "$CONFIG" "$PORT"

"$PY" - "$PORT" <<'EOF' || fail "clients failed"
import ssl, sys, e2elib
port = int(sys.argv[1])
s = e2elib.tls_connect(port, certfile="client.pem", keyfile="client.key")
s.sendall(b"hello\n"); assert e2elib.recv_exact(s, 6) == b"hello\n"; s.close()
try:
    s = e2elib.tls_connect(port); s.sendall(b"x"); s.recv(1)
except (ssl.SSLError, OSError):
    pass
print("ok: clients done")
EOF
assert_log_contains '"event":"close".*certificate required' >/dev/null || error "no JSON close line for the refused client"
stop_tlsgate

"$PY" - "$TLSGATE_LOG" <<'EOF' || error "JSON log checks failed"
import json, sys
events, bad = {}, 0
for n, line in enumerate(open(sys.argv[1]), 1):
    try:
        o = json.loads(line)
    except ValueError as e:
        print("FAILED: line %d is not JSON (%s): %r" % (n, e, line)); bad += 1; continue
    for k in ("time", "level", "msg"):
        if k not in o:
            print("FAILED: line %d lacks %s" % (n, k)); bad += 1
    if "event" in o:
        for k in ("conn", "listener", "peer"):
            if k not in o:
                print("FAILED: line %d (event %s) lacks %s" % (n, o["event"], k)); bad += 1
        events.setdefault(o["event"], []).append(o)
for ev in ("accept", "handshake", "backend", "close"):
    if ev not in events:
        print("FAILED: no %s event" % ev); bad += 1
hs = events.get("handshake", [{}])[0]
if "CN=client1" not in hs.get("msg", ""):
    print("FAILED: handshake event does not name the client: %r" % hs); bad += 1
if not all(e["listener"] == "json" and e["peer"].startswith("127.0.0.1:") for l in events.values() for e in l):
    print("FAILED: listener/peer fields wrong"); bad += 1
ids = {e["conn"] for e in events.get("accept", [])}
if len(ids) != 2:
    print("FAILED: wanted 2 connection ids, got %r" % ids); bad += 1
print("ok: %d events, all lines JSON" % sum(len(v) for v in events.values()))
sys.exit(1 if bad else 0)
EOF
finish
