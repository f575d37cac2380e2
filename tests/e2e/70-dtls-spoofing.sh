#!/usr/bin/env bash
# e2e: serial
# 70-dtls-spoofing: DTLS under spoofed traffic (issue 10, items 11-13).
#
# Sources on 40 addresses 127.0.1.1-40, 5 ports each, send a real
# ClientHello (recorded from openssl s_client) three times, 400 ms apart,
# and never answer anything. For every source we count the bytes it sent
# and the bytes tlsgate sent back:
#  - listener "open" (no cookies: BoringSSL, or dtls_cookie = off): at most
#    3x per source, and nothing at all after the last ClientHello (no
#    timer-driven retransmissions: they would come 1 s and 3 s later);
#  - listener "cookie" (OpenSSL build, dtls_cookie = on): only
#    HelloVerifyRequests, each no larger than the ClientHello (<= 1x).
# Fairness: max_half_open = 48, max_half_open_per_source = 4 with
# handshake_timeout = 20s, so the flood keeps the half-open total full for
# the whole test; a real client from 127.0.0.1 (openssl s_client with the
# ECDSA certificate) completes during the flood (the busiest source's
# oldest half-open handshake is evicted for it), and the evictions and
# refusals are counted in the udp stats and on the metrics endpoint. The
# lockout as reported (1,280+ ClientHellos from 40 addresses against the
# default caps, 1024 and 32 per source) is replayed on a second listener:
# a real client gets in there too.
# Real clients without a flood (s_client ECDSA, s_client PSK, gnutls-cli
# certificate) complete on the no-cookie listener; the time to their first
# echo is printed (the 3x rule costs a certificate handshake one
# retransmission round of the client).
# Established association: an s_client session runs an echo loop through a
# small relay whose socket towards tlsgate (127.0.0.5:P, SO_REUSEPORT,
# connected) shares its address and port with a spoofer's socket; the
# spoofer sends fresh ClientHellos and a replay of the session's own
# ClientHello in the peer's name during the loop. Every echo must come
# back, the association must not be replaced, and the spoofed handshakes
# send the real peer at most 3x what the spoofer sent.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/dtls-helpers.sh"
require_cmd openssl gnutls-cli curl

EPORT=$(free_port udp)
OPORT=$(free_port udp)
CPORT=$(free_port udp)
DFPORT=$(free_port udp)
MPORT=$(free_port)
start_udp_echo "$EPORT"

common() {
    cat <<EOF
transport = udp
$SERVER_PFX
psk = file:$CERTS/psk.txt
backend = 127.0.0.1:$EPORT
handshake_timeout = 20s
max_half_open = 48
max_half_open_per_source = 4
EOF
}
cookie_section=
if [ "$TG_LIB" = OpenSSL ]; then
    cookie_section="[listener:cookie]
bind = 127.0.0.1:$CPORT
dtls_cookie = on
$(common)"
fi
# drain_timeout: the flood's half-open handshakes would otherwise hold the
# exit until their handshake_timeout (20 s); nothing here checks draining
write_config spoof.ini <<EOF
$(global_section workers=1 log_level=info metrics=127.0.0.1:$MPORT drain_timeout=1s)

[listener:open]
bind = 127.0.0.1:$OPORT
dtls_cookie = off
$(common)

[listener:defaults]
bind = 127.0.0.1:$DFPORT
dtls_cookie = off
transport = udp
$SERVER_PFX
backend = 127.0.0.1:$EPORT
handshake_timeout = 20s

$cookie_section
EOF
check_config "$CONFIG"
[ "$CHECK_RC" = 0 ] || fail "tlsgate -t rejected the config: $CHECK_OUT"
start_tlsgate "$CONFIG" "$MPORT"
wait_running
assert_log_contains "listener open: dtls_cookie = off: .* at most 3x the bytes it sent and nothing on a timer"

"$PY" - "$OPORT" "$CPORT" "$TG_LIB" "$DFPORT" <<'EOF' || fail "spoofing checks failed"
import os, selectors, socket, struct, subprocess, sys, threading, time
import dtlslib as d

oport, cport, lib, dfport = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
ca, key = d.cert("ca.pem"), d.psk_key("client1")
failed = []
def bad(msg):
    failed.append(msg); print("FAILED: " + msg, flush=True)

ch = d.openssl_client_hello()
print("recorded a ClientHello of %d bytes from openssl s_client" % len(ch), flush=True)

def first_echo(client, tag, timeout=20):
    t0 = time.monotonic()
    got = client.roundtrip([tag], timeout=timeout)
    dt = time.monotonic() - t0
    client.close()
    return got == [tag], dt

