#!/usr/bin/env bash
# 31-dtls-concurrent: 50 DTLS clients at once (openssl s_client -dtls1_2 and
# gnutls-cli --udp, alternating) through one tlsgate listener with two
# workers to one UDP echo backend. Each client sends its own tagged lines and
# must get exactly its own echoes back: nothing crosses between associations.
# Afterwards every association has ended (close_notify) and the stats (log
# line and Prometheus endpoint) agree.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/dtls-helpers.sh"
require_cmd openssl gnutls-cli

EPORT=$(free_port udp)
DPORT=$(free_port udp)
MPORT=$(free_port)
start_udp_echo "$EPORT"
write_config dtls.ini <<EOF
$(global_section workers=2 log_level=info metrics=127.0.0.1:$MPORT)

[listener:many]
bind = 127.0.0.1:$DPORT
transport = udp
secure = on
$SERVER_PFX
backend = 127.0.0.1:$EPORT
handshake_timeout = 20s
EOF
start_tlsgate "$CONFIG"
wait_running

"$PY" - "$DPORT" <<'EOF' || fail "concurrent DTLS clients failed"
import os, sys, threading
import dtlslib as d

port, N = int(sys.argv[1]), 50
ca = d.cert("ca.pem")
results = {}

def run(i):
    tag = "c%02d-%s" % (i, os.urandom(4).hex())
    lines = ["%s-msg%d" % (tag, k) for k in range(3)]
    if i % 2:
        c = d.gnutls_cli(port, "--x509cafile", ca, name="gnutls-%d" % i)
    else:
        c = d.s_client(port, "-CAfile", ca, "-verify_return_error", name="s_client-%d" % i)
    got = c.roundtrip(lines, timeout=30)
    c.close()
    results[i] = (tag, lines, got, c.text())

threads = [threading.Thread(target=run, args=(i,)) for i in range(N)]
for t in threads:
    t.start()
for t in threads:
    t.join(90)

bad = 0
tags = {i: r[0] for i, r in results.items()}
for i in range(N):
    if i not in results:
        print("FAILED: client %d did not finish" % i, flush=True); bad += 1; continue
    tag, lines, got, out = results[i]
    foreign = [t for j, t in tags.items() if j != i and t in out]
    if got != lines or foreign:
        bad += 1
        print("FAILED: client %d (%s): echoed %d/3, foreign tags %s\n%s" %
              (i, tag, len(got), foreign, out[-600:]), flush=True)
print("%d of %d clients got exactly their own echoes" % (N - bad, N), flush=True)
sys.exit(1 if bad else 0)
EOF

# the associations show in the Prometheus endpoint like TCP connections
if command -v curl >/dev/null; then
    m=$(curl -s --max-time 5 "http://127.0.0.1:$MPORT/metrics")
    okm=$(printf '%s\n' "$m" | awk '/^tlsgate_handshakes_total\{listener="many",result="ok"\}/ { print $2 }')
    conn=$(printf '%s\n' "$m" | awk '/^tlsgate_connections_total\{listener="many"\}/ { print $2 }')
    log "metrics: handshakes ok $okm, connections $conn"
    [ "${okm:-0}" -ge 50 ] && [ "${conn:-0}" -ge 50 ] || fail "metrics do not count the DTLS associations: $(printf '%s\n' "$m" | grep many | head)"
fi
stop_tlsgate 20
[ "$TLSGATE_RC" = 0 ] || fail "tlsgate exited $TLSGATE_RC on SIGTERM"
created=$(udp_stats created)
ok=$(udp_stats "handshakes ok")
open=$(udp_stats "associations open")
log "associations created $created, handshakes ok $ok, open at exit $open"
[ "$ok" -ge 50 ] || fail "only $ok handshakes completed"
[ "$open" = 0 ] || fail "$open associations still open at exit"
n=$(grep -c "client sent close_notify" "$TLSGATE_LOG")
[ "$n" -ge 50 ] || fail "only $n associations ended with close_notify"
log "ok"
