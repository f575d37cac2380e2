#!/usr/bin/env bash
# 88-unix-sockets: bind = unix:PATH, backend = unix:PATH, and systemd socket
# activation (LISTEN_FDS / LISTEN_FDNAMES) driven by systemd-socket-activate.
#   1. a TLS listener on TCP with a unix-socket backend (socat echo): data
#      round-trips; a missing backend socket is a logged backend failure
#   2. a plaintext and a TLS listener bound to unix sockets in front of the
#      demo HTTP backend: curl --unix-socket works over both; the socket
#      files get unix_mode (default 0660, and 0600 when set); a stale socket
#      file from an earlier run is replaced; a regular file at the path is
#      refused; on SIGTERM the socket files are removed
#   3. socket activation: systemd-socket-activate owns a TCP port and a
#      unix socket named after two listeners; tlsgate starts on the first
#      connection, serves it on the handed-over sockets and never binds the
#      `bind =` address of those listeners; a listener without a socket of
#      its name binds as usual, and a handed-over socket no listener takes
#      is logged as unused
#   4. config: unix sockets with transport = udp are refused (control beside)
. "$(dirname "$0")/lib.sh"
require_cmd socat curl systemd-socket-activate

HTTP=$(free_port); TPORT=$(free_port)
start_demo_backend "$HTTP"
bg_start app-echo socat "UNIX-LISTEN:$WORK/app.sock,fork" EXEC:cat
for _ in $(seq 100); do [ -S "$WORK/app.sock" ] && break; sleep 0.05; done
[ -S "$WORK/app.sock" ] || fail "socat unix echo did not start"

# a stale socket file left by a crashed run, where the plain listener binds
"$PY" -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$WORK/plain.sock"
[ -S "$WORK/plain.sock" ] || fail "could not make a stale socket file"

write_config unix.ini <<EOF
$(global_section workers=2)

[listener:tls-to-unix]
bind = 127.0.0.1:$TPORT
$SERVER_PFX
backend = unix:$WORK/app.sock

[listener:plain]
bind = unix:$WORK/plain.sock
secure = off
backend = 127.0.0.1:$HTTP

[listener:tls]
bind = unix:$WORK/tls.sock
unix_mode = 0600
$SERVER_PFX
backend = 127.0.0.1:$HTTP

[listener:gone]
bind = 127.0.0.1:$(free_port)
secure = off
backend = unix:$WORK/nothing-here.sock
EOF
start_tlsgate "$CONFIG" "$TPORT"
for _ in $(seq 100); do [ -S "$WORK/tls.sock" ] && break; sleep 0.05; done

# 1. unix backend
"$PY" - "$TPORT" <<'EOF' || error "TLS client -> tlsgate -> unix backend echo failed"
import sys, e2elib
s = e2elib.tls_connect(int(sys.argv[1]))
for i in range(20):
    m = b"line %d over a unix backend\n" % i
    s.sendall(m)
    assert e2elib.recv_exact(s, len(m)) == m
s.close()
print("ok")
EOF
assert_log_contains "connected to unix:$WORK/app.sock" 5
GPORT=$(awk '/^\[listener:gone\]/{f=1} f && /^bind/{split($3,a,":"); print a[2]; exit}' "$CONFIG")
curl -s --max-time 5 "http://127.0.0.1:$GPORT/" >/dev/null
assert_log_contains "backend unix:$WORK/nothing-here.sock: no such file or directory" 5

# 2. unix listeners
OUT=$(curl -s --max-time 5 --unix-socket "$WORK/plain.sock" "http://localhost/")
[ -n "$OUT" ] || error "curl --unix-socket over the plaintext unix listener got nothing"
OUT=$(curl -s --max-time 5 --unix-socket "$WORK/tls.sock" --cacert "$CERTS/ca.pem" "https://localhost/")
[ -n "$OUT" ] || error "curl --unix-socket over the TLS unix listener got nothing"
assert_log_contains "client unix on plain: accept" 5
M=$(stat -c %a "$WORK/plain.sock"); [ "$M" = 660 ] || error "plain.sock has mode $M, wanted 660 (default unix_mode)"
M=$(stat -c %a "$WORK/tls.sock"); [ "$M" = 600 ] || error "tls.sock has mode $M, wanted 600 (unix_mode = 0600)"
kill -HUP "$TLSGATE_PID"
assert_log_contains "reloaded: generation 2" 5
OUT=$(curl -s --max-time 5 --unix-socket "$WORK/plain.sock" "http://localhost/")
[ -n "$OUT" ] || error "the unix listener does not answer after a reload"
stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || error "tlsgate exited with $TLSGATE_RC"
[ -e "$WORK/plain.sock" ] && error "plain.sock left behind after SIGTERM"
[ -e "$WORK/tls.sock" ] && error "tls.sock left behind after SIGTERM"

