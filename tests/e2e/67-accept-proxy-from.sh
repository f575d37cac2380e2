#!/usr/bin/env bash
# 67-accept-proxy-from: only the load balancers listed in accept_proxy_from
# may connect (and must send a PROXY header); any other peer is refused at
# once, whatever it sends, so a direct client cannot claim a source address.
# Peers use distinct loopback source addresses (127.0.0.2 and 127.0.1.77
# listed, 127.0.0.3 not).  Checked on a plaintext and on a TLS listener:
# listed peers with v1 and v2 headers get through and their claimed address
# reaches the log and the onward PROXY header (the controls); an unlisted
# peer is closed before anything reaches the backend, with or without a
# header, logged under its real address and counted in
# tlsgate_proxy_refused_total; a listed peer without a header is still
# refused as before.  `tlsgate -t` warns about accept_proxy = on without a
# list, and names a bad entry.
. "$(dirname "$0")/lib.sh"
require_cmd curl

BPORT=$(free_port); LB=$(free_port); LBTLS=$(free_port); MPORT=$(free_port)

start_capture "$BPORT" "$WORK/cap"   # records each connection up to "END"

write_config apf.ini <<EOF
$(global_section workers=2 log_level=debug metrics=127.0.0.1:$MPORT)

[listener:lb]
bind = 127.0.0.1:$LB
secure = off
accept_proxy_from = 127.0.0.2, 127.0.1.0/24
backend = 127.0.0.1:$BPORT
proxy_protocol = v1
handshake_timeout = 2s

[listener:lbtls]
bind = 127.0.0.1:$LBTLS
$SERVER_PFX
accept_proxy = on
accept_proxy_from = 127.0.0.2
backend = 127.0.0.1:$BPORT
proxy_protocol = v1
EOF
check_config "$CONFIG"
[ "$CHECK_RC" = 0 ] || fail "tlsgate -t apf.ini: $CHECK_OUT"
grep -q "warn" <<<"$CHECK_OUT" && grep -q accept_proxy <<<"$CHECK_OUT" &&
    error "tlsgate -t warns about accept_proxy although accept_proxy_from is set: $CHECK_OUT"
start_tlsgate "$CONFIG"

"$PY" - "$LB" "$LBTLS" "$WORK/cap" <<'EOF' || error "accept_proxy_from checks failed"
import glob, os, socket, ssl, struct, sys, time
import e2elib
lb, lbtls, capdir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
bad = 0
def check(ok, what):
    global bad
    print(("ok: " if ok else "FAILED: ") + what, flush=True)
    if not ok: bad += 1

def connect(port, src):
    s = socket.socket()
    s.settimeout(5)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s

def captures():
    return sorted(glob.glob(os.path.join(capdir, "*.bin")))

def newest_capture(before):
    t0 = time.monotonic()
    while time.monotonic() - t0 < 5:
        new = sorted(set(captures()) - set(before))
        if new:
            return open(new[0], "rb").read()
        time.sleep(0.02)
    return b""

def talk(s, payload):
    s.sendall(payload)
    return e2elib.recv_exact(s, 2)

V1 = b"PROXY TCP4 203.0.113.9 198.51.100.1 51234 443\r\n"
SIG = b"\r\n\r\n\x00\r\nQUIT\n"
V2 = SIG + bytes([0x21, 0x11]) + struct.pack(">H", 12) + socket.inet_aton("192.0.2.77") \
     + socket.inet_aton("192.0.2.1") + struct.pack(">HH", 40000, 443)

# control 1: a listed address (exact entry), v1 header
before = captures()
s = connect(lb, "127.0.0.2")
check(talk(s, V1 + b"hello END") == b"ok", "listed 127.0.0.2 with a v1 header answered")
s.close()
got = newest_capture(before)
check(got == V1 + b"hello END", "claimed address passed on: %r" % got[:60])

# control 2: a listed block (127.0.1.0/24), v2 header
before = captures()
s = connect(lb, "127.0.1.77")
check(talk(s, V2 + b"two END") == b"ok", "listed 127.0.1.77 (in 127.0.1.0/24) with a v2 header answered")
s.close()
got = newest_capture(before)
check(got == b"PROXY TCP4 192.0.2.77 192.0.2.1 40000 443\r\ntwo END",
      "v2 address passed on: %r" % got[:60])

# an unlisted peer claiming an address: closed, nothing reaches the backend
def refused(port, src, payload, what):
    before = captures()
    s = connect(port, src)
    try:
        s.sendall(payload)
    except OSError:
        pass
    t = e2elib.closed_within(s, 5)
    s.close()
    time.sleep(0.3)
    check(t is not None, "%s: connection closed (after %s s)" % (what, t))
    check(set(captures()) == set(before), "%s: nothing reached the backend" % what)

