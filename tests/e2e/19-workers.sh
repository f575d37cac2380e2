#!/usr/bin/env bash
# 19-workers: with workers = 2 each worker has its own listening socket
# (SO_REUSEPORT) and both take connections; 40 clients are spread over them
# (all on one worker would have odds of 2^-39) and all are served.
. "$(dirname "$0")/lib.sh"

BPORT=$(free_port); PORT=$(free_port)
start_echo "$BPORT"
write_config w.ini <<EOF
$(global_section workers=2)

[listener:w]
bind = 127.0.0.1:$PORT
$SERVER_PFX
backend = 127.0.0.1:$BPORT
EOF
start_tlsgate "$CONFIG"
threads=$(ls "/proc/$TLSGATE_PID/task" | wc -l)
[ "$threads" -ge 3 ] && log "ok: $threads threads (main + 2 workers, libuv may add more)" || error "only $threads threads"

"$PY" - "$PORT" <<'EOF' || fail "clients failed"
import sys, e2elib
port = int(sys.argv[1])
socks = []
for i in range(40):
    s = e2elib.tls_connect(port)
    s.sendall(b"%d\n" % i)
    socks.append(s)
for i, s in enumerate(socks):
    assert e2elib.recv_exact(s, len(b"%d\n" % i)) == b"%d\n" % i
    s.close()
print("ok: 40 clients served")
EOF
for w in 0 1; do
    n=$(grep -c "accept: new connection (worker $w," "$TLSGATE_LOG")
    [ "$n" -ge 1 ] && log "ok: worker $w accepted $n connection(s)" || error "worker $w accepted nothing"
done
finish