# ---- 1. real clients on the no-cookie listener, no flood: time to first echo
for name, mk in (("s_client ECDSA", lambda: d.s_client(oport, "-CAfile", ca)),
                 ("s_client PSK", lambda: d.s_client(oport, "-psk", key, "-psk_identity", "client1", "-cipher", "PSK")),
                 ("gnutls-cli certificate", lambda: d.gnutls_cli(oport, "--x509cafile", ca))):
    ok, dt = first_echo(mk(), "hello-" + name.replace(" ", "-"))
    print("%s: %s: first echo after %.2f s (handshake + one round trip)" %
          ("ok" if ok else "FAILED", name, dt), flush=True)
    if not ok:
        bad(name + " did not complete")

# ---- 2. the flood: bytes out per byte in, per source
class Flood:
    def __init__(self, port, first=1, naddr=40, nport=5):
        self.port = port
        self.socks = []
        for a in range(first, first + naddr):
            for _ in range(nport):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind(("127.0.1.%d" % a, 0)); s.setblocking(False)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                self.socks.append(s)
        self.sent, self.got, self.late, self.sizes = {}, {}, {}, set()
        self.sel = selectors.DefaultSelector()
        for s in self.socks:
            self.sel.register(s, selectors.EVENT_READ)
        self.last_send = 0

    def drain(self, seconds, late_after=None):
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            for k, _ in self.sel.select(min(left, 0.1)):
                s = k.fileobj
                try:
                    while True:
                        data = s.recv(65535)
                        src = s.getsockname()[0]
                        self.got[src] = self.got.get(src, 0) + len(data)
                        self.sizes.add(len(data))
                        if late_after is not None and time.monotonic() > late_after:
                            self.late[src] = self.late.get(src, 0) + len(data)
                except BlockingIOError:
                    pass

    def run(self, rounds=3, gap=0.4):
        for r in range(rounds):
            for s in self.socks:
                s.sendto(ch, ("127.0.0.1", self.port))
                src = s.getsockname()[0]
                self.sent[src] = self.sent.get(src, 0) + len(ch)
            self.last_send = time.monotonic()
            self.drain(gap)

    def report(self, name, limit):
        worst = max((self.got.get(a, 0) / self.sent[a], a) for a in self.sent)
        total_in, total_out = sum(self.sent.values()), sum(self.got.values())
        print("%s: %d sources, %d bytes in, %d bytes out (%.2fx overall); worst source %s: "
              "%d in, %d out = %.2fx (limit %.1fx); reply sizes %s" %
              (name, len(self.sent), total_in, total_out, total_out / total_in, worst[1],
               self.sent[worst[1]], self.got.get(worst[1], 0), worst[0], limit,
               sorted(self.sizes)[:8]), flush=True)
        if worst[0] > limit:
            bad("%s: source %s got %.2fx the bytes it sent" % (name, worst[1], worst[0]))
        if total_out == 0:
            bad("%s: no reply at all (the measurement measured nothing)" % name)

    def close(self):
        for s in self.socks:
            s.close()

flood = Flood(oport)
flood.run()
t_last = flood.last_send
# a timer-driven retransmission would come 1 s, then 3 s after our flights
flood.drain(3.5, late_after=t_last + 0.8)
flood.report("open (no cookies)", 3.0)
late = sum(flood.late.values())
print("%s: bytes sent to the flood more than 0.8 s after its last ClientHello: %d" %
      ("ok" if late == 0 else "FAILED", late), flush=True)
if late:
    bad("timer-driven flights went to sources that never answered (%d bytes)" % late)

# ---- 3. fairness: the half-open total is full (48, 40 sources x 4 per source
# wanted 160; handshake_timeout 20s); a real client gets in now
ok, dt = first_echo(d.s_client(oport, "-CAfile", ca), "legit-during-flood")
print("%s: a real client (s_client ECDSA) during the flood: %s after %.2f s" %
      ("ok" if ok else "FAILED", "first echo" if ok else "NO echo", dt), flush=True)
if not ok:
    bad("real client locked out by the flood")
# the flood goes on: a second wave from new ports of the same addresses
flood2 = Flood(oport, nport=2)
flood2.run(rounds=1, gap=0.2)
ok, dt = first_echo(d.gnutls_cli(oport, "--x509cafile", ca), "legit-gnutls-during-flood")
print("%s: a real client (gnutls-cli) during the second wave: %s after %.2f s" %
      ("ok" if ok else "FAILED", "first echo" if ok else "NO echo", dt), flush=True)
if not ok:
    bad("gnutls-cli locked out by the flood")
