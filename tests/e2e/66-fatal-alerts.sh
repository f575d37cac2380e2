#!/usr/bin/env bash
# 66-fatal-alerts: when the TLS library ends an established connection (a
# corrupted record, a record longer than the protocol allows, a TLS 1.3
# KeyUpdate with an invalid request_update), tlsgate sends the alert the
# library wrote before closing, on the client side and on the backend side,
# so the peer learns why instead of seeing an abrupt close (tlsfuzzer's
# "Unexpected closure from peer").
# The peers are Python ssl over MemoryBIO: after a working echo round trip
# (the control) they write a hand-made bad record straight to the socket and
# expect an alert record back before EOF.  The KeyUpdate is encrypted by
# hand (python3-cryptography) under the peer's application traffic secret,
# taken from the ssl module's key log.
. "$(dirname "$0")/lib.sh"

write_py tlspeer <<'EOF'
"""MemoryBIO TLS helpers: handshake over a raw socket, inject, expect an alert."""
import hmac, socket, ssl, struct, time

def handshake(sock, obj, inc, out):
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            pending = out.read()
            if pending:
                sock.sendall(pending)
            d = sock.recv(65536)
            if not d:
                raise EOFError("EOF during handshake")
            inc.write(d)
    pending = out.read()
    if pending:
        sock.sendall(pending)

def send(sock, obj, out, data):
    obj.write(data)
    sock.sendall(out.read())

def recv_exact(sock, obj, inc, n):
    buf = b""
    while len(buf) < n:
        try:
            buf += obj.read(n - len(buf))
            continue
        except ssl.SSLWantReadError:
            pass
        d = sock.recv(65536)
        if not d:
            raise EOFError("EOF after %d of %d bytes" % (len(buf), n))
        inc.write(d)
    return buf

def hkdf_expand_label(secret, label, length, hashname):
    full = b"tls13 " + label
    info = struct.pack(">H", length) + bytes([len(full)]) + full + b"\0"
    okm, t, i = b"", b"", 1
    while len(okm) < length:
        t = hmac.new(secret, t + info + bytes([i]), hashname).digest()
        okm += t
        i += 1
    return okm[:length]

def keyupdate_record(obj, keylog, label, seq):
    """A TLS 1.3 KeyUpdate with request_update = 2 (only 0 and 1 exist), as
    record number seq under our application traffic secret (from the key
    log), encrypted by hand: what tlsfuzzer's KeyUpdate probes send."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
    secret = None
    for line in open(keylog):
        f = line.split()
        if len(f) == 3 and f[0] == label:
            secret = bytes.fromhex(f[2])
    suite = obj.cipher()[0]
    hashname = "sha384" if suite.endswith("SHA384") else "sha256"
    klen = 16 if "AES_128" in suite else 32
    key = hkdf_expand_label(secret, b"key", klen, hashname)
    iv = hkdf_expand_label(secret, b"iv", 12, hashname)
    aead = ChaCha20Poly1305(key) if "CHACHA20" in suite else AESGCM(key)
    nonce = bytes(a ^ b for a, b in zip(iv, seq.to_bytes(12, "big")))
    inner = bytes([24, 0, 0, 1, 2]) + bytes([22])   # KeyUpdate(request_update=2), type handshake
    header = struct.pack(">BHH", 23, 0x0303, len(inner) + 16)
    return header + aead.encrypt(nonce, inner, header)

def bad_record(kind, obj, out, keylog=None, label=None, seq=None):
    """Raw bytes of a record the peer's TLS library must reject."""
    if kind == "keyupdate":
        return keyupdate_record(obj, keylog, label, seq)
    if kind == "overflow":   # longer than any TLS 1.2 or 1.3 record may be (2^14 + 2048)
        n = (1 << 14) + 2048 + 1
        return struct.pack(">BHH", 23, 0x0303, n) + b"\0" * n
    obj.write(b"this record gets corrupted")
    rec = bytearray(out.read())
    rec[-3] ^= 0x55          # inside the AEAD tag: bad record mac
    return bytes(rec)

def expect_alert(sock, obj, inc, seconds=5):
    """Reads until EOF; returns (alert text or None, first record type, bytes)."""
    sock.settimeout(seconds)
    raw = b""
    try:
        while True:
            d = sock.recv(65536)
            if not d:
                break
            raw += d
    except (ConnectionResetError, socket.timeout) as e:
        if isinstance(e, socket.timeout):
            return None, None, raw, "no EOF within %ds" % seconds
    inc.write(raw)
    inc.write_eof()
    try:
        while obj.read(65536):
            pass
    except ssl.SSLError as e:
        text = str(e)
        if "ALERT" in text.upper():
            return text, raw[0] if raw else None, raw, ""
        return None, raw[0] if raw else None, raw, text
    return None, raw[0] if raw else None, raw, "clean end"
EOF

# The client side: tlsgate is the server.  Args: PORT VERSION KIND
write_py client <<'EOF'
import socket, ssl, sys
import e2elib, tlspeer
port, version, kind = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = e2elib.tls_context(version=version)
if version == "1.2":
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
keylog = "client-%s-%s.keys" % (version, kind)
ctx.keylog_filename = keylog
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
s = e2elib.tcp_connect(port, timeout=5)
tlspeer.handshake(s, obj, inc, out)
tlspeer.send(s, obj, out, b"ping")
if tlspeer.recv_exact(s, obj, inc, 4) != b"ping":
    print("control: echo failed"); sys.exit(1)
