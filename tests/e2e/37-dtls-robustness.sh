#!/usr/bin/env bash
# 37-dtls-robustness: dtls_mtu is applied and garbage does no harm.
#  - dtls_mtu = 600: every datagram tlsgate sends during a certificate
#    handshake (the flight with the certificate chain is fragmented) and
#    after it is at most 600 bytes; a 600-byte backend reply is reported as
#    too large instead of being cut or sent as an oversized datagram.
#  - 2000 mutated ClientHellos (bit flips, truncations, splices) from many
#    ports and random datagrams sprayed (with a raw socket) at the address
#    and port of an established session neither crash tlsgate nor disturb
#    that session, which still echoes afterwards.
#  - ClientHellos spoofed (raw socket) from the address and port of an
#    established session do not replace it (RFC 6347 4.2.8): with cookies
#    they get a HelloVerifyRequest (at most one a second), without cookies
#    the new handshake runs beside the session and times out.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/dtls-helpers.sh"
require_cmd openssl gnutls-cli
[ "$(id -u)" = 0 ] || skip "needs root for a raw socket (spoofed source port on loopback)"

EPORT=$(free_port udp)
DPORT=$(free_port udp)
start_udp_echo "$EPORT"
write_config robust.ini <<EOF
$(global_section workers=1 log_level=info)

[listener:small]
bind = 127.0.0.1:$DPORT
transport = udp
$SERVER_PFX
psk = file:$CERTS/psk.txt
backend = 127.0.0.1:$EPORT
dtls_mtu = 600
; without cookies a 600-byte-MTU certificate flight goes out under the 3x
; rule over three rounds of the client's retransmission timer (~3 s)
handshake_timeout = 5s
EOF
start_tlsgate "$CONFIG"
wait_running

TLSGATE_LOG=$TLSGATE_LOG "$PY" - "$DPORT" <<'EOF' || fail "robustness checks failed"
import os, random, re, socket, struct, sys, threading, time
import dtlslib as d

dport = int(sys.argv[1])
failed = []
random.seed(7)

# --- an observing relay between s_client and tlsgate ---------------------------
front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); front.bind(("127.0.0.1", 0))
back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); back.bind(("127.0.0.1", 0))
sizes, client_addr, stop = [], [None], [False]
def relay():
    front.settimeout(0.05); back.settimeout(0.05)
    while not stop[0]:
        try:
            data, a = front.recvfrom(65535); client_addr[0] = a
            back.sendto(data, ("127.0.0.1", dport))
        except socket.timeout:
            pass
        try:
            data, _ = back.recvfrom(65535); sizes.append(len(data))
            if client_addr[0]: front.sendto(data, client_addr[0])
        except socket.timeout:
            pass
t = threading.Thread(target=relay); t.start()
c = d.s_client(front.getsockname()[1], "-CAfile", d.cert("ca.pem"), "-verify_return_error")
lines = ["mtu-%d-%s" % (i, "m" * (100 * i)) for i in range(5)]   # up to ~410 bytes of data
got = c.roundtrip(lines)
c.send_line("X" * 599)            # comes back as 600 bytes: more than one 600-byte datagram carries
arrived = c.wait_for(b"XXXXXXXXXX", 2)
got2 = c.roundtrip(["still-alive"])
c.close()
stop[0] = True; t.join()
print("datagrams from tlsgate: %d, largest %d bytes" % (len(sizes), max(sizes) if sizes else 0), flush=True)
if got != lines or got2 != ["still-alive"] or not sizes or max(sizes) > 600 or arrived:
    failed.append("mtu")
    print("FAILED: mtu: echoed %d/%d, after %s, oversized arrived %s\n%s" % (len(got), len(lines), got2, arrived, c.text()[-600:]), flush=True)
else:
    print("ok: with dtls_mtu = 600 every datagram was <= 600 bytes; the oversized reply was dropped", flush=True)

# --- mutated ClientHellos ------------------------------------------------------
ch = d.openssl_client_hello()
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(50)]
for s in socks:
    s.bind(("127.0.0.5", 0)); s.setblocking(False)
for i in range(2000):
    m = bytearray(ch)
    kind = i % 4
    if kind == 0:
        for _ in range(random.randint(1, 8)):
            m[random.randrange(len(m))] ^= 1 << random.randrange(8)
    elif kind == 1:
        m = m[:random.randrange(len(m))]
    elif kind == 2:
        p = random.randrange(13, len(m)); m[p:p + 4] = os.urandom(4)
    else:
        m = m[:random.randrange(13, len(m))] + os.urandom(random.randrange(0, 300))
    socks[i % len(socks)].sendto(bytes(m), ("127.0.0.1", dport))
    if i % 100 == 99:
        time.sleep(0.01)
