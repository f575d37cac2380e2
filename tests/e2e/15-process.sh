#!/usr/bin/env bash
# 15-process: user = drops root after binding (real, effective and saved
# uid all become the user's) and the proxy still serves; pid_file holds the
# pid and is removed at exit; with NOTIFY_SOCKET set (systemd Type=notify)
# tlsgate sends READY=1 once listening, RELOADING=1 then READY=1 around a
# SIGHUP, and STOPPING=1 on SIGTERM.
. "$(dirname "$0")/lib.sh"

BPORT=$(free_port); PORT=$(free_port)
start_echo "$BPORT"
user_lines=""
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
    user_lines="user = nobody"
    # the identity files are read before the switch, but the user must be
    # able to reach the pid file's directory to remove it at exit
    chmod 777 "$WORK"
else
    log "not root: privilege drop not tested"
fi
write_config proc.ini <<EOF
[global]
workers = 2
pid_file = $WORK/tlsgate.pid
$user_lines

[listener:p]
bind = 127.0.0.1:$PORT
$SERVER_PFX
backend = 127.0.0.1:$BPORT
EOF

# A stand-in for systemd's notify socket, recording every datagram.
write_py notify <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(60)
with open(sys.argv[2], "a", buffering=1) as out:
    try:
        while True:
            msg = s.recv(4096).decode()
            out.write(msg.replace("\n", " ") + "\n")
    except socket.timeout:
        pass
EOF
bg_start notify "$PY" "$WORK/notify.py" "$WORK/notify.sock" "$WORK/notify.txt"
for _ in $(seq 100); do [ -S "$WORK/notify.sock" ] && break; sleep 0.02; done
[ -S "$WORK/notify.sock" ] || fail "notify socket did not appear"
[ -n "$user_lines" ] && chmod 777 "$WORK/notify.sock"

NOTIFY_SOCKET=$WORK/notify.sock start_tlsgate "$CONFIG" "$PORT"

wait_notify() {  # wait_notify N REGEX -> line N of notify.txt matches
    local t
    for t in $(seq 100); do
        sed -n "${1}p" "$WORK/notify.txt" 2>/dev/null | grep >/dev/null -cE "$2" && return 0
        sleep 0.05
    done
    error "notify message $1 is '$(sed -n "${1}p" "$WORK/notify.txt" 2>/dev/null)', wanted /$2/"
}
wait_notify 1 "^READY=1 MAINPID=$TLSGATE_PID\$"

[ "$(cat "$WORK/tlsgate.pid" 2>/dev/null)" = "$TLSGATE_PID" ] && log "ok: pid_file holds $TLSGATE_PID" \
    || error "pid_file holds '$(cat "$WORK/tlsgate.pid" 2>/dev/null)', wanted $TLSGATE_PID"

if [ -n "$user_lines" ]; then
    uids=$(awk '/^Uid:/ {print $2, $3, $4}' "/proc/$TLSGATE_PID/status")
    gids=$(awk '/^Gid:/ {print $2, $3, $4}' "/proc/$TLSGATE_PID/status")
    nu=$(id -u nobody); ng=$(id -g nobody)
    [ "$uids" = "$nu $nu $nu" ] && log "ok: uids are $uids (nobody)" || error "uids are '$uids', wanted nobody's $nu"
    [ "$gids" = "$ng $ng $ng" ] && log "ok: gids are $gids" || error "gids are '$gids', wanted $ng"
    assert_log_contains "running as user nobody" >/dev/null || error "no log line about the user switch"
fi

"$PY" - "$PORT" <<'EOF' || error "proxy does not serve after the privilege drop"
import sys, e2elib
s = e2elib.tls_connect(int(sys.argv[1]))
s.sendall(b"hi\n"); assert e2elib.recv_exact(s, 3) == b"hi\n"
print("ok: served a client")
EOF

kill -HUP "$TLSGATE_PID"
wait_notify 2 "^RELOADING=1"
wait_notify 3 "^READY=1"
stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || error "tlsgate exited $TLSGATE_RC"
wait_notify 4 "^STOPPING=1"
[ ! -e "$WORK/tlsgate.pid" ] && log "ok: pid_file removed at exit" || error "pid_file left behind"
finish