print("control: %s echo ok" % obj.version())
# "ping" was our first record under the application key: the KeyUpdate is the second
s.sendall(tlspeer.bad_record(kind, obj, out, keylog, "CLIENT_TRAFFIC_SECRET_0", 1))
alert, rtype, raw, why = tlspeer.expect_alert(s, obj, inc)
if not alert:
    print("no alert from tlsgate after a %s record (%d bytes back, %s)" % (kind, len(raw), why))
    sys.exit(1)
print("alert from tlsgate after a %s record: %s (record type %s)" % (kind, alert, rtype))
EOF

# The backend side: tlsgate is the client.  Args: PORT VERSION KIND RESULTFILE
# Per connection: handshake, echo one message (the control), then send the
# bad record and write what came back to RESULTFILE.
write_py backend <<'EOF'
import socket, ssl, sys
import e2elib, tlspeer
port, version, kind, result = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(e2elib.cert("server.pem"), e2elib.cert("server.key"))
if version == "1.2":
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
else:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.num_tickets = 0       # so that the echo is our first record under the application key
ctx.keylog_filename = result + ".keys"
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port))
ls.listen(4)
print("listening", flush=True)
while True:
    c, _ = ls.accept()
    c.settimeout(5)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_side=True)
    try:
        tlspeer.handshake(c, obj, inc, out)
        msg = tlspeer.recv_exact(c, obj, inc, 4)
        tlspeer.send(c, obj, out, msg)
        c.sendall(tlspeer.bad_record(kind, obj, out, result + ".keys", "SERVER_TRAFFIC_SECRET_0", 1))
        alert, rtype, raw, why = tlspeer.expect_alert(c, obj, inc)
        line = ("alert %s (record type %s)" % (alert, rtype)) if alert else \
               ("no alert (%d bytes back, %s)" % (len(raw), why))
    except (OSError, EOFError, ssl.SSLError) as e:
        line = "error %s" % e
    with open(result, "a") as f:
        f.write(line + "\n")
    c.close()
EOF

EPORT=$(free_port); L13=$(free_port); L12=$(free_port)
start_echo "$EPORT"
# backend cases: NAME VERSION KIND
BCASES=("13 1.3 corrupt" "12 1.2 corrupt" "13k 1.3 keyupdate")
declare -A BP LBP
for bc in "${BCASES[@]}"; do
    read -r name ver kind <<<"$bc"
    BP[$name]=$(free_port); LBP[$name]=$(free_port)
    bg_start "backend$name" "$PY" "$WORK/backend.py" "${BP[$name]}" "$ver" "$kind" "$WORK/backend$name.result"
    wait_listen "${BP[$name]}" 10 "$BG_PID" || fail "python TLS backend $name did not start: $(cat "$WORK/backend$name.log")"
done

write_config alerts.ini <<EOF
$(global_section workers=1 log_level=debug)

[listener:tls]
bind = 127.0.0.1:$L13
$SERVER_PFX
backend = 127.0.0.1:$EPORT

[listener:tls12]
bind = 127.0.0.1:$L12
$SERVER_PFX
backend = 127.0.0.1:$EPORT

$(for bc in "${BCASES[@]}"; do
    read -r name _ <<<"$bc"
    printf '\n[listener:back%s]\nbind = 127.0.0.1:%s\nsecure = off\nbackend = 127.0.0.1:%s\n' "$name" "${LBP[$name]}" "${BP[$name]}"
    printf 'backend_secure = on\nbackend_ca = %s/ca.pem\n' "$CERTS"
done)
EOF
start_tlsgate "$CONFIG"

# client side
for c in "$L13 1.3 corrupt" "$L13 1.3 overflow" "$L13 1.3 keyupdate" "$L12 1.2 corrupt" "$L12 1.2 overflow"; do
    # shellcheck disable=SC2086
    if out=$("$PY" "$WORK/client.py" $c 2>&1); then log "client ${c#* }: ${out//$'\n'/; }"
    else error "client ${c#* }: $out"; fi
done

# backend side: a plaintext client starts the connection, the backend misbehaves
for bc in "${BCASES[@]}"; do
    read -r v ver kind <<<"$bc"
    out=$("$PY" - "${LBP[$v]}" <<'EOF' 2>&1
import sys, e2elib
s = e2elib.tcp_connect(int(sys.argv[1]), timeout=5)
s.sendall(b"ping")
got = e2elib.recv_exact(s, 4)
print("control echo through the TLS backend: %r" % got)
# stay connected: our own end would make tlsgate send close_notify first
e2elib.closed_within(s, 8)
sys.exit(0 if got == b"ping" else 1)
EOF
) || error "backend $ver $kind control: $out"
    log "backend $ver $kind: $out"
    end=$(( $(now_ms) + 8000 ))
    until [ -s "$WORK/backend$v.result" ] || [ "$(now_ms)" -ge "$end" ]; do sleep 0.05; done
    res=$(cat "$WORK/backend$v.result" 2>/dev/null)
    case $res in
        alert*) log "backend $ver $kind got from tlsgate: $res" ;;
        *) error "backend $ver: no alert from tlsgate after a $kind record: ${res:-nothing}" ;;
    esac
done
assert_log_contains 'TLS error from client: .*(BAD_RECORD_MAC|bad record mac|DECRYPTION_FAILED)'
assert_log_contains 'TLS error from backend'
finish