echo "not a socket" > "$WORK/file.sock"
write_config notsock.ini <<EOF
[listener:x]
bind = unix:$WORK/file.sock
secure = off
backend = 127.0.0.1:$HTTP
EOF
"$TLSGATE" -c "$CONFIG" >"$WORK/notsock.log" 2>&1 </dev/null & NPID=$!; track_pid "$NPID" tlsgate-notsock
wait_exit "$NPID" 10 || fail "tlsgate did not exit on a regular file at the bind path"
[ "$WAIT_RC" = 1 ] && grep -q "notsock.ini:2: \[listener:x\] bind: bind unix:$WORK/file.sock: exists and is not a socket" "$WORK/notsock.log" \
    || error "a regular file at the bind path: status $WAIT_RC: $(cat "$WORK/notsock.log")"
[ "$(cat "$WORK/file.sock")" = "not a socket" ] || error "the regular file was touched"

# 3. socket activation
APORT=$(free_port); NEVER=$(free_port); OWN=$(free_port)
write_config activated.ini <<EOF
$(global_section workers=2)

[listener:web]
bind = 127.0.0.1:$NEVER
$SERVER_PFX
backend = 127.0.0.1:$HTTP

[listener:local]
bind = unix:$WORK/never.sock
secure = off
backend = 127.0.0.1:$HTTP

[listener:own]
bind = 127.0.0.1:$OWN
secure = off
backend = 127.0.0.1:$HTTP
EOF
_TG_N=$((_TG_N + 1)); TLSGATE_LOG=$WORK/tlsgate.activated.log
systemd-socket-activate -l "127.0.0.1:$APORT" -l "$WORK/act.sock" -l "127.0.0.1:$(free_port)" \
    --fdname=web:local:stray -- "$TLSGATE" -c "$CONFIG" >"$TLSGATE_LOG" 2>&1 </dev/null &
TLSGATE_PID=$!; track_pid "$TLSGATE_PID" socket-activate; _TLSGATE_PIDS+=("$TLSGATE_PID")
wait_listen "$APORT" 10 "$TLSGATE_PID" || fail "systemd-socket-activate did not listen"
for _ in $(seq 100); do [ -S "$WORK/act.sock" ] && break; sleep 0.05; done
_listening tcp "$OWN" && error "tlsgate started before the first connection"
# the first connection starts tlsgate and is served
OUT=$(curl -s --max-time 10 --cacert "$CERTS/ca.pem" "https://localhost:$APORT/" --resolve "localhost:$APORT:127.0.0.1")
[ -n "$OUT" ] || error "first connection to the activated TCP socket got nothing"
wait_listen "$OWN" 10 "$TLSGATE_PID" || error "listener own did not bind its own address"
OUT=$(curl -s --max-time 5 --unix-socket "$WORK/act.sock" "http://localhost/")
[ -n "$OUT" ] || error "the activated unix socket got nothing"
OUT=$(curl -s --max-time 5 "http://127.0.0.1:$OWN/")
[ -n "$OUT" ] || error "listener own does not answer"
_listening tcp "$NEVER" && error "listener web bound its own bind address although systemd gave it a socket"
[ -e "$WORK/never.sock" ] && error "listener local bound its own unix path although systemd gave it a socket"
assert_log_contains "socket 5 from systemd \(name 'stray'\) matches no listener" 5
kill -HUP "$TLSGATE_PID"
assert_log_contains "reloaded: generation 2" 5
OUT=$(curl -s --max-time 5 --cacert "$CERTS/ca.pem" "https://localhost:$APORT/" --resolve "localhost:$APORT:127.0.0.1")
[ -n "$OUT" ] || error "the activated socket does not answer after a reload"
_listening tcp "$NEVER" && error "after a reload listener web bound its own address"
stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || error "activated tlsgate exited with $TLSGATE_RC"
[ -S "$WORK/act.sock" ] || error "tlsgate removed the socket file systemd owns"

# control: without socket activation the same config binds its own addresses
start_tlsgate "$CONFIG" "$NEVER" "$OWN"
for _ in $(seq 100); do [ -S "$WORK/never.sock" ] && break; sleep 0.05; done
[ -S "$WORK/never.sock" ] || error "control: listener local did not bind its unix path"
stop_tlsgate

# 4. config
write_config udpunix.ini <<EOF
[listener:u]
bind = unix:$WORK/u.sock
transport = udp
secure = off
backend = 127.0.0.1:$HTTP
EOF
check_config "$CONFIG"
[ "$CHECK_RC" = 1 ] && echo "$CHECK_OUT" | grep >/dev/null -c "udpunix.ini:2: \[listener:u\] bind: unix sockets are for transport = tcp only" \
    || error "a unix bind with transport = udp not refused: $CHECK_OUT"
sed -i '/^transport = udp/d' "$CONFIG"
check_config "$CONFIG"
[ "$CHECK_RC" = 0 ] || error "control: a unix bind with transport = tcp refused: $CHECK_OUT"
# relative socket paths resolve against the config's directory, as files do
mkdir -p "$WORK/etc"
write_config etc/relative.ini <<EOF
[listener:r]
bind = unix:run/web.sock
secure = off
backend = unix:../app.sock
EOF
cd / && check_config "$CONFIG"; cd "$WORK" || fail "cd"
echo "$CHECK_OUT" | grep >/dev/null -cF "listener r: tcp unix:$WORK/etc/run/web.sock [plaintext] -> unix:$WORK/app.sock" \
    || error "relative unix: paths not resolved against the config directory: $CHECK_OUT"
finish
