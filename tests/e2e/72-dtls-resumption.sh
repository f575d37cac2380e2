#!/usr/bin/env bash
# 72-dtls-resumption: DTLS 1.2 session resumption (session tickets) on a
# udp listener, driven by real clients (issue 15, "full and resumed").
#  - openssl s_client -dtls1_2 -sess_out, then -sess_in: the second session
#    is "Reused" and tlsgate logs "resumed"; with the certificate and with
#    PSK; workers = 2, so the resumed session may land on another worker.
#  - gnutls-cli --udp --resume: its second handshake is a resumed one.
#  - Without cookies the resumed flight (ServerHello, ChangeCipherSpec,
#    Finished) fits within 3x the ClientHello: no retransmission round, so
#    the resumed handshake is faster than the full one; both times printed.
#  - Control: after a restart (fresh ticket keys, no ticket_key_file) the
#    saved session is not resumed (a full handshake, "New").
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/dtls-helpers.sh"
require_cmd openssl gnutls-cli

EPORT=$(free_port udp)
DPORT=$(free_port udp)
start_udp_echo "$EPORT"
write_config resume.ini <<EOF
$(global_section workers=2 log_level=info)

[listener:dtls]
bind = 127.0.0.1:$DPORT
transport = udp
$SERVER_PFX
psk = file:$CERTS/psk.txt
backend = 127.0.0.1:$EPORT
dtls_cookie = off
EOF
start_tlsgate "$CONFIG"
wait_running

check() {  # check PHASE -> runs the clients, prints "ok"/"FAILED" lines
    "$PY" - "$DPORT" "$1" <<'EOF'
import os, sys, time
import dtlslib as d

port, phase = int(sys.argv[1]), sys.argv[2]
ca, key = d.cert("ca.pem"), d.psk_key("client1")
failed = []

def session(tag, *extra):
    c = d.s_client(port, *extra)
    t0 = time.monotonic()
    got = c.roundtrip([tag], timeout=15)
    dt = time.monotonic() - t0
    c.close()
    text = c.text()
    kind = "Reused" if "Reused, TLSv1.2" in text else "New" if "New, TLSv1.2" in text else "?"
    return got == [tag], kind, dt

for name, extra in (("certificate", ["-CAfile", ca]),
                    ("psk", ["-psk", key, "-psk_identity", "client1", "-cipher", "PSK"])):
    sess = os.path.join(os.environ["WORK"], "sess-%s.pem" % name)
    if phase == "first":
        ok1, k1, t1 = session("full-" + name, *(extra + ["-sess_out", sess]))
        ok2, k2, t2 = session("resumed-" + name, *(extra + ["-sess_in", sess]))
        good = ok1 and ok2 and k1 == "New" and k2 == "Reused"
        print("%s: s_client %s: full handshake %s (%.2f s to the first echo), then %s (%.2f s)" %
              ("ok" if good else "FAILED", name, k1, t1, k2, t2), flush=True)
        if not good:
            failed.append(name)
    else:   # after a restart: the old ticket must not resume
        ok, k, t = session("after-restart-" + name, *(extra + ["-sess_in", sess]))
        good = ok and k == "New"
        print("%s: s_client %s after a restart: %s (a full handshake expected)" %
              ("ok" if good else "FAILED", name, k), flush=True)
        if not good:
            failed.append(name + " after restart")

if phase == "first":
    g = d.gnutls_cli(port, "--x509cafile", ca, "--resume")
    g.wait_for(b"This is a resumed session", 15)
    rc = g.close()
    good = "This is a resumed session" in g.text()
    print("%s: gnutls-cli --udp --resume: %s" % ("ok" if good else "FAILED",
          "resumed" if good else g.text()[-600:]), flush=True)
    if not good:
        failed.append("gnutls-cli")
sys.exit(1 if failed else 0)
EOF
}

check first || fail "resumption checks failed"
[ "$(grep -c 'handshake: DTLSv1.2 .* resumed' "$TLSGATE_LOG")" -ge 3 ] ||
    fail "tlsgate logged fewer than 3 resumed handshakes"
stop_tlsgate 20
start_tlsgate "$CONFIG"
wait_running
check restarted || fail "a ticket from before the restart was accepted"
assert_log_not_contains "resumed"
stop_tlsgate 20
[ "$TLSGATE_RC" = 0 ] || fail "tlsgate exited $TLSGATE_RC on SIGTERM"
log "ok"
