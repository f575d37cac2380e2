#!/usr/bin/env bash
# 89-dtls-scale-out: DTLS towards PSK backends, and a cookie secret shared
# by instances behind one UDP balancer.
#   1. backend_psk = file:PATH: a plain UDP client -> tlsgate -> DTLS-PSK ->
#      `openssl s_server -dtls1_2 -nocert -psk`: data both ways; a wrong key
#      never reaches the backend (handshake failure logged); backend_psk on
#      a tcp listener and a file with two lines are refused (controls pass)
#   2. dtls_cookie_secret_file (OpenSSL build): instances A and B read the
#      same secret; a small UDP forwarder sends a client's first datagram to
#      A and everything after to B, so the ClientHello carrying A's cookie
#      reaches B: B accepts it (cookies ok 1, no HelloVerifyRequest of its
#      own) and the session echoes. Control: C with another secret refuses
#      that cookie (cookies bad 1) and challenges again.
#      Rotation by replacing B's file (picked up by watch_files): A's cookie
#      (old secret) is still accepted after one rotation, refused after two.
#      On BoringSSL the key is a config error (control without it passes).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/dtls-helpers.sh"
require_cmd openssl

KEY=$(openssl rand -hex 16); BADKEY=$(openssl rand -hex 16)
printf 'gateway-1:%s\n' "$KEY" > "$WORK/backend-psk.txt"
printf 'gateway-1:%s\n' "$BADKEY" > "$WORK/wrong-psk.txt"
chmod 600 "$WORK/backend-psk.txt" "$WORK/wrong-psk.txt"
P1=$(free_port udp); P2=$(free_port udp); S1=$(free_port udp); S2=$(free_port udp)

write_config psk.ini <<EOF
$(global_section workers=1 log_level=debug drain_timeout=2s)

[listener:psk-up]
bind = 127.0.0.1:$P1
transport = udp
secure = off
backend = 127.0.0.1:$S1
backend_secure = on
backend_psk = file:$WORK/backend-psk.txt

[listener:psk-wrong]
bind = 127.0.0.1:$P2
transport = udp
secure = off
backend = 127.0.0.1:$S2
backend_secure = on
backend_psk = file:$WORK/wrong-psk.txt
connect_timeout = 3s
EOF
check_config "$CONFIG"
[ "$CHECK_RC" = 0 ] || fail "tlsgate -t rejected the PSK config: $CHECK_OUT"
echo "$CHECK_OUT" | grep >/dev/null -c 'DTLS to backends, PSK identity "gateway-1"' || error "summary does not show the backend PSK: $CHECK_OUT"
echo "$CHECK_OUT" | grep >/dev/null -c "$KEY" && error "the key appears in tlsgate -t output"
start_tlsgate "$CONFIG"
wait_running

"$PY" - "$P1" "$P2" "$S1" "$S2" "$KEY" <<'EOF' || error "backend_psk checks failed"
import socket, sys
import dtlslib as d
p1, p2, s1, s2, key = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
servers, failed = [], []
def s_server(port):
    c = d.Client(["openssl", "s_server", "-dtls1_2", "-accept", "127.0.0.1:%d" % port, "-nocert",
                  "-psk", key, "-psk_identity", "gateway-1", "-cipher", "PSK", "-naccept", "1"],
                 name="s_server-%d" % port)
    servers.append(c)
    if not c.wait_for(b"ACCEPT", 10):
        sys.exit("s_server on %d did not start: %s" % (port, c.text()))
    return c
try:
    good, bad = s_server(s1), s_server(s2)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(10)
    u.sendto(b"coap-ish-request\n", ("127.0.0.1", p1))
    if not good.wait_for(b"coap-ish-request", 10):
        failed.append("up"); print("FAILED: s_server did not get the datagram over DTLS-PSK\n" + good.text()[-600:])
    else:
        print("ok: datagram reached the DTLS-PSK backend", flush=True)
        good.send_line("coap-ish-response")
        try:
            data = u.recvfrom(65535)[0]
            if data == b"coap-ish-response\n": print("ok: the backend's answer came back", flush=True)
            else: failed.append("down"); print("FAILED: got %r" % data)
        except socket.timeout:
            failed.append("down"); print("FAILED: no answer from the DTLS-PSK backend")
    u2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u2.sendto(b"with-the-wrong-key\n", ("127.0.0.1", p2))
    if bad.wait_for(b"with-the-wrong-key", 3):
        failed.append("wrong key"); print("FAILED: data crossed a handshake with the wrong key")
    else:
        print("ok: nothing reached the backend with the wrong key", flush=True)
