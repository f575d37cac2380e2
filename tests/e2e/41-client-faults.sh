#!/usr/bin/env bash
# 41-client-faults: clients that break off or talk nonsense during the TLS
# handshake. Each one gets a single log line that names the client's address
# and port and says why, with the TLS library's own reason for protocol
# errors -- and never claims a certificate problem where there was none
# (nobody sent a certificate here). Meanwhile an established connection keeps
# echoing, and afterwards a fresh client is served.
#   hello-fin    half a ClientHello, then FIN  -> "client closed the connection during the TLS handshake"
#   hello-rst    half a ClientHello, then RST  -> "client reset the connection"
#   flight-fin   a whole ClientHello, reads the server's flight, then FIN -> same as hello-fin
#   http         "GET / HTTP/1.1"               -> "handshake failed: http request"
#   binary       32 bytes 00..1f                -> "handshake failed: wrong version number"
#   bad-hs       a handshake record announcing a 1.4 MB message -> "handshake failed: excessive message size" / "unexpected message"
#   sslv2        an SSLv2-compatible ClientHello (TLS 1.0) -> "unsupported protocol"
#   tls10, tls11 real TLS 1.0 / 1.1 clients (Python ssl, SECLEVEL=0) -> "unsupported protocol"
#   cbc          a TLS 1.2 client offering only AES128-SHA -> "no shared cipher"
#   bad-cke      TLS 1.2 ClientHello, then garbage in place of the client's second flight
. "$(dirname "$0")/lib.sh"

EPORT=$(free_port)
LPORT=$(free_port)
start_echo "$EPORT"
write_config client-faults.ini <<EOF
$(global_section workers=1 log_level=info drain_timeout=2s)

[listener:cf]
bind = 127.0.0.1:$LPORT
$SERVER_PFX
backend = 127.0.0.1:$EPORT
handshake_timeout = 5s
EOF
start_tlsgate "$CONFIG"

"$PY" - "$LPORT" "$WORK/ports" <<'EOF' || fail "client fault checks failed (see above)"
import socket, ssl, struct, sys, threading, time, warnings
import e2elib
warnings.simplefilter("ignore", DeprecationWarning)   # TLS 1.0/1.1 on purpose

port, portfile = int(sys.argv[1]), sys.argv[2]
failed = False
def check(cond, what):
    global failed
    print(("ok: " if cond else "FAILED: ") + what, flush=True)
    failed |= not cond

def note(tag, s):
    with open(portfile, "a") as f:
        f.write("%s %d\n" % (tag, s.getsockname()[1]))

