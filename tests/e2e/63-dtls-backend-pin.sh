#!/usr/bin/env bash
# 63-dtls-backend-pin: backend_pin on the DTLS backend path (udp listener,
# backend_secure = on, backend_verify = off: the pin alone decides), against
# `openssl s_server -dtls1_2` backends:
#   pin = sha256 of server.pem:  server.pem answers (control); a leaf from an
#     unknown CA (not self-signed; sent without its chain, so the chain walk
#     stops at an unknown issuer) is refused with
#     "backend certificate does not match backend_pin".
#   pin = spki-sha256 of that unknown-CA key: it answers (control).
# And the DTLS backend suites: a backend that only speaks AES128-SHA is
# refused (s_server: "no shared cipher"); the backends above are the control.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/dtls-helpers.sh"
require_cmd openssl

fp() { openssl x509 -in "$CERTS/$1" -noout -fingerprint -sha256 | sed 's/.*=//; s/://g'; }
spki() { openssl x509 -in "$CERTS/$1" -noout -pubkey | openssl pkey -pubin -outform DER | openssl dgst -sha256 -binary | base64; }
P1=$(free_port udp); P2=$(free_port udp); P3=$(free_port udp); P4=$(free_port udp)
S1=$(free_port udp); S2=$(free_port udp); S3=$(free_port udp); S4=$(free_port udp)
lst() {  # NAME PORT BACKEND PIN
    printf '\n[listener:%s]\nbind = 127.0.0.1:%s\ntransport = udp\nsecure = off\nbackend = 127.0.0.1:%s\n' "$1" "$2" "$3"
    printf 'backend_secure = on\nbackend_verify = off\nbackend_pin = %s\nconnect_timeout = 3s\n' "$4"
}
{
    printf '[global]\nworkers = 1\nlog_level = info\n'
    lst pinned "$P1" "$S1" "sha256:$(fp server.pem)"
    lst unknown "$P2" "$S2" "sha256:$(fp server.pem)"
    lst spki "$P3" "$S3" "spki-sha256:$(spki unknown-server.pem)"
    printf '\n[listener:weak]\nbind = 127.0.0.1:%s\ntransport = udp\nsecure = off\nbackend = 127.0.0.1:%s\n' "$P4" "$S4"
    printf 'backend_secure = on\nbackend_ca = %s\nconnect_timeout = 3s\n' "$CERTS/ca.pem"
} > "$WORK/pin.ini"
CONFIG=$WORK/pin.ini
start_tlsgate "$CONFIG"
wait_running

"$PY" - "$P1" "$P2" "$P3" "$S1" "$S2" "$S3" "$P4" "$S4" <<'EOF' || fail "DTLS backend pin checks failed"
import socket, sys
import dtlslib as d
p1, p2, p3, s1, s2, s3, p4, s4 = map(int, sys.argv[1:9])
servers, failed = [], []
def s_server(port, cert, key, chain=None, extra=()):
    args = ["openssl", "s_server", "-dtls1_2", "-accept", "127.0.0.1:%d" % port,
            "-cert", d.cert(cert), "-key", d.cert(key), "-naccept", "1"] + list(extra)
    if chain:
        args += ["-cert_chain", d.cert(chain)]
    c = d.Client(args, name="s_server-%d" % port)
    servers.append(c)
    if not c.wait_for(b"ACCEPT", 10):
        sys.exit("s_server on %d did not start: %s" % (port, c.text()))
    return c
def send(port, msg):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(msg, ("127.0.0.1", port))
    return u
try:
    good = s_server(s1, "server.pem", "server.key")
    bad = s_server(s2, "unknown-server.pem", "unknown-server.key")  # leaf only: its issuer is unknown
    spk = s_server(s3, "unknown-server.pem", "unknown-server.key", "unknown-int.pem")
    send(p1, b"to-pinned\n")
    if good.wait_for(b"to-pinned", 10): print("ok: pinned backend got the datagram", flush=True)
    else: failed.append("pinned"); print("FAILED: pinned backend got nothing\n" + good.text()[-600:], flush=True)
    send(p2, b"to-unknown\n")
    if bad.wait_for(b"to-unknown", 3): failed.append("unknown"); print("FAILED: a backend from an unknown CA with another key got data", flush=True)
    else: print("ok: unknown-CA backend got nothing", flush=True)
    send(p3, b"to-spki\n")
    if spk.wait_for(b"to-spki", 10): print("ok: spki-pinned backend (unknown CA) got the datagram", flush=True)
    else: failed.append("spki"); print("FAILED: spki-pinned backend got nothing\n" + spk.text()[-600:], flush=True)
    weak = s_server(s4, "server-rsa.pem", "server-rsa.key", extra=["-cipher", "AES128-SHA"])
    send(p4, b"to-weak\n")
    if weak.wait_for(b"to-weak", 3): failed.append("weak"); print("FAILED: an AES128-SHA-only backend got data", flush=True)
    elif weak.wait_for(b"no shared cipher", 3) or weak.wait_for(b"NO_SHARED_CIPHER", 1): print("ok: AES128-SHA-only backend refused (no shared cipher)", flush=True)
    else: failed.append("weak-reason"); print("FAILED: s_server did not report no shared cipher\n" + weak.text()[-600:], flush=True)
finally:
    for c in servers: c.close()
sys.exit(1 if failed else 0)
EOF
assert_log_contains "on unknown: .*DTLS handshake failed: certificate verify failed: backend certificate does not match backend_pin" 5
finish
