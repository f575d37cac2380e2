#!/usr/bin/env bash
# 30-dtls-echo: a DTLS 1.2 front (certificate and PSK) for a plaintext UDP
# echo backend, driven by real clients: openssl s_client -dtls1_2 with the
# server certificate and with -psk (identity hint "Qt DTLS example server",
# the one Qt's QDtls example uses), gnutls-cli --udp likewise. Several
# messages round-trip per session; close_notify from the client ends the
# association; a client coming back from the same address and port with a
# new ClientHello gets a fresh handshake; an unknown PSK identity is refused
# and logged without any key; a backend reply too large for one DTLS record
# within dtls_mtu is dropped and reported. On the OpenSSL build the CCM_8
# suites of CoAP (RFC 7252) are negotiated.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/dtls-helpers.sh"
require_cmd openssl gnutls-cli

EPORT=$(free_port udp)
DPORT=$(free_port udp)
start_udp_echo "$EPORT"
write_config dtls.ini <<EOF
$(global_section workers=2 log_level=debug)

[listener:coap]
bind = 127.0.0.1:$DPORT
transport = udp
secure = on
$SERVER_PFX
psk = file:$CERTS/psk.txt
psk_identity_hint = Qt DTLS example server
backend = 127.0.0.1:$EPORT
dtls_mtu = 1400
session_timeout = 30s
EOF
check_config "$CONFIG"
[ "$CHECK_RC" = 0 ] || fail "tlsgate -t rejected the config: $CHECK_OUT"
log "tlsgate -t: $(printf '%s' "$CHECK_OUT" | tail -n1)"
start_tlsgate "$CONFIG"
wait_running

"$PY" - "$DPORT" "$TG_LIB" <<'EOF' || fail "DTLS client checks failed"
import sys, time
import dtlslib as d

port, lib = int(sys.argv[1]), sys.argv[2]
ca = d.cert("ca.pem")
key = d.psk_key("client1")
failed = []

def check(name, client, lines, want_in_output=()):
    got = client.roundtrip(lines)
    rc = client.close()
    out = client.text()
    missing = [w for w in want_in_output if w not in out]
    if got != lines or missing:
        failed.append(name)
        print("FAILED: %s: echoed %d of %d lines, missing %s, exit %s\n%s" %
              (name, len(got), len(lines), missing, rc, out[-1500:]), flush=True)
    else:
        print("ok: %s: %d messages echoed%s" % (name, len(lines),
              (" (" + ", ".join(want_in_output) + ")") if want_in_output else ""), flush=True)
    return out

msgs = ["%s-%d-%s" % ("cert", i, "x" * (i * 37)) for i in range(5)]
check("s_client certificate", d.s_client(port, "-CAfile", ca, "-verify_return_error",
      "-verify_hostname", "localhost"), msgs, ["Verify return code: 0 (ok)"])

msgs = ["psk-%d" % i for i in range(5)]
check("s_client -psk", d.s_client(port, "-psk", key, "-psk_identity", "client1",
      "-cipher", "PSK", "-debug"), msgs,
      ["Received PSK identity hint 'Qt DTLS example server'"])

msgs = ["gnutls-%d" % i for i in range(5)]
check("gnutls-cli certificate", d.gnutls_cli(port, "--x509cafile", ca), msgs)

# Plain PSK only: gnutls-cli 3.7.9 itself crashes printing ECDHE-PSK sessions
# (it calls gnutls_psk_server_get_username on a client session).
msgs = ["gpsk-%d" % i for i in range(5)]
check("gnutls-cli --pskusername", d.gnutls_cli(port, "--pskusername", "client1",
      "--pskkey", key, "--priority", "NORMAL:-KX-ALL:+PSK"), msgs)

if lib == "OpenSSL":
    check("s_client PSK-AES128-CCM8", d.s_client(port, "-psk", key, "-psk_identity",
          "client1", "-cipher", "PSK-AES128-CCM8"), ["ccm8-psk"],
          ["Cipher is PSK-AES128-CCM8"])
    check("s_client ECDHE-ECDSA-AES128-CCM8", d.s_client(port, "-CAfile", ca,
          "-cipher", "ECDHE-ECDSA-AES128-CCM8"), ["ccm8-ecdsa"],
          ["Cipher is ECDHE-ECDSA-AES128-CCM8"])
else:
    print("skip: CCM_8 suites (BoringSSL has none)", flush=True)

# An unknown identity is refused.
c = d.s_client(port, "-psk", key, "-psk_identity", "intruder", "-cipher", "PSK")
got = c.roundtrip(["nope"], timeout=3)
c.close()
if got:
    failed.append("unknown identity"); print("FAILED: unknown PSK identity got an echo", flush=True)
else:
    print("ok: unknown PSK identity refused", flush=True)

# Same source port twice: the second ClientHello starts a fresh handshake.
sport = None
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
sport = s.getsockname()[1]; s.close()
c1 = d.s_client(port, "-CAfile", ca, "-bind", "127.0.0.1:%d" % sport)
got1 = c1.roundtrip(["first-life"])
c1.p.kill(); c1.p.wait(5)          # gone without close_notify
c2 = d.s_client(port, "-CAfile", ca, "-bind", "127.0.0.1:%d" % sport)
got2 = c2.roundtrip(["second-life"])
c2.close()
if got1 == ["first-life"] and got2 == ["second-life"]:
    print("ok: a new ClientHello from the same address and port got a fresh handshake", flush=True)
else:
    failed.append("restart"); print("FAILED: restart from port %d: %s %s\n%s" % (sport, got1, got2, c2.text()[-800:]), flush=True)

# A 2000-byte line comes back from the backend as 2001 bytes: more than one
# DTLS record within dtls_mtu 1400 can carry. It is dropped, not cut.
c = d.s_client(port, "-CAfile", ca)
big = "B" * 2000
c.send_line(big)
arrived = c.wait_for(b"B" * 100, timeout=2)
got = c.roundtrip(["small-after-big"])
c.close()
if arrived:
    failed.append("too large"); print("FAILED: (part of) an oversized reply arrived", flush=True)
elif got != ["small-after-big"]:
    failed.append("after too large"); print("FAILED: session broken after an oversized reply", flush=True)
else:
    print("ok: oversized reply dropped, the session goes on", flush=True)

sys.exit(1 if failed else 0)
EOF

assert_log_contains "handshake: DTLSv1.2 .*psk identity client1"
assert_log_contains "client sent close_notify"
assert_log_contains "unknown PSK identity 'intruder'"
assert_log_contains "client started a new handshake from the same address and port"
assert_log_contains "does not fit one DTLS record within dtls_mtu = 1400"
if [ "$TG_LIB" = OpenSSL ]; then
    assert_log_contains "handshake: DTLSv1.2 PSK-AES128-CCM8"
    assert_log_contains "handshake: DTLSv1.2 ECDHE-ECDSA-AES128-CCM8"
fi
# no key material in the log
for k in $(cut -d: -f2 "$CERTS/psk.txt"); do
    grep -qi "$k" "$TLSGATE_LOG" && fail "a pre-shared key appears in the log"
done
stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || fail "tlsgate exited $TLSGATE_RC on SIGTERM"
assert_log_contains "udp stats: .*handshakes ok [1-9]"
log "ok"
