#!/usr/bin/env bash
# 12-proxy-protocol: PROXY headers to the backend are byte-exact (v1 text,
# v2 binary with HAProxy's SSL TLVs carrying the client certificate's CN),
# and accept_proxy = on takes the client address from an upstream load
# balancer's v1 or v2 header (used in logs and passed on), before TLS or
# plaintext, while a malformed header closes the connection with a reason.
. "$(dirname "$0")/lib.sh"

BPORT=$(free_port)
PLAIN=$(free_port); TLS=$(free_port); LB=$(free_port); LBTLS=$(free_port)

start_capture "$BPORT" "$WORK/cap"   # records each connection up to "END"

write_config pp.ini <<EOF
$(global_section workers=1 log_level=debug)

[listener:v1]
bind = 127.0.0.1:$PLAIN
secure = off
backend = 127.0.0.1:$BPORT
proxy_protocol = v1

[listener:v2]
bind = 127.0.0.1:$TLS
$SERVER_PFX
verify_client = require
client_ca = $CERTS/ca.pem
backend = 127.0.0.1:$BPORT
proxy_protocol = v2

[listener:lb]
bind = 127.0.0.1:$LB
secure = off
accept_proxy = on
backend = 127.0.0.1:$BPORT
proxy_protocol = v1
handshake_timeout = 2s

[listener:lbtls]
bind = 127.0.0.1:$LBTLS
$SERVER_PFX
accept_proxy = on
backend = 127.0.0.1:$BPORT
proxy_protocol = v2
EOF
start_tlsgate "$CONFIG"

"$PY" - "$PLAIN" "$TLS" "$LB" "$LBTLS" "$WORK/cap" <<'EOF' || fail "PROXY protocol checks failed"
import glob, os, socket, struct, sys, time
import e2elib
plain, tls, lb, lbtls, capdir = map(lambda a: int(a) if a.isdigit() else a, sys.argv[1:])
bad = 0
def check(ok, what):
    global bad
    print(("ok: " if ok else "FAILED: ") + what, flush=True)
    if not ok: bad += 1

