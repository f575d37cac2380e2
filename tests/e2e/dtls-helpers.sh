# shellcheck shell=bash
# tests/e2e/dtls-helpers.sh -- sourced (after lib.sh) by the UDP/DTLS scenarios 3x-*.sh.
#
# Provides: TG_LIB (OpenSSL | BoringSSL, from tlsgate -V), wait_running (the
# start-up log line: UDP sockets cannot be connect-probed), start_udp_echo,
# udp_stats FIELD (a number from the udp stats lines logged when tlsgate
# stops); the Python module tests/e2e/py/dtlslib.py (import dtlslib): a UDP echo server,
# drivers for `openssl s_client -dtls1_2` and `gnutls-cli --udp` that send
# lines one by one and wait for each echo, a ClientHello recorder, and a
# DTLS record parser.

TG_LIB=$("$TLSGATE" -V | awk -F': ' '/^TLS library/ { split($2, a, " "); print a[1] }')
PSK_KEY=$(awk -F: '$1 == "client1" { print $2 }' "$CERTS/psk.txt")

# wait_running [TIMEOUT_S=10] -- until tlsgate logged that its workers run
wait_running() { wait_ready "$TLSGATE_PID" "$TLSGATE_LOG" tlsgate "running with" "${1:-10}"; }

# start_udp_echo PORT [NAME] -- Python UDP echo server on 127.0.0.1:PORT; PID in BG_PID
start_udp_echo() {
    local port=$1 name=${2:-udp-echo-$1}
    bg_start "$name" "$PY" "$E2E_DIR/py/dtlslib.py" echo "$port"
    wait_ready "$BG_PID" "$WORK/$name.log" "udp echo on port $port"
}

# udp_stats NAME [LISTENER] -- sums counter NAME (e.g. "created",
# "hello-verify", "half-open peak") over the "udp stats"/"udp drops" lines
# of TLSGATE_LOG (of every worker; of one listener if given)
udp_stats() {
    "$PY" - "$TLSGATE_LOG" "$1" "${2:-}" <<'EOF'
import re, sys
total, found = 0, False
for line in open(sys.argv[1], errors="replace"):
    if "udp stats:" not in line and "udp drops:" not in line:
        continue
    if sys.argv[3] and "listener %s (worker" % sys.argv[3] not in line:
        continue
    m = re.search(r"[:,;] " + re.escape(sys.argv[2]) + r" (\d+)", line)
    if m:
        total += int(m.group(1)); found = True
print(total if found else "missing")
EOF
}
