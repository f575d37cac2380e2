#!/usr/bin/env bash
# 65-backend-speaks-first: a TLS backend that speaks first (a banner, a
# greeting) and puts its last handshake flight and its first application data
# into ONE write, so both arrive in one read on tlsgate's backend socket.
# The bytes after the handshake must be relayed byte-exact (they used to be
# dropped and the next record failed with bad record mac).
# Cases: TLS 1.2 full handshake (CCS + Finished + greeting), TLS 1.2 with a
# multi-record greeting, TLS 1.3 (tickets + greeting), and a control where
# the greeting is sent in a separate write after a pause.
. "$(dirname "$0")/lib.sh"

# A TLS server over ssl.MemoryBIO, so that the handshake's last flight and
# the greeting leave in one sendall().  Argv: PORT VERSION GREETING_LEN MODE
# (MODE "one" = one write, "split" = greeting 0.2 s later).  Per connection:
# handshake, greeting (pattern), then echo everything until EOF.
write_py speaker <<'EOF'
import socket, ssl, sys, threading, time
import e2elib
port, version, glen, mode = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(e2elib.cert("server.pem"), e2elib.cert("server.key"))
if version == "1.2":
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
else:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
greeting = e2elib.PATTERN[:glen]

def handle(c, n):
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_side=True)
    c.settimeout(10)
    try:
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                pending = out.read()
                if pending:
                    c.sendall(pending)
                d = c.recv(65536)
                if not d:
                    print("#%d: EOF during handshake" % n, flush=True)
                    return
                inc.write(d)
        last = out.read()   # CCS + Finished (1.2) or tickets (1.3)
        if mode == "close":     # a banner, then the end, all with the Finished
            obj.write(greeting)
            try:
                obj.unwrap()
            except ssl.SSLWantReadError:
                pass
            flight = last + out.read()
            c.sendall(flight)
            c.shutdown(socket.SHUT_WR)
            print("#%d: %s, handshake end + greeting + close_notify in one write of %d bytes"
                  % (n, obj.version(), len(flight)), flush=True)
            while c.recv(65536):
                pass
            return
        if mode == "one":
            obj.write(greeting)
            flight = last + out.read()
            c.sendall(flight)
            print("#%d: %s, handshake end (%d bytes) + greeting in one write of %d bytes"
                  % (n, obj.version(), len(last), len(flight)), flush=True)
        else:
            c.sendall(last)
            time.sleep(0.2)
            obj.write(greeting)
            c.sendall(out.read())
            print("#%d: %s, greeting in a separate write" % (n, obj.version()), flush=True)
        while True:
            d = c.recv(65536)
            if not d:
                break
            inc.write(d)
            while True:
                try:
                    data = obj.read(65536)
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:
                    data = b""
                if not data:
                    break
                obj.write(data)
            pending = out.read()
            if pending:
                c.sendall(pending)
    except (OSError, ssl.SSLError) as e:
        print("#%d: %s" % (n, e), flush=True)
    finally:
        c.close()

ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port))
ls.listen(16)
n = 0
while True:
    c, _ = ls.accept()
    n += 1
    threading.Thread(target=handle, args=(c, n), daemon=True).start()
EOF

declare -A BPORT LPORT
CASES="tls12 tls12big tls13 split close"
for k in $CASES; do BPORT[$k]=$(free_port); LPORT[$k]=$(free_port); done
start_speaker() {  # NAME VERSION GLEN MODE
    bg_start "speaker-$1" "$PY" "$WORK/speaker.py" "${BPORT[$1]}" "$2" "$3" "$4"
    wait_listen "${BPORT[$1]}" 10 "$BG_PID" || fail "speaker $1 did not start: $(cat "$WORK/speaker-$1.log")"
}
start_speaker tls12    1.2 300   one
start_speaker tls12big 1.2 40000 one
start_speaker tls13    1.3 300   one
start_speaker split    1.2 300   split
start_speaker close    1.2 300   close

write_config speak.ini < <(
    printf '[global]\nworkers = 1\nlog_level = debug\n'
    for k in $CASES; do
        printf '\n[listener:%s]\nbind = 127.0.0.1:%s\nsecure = off\nbackend = 127.0.0.1:%s\n' "$k" "${LPORT[$k]}" "${BPORT[$k]}"
        printf 'backend_secure = on\nbackend_ca = %s/ca.pem\n' "$CERTS"
    done
)
start_tlsgate "$CONFIG"

# client NAME GLEN: reads the greeting, then an echo of 100 KiB, byte-exact
client() {
    "$PY" - "${LPORT[$1]}" "$2" <<'EOF'
import sys, e2elib
port, glen = int(sys.argv[1]), int(sys.argv[2])
s = e2elib.tcp_connect(port, timeout=5)
try:
    g = e2elib.recv_exact(s, glen)
except (EOFError, OSError) as e:
    print("greeting: %s" % e); sys.exit(1)
if g != e2elib.PATTERN[:glen]:
    print("greeting differs"); sys.exit(1)
payload = e2elib.PATTERN[7:] + e2elib.PATTERN[:7 + 36000]
s.sendall(payload)
try:
    back = e2elib.recv_exact(s, len(payload))
except (EOFError, OSError) as e:
    print("echo: %s" % e); sys.exit(1)
if back != payload:
    print("echo differs"); sys.exit(1)
print("greeting %d bytes and echo %d bytes byte-exact" % (glen, len(payload)))
EOF
}

for k in tls12 tls12big tls13 split; do
    case $k in tls12big) glen=40000 ;; *) glen=300 ;; esac
    if out=$(client "$k" "$glen" 2>&1); then
        log "$k: $out"
    else
        error "$k: $out"
    fi
done
# close: greeting and close_notify with the Finished; the client gets both,
# ends its side, and tlsgate must notice (it reads the client while draining)
# and close at once, not at idle_timeout.
if out=$("$PY" - "${LPORT[close]}" <<'EOF' 2>&1
import sys, e2elib
s = e2elib.tcp_connect(int(sys.argv[1]), timeout=5)
g = e2elib.recv_exact(s, 300)
if g != e2elib.PATTERN[:300]:
    print("greeting differs"); sys.exit(1)
rest = e2elib.recv_until_eof(s)
if rest:
    print("%d unexpected bytes after the greeting" % len(rest)); sys.exit(1)
s.close()
print("greeting 300 bytes, then EOF")
EOF
); then
    log "close: $out"
    assert_log_contains 'on close: close: closed by both sides' 3 >/dev/null ||
        error "close: tlsgate did not close the connection after both ends"
else
    error "close: $out"
fi

for k in tls12 tls12big tls13 close; do
    grep -q "in one write" "$WORK/speaker-$k.log" || error "$k: the speaker did not send handshake end + greeting together: $(cat "$WORK/speaker-$k.log")"
done
grep -q "TLSv1.2, handshake end" "$WORK/speaker-tls12.log" || error "tls12 speaker did not negotiate TLS 1.2"
grep -q "TLSv1.3, handshake end" "$WORK/speaker-tls13.log" || error "tls13 speaker did not negotiate TLS 1.3"
assert_log_not_contains 'BAD_RECORD_MAC|bad record mac|DECRYPTION_FAILED'
finish
