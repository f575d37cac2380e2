#!/usr/bin/env bash
# 17-tickets: instances sharing ticket_key_file resume each other's
# sessions (TLS 1.3 and 1.2): a full handshake against instance A, then the
# ticket resumes against instance B. An instance with other keys does a
# full handshake instead. Rotation: B reloaded with [new key, old key]
# still resumes A's ticket (old key), and tickets it issues then use the
# new key, which A (old key only) cannot resume.
. "$(dirname "$0")/lib.sh"

BPORT=$(free_port); A=$(free_port); B=$(free_port); C=$(free_port)
start_echo "$BPORT"
head -c 80 /dev/urandom > "$WORK/old.key"; head -c 80 /dev/urandom > "$WORK/new.key"
head -c 80 /dev/urandom > "$WORK/other.key"
cp "$WORK/old.key" "$WORK/b.key"
chmod 600 "$WORK"/*.key

instance() {  # instance FILE PORT KEYFILE
    cat > "$WORK/$1" <<EOF
$(global_section workers=2 log_level=info)

[listener:web]
bind = 127.0.0.1:$2
$SERVER_PFX
backend = 127.0.0.1:$BPORT
ticket_key_file = $3
EOF
}
instance a.ini "$A" "$WORK/old.key"; instance b.ini "$B" "$WORK/b.key"; instance c.ini "$C" "$WORK/other.key"
check_config "$WORK/a.ini"
grep -q "1 shared ticket key" <<<"$CHECK_OUT" || error "-t summary does not mention the ticket key: $CHECK_OUT"
start_tlsgate "$WORK/a.ini" "$A"; PID_A=$TLSGATE_PID
start_tlsgate "$WORK/b.ini" "$B"; PID_B=$TLSGATE_PID; LOG_B=$TLSGATE_LOG
start_tlsgate "$WORK/c.ini" "$C"

write_py resume <<'EOF'
import socket, ssl, sys, e2elib
_ctx = {}  # Python reuses a session only with the context that made it
def session_from(port, version, session=None):
    if version not in _ctx:
        _ctx[version] = e2elib.tls_context(version=version)
    ctx = _ctx[version]
    s = ctx.wrap_socket(e2elib.tcp_connect(port), server_hostname="localhost", session=session)
    s.sendall(b"x\n"); assert e2elib.recv_exact(s, 2) == b"x\n"  # the TLS 1.3 ticket comes after the handshake
    reused, sess = s.session_reused, s.session
    s.close()
    return reused, sess
EOF
"$PY" - "$A" "$B" "$C" <<'EOF' || fail "resumption checks failed"
import sys
sys.path.insert(0, ".")
from resume import session_from
a, b, c = map(int, sys.argv[1:])
bad = 0
for v in ("1.3", "1.2"):
    reused, sess = session_from(a, v)
    ok = not reused and sess is not None and sess.has_ticket
    print(("ok" if ok else "FAILED") + ": TLS %s full handshake on A gave a ticket" % v); bad += not ok
    reused, _ = session_from(b, v, sess)
    print(("ok" if reused else "FAILED") + ": TLS %s ticket from A resumes on B" % v); bad += not reused
    reused, _ = session_from(c, v, sess)
    print(("ok" if not reused else "FAILED") + ": TLS %s ticket from A does not resume on C (other keys)" % v); bad += reused
sys.exit(1 if bad else 0)
EOF

# Rotation on B: new key first, old key kept.
cat "$WORK/new.key" "$WORK/old.key" > "$WORK/b.key"
log_mark_b=$(stat -c %s "$LOG_B")
kill -HUP "$PID_B"
for _ in $(seq 100); do tail -c +"$((log_mark_b + 1))" "$LOG_B" | grep >/dev/null -c "reloaded: generation 2" && break; sleep 0.05; done
tail -c +"$((log_mark_b + 1))" "$LOG_B" | grep >/dev/null -c "2 shared ticket keys" || error "B did not reload with 2 ticket keys"
"$PY" - "$A" "$B" <<'EOF' || error "rotation checks failed"
import sys
sys.path.insert(0, ".")
from resume import session_from
a, b = map(int, sys.argv[1:])
_, from_a = session_from(a, "1.3")
reused, from_b = session_from(b, "1.3", from_a)
print(("ok" if reused else "FAILED") + ": after rotation B still resumes a ticket under the old key")
fresh_reused, from_b2 = session_from(b, "1.3")
back, _ = session_from(a, "1.3", from_b2)
print(("ok" if not back else "FAILED") + ": a ticket B issued under the new key does not resume on A (old key only)")
again, _ = session_from(b, "1.3", from_b2)
print(("ok" if again else "FAILED") + ": ... but resumes on B")
sys.exit(0 if reused and not back and again else 1)
EOF

# A key file of the wrong size is a config error naming the line.
head -c 50 /dev/urandom > "$WORK/bad.key"
instance bad.ini "$C" "$WORK/bad.key"
check_config "$WORK/bad.ini"
[ "$CHECK_RC" = 1 ] && grep -qE "bad.ini:[0-9]+: \[listener:web\] ticket_key_file: .*50 bytes" <<<"$CHECK_OUT" \
    && log "ok: a 50-byte key file is refused: $CHECK_OUT" || error "bad key file not refused properly: $CHECK_OUT"
finish