refused(lb, "127.0.0.3", b"PROXY TCP4 198.51.100.66 198.51.100.1 4444 443\r\nsneak END",
        "unlisted 127.0.0.3 with a v1 header")
refused(lb, "127.0.0.3", b"direct END", "unlisted 127.0.0.3 without a header")
# a listed peer must still send a header (accept_proxy semantics unchanged)
refused(lb, "127.0.0.2", b"no header END", "listed 127.0.0.2 without a header")

# TLS listener: header, then TLS
before = captures()
raw = connect(lbtls, "127.0.0.2")
raw.sendall(b"PROXY TCP4 203.0.113.10 198.51.100.1 5555 443\r\n")
s = e2elib.tls_context().wrap_socket(raw, server_hostname="localhost")
check(talk(s, b"tls END") == b"ok", "TLS listener: listed peer with a header answered")
s.close()
got = newest_capture(before)
check(got.startswith(b"PROXY TCP4 203.0.113.10 "), "TLS listener: claimed address passed on: %r" % got[:60])
refused(lbtls, "127.0.0.3", b"PROXY TCP4 198.51.100.67 198.51.100.1 4444 443\r\n",
        "TLS listener: unlisted 127.0.0.3")
sys.exit(1 if bad else 0)
EOF

assert_log_contains 'client 203\.0\.113\.9:51234 on lb' >/dev/null || error "the listed peer's claimed address is not in the log"
assert_log_contains 'client 127\.0\.0\.3:[0-9]+ on lb: close: refused: not in accept_proxy_from' || error "no refusal logged for 127.0.0.3 on lb"
assert_log_contains 'client 127\.0\.0\.3:[0-9]+ on lbtls: close: refused: not in accept_proxy_from' >/dev/null || error "no refusal logged for 127.0.0.3 on lbtls"
if grep -qE '198\.51\.100\.6[67]' "$TLSGATE_LOG"; then
    error "an address claimed by an unlisted peer reached the log: $(grep -E '198\.51\.100\.6[67]' "$TLSGATE_LOG" | head -2)"
fi
assert_log_contains 'client 127\.0\.0\.2:[0-9]+ on lb: close: bad PROXY header' >/dev/null || error "listed peer without a header: no 'bad PROXY header' line"
metrics=$(curl -s --max-time 5 "http://127.0.0.1:$MPORT/metrics")
grep -qx 'tlsgate_proxy_refused_total{listener="lb"} 2' <<<"$metrics" ||
    error "metrics: want tlsgate_proxy_refused_total{listener=\"lb\"} 2, got: $(grep proxy_refused <<<"$metrics")"
grep -qx 'tlsgate_proxy_refused_total{listener="lbtls"} 1' <<<"$metrics" ||
    error "metrics: want tlsgate_proxy_refused_total{listener=\"lbtls\"} 1, got: $(grep proxy_refused <<<"$metrics")"
log "metrics: $(grep '^tlsgate_proxy_refused_total' <<<"$metrics" | tr '\n' ' ')"

# -t: accept_proxy = on without a list is allowed, with a warning; a bad entry is an error
write_config open.ini <<EOF
[listener:open]
bind = 127.0.0.1:$(free_port)
secure = off
accept_proxy = on
backend = 127.0.0.1:$BPORT
EOF
check_config "$CONFIG"
[ "$CHECK_RC" = 0 ] || error "accept_proxy = on without a list must still be accepted: $CHECK_OUT"
grep -q 'open.ini:4: \[listener:open\] accept_proxy: on without accept_proxy_from' <<<"$CHECK_OUT" &&
    log "-t warns: $(grep 'accept_proxy:' <<<"$CHECK_OUT")" ||
    error "-t does not warn about accept_proxy without accept_proxy_from: $CHECK_OUT"
write_config bad.ini <<EOF
[listener:bad]
bind = 127.0.0.1:$(free_port)
secure = off
accept_proxy_from = 10.0.0.0/8, lb.internal
backend = 127.0.0.1:$BPORT
EOF
check_config "$CONFIG"
[ "$CHECK_RC" != 0 ] && grep -q "bad.ini:4: \[listener:bad\] accept_proxy_from: 'lb.internal': not an IP address" <<<"$CHECK_OUT" &&
    log "-t refuses: $(grep accept_proxy_from <<<"$CHECK_OUT")" ||
    error "-t does not refuse a name in accept_proxy_from clearly (rc $CHECK_RC): $CHECK_OUT"
finish