finally:
    for c in servers:
        c.p.kill(); c.p.wait(5)
sys.exit(1 if failed else 0)
EOF
# DTLS drops records it cannot authenticate: the handshake just never ends
assert_log_contains "on psk-wrong: backend: backend 127.0.0.1:$S2: no answer within connect_timeout" 10
stop_tlsgate

write_config psk-tcp.ini <<EOF
[listener:t]
bind = 127.0.0.1:$(free_port)
secure = off
backend = 127.0.0.1:$S1
backend_secure = on
backend_psk = file:$WORK/backend-psk.txt
EOF
check_config "$CONFIG"
[ "$CHECK_RC" = 1 ] && echo "$CHECK_OUT" | grep >/dev/null -c "psk-tcp.ini:6: \[listener:t\] backend_psk: .*transport = udp" \
    || error "backend_psk on a tcp listener not refused: $CHECK_OUT"
printf 'a:%s\nb:%s\n' "$KEY" "$KEY" > "$WORK/two-psk.txt"
sed -e "s|wrong-psk.txt|two-psk.txt|" "$WORK/psk.ini" > "$WORK/psk-two.ini"
check_config "$WORK/psk-two.ini"
[ "$CHECK_RC" = 1 ] && echo "$CHECK_OUT" | grep >/dev/null -c "psk-two.ini:.*\[listener:psk-wrong\] backend_psk: .*two-psk.txt: 2 identity:hexkey lines, want exactly one" \
    || error "a backend_psk file with two lines not refused: $CHECK_OUT"
echo "$CHECK_OUT" | grep >/dev/null -c "$KEY" && error "a key appears in an error message"

# ---- 2. shared cookie secret ---------------------------------------------------------
EPORT=$(free_port udp)
start_udp_echo "$EPORT"
openssl rand 32 > "$WORK/secret-a"; cp "$WORK/secret-a" "$WORK/secret-b"
openssl rand -hex 32 > "$WORK/secret-c"
chmod 600 "$WORK"/secret-*
instance() {  # instance NAME PORT MPORT SECRETFILE
    write_config "cookie-$1.ini" <<EOF
$(global_section workers=1 metrics=127.0.0.1:$3 drain_timeout=2s)

[listener:dtls]
bind = 127.0.0.1:$2
transport = udp
$SERVER_PFX
backend = 127.0.0.1:$EPORT
dtls_cookie = on
dtls_cookie_secret_file = $4
EOF
}
A=$(free_port udp); B=$(free_port udp); C=$(free_port udp)
MA=$(free_port); MB=$(free_port); MC=$(free_port)
instance a "$A" "$MA" "$WORK/secret-a"
if [ "$TG_LIB" = BoringSSL ]; then
    check_config "$CONFIG"
    [ "$CHECK_RC" = 1 ] && echo "$CHECK_OUT" | grep >/dev/null -c "cookie-a.ini:13: \[listener:dtls\] dtls_cookie_secret_file: not possible with BoringSSL" \
        || error "dtls_cookie_secret_file not refused on BoringSSL: $CHECK_OUT"
    sed -i '/^dtls_cookie/d' "$CONFIG"
    check_config "$CONFIG"
    [ "$CHECK_RC" = 0 ] || error "control without dtls_cookie_secret_file refused on BoringSSL: $CHECK_OUT"
    finish
    exit 0
fi
instance b "$B" "$MB" "$WORK/secret-b"
instance c "$C" "$MC" "$WORK/secret-c"
start_tlsgate "$WORK/cookie-a.ini" "$MA"; LOG_A=$TLSGATE_LOG
start_tlsgate "$WORK/cookie-b.ini" "$MB"; LOG_B=$TLSGATE_LOG; PID_B=$TLSGATE_PID
start_tlsgate "$WORK/cookie-c.ini" "$MC"

