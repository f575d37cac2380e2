#!/usr/bin/env bash
# e2e: long
# 55-valgrind: a short run under valgrind's memcheck: TLS handshakes, data
# both ways, a refused client and a clean SIGTERM leave no invalid access,
# no use of uninitialised memory and nothing definitely or indirectly lost.
# (The ASan pass skips this: a sanitized binary cannot run under valgrind.)
. "$(dirname "$0")/lib.sh"
[ -n "${TLSGATE_SANITIZED:-}" ] && skip "sanitized binary: ASan already checks this pass"
command -v valgrind >/dev/null || skip "valgrind not installed"

BPORT=$(free_port); PORT=$(free_port)
start_echo "$BPORT"
write_config vg.ini <<EOF
[global]
workers = 2
log_level = info

[listener:vg]
bind = 127.0.0.1:$PORT
pfx = $CERTS/server.pfx
pfx_password = file:$CERTS/pfx-password
verify_client = optional
client_ca = $CERTS/ca.pem
backend = 127.0.0.1:$BPORT
EOF
bg_start valgrind valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect \
    --error-exitcode=9 --log-file="$WORK/valgrind.txt" "$TLSGATE" -c "$CONFIG"
VG_PID=$BG_PID
wait_listen "$PORT" 60 "$VG_PID" || fail "tlsgate under valgrind did not start"

"$PY" - "$PORT" <<'EOF' || error "clients failed"
import ssl, sys, e2elib
port = int(sys.argv[1])
for i in range(10):
    s = e2elib.tls_connect(port, timeout=30, **({"certfile": "client.pem", "keyfile": "client.key"} if i % 2 else {}))
    s.sendall(b"x" * 5000); assert e2elib.recv_exact(s, 5000) == b"x" * 5000
    s.close()
try:
    s = e2elib.tls_connect(port, timeout=30, certfile="foreign-client.pem", keyfile="foreign-client.key")
    s.sendall(b"y"); s.recv(1)
except (ssl.SSLError, OSError):
    pass
print("ok: 10 clients served, one refused")
EOF
kill -TERM "$VG_PID"
wait_exit "$VG_PID" 60 || fail "tlsgate under valgrind did not stop"
grep -E "ERROR SUMMARY|definitely lost|indirectly lost" "$WORK/valgrind.txt"
[ "$WAIT_RC" = 0 ] || { grep -A20 -E "Invalid|uninitialised|definitely lost in" "$WORK/valgrind.txt" | head -60; error "valgrind reported errors (exit $WAIT_RC)"; }
grep -q "ERROR SUMMARY: 0 errors" "$WORK/valgrind.txt" || error "valgrind error summary not clean"
finish
