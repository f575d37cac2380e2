#!/usr/bin/env bash
# 35-dtls-cookie-flood: what spoofed traffic costs.
#
# Both builds: datagrams too short, not DTLS, or DTLS records that are not a
# ClientHello from an unknown peer get no reply and are counted.
#
# OpenSSL build, dtls_cookie = auto (RFC 6347 cookies): the first reply to a
# real ClientHello (recorded from openssl s_client) is a HelloVerifyRequest
# no larger than it, with a cookie of at most 32 bytes. A flood of such
# ClientHellos from 300 source ports on 127.0.0.2-4 that never answer
# creates no association at all and tlsgate sends no more bytes than it
# received, while a real client from 127.0.0.1 still gets through.
#
# BoringSSL build (cookies impossible: `on` is a config error, `auto` warns
# once) and dtls_cookie = off on either build: the same flood stays within
# the half-open caps (32 per address and worker), the half-open handshakes
# end at handshake_timeout, and the real client still gets through.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/dtls-helpers.sh"
require_cmd openssl

EPORT=$(free_port udp)
CPORT=$(free_port udp)
OPORT=$(free_port udp)
start_udp_echo "$EPORT"

common() {
    cat <<EOF
$SERVER_PFX
backend = 127.0.0.1:$EPORT
handshake_timeout = 2s
EOF
}

# dtls_cookie = on: accepted with OpenSSL, a config error with BoringSSL
write_config on.ini <<EOF
[listener:on]
bind = 127.0.0.1:$CPORT
transport = udp
dtls_cookie = on
$(common)
EOF
check_config "$CONFIG"
if [ "$TG_LIB" = BoringSSL ]; then
    [ "$CHECK_RC" = 1 ] || fail "dtls_cookie = on accepted by the BoringSSL build"
    printf '%s\n' "$CHECK_OUT" | grep >/dev/null -c "on.ini:4: \[listener:on\] dtls_cookie: on is not possible with BoringSSL" ||
        fail "unexpected error for dtls_cookie = on: $CHECK_OUT"
    log "dtls_cookie = on refused: $(printf '%s' "$CHECK_OUT" | head -n1)"
else
    [ "$CHECK_RC" = 0 ] || fail "dtls_cookie = on refused by the OpenSSL build: $CHECK_OUT"
fi

write_config flood.ini <<EOF
$(global_section workers=1 log_level=info)

[listener:cookie]
bind = 127.0.0.1:$CPORT
transport = udp
dtls_cookie = auto
$(common)

[listener:capped]
bind = 127.0.0.1:$OPORT
transport = udp
dtls_cookie = off
$(common)
EOF
start_tlsgate "$CONFIG"
wait_running
if [ "$TG_LIB" = BoringSSL ]; then
    assert_log_contains "listener cookie: DTLS cookies are off: BoringSSL removed server-side HelloVerifyRequest"
    [ "$(grep -c 'DTLS cookies are off' "$TLSGATE_LOG")" = 1 ] || fail "expected exactly one cookie warning"
fi

"$PY" - "$CPORT" "$OPORT" "$TG_LIB" <<'EOF' || fail "flood checks failed"
import os, socket, sys, threading, time
import dtlslib as d

cport, oport, lib = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
failed = []
ch = d.openssl_client_hello()
print("recorded a ClientHello of %d bytes from openssl s_client" % len(ch), flush=True)
assert d.handshake_type(ch) == 1, "not a ClientHello"

def no_reply(port, payload, what):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.4)
    s.sendto(payload, ("127.0.0.1", port))
    try:
        r = s.recvfrom(65535)[0]
        failed.append(what); print("FAILED: %s got a %d-byte reply" % (what, len(r)), flush=True)
    except socket.timeout:
        print("ok: %s: dropped without reply" % what, flush=True)

for port in (cport, oport):
    no_reply(port, b"\x16\xfe", "too short")
    no_reply(port, os.urandom(200), "random bytes")
    no_reply(port, b"GET / HTTP/1.0\r\n\r\n" * 4, "plaintext")
    # an application-data record (epoch 1) from an unknown peer
    no_reply(port, b"\x17\xfe\xfd\x00\x01" + b"\x00" * 6 + b"\x00\x30" + os.urandom(48), "stray record")
    # a ClientHello cut short
    no_reply(port, ch[:40], "truncated ClientHello")

if lib == "OpenSSL":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
    s.sendto(ch, ("127.0.0.1", cport))
    r = s.recvfrom(65535)[0]
    recs = d.records(r)
    if d.handshake_type(r) != 3:
        failed.append("hvr"); print("FAILED: first reply is handshake type %s, not HelloVerifyRequest" % d.handshake_type(r), flush=True)
    else:
        body = recs[0][4][12:]
        cookie_len = body[2]
        ok = len(r) <= len(ch) and cookie_len <= 32 and recs[0][3] == d.records(ch)[0][3]
        print("%s: first reply is a HelloVerifyRequest of %d bytes (ClientHello %d), cookie %d bytes, record sequence echoed" %
              ("ok" if ok else "FAILED", len(r), len(ch), cookie_len), flush=True)
        if not ok:
            failed.append("hvr size")