write_py forwarder <<'EOF'
"""A UDP 'balancer' that sends each client's first datagram to FIRST and all
later ones to REST, from one socket per client, and relays the answers."""
import select, socket, sys
listen, first, rest, done = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
front.bind(("127.0.0.1", listen))
print("listening", flush=True)
clients = {}   # client addr -> [upstream socket, datagrams sent]
back = {}      # upstream socket -> client addr
import os, time
end = time.time() + 120
while time.time() < end and not os.path.exists(done):
    r, _, _ = select.select([front] + list(back), [], [], 0.2)
    for s in r:
        if s is front:
            data, addr = front.recvfrom(65535)
            if addr not in clients:
                up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                up.bind(("127.0.0.1", 0))
                clients[addr] = [up, 0]
                back[up] = addr
            up, n = clients[addr]
            up.sendto(data, ("127.0.0.1", first if n == 0 else rest))
            clients[addr][1] += 1
        else:
            data, _ = s.recvfrom(65535)
            front.sendto(data, back[s])
EOF
metric() {  # metric MPORT NAME{labels}
    curl -s --max-time 5 "http://127.0.0.1:$1/metrics" | awk -v k="$2" '$1 == k { print $2 }'
}
OK='tlsgate_dtls_cookies_total{listener="dtls",result="ok"}'
BAD='tlsgate_dtls_cookies_total{listener="dtls",result="bad"}'
HVR='tlsgate_dtls_hello_verify_total{listener="dtls"}'
session() {  # session FORWARD_TO [TIMEOUT_S=15] -- a DTLS session whose first datagram goes to A, the rest to FORWARD_TO
    local fport; fport=$(free_port udp)
    rm -f "$WORK/fwd-done"
    bg_start "fwd-$fport" "$PY" "$WORK/forwarder.py" "$fport" "$A" "$1" "$WORK/fwd-done"
    local fpid=$BG_PID
    for _ in $(seq 100); do grep -q listening "$WORK/fwd-$fport.log" 2>/dev/null && break; sleep 0.05; done
    "$PY" - "$fport" "${2:-15}" <<'EOF'
import sys, dtlslib as d
c = d.s_client(int(sys.argv[1]), "-CAfile", d.cert("ca.pem"))
got = c.roundtrip(["through-the-balancer"], float(sys.argv[2]))
rc = c.close(3)
print("echoed" if got else "FAILED: no echo\n" + c.text()[-600:])
sys.exit(0 if got else 1)
EOF
    local rc=$?
    touch "$WORK/fwd-done"; wait_exit "$fpid" 5
    return $rc
}
refused() {  # refused WHAT MPORT OK -- the cookie was refused: ok still OK, bad and hello-verify >= 1
    local ok bad hvr
    ok=$(metric "$2" "$OK"); bad=$(metric "$2" "$BAD"); hvr=$(metric "$2" "$HVR")
    if [ "$ok" = "$3" ] && [ "${bad:-0}" -ge 1 ] && [ "${hvr:-0}" -ge 1 ]; then
        log "$1: cookie refused (cookies ok $ok, bad $bad, hello-verify $hvr)"
    else error "$1: cookies ok $ok (wanted $3), bad $bad, hello-verify $hvr (wanted >= 1 each)"; fi
}
check() {  # check WHAT MPORT OK BAD HVR -- expected counter values of an instance
    local got
    got="$(metric "$2" "$OK") $(metric "$2" "$BAD") $(metric "$2" "$HVR")"
    if [ "$got" = "$3 $4 $5" ]; then log "$1: cookies ok/bad, hello-verify = $got"
    else error "$1: cookies ok/bad, hello-verify = $got, wanted $3 $4 $5"; fi
}
session "$B" || error "session A -> B with a shared secret failed"
check "A (challenged)" "$MA" 0 0 1
check "B (took A's cookie)" "$MB" 1 0 0
session "$C" 4 || log "session A -> C ended without an echo (C challenged again)"
refused "C (another secret)" "$MC" 0

# rotation: B's file replaced (watch_files reloads it); A keeps the old secret
openssl rand 32 > "$WORK/secret-b.new"; chmod 600 "$WORK/secret-b.new"; mv "$WORK/secret-b.new" "$WORK/secret-b"
TLSGATE_LOG=$LOG_B; assert_log_contains "reloaded: generation 2" 10
session "$B" || error "after one rotation B no longer takes a cookie of the previous secret"
check "B after one rotation" "$MB" 2 0 0
openssl rand 32 > "$WORK/secret-b.new"; chmod 600 "$WORK/secret-b.new"; mv "$WORK/secret-b.new" "$WORK/secret-b"
assert_log_contains "reloaded: generation 3" 10
session "$B" 4 || log "session A -> B after two rotations ended without an echo"
refused "B after two rotations" "$MB" 2
finish