flood.close(); flood2.close()

# ---- 3b. the lockout as reported, on default caps (max_half_open 1024,
# 32 per source): 1,320 ClientHellos from 40 addresses x 33 ports fill the
# total; a real client still gets in at once
n = 0
for a in range(1, 41):
    for _ in range(33):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.3.%d" % a, 0))
        s.sendto(ch, ("127.0.0.1", dfport)); n += 1
        s.close()
    time.sleep(0.02)
time.sleep(1.0)
ok, dt = first_echo(d.s_client(dfport, "-CAfile", ca), "legit-default-caps")
print("%s: default caps, %d spoofed ClientHellos from 40 addresses: a real client %s after %.2f s" %
      ("ok" if ok else "FAILED", n, "got in" if ok else "was locked out", dt), flush=True)
if not ok:
    bad("real client locked out on the default caps")

# ---- 4. the cookie listener (OpenSSL build): HelloVerifyRequests only
if lib == "OpenSSL":
    cf = Flood(cport, first=101, naddr=20)
    cf.run()
    cf.drain(1.5)
    cf.report("cookie (dtls_cookie = on)", 1.0)
    if any(sz > len(ch) for sz in cf.sizes):
        bad("a reply to the cookie flood was larger than the ClientHello")
    cf.close()

# ---- 5. an established association, spoofed ClientHellos in its name (on the
# no-cookie listener, and on the cookie listener of the OpenSSL build)
class Relay:
    """s_client <-> 127.0.0.1:front  |  127.0.0.5:P (connected) <-> tlsgate"""
    def __init__(self, port):
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.back.bind(("127.0.0.5", 0))
        self.back.connect(("127.0.0.1", port))
        self.addr = self.back.getsockname()
        self.client = None
        self.first_hello = None
        self.to_client = 0          # bytes tlsgate sent to the peer's address
        self.stop = False
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        sel = selectors.DefaultSelector()
        sel.register(self.front, selectors.EVENT_READ, "front")
        sel.register(self.back, selectors.EVENT_READ, "back")
        while not self.stop:
            for k, _ in sel.select(0.1):
                try:
                    if k.data == "front":
                        data, self.client = self.front.recvfrom(65535)
                        if self.first_hello is None and d.handshake_type(data) == 1:
                            self.first_hello = data
                        self.back.send(data)
                    else:
                        data = self.back.recv(65535)
                        self.to_client += len(data)
                        if self.client:
                            self.front.sendto(data, self.client)
                except OSError:
                    pass

def established(port, label):
    """An established association, and spoofed ClientHellos in its name."""
    relay = Relay(port)
    spoof = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    spoof.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    spoof.bind(relay.addr)          # the peer's address and port
    print("established peer: 127.0.0.5:%d (relay), spoofer bound to the same" % relay.addr[1], flush=True)
    c = d.Client(["openssl", "s_client", "-dtls1_2", "-connect", "127.0.0.1:%d" % relay.front.getsockname()[1],
                  "-no_ign_eof", "-CAfile", ca], "s_client-relayed")
    c.out = b"\n"
    lines = ["echo-%02d" % i for i in range(30)]
    got = c.roundtrip(lines[:2], timeout=20)
    if got != lines[:2]:
        bad("relayed s_client did not get going: %r" % c.text()[-800:])
    before = relay.to_client
    fresh = [d.openssl_client_hello() for _ in range(2)]
    # a PSK-only ClientHello: the server's flight is small enough for 3x
    fresh.append(d.record_client_hello(None, lambda p: [
        "openssl", "s_client", "-dtls1_2", "-connect", "127.0.0.1:%d" % p,
        "-psk", key, "-psk_identity", "client1", "-cipher", "PSK"]))
    spoofed = 0
    stop = threading.Event()
    def spoofer():
        """Fresh ClientHellos (certificate and PSK), each sent again 0.6 s
        later as a client's retransmission would be, and replays of the
        session's own first ClientHello."""
        nonlocal spoofed
        k = 0
        while not stop.is_set():
            for dgram in (fresh[k % 3], relay.first_hello or fresh[0], fresh[k % 3]):
                spoof.sendto(dgram, ("127.0.0.1", port)); spoofed += len(dgram)
                if stop.wait(0.3):
                    break
            k += 1
    t = threading.Thread(target=spoofer); t.start()
    time.sleep(0.3)
    for line in lines[2:]:
        if c.roundtrip([line], timeout=5) != [line]:
            break
        got.append(line)
        time.sleep(0.15)
    stop.set(); t.join()
    time.sleep(1.5)   # late timer-driven flights would show up here
    echo_bytes = 2 * 28 * 40   # generous: 28 echoes of ~40-byte records
    extra = relay.to_client - before
    rc = c.close()
    print("%s: %s: %d of %d echoes came back during %d bytes of spoofed ClientHellos in the peer's name" %
          ("ok" if got == lines else "FAILED", label, len(got), len(lines), spoofed), flush=True)
    if got != lines:
        bad("the established association was disturbed (%d of %d echoes)" % (len(got), len(lines)))
    print("%s: tlsgate sent the peer's address %d bytes during the spoofing (echoes included), "
          "limit 3x spoofed + echoes = %d" % ("ok" if extra <= 3 * spoofed + echo_bytes else "FAILED",
                                              extra, 3 * spoofed + echo_bytes), flush=True)
    if extra > 3 * spoofed + echo_bytes:
        bad("spoofed handshakes amplified towards the real peer")
    relay.stop = True