def flood(port, seconds=1.5):
    """ClientHellos from 100 ports on each of 127.0.0.2-4, each sent a few
    times, never answering anything; returns datagrams sent."""
    socks = []
    for a in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
        for _ in range(100):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((a, 0)); s.setblocking(False)
            socks.append(s)
    sent, end = 0, time.monotonic() + seconds
    for rnd in range(3):
        for s in socks:
            s.sendto(ch, ("127.0.0.1", port)); sent += 1
        time.sleep(0.2)
        for s in socks:            # drain whatever came back, answer nothing
            try:
                while True: s.recv(65535)
            except BlockingIOError:
                pass
        if time.monotonic() > end:
            break
    for s in socks: s.close()
    return sent

def legit(port, tag):
    c = d.s_client(port, "-CAfile", d.cert("ca.pem"))
    got = c.roundtrip([tag], timeout=15)
    c.close()
    return got == [tag]

for port, name in ((cport, "cookie"), (oport, "capped")):
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("n", flood(port)))
    t.start()
    time.sleep(0.3)
    ok = legit(port, "legit-during-flood-" + name)
    t.join(30)
    print("%s: listener %s: %d spoofed ClientHellos sent; a real client from 127.0.0.1 %s" %
          ("ok" if ok else "FAILED", name, result.get("n", 0), "got through" if ok else "did NOT get through"), flush=True)
    if not ok:
        failed.append("legit " + name)
time.sleep(2.5)   # handshake_timeout 2s: half-open handshakes end
sys.exit(1 if failed else 0)
EOF

stop_tlsgate 20
[ "$TLSGATE_RC" = 0 ] || fail "tlsgate exited $TLSGATE_RC on SIGTERM"
grep "udp stats\|udp drops" "$TLSGATE_LOG" | cut -c 25- | sed 's/^/    | /'

for l in cookie capped; do
    [ "$(udp_stats short "$l")" -ge 1 ] || fail "$l: short datagrams not counted"
    # random bytes, plaintext, and the ClientHello cut inside its record
    [ "$(udp_stats not-dtls "$l")" -ge 3 ] || fail "$l: non-DTLS datagrams not counted"
    [ "$(udp_stats not-hello "$l")" -ge 1 ] || fail "$l: stray records not counted"
    [ "$(udp_stats "associations open" "$l")" = 0 ] || fail "$l: associations left open"
done

"$PY" - "$TLSGATE_LOG" <<'EOF' || fail "no stats for the cookie listener"
import re, sys
for line in open(sys.argv[1]):
    m = re.search(r"listener cookie \(worker \d+\): udp stats: from clients (\d+) datagrams / (\d+) bytes, to clients (\d+) datagrams / (\d+) bytes", line)
    if m:
        din, bin_, dout, bout = map(int, m.groups())
        print("cookie listener: in %d datagrams / %d bytes, out %d / %d bytes" % (din, bin_, dout, bout))
EOF

if [ "$TG_LIB" = OpenSSL ]; then
    created=$(udp_stats created cookie)
    hvr=$(udp_stats hello-verify cookie)
    log "cookie listener: associations created $created (1 real client), hello-verify sent $hvr"
    [ "$created" = 1 ] || fail "the flood created associations ($created created, only 1 real client)"
    [ "$hvr" -ge 300 ] || fail "only $hvr HelloVerifyRequests for the flood"
    "$PY" - "$TLSGATE_LOG" <<'EOF' || fail "tlsgate sent more bytes than it received"
import re, sys
for line in open(sys.argv[1]):
    m = re.search(r"listener cookie \(worker \d+\): udp stats: from clients \d+ datagrams / (\d+) bytes, to clients \d+ datagrams / (\d+) bytes", line)
    if m:
        bin_, bout = int(m.group(1)), int(m.group(2))
        sys.exit(0 if bout <= bin_ else 1)
sys.exit(1)
EOF
    capped_listeners="capped"
else
    capped_listeners="cookie capped"
fi
for l in $capped_listeners; do
    peak=$(udp_stats "half-open peak" "$l")
    per=$("$PY" -c '
import re, sys
for line in open(sys.argv[1]):
    m = re.search(r"listener %s \(worker \d+\): udp drops: .*half-open cap (\d+) total / (\d+) per address" % sys.argv[2], line)
    if m: print(int(m.group(1)) + int(m.group(2)))' "$TLSGATE_LOG" "$l")
    log "$l listener: half-open peak $peak (caps: 32 per address, 3 flooding addresses + 1 real), ClientHellos refused by the caps: $per"
    [ "$peak" -le $((3 * 32 + 1)) ] || fail "$l: half-open peak $peak exceeds the caps"
    [ "$per" -gt 0 ] || fail "$l: the caps never refused anything"
    [ "$(udp_stats "timed out" "$l")" -ge 90 ] || fail "$l: half-open handshakes did not time out"
done
log "ok"