def client_hello(version=None):
    """The first flight of a real TLS client (Python ssl over memory BIOs)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if version == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()

def closed(s, secs=6):
    return e2elib.closed_within(s, secs) is not None

stop = threading.Event()
echoing = threading.Event()
by = {"n": 0, "err": None}
def bystander():
    try:
        s = e2elib.tls_connect(port)
        note("bystander", s)
        while not stop.is_set():
            msg = b"tick %d\n" % by["n"]
            s.sendall(msg)
            if e2elib.recv_exact(s, len(msg)) != msg:
                raise RuntimeError("wrong echo")
            by["n"] += 1
            echoing.set()
            stop.wait(0.2)
        s.close()
    except Exception as e:
        by["err"] = repr(e)
    echoing.set()
t = threading.Thread(target=bystander)
t.start()
echoing.wait(20)   # the faults start once the bystander is established (a load-proof start)

hello = client_hello()

def raw_case(tag, data, how="fin"):
    s = e2elib.tcp_connect(port)
    note(tag, s)
    s.sendall(data)
    if how == "rst":
        time.sleep(0.1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        return
    if how == "fin":
        time.sleep(0.1)
        s.shutdown(socket.SHUT_WR)
    check(closed(s), "%s: tlsgate closed the connection" % tag)
    s.close()

raw_case("hello-fin", hello[:len(hello) // 2])
raw_case("hello-rst", hello[:len(hello) // 2], how="rst")

# a whole ClientHello, wait for the server's flight, then leave
s = e2elib.tcp_connect(port)
note("flight-fin", s)
s.sendall(hello)
got = s.recv(65536)
check(len(got) > 0 and got[0] == 0x16, "flight-fin: server answered with a handshake record")
s.shutdown(socket.SHUT_WR)
check(closed(s), "flight-fin: tlsgate closed the connection")
s.close()

raw_case("http", b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", how="wait")
raw_case("binary", bytes(range(32)), how="wait")
raw_case("bad-hs", bytes.fromhex("16030100050115000000"), how="wait")
v2hello = bytes.fromhex("8031" "01" "0301" "0018" "0000" "0010" "00c02b" "00c02f" "00009e"
                        "00009c" "00002f" "000035" "000005" "0000ff") + bytes(range(16))
raw_case("sslv2", v2hello, how="wait")

def tls_case(tag, version=None, ciphers=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if ciphers:
        ctx.set_ciphers(ciphers)
    if version:
        ctx.minimum_version = ctx.maximum_version = version
    s = e2elib.tcp_connect(port)
    note(tag, s)
    try:
        ctx.wrap_socket(s, server_hostname="localhost").close()
        check(False, "%s: handshake was accepted" % tag)
    except (ssl.SSLError, OSError) as e:
        check(True, "%s: refused (%s)" % (tag, e.__class__.__name__))
    s.close()

tls_case("tls10", ssl.TLSVersion.TLSv1, "DEFAULT:@SECLEVEL=0")
tls_case("tls11", ssl.TLSVersion.TLSv1_1, "DEFAULT:@SECLEVEL=0")
tls_case("cbc", ssl.TLSVersion.TLSv1_2, "AES128-SHA:@SECLEVEL=0")

# TLS 1.2: a real ClientHello, then garbage where the client's second flight belongs
s = e2elib.tcp_connect(port)
note("bad-cke", s)
s.sendall(client_hello("1.2"))
s.settimeout(5)
got = s.recv(65536)
s.sendall(bytes.fromhex("1603030010") + b"\x10" + b"\xee" * 15)
check(closed(s), "bad-cke: tlsgate closed the connection")
s.close()

# a fresh client is served; the bystander never missed a beat
s = e2elib.tls_connect(port)
s.sendall(b"fresh\n")
check(e2elib.recv_exact(s, 6) == b"fresh\n", "a fresh client is served afterwards")
s.close()
stop.set()
t.join(10)
check(by["err"] is None and by["n"] >= 2,
      "the established connection echoed %d times without error (%s)" % (by["n"], by["err"]))
sys.exit(1 if failed else 0)
EOF

port_of() { awk -v t="$1" '$1 == t { print $2 }' "$WORK/ports"; }
# nth_of TAG -- how many cases up to TAG used TAG's client port: the kernel may give a
# port again once an earlier case's connection is gone (busy machine), and the
# cases close one after the other, so the Nth close line of the port is TAG's
nth_of() { awk -v t="$1" '{ n[$2]++ } $1 == t { print n[$2]; exit }' "$WORK/ports"; }
# reason TAG REGEX -- the close line for TAG's client port gives REGEX as the reason, and
# does not blame a certificate (no certificate was involved in any of these cases)
reason() {
    local tag=$1 re=$2 p n line
    p=$(port_of "$tag")
    [ -n "$p" ] || { error "$tag: no client port recorded"; return; }
    n=$(nth_of "$tag")
    assert_log_contains "client 127\\.0\\.0\\.1:$p on cf: close: " 5
    line=$(grep -a "client 127\\.0\\.0\\.1:$p on cf: close: " "$TLSGATE_LOG" | sed -n "${n}p")
    if ! grep -qiE -- "close: ($re)" <<<"$line"; then
        error "$tag: close line does not give the reason /$re/: $line"
    elif grep -qiE 'certificate|no error detail' <<<"$line"; then
        error "$tag: close line blames a certificate (or has no reason) where none was involved: $line"
    else
        log "$tag: ${line#*close: }"
    fi
}
reason hello-fin  'client closed the connection during the TLS handshake'
reason hello-rst  'client reset the connection'
reason flight-fin 'client closed the connection during the TLS handshake'
reason http       'handshake failed: .*http[ _]request'
reason binary     'handshake failed: .*(wrong[ _]version[ _]number|unknown[ _]protocol|record)'
reason bad-hs     'handshake failed: .*(excessive[ _]message[ _]size|unexpected[ _]message|length|decode)'
reason sslv2      'handshake failed: .*(unsupported[ _]protocol|version)'
reason tls10      'handshake failed: .*(unsupported[ _]protocol|version)'
reason tls11      'handshake failed: .*(unsupported[ _]protocol|version)'
reason cbc        'handshake failed: .*no[ _]shared[ _]cipher'
reason bad-cke    'handshake failed: .*(decode|bad|length|unexpected|excessive|error)'

is_alive "$TLSGATE_PID" || fail "tlsgate died"
stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || fail "tlsgate exited $TLSGATE_RC on SIGTERM"
finish
