#!/usr/bin/env bash
# 33-dtls-backend: backend_secure = on originates DTLS 1.2 to the backend,
# here `openssl s_server -dtls1_2` that requires a client certificate (and
# does its own HelloVerifyRequest exchange). tlsgate presents backend_pfx and
# verifies the backend against backend_ca and its address. Two fronts: plain
# UDP (a Python client) and DTLS (openssl s_client). Data flows both ways:
# what the client sends shows up on s_server's stdout, what s_server reads
# from its stdin comes back to the client. A backend whose certificate does
# not name the backend address is refused with the reason logged.
# close_notify from a DTLS backend ends the association: tlsgate chained to
# itself ([outer] -> [inner], whose 1s session_timeout sends close_notify),
# as s_server's "q" closes its DTLS 1.2 socket before the alert goes out.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/dtls-helpers.sh"
require_cmd openssl

P1=$(free_port udp); P2=$(free_port udp); P3=$(free_port udp)
P4=$(free_port udp); P5=$(free_port udp); EPORT=$(free_port udp)
start_udp_echo "$EPORT"
S1=$(free_port udp); S2=$(free_port udp); S3=$(free_port udp)
write_config backend.ini <<EOF
$(global_section workers=1 log_level=debug drain_timeout=3s)

[listener:plain-to-dtls]
bind = 127.0.0.1:$P1
transport = udp
secure = off
backend = 127.0.0.1:$S1
backend_secure = on
backend_pfx = $CERTS/client.pfx
backend_pfx_password = file:$CERTS/pfx-password
backend_ca = $CERTS/ca.pem

[listener:dtls-to-dtls]
bind = 127.0.0.1:$P2
transport = udp
$SERVER_PFX
backend = 127.0.0.1:$S2
backend_secure = on
backend_pfx = $CERTS/client.pfx
backend_pfx_password = file:$CERTS/pfx-password
backend_ca = $CERTS/ca.pem

[listener:wrong-name]
bind = 127.0.0.1:$P3
transport = udp
secure = off
backend = 127.0.0.1:$S3
backend_secure = on
backend_ca = $CERTS/ca.pem
connect_timeout = 3s

[listener:outer]
bind = 127.0.0.1:$P4
transport = udp
secure = off
backend = 127.0.0.1:$P5
backend_secure = on
backend_ca = $CERTS/ca.pem

[listener:inner]
bind = 127.0.0.1:$P5
transport = udp
$SERVER_PFX
backend = 127.0.0.1:$EPORT
session_timeout = 1s
EOF
check_config "$CONFIG"
[ "$CHECK_RC" = 0 ] || fail "tlsgate -t rejected the config: $CHECK_OUT"
start_tlsgate "$CONFIG"
wait_running

"$PY" - "$P1" "$P2" "$P3" "$S1" "$S2" "$S3" "$P4" <<'EOF' || fail "DTLS backend checks failed"
import socket, subprocess, sys, time
import dtlslib as d

p1, p2, p3, s1, s2, s3, p4 = map(int, sys.argv[1:8])
servers, failed = [], []

def s_server(port, certname):
    c = d.Client(["openssl", "s_server", "-dtls1_2", "-accept", "127.0.0.1:%d" % port,
                  "-cert", d.cert(certname + ".pem"), "-key", d.cert(certname + ".key"),
                  "-Verify", "1", "-CAfile", d.cert("ca.pem"), "-naccept", "1"],
                 name="s_server-%d" % port)
    servers.append(c)
    if not c.wait_for(b"ACCEPT", 10):
        sys.exit("s_server on %d did not start: %s" % (port, c.text()))
    return c

try:
    srv1, srv2, srv3 = s_server(s1, "server"), s_server(s2, "server"), s_server(s3, "other")

    # plain UDP client -> tlsgate -> DTLS -> s_server
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(10)
    u.sendto(b"ping-from-udp\n", ("127.0.0.1", p1))
    if not srv1.wait_for(b"ping-from-udp", 10):
        failed.append("plain->dtls up"); print("FAILED: s_server did not get the datagram\n" + srv1.text()[-800:], flush=True)
    else:
        print("ok: plain UDP datagram reached s_server over DTLS", flush=True)
        srv1.send_line("pong-from-s_server")
        try:
            data, _ = u.recvfrom(65535)
            if data == b"pong-from-s_server\n":
                print("ok: s_server's reply came back as a plain datagram", flush=True)
            else:
                failed.append("plain->dtls down"); print("FAILED: got %r" % data, flush=True)
        except socket.timeout:
            failed.append("plain->dtls down"); print("FAILED: no reply from s_server", flush=True)

    # DTLS client -> tlsgate -> DTLS -> s_server
    c = d.s_client(p2, "-CAfile", d.cert("ca.pem"))
    c.send_line("hello-over-two-dtls")
    if srv2.wait_for(b"hello-over-two-dtls", 10):
        srv2.send_line("answer-over-two-dtls")
        if c.wait_for(b"answer-over-two-dtls", 10):
            print("ok: s_client <-> tlsgate <-> s_server, DTLS on both sides", flush=True)
        else:
            failed.append("dtls->dtls down"); print("FAILED: no answer at s_client\n" + c.text()[-800:], flush=True)
    else:
        failed.append("dtls->dtls up"); print("FAILED: s_server got nothing\n" + srv2.text()[-800:], flush=True)
    c.close()

    # wrong certificate name: nothing reaches the application
    u.sendto(b"to-wrong-backend\n", ("127.0.0.1", p3))
    if srv3.wait_for(b"to-wrong-backend", 3):
        failed.append("wrong name"); print("FAILED: data reached a backend with the wrong name", flush=True)
    else:
        print("ok: backend with the wrong certificate name refused", flush=True)

    # tlsgate as its own DTLS backend: an echo through two hops
    u.sendto(b"two-hops\n", ("127.0.0.1", p4))
    try:
        ok = u.recvfrom(100)[0] == b"two-hops\n"
    except socket.timeout:
        ok = False
    print("%s: plain -> [outer] -DTLS-> [inner] -> echo" % ("ok" if ok else "FAILED"), flush=True)
    if not ok:
        failed.append("two hops")
finally:
    for s in servers:
        s.p.kill()
        s.p.wait(5)
sys.exit(1 if failed else 0)
EOF

assert_log_contains "on plain-to-dtls: backend: connected to 127.0.0.1:$S1 over DTLSv1.2 .*peer CN=localhost"
assert_log_contains "on dtls-to-dtls: backend: connected to 127.0.0.1:$S2 over DTLSv1.2"
assert_log_contains "on wrong-name: backend: backend 127.0.0.1:$S3: DTLS handshake failed: certificate verify failed: IP address mismatch"
assert_log_contains "on inner: close: idle for session_timeout \(1000 ms\)" 5
assert_log_contains "on outer: close: backend sent close_notify" 5
stop_tlsgate 20
[ "$TLSGATE_RC" = 0 ] || fail "tlsgate exited $TLSGATE_RC on SIGTERM"
log "ok"