seen = set()
def captured():
    """The newest capture file not seen before (waits up to 5 s)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < 5:
        files = sorted(set(glob.glob(os.path.join(capdir, "*.bin"))) - seen)
        if files:
            seen.add(files[0])
            return open(files[0], "rb").read()
        time.sleep(0.02)
    return b""

def talk(s, payload=b"hello END"):
    s.sendall(payload)
    return e2elib.recv_exact(s, 2)

# v1 from a plain listener: exactly the client's and our addresses
s = e2elib.tcp_connect(plain)
cport = s.getsockname()[1]
check(talk(s) == b"ok", "v1 listener answered")
s.close()
got = captured()
want = b"PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\nhello END" % (cport, plain)
check(got == want, "v1 header byte-exact: %r" % got[:80])

# v2 from a TLS listener with a client certificate
s = e2elib.tls_connect(tls, certfile="client.pem", keyfile="client.key")
cport = s.getsockname()[1]
check(talk(s) == b"ok", "v2 listener answered")
version, cipher = s.version(), s.cipher()[0]
s.close()
got = captured()
sig = b"\r\n\r\n\x00\r\nQUIT\n"
check(got[:12] == sig and got[12] == 0x21 and got[13] == 0x11, "v2 signature, PROXY command, TCP4")
blen = struct.unpack(">H", got[14:16])[0]
hdr, rest = got[:16 + blen], got[16 + blen:]
check(rest == b"hello END", "payload follows the v2 header unchanged")
src, dst, sp, dp = struct.unpack(">4s4sHH", hdr[16:28])
check(src == socket.inet_aton("127.0.0.1") and sp == cport and dp == tls,
      "v2 addresses: source port %d, destination port %d" % (sp, dp))
tlvs, p = {}, 28
while p < len(hdr):
    t, l = hdr[p], struct.unpack(">H", hdr[p + 1:p + 3])[0]
    tlvs[t] = hdr[p + 3:p + 3 + l]; p += 3 + l
check(p == len(hdr), "v2 TLVs tile the header")
ssl_tlv = tlvs.get(0x20, b"")
check(len(ssl_tlv) >= 5 and ssl_tlv[0] == 0x07 and ssl_tlv[1:5] == b"\0\0\0\0",
      "PP2_TYPE_SSL: client SSL + certificate, verify = 0")
subs, q = {}, 5
while q + 3 <= len(ssl_tlv):
    t, l = ssl_tlv[q], struct.unpack(">H", ssl_tlv[q + 1:q + 3])[0]
    subs[t] = ssl_tlv[q + 3:q + 3 + l]; q += 3 + l
check(subs.get(0x22) == b"client1", "SSL_CN sub-TLV = client1 (%r)" % subs.get(0x22))
check(subs.get(0x21) == version.encode(), "SSL_VERSION = %s" % version)
check(subs.get(0x23) == cipher.encode(), "SSL_CIPHER = %s" % cipher)
check(tlvs.get(0x02) == b"localhost", "AUTHORITY (SNI) = localhost")

# accept_proxy, v1 in: the balancer's client address goes on to the backend
s = e2elib.tcp_connect(lb)
check(talk(s, b"PROXY TCP4 203.0.113.9 198.51.100.1 51234 443\r\nhello END") == b"ok",
      "accept_proxy v1 answered")
s.close()
got = captured()
check(got == b"PROXY TCP4 203.0.113.9 198.51.100.1 51234 443\r\nhello END",
      "address from the v1 header passed on: %r" % got[:70])

# accept_proxy, v2 in, header split over two writes
v2 = sig + bytes([0x21, 0x11]) + struct.pack(">H", 12) + socket.inet_aton("192.0.2.77") \
     + socket.inet_aton("192.0.2.1") + struct.pack(">HH", 40000, 443)
s = e2elib.tcp_connect(lb)
s.sendall(v2[:7]); time.sleep(0.05); s.sendall(v2[7:] + b"two END")
check(e2elib.recv_exact(s, 2) == b"ok", "accept_proxy v2 (split) answered")
s.close()
got = captured()
check(got == b"PROXY TCP4 192.0.2.77 192.0.2.1 40000 443\r\ntwo END",
      "address from the v2 header passed on: %r" % got[:70])

# accept_proxy before TLS: header, then the handshake on the same socket
raw = e2elib.tcp_connect(lbtls)
raw.sendall(b"PROXY TCP6 2001:db8::9 2001:db8::1 5555 443\r\n")
s = e2elib.tls_context().wrap_socket(raw, server_hostname="localhost")
check(talk(s) == b"ok", "accept_proxy then TLS answered")
s.close()
got = captured()
check(got[13:14] == b"\x21" and socket.inet_ntop(socket.AF_INET6, got[16:32]) == "2001:db8::9",
      "v2 onward header carries the IPv6 address from the v1 header")

# malformed and missing headers close the connection
for name, data in [("garbage", b"HELLO THERE\r\n"), ("bad port", b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n")]:
    s = e2elib.tcp_connect(lb)
    s.sendall(data)
    check(e2elib.closed_within(s, 5) is not None, "%s header: connection closed" % name)
    s.close()
s = e2elib.tcp_connect(lb)
check(e2elib.closed_within(s, 6) is not None, "no header at all: closed by handshake_timeout")
s.close()
sys.exit(1 if bad else 0)
EOF
assert_log_contains 'client 203\.0\.113\.9:51234 on lb' || error "log does not name the client from the PROXY header"
assert_log_contains 'client \[2001:db8::9\]:5555 on lbtls: handshake' || error "TLS log line does not name the PROXY client"
assert_log_contains 'bad PROXY header: not a PROXY protocol header' || error "no log line for the garbage header"
assert_log_contains 'bad PROXY header: bad address or port' || error "no log line for the bad port"
assert_log_contains 'no complete PROXY header within handshake_timeout' || error "no log line for the missing header"
finish