established(oport, "no cookies")
if lib == "OpenSSL":
    established(cport, "cookies")   # a cookieless ClientHello must not reach the live peer as a HelloVerifyRequest

# ---- 6. a device that reboots: same address and port, new handshake, no
# close_notify for the old session: it gets in (after its own retransmission)
ps = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); ps.bind(("127.0.0.1", 0))
sport = ps.getsockname()[1]; ps.close()
c1 = d.s_client(oport, "-CAfile", ca, "-bind", "127.0.0.1:%d" % sport)
ok1 = c1.roundtrip(["before-reboot"]) == ["before-reboot"]
c1.p.kill(); c1.p.wait(5)
ok2, dt = first_echo(d.s_client(oport, "-CAfile", ca, "-bind", "127.0.0.1:%d" % sport), "after-reboot")
print("%s: a rebooted client from the same address and port (127.0.0.1:%d) got in: %s after %.2f s" %
      ("ok" if ok1 and ok2 else "FAILED", sport, ok2, dt), flush=True)
if not (ok1 and ok2):
    bad("a rebooted client could not start over")
with open(os.path.join(os.environ["WORK"], "rebooted-port"), "w") as f:
    f.write(str(sport))
sys.exit(1 if failed else 0)
EOF

curl -s "http://127.0.0.1:$MPORT/metrics" >metrics.txt || fail "metrics endpoint did not answer"
grep '^tlsgate_udp_refused_total\|^tlsgate_dtls_half_open_refused_total' metrics.txt | sed 's/^/    | /'
ev=$(awk '/^tlsgate_udp_refused_total\{listener="open",reason="half_open_evicted"\}/ { print $2 }' metrics.txt)
amp=$(awk '/^tlsgate_udp_refused_total\{listener="open",reason="amplification_limited"\}/ { print $2 }' metrics.txt)
ref=$(awk '/^tlsgate_dtls_half_open_refused_total\{listener="open"\}/ { print $2 }' metrics.txt)
[ "${ev:-0}" -ge 1 ] || fail "no eviction counted on the metrics endpoint"
[ "${amp:-0}" -ge 1 ] || fail "no amplification-limited datagram counted on the metrics endpoint"
[ "${ref:-0}" -ge 1 ] || fail "no half-open refusal counted on the metrics endpoint"
assert_log_contains "listener open: half-open DTLS handshakes at the per source cap"
assert_log_contains "listener open: max_half_open \(48\) reached: the oldest half-open handshake of the busiest source \(127\.0\.1\.[0-9]+:[0-9]+, 4 half-open\) makes room"
grep -q '^tlsgate_udp_refused_total{listener="defaults",reason="half_open_evicted"} [1-9]' metrics.txt ||
    fail "default caps: no eviction counted (the flood did not fill max_half_open?)"
assert_log_not_contains "127\.0\.0\.5:[0-9]+.*client started a new handshake"
assert_log_contains "client 127\.0\.0\.5:[0-9]+ on open: close: ended: the peer is alive in its established session"
assert_log_contains "client 127\.0\.0\.1:$(cat "$WORK/rebooted-port") on open: close: client started a new handshake from the same address and port"

stop_tlsgate 20
[ "$TLSGATE_RC" = 0 ] || fail "tlsgate exited $TLSGATE_RC on SIGTERM"
grep "listener open (worker 0): udp" "$TLSGATE_LOG" | cut -c 25- | sed 's/^/    | /'
peak=$(udp_stats "half-open peak" open)
log "open listener: half-open peak $peak (max_half_open 48)"
[ "$peak" -le 48 ] || fail "half-open peak $peak over max_half_open 48"
[ "$(udp_stats evicted open)" -ge 1 ] || fail "no eviction in the udp stats"
log "ok"