for s in socks:
    s.close()
print("sent 2000 mutated ClientHellos", flush=True)

# --- garbage at an established session's address and port (raw socket) -----------
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
def spoof(sport, payload):
    hdr = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)   # checksum 0: none
    raw.sendto(hdr + payload, ("127.0.0.1", 0))

sport_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); sport_sock.bind(("127.0.0.1", 0))
sport = sport_sock.getsockname()[1]; sport_sock.close()
c = d.s_client(dport, "-psk", d.psk_key(), "-psk_identity", "client1", "-cipher", "PSK",
               "-bind", "127.0.0.1:%d" % sport)
ok = c.roundtrip(["before-garbage"]) == ["before-garbage"]
for i in range(400):
    k = i % 4
    if k == 0:
        spoof(sport, os.urandom(random.randrange(0, 200)))
    elif k == 1:    # looks like an epoch-1 application data record
        spoof(sport, b"\x17\xfe\xfd\x00\x01" + os.urandom(6) + struct.pack("!H", 40) + os.urandom(40))
    elif k == 2:    # an alert record with nonsense
        spoof(sport, b"\x15\xfe\xfd\x00\x01" + os.urandom(6) + b"\x00\x02\x02\x28")
    else:           # a record whose length lies
        spoof(sport, b"\x17\xfe\xfd\x00\x01" + os.urandom(6) + b"\xff\xff" + os.urandom(20))
time.sleep(0.3)
ok2 = c.roundtrip(["after-garbage"]) == ["after-garbage"]
c.close()
if ok and ok2:
    print("ok: an established session survived 400 spoofed garbage datagrams", flush=True)
else:
    failed.append("garbage"); print("FAILED: session before %s after %s\n%s" % (ok, ok2, c.text()[-600:]), flush=True)

# Spoofed ClientHellos in the name of an established session (RFC 6347 4.2.8):
# the association must stay until the client proves it is there. gnutls-cli
# ignores the HelloVerifyRequest / ServerHello this provokes (openssl
# s_client does not: it stalls on an unexpected epoch-0 handshake message).
c = d.gnutls_cli(dport, "--pskusername", "client1", "--pskkey", d.psk_key(),
                 "--priority", "NORMAL:-KX-ALL:+PSK")
ok = c.roundtrip(["before-hellos"]) == ["before-hellos"]
time.sleep(0.2)
gport = int(re.findall(r"client 127\.0\.0\.1:(\d+) on small: handshake: .*psk identity",
                       open(os.environ["TLSGATE_LOG"]).read())[-1])
for i in range(20):
    m = bytearray(ch)
    m[13 + 12 + 2 + (i % 32)] ^= 0x5a     # a different client random each time
    spoof(gport, bytes(m))
    time.sleep(0.02)
time.sleep(0.3)
ok2 = c.roundtrip(["after-hellos"]) == ["after-hellos"]
c.close()
print("%s: a session survived 20 spoofed ClientHellos from its own address and port (gnutls-cli port %d)" %
      ("ok" if ok and ok2 else "FAILED", gport), flush=True)
if not (ok and ok2):
    failed.append("spoofed hellos"); print(c.text()[-600:], flush=True)
with open(os.path.join(os.environ["WORK"], "gport"), "w") as f:
    f.write(str(gport))
raw.close()

# still serving new clients
c = d.s_client(dport, "-CAfile", d.cert("ca.pem"))
if c.roundtrip(["new-after-all"]) != ["new-after-all"]:
    failed.append("new client"); print("FAILED: a new client after the garbage", flush=True)
c.close()
sys.exit(1 if failed else 0)
EOF
is_alive "$TLSGATE_PID" || fail "tlsgate died"
assert_log_contains "does not fit one DTLS record within dtls_mtu = 600"
GPORT=$(cat "$WORK/gport")
assert_log_not_contains "client 127.0.0.1:$GPORT on small: close: client started a new handshake"
assert_log_contains "client 127.0.0.1:$GPORT on small: close: client sent close_notify"
sleep 5.5    # let half-open handshakes from the fuzzing time out
stop_tlsgate 20
[ "$TLSGATE_RC" = 0 ] || fail "tlsgate exited $TLSGATE_RC on SIGTERM"
grep "udp stats\|udp drops" "$TLSGATE_LOG" | cut -c 25- | sed 's/^/    | /'
log "ok"
