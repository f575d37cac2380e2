#!/usr/bin/env bash
# 44-backend-dns: a backend whose DNS name does not resolve.
#   backend = does-not-exist.invalid:80, 127.0.0.1:ECHO -- every client is
#   served by the second backend; the log says "cannot resolve
#   does-not-exist.invalid: <resolver's reason>" and that the name rests.
#   A listener whose only backend does not resolve closes its clients with
#   "no backend available" -- and tlsgate goes on serving the other one.
# To keep the lookup off the network (.invalid is reserved, RFC 6761, but
# the system resolver may still ask upstream), the scenario runs in a network
# namespace of its own with only loopback when `unshare -n` works (root);
# otherwise (or with E2E_NO_NETNS=1) it runs as is and the resolver answers.
if [ -z "${E2E_IN_NETNS:-}${E2E_NO_NETNS:-}" ] && command -v unshare >/dev/null 2>&1 &&
    unshare -n true 2>/dev/null; then
    export E2E_IN_NETNS=1
    exec unshare -n bash -c 'ip link set lo up 2>/dev/null || { echo "lo up failed"; exit 1; }; exec bash "$0"' "$0"
fi
. "$(dirname "$0")/lib.sh"
if [ -n "${E2E_IN_NETNS:-}" ]; then log "running in a private network namespace (loopback only)"
else log "no private network namespace: the system resolver answers for .invalid"; fi

EPORT=$(free_port)
L1=$(free_port)
L2=$(free_port)
start_echo "$EPORT"
write_config dns.ini <<EOF
$(global_section workers=1 log_level=info drain_timeout=2s)

[listener:dns]
bind = 127.0.0.1:$L1
$SERVER_PFX
backend = does-not-exist.invalid:80, 127.0.0.1:$EPORT
connect_timeout = 3s

[listener:onlydns]
bind = 127.0.0.1:$L2
secure = off
backend = does-not-exist.invalid:80
connect_timeout = 3s
EOF
check_config "$CONFIG"
[ "$CHECK_RC" = 0 ] || fail "tlsgate -t refused a config with an unresolvable backend name (names resolve at connect time): $CHECK_OUT"
start_tlsgate "$CONFIG"

"$PY" - "$L1" "$L2" <<'EOF' || fail "unresolvable backend checks failed (see above)"
import sys, time
import e2elib

l1, l2 = int(sys.argv[1]), int(sys.argv[2])
failed = False
def check(cond, what):
    global failed
    print(("ok: " if cond else "FAILED: ") + what, flush=True)
    failed |= not cond

for i in range(4):
    t0 = time.monotonic()
    s = e2elib.tls_connect(l1)
    msg = b"request %d\n" % i
    s.sendall(msg)
    try:
        got = e2elib.recv_exact(s, len(msg))
    except Exception as e:
        got = repr(e).encode()
    check(got == msg, "request %d served by the next backend in %.2f s (%r)" % (i, time.monotonic() - t0, got[:30]))
    s.close()

s = e2elib.tcp_connect(l2)
s.sendall(b"anyone?\n")
d = e2elib.closed_within(s, 8)
check(d is not None, "a listener with only the unresolvable backend closes its client (after %s s)" % (d and round(d, 2)))
s.close()

s = e2elib.tls_connect(l1)
s.sendall(b"still here\n")
check(e2elib.recv_exact(s, 11) == b"still here\n", "the other listener still serves clients")
s.close()
sys.exit(1 if failed else 0)
EOF

assert_log_contains 'on dns: backend: backend does-not-exist\.invalid:80: cannot resolve does-not-exist\.invalid: [^;]+; resting it'
assert_log_contains 'on dns: backend: connected to 127\.0\.0\.1:'
assert_log_contains 'on onlydns: backend: backend does-not-exist\.invalid:80: cannot resolve does-not-exist\.invalid'
assert_log_contains 'on onlydns: close: no backend available'
is_alive "$TLSGATE_PID" || fail "tlsgate died"
stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || fail "tlsgate exited $TLSGATE_RC on SIGTERM"
log "ok"
