#!/usr/bin/env bash
# 62-backend-ciphers: what tlsgate offers a TLS backend (openssl s_server as
# the backend, TLS 1.2 only unless said otherwise, -rev answers a line reversed).
#  - default: the listener default, AEAD with forward secrecy. A backend that
#    only speaks AES128-SHA (RSA key exchange, CBC) or ECDHE-RSA-AES128-SHA
#    (CBC) is refused, each with the reason logged and s_server saying
#    "no shared cipher"; the control backend with ECDHE-RSA-AES128-GCM-SHA256
#    answers.
#  - backend_ciphers = AES128-SHA: the override reaches the weak backend.
#  - backend_min_version = 1.3: a TLS 1.2-only backend is refused, a
#    default s_server (TLS 1.3) answers.
. "$(dirname "$0")/lib.sh"
require_cmd openssl

declare -A SP
sserver() {  # sserver NAME s_server-args...
    local name=$1; shift
    SP[$name]=$(free_port)
    bg_start "ss-$name" openssl s_server -accept "127.0.0.1:${SP[$name]}" -cert "$CERTS/server-rsa.pem" \
        -key "$CERTS/server-rsa.key" -rev "$@"
    wait_listen "${SP[$name]}" 10 "$BG_PID" || fail "s_server $name did not start: $(cat "$WORK/ss-$name.log")"
}
sserver weak -tls1_2 -cipher AES128-SHA
sserver cbc -tls1_2 -cipher ECDHE-RSA-AES128-SHA
sserver good -tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256
sserver weak2 -tls1_2 -cipher AES128-SHA
sserver tls12 -tls1_2
sserver tls13

declare -A LP
{
    printf '[global]\nworkers = 1\nlog_level = info\n'
    lst() {  # NAME BACKEND KEY=VALUE...
        local n=$1 b=$2; shift 2
        LP[$n]=$(free_port)
        printf '\n[listener:%s]\nbind = 127.0.0.1:%s\nsecure = off\nbackend = 127.0.0.1:%s\nbackend_secure = on\nbackend_ca = %s\n' \
            "$n" "${LP[$n]}" "${SP[$b]}" "$CERTS/ca.pem"
        printf '%s\n' "$@"
    }
    lst def_weak weak
    lst def_cbc cbc
    lst def_good good
    lst override weak2 "backend_ciphers = AES128-SHA"
    lst min13_12 tls12 "backend_min_version = 1.3"
    lst min13_13 tls13 "backend_min_version = 1.3"
} > "$WORK/ciphers.ini"
CONFIG=$WORK/ciphers.ini
check_config "$CONFIG"
[ "$CHECK_RC" = 0 ] || fail "config refused: $CHECK_OUT"
grep -q ">= 1.3" <<<"$CHECK_OUT" || error "-t summary does not show backend_min_version: $CHECK_OUT"
start_tlsgate "$CONFIG"

# try NAME accept|refuse [REASON-REGEX]
try() {
    local name=$1 want=$2 re=${3:-} got
    log_mark
    got=$("$PY" - "${LP[$name]}" <<'EOF'
import sys, e2elib
s = e2elib.tcp_connect(int(sys.argv[1]), timeout=5)
s.sendall(b"ping\n")
buf = b""
try:
    while not buf.endswith(b"\n"):
        d = s.recv(100)
        if not d:
            break
        buf += d
except OSError:
    pass
print("accept" if buf == b"gnip\n" else "refuse")
EOF
)
    if [ "$got" != "$want" ]; then
        error "$name: expected $want, got $got; log: $(log_since | grep -a 'backend' | tail -2)"
        return
    fi
    if [ -n "$re" ]; then
        sleep 0.1
        log_since | grep -aqE "$re" || { error "$name: refused, but no log line matches /$re/: $(log_since | tail -3)"; return; }
    fi
    log "ok: $name: $got${re:+ (/$re/)}"
}
SHAKE='TLS handshake failed: .*(HANDSHAKE_FAILURE|handshake failure)'
try def_weak refuse "$SHAKE"
grep -qiE "no shared cipher|NO_SHARED_CIPHER" "$WORK/ss-weak.log" || error "s_server (AES128-SHA) does not report 'no shared cipher': $(tail -3 "$WORK/ss-weak.log")"
try def_cbc refuse "$SHAKE"
grep -qiE "no shared cipher|NO_SHARED_CIPHER" "$WORK/ss-cbc.log" || error "s_server (ECDHE-RSA-AES128-SHA) does not report 'no shared cipher'"
try def_good accept
try override accept
try min13_12 refuse 'TLS handshake failed: .*(PROTOCOL_VERSION|protocol version|UNSUPPORTED_PROTOCOL|unsupported protocol)'
try min13_13 accept
finish
