#!/usr/bin/env bash
# 76-http-smuggling: protocol = http is strict and keeps framing exact.
# A list of malformed and ambiguous request heads (CL+TE, duplicate Content-Length, unknown
# codings, obs-fold, bare CR/LF, NUL/control characters, bad request lines, HTTP/2 preface,
# CONNECT, a head over max_request_head, ...) each gets 400 with Connection: close, a log
# line, and the backend never sees a connection. Controls: keep-alive and pipelined
# requests (Content-Length, chunked with extensions and trailers, HEAD, chunked
# responses, empty lines between requests, a head sent byte by byte) all reach the
# backend with every head checked and bodies byte-exact (raw chunk framing included);
# a bad second head on a keep-alive connection gets 400 after the first response; a bad
# chunk gets 400 at once; a 256 MiB upload streams through without tlsgate's memory
# growing. The same pipelining run goes over a TLS listener too.
. "$(dirname "$0")/lib.sh"

BP=$(free_port); PH=$(free_port); PS=$(free_port)
bg_start backend "$PY" "$E2E_DIR/py/http_helpers.py" backend "$BP" "$WORK/b.jsonl"
wait_listen "$BP" 10 "$BG_PID" || fail "backend did not start: $(cat "$WORK/backend.log")"
write_config smuggle.ini <<EOF
$(global_section workers=1 log_level=info)

[listener:h]
bind = 127.0.0.1:$PH
secure = off
backend = 127.0.0.1:$BP
protocol = http
max_request_head = 4k

[listener:s]
bind = 127.0.0.1:$PS
secure = on
$SERVER_PFX
backend = 127.0.0.1:$BP
protocol = http
EOF
start_tlsgate "$CONFIG"

"$PY" - "$PH" "$PS" "$WORK/b.jsonl" "$TLSGATE_PID" <<'EOF' || error "checks failed (see above)"
import hashlib, os, sys, threading, time, e2elib, http_helpers as H
PH, PS = int(sys.argv[1]), int(sys.argv[2])
LOG, TG_PID = sys.argv[3], sys.argv[4]
bad = 0

def check(ok, what):
    global bad
    print(("ok: " if ok else "FAILED: ") + what, flush=True)
    bad += not ok

def conns():
    return len(H.events(LOG, "conn"))

def reqs_since(c):
    return [e for e in H.events(LOG, "req") if e["conn"] > c]

G = b"GET / HTTP/1.1\r\nHost: a\r\n"
CASES = [
    ("Content-Length + Transfer-Encoding", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("Transfer-Encoding + Content-Length", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"),
    ("duplicate Content-Length, same value", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
    ("duplicate Content-Length, different", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
    ("Content-Length list", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello"),
    ("Content-Length +5", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello"),
    ("Content-Length -1", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"),
    ("Content-Length 0x5", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello"),
    ("Content-Length empty", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n"),
    ("Content-Length 19 digits", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000000000000\r\n\r\n"),
    ("Transfer-Encoding chunked, gzip", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
    ("Transfer-Encoding gzip, chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
    ("Transfer-Encoding xchunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
    ("Transfer-Encoding twice", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("space before the colon", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
    ("Transfer-Encoding in HTTP/1.0", b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("obs-fold", G + b"X-A: b\r\n c\r\n\r\n"),
    ("obs-fold of Transfer-Encoding", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"),
    ("bare LF line ends", b"GET / HTTP/1.1\nHost: a\n\n"),
    ("one bare LF", b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n"),
    ("bare CR in a value", G + b"X: a\rb\r\n\r\n"),
    ("NUL in a value", G + b"X: a\x00b\r\n\r\n"),
    ("DEL in a value", G + b"X: a\x7fb\r\n\r\n"),
    ("control character in a value", G + b"X: a\x01b\r\n\r\n"),
    ("space in a field name", G + b"Bad Name: x\r\n\r\n"),
    ("@ in a field name", G + b"X@Y: x\r\n\r\n"),
    ("empty field name", G + b": x\r\n\r\n"),
    ("line without a colon", G + b"NoColon\r\n\r\n"),
    ("two spaces in the request line", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("trailing space in the request line", b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n"),
    ("control character in the target", b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("8-bit byte in the target", b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("HTTP/1.2", b"GET / HTTP/1.2\r\nHost: a\r\n\r\n"),
    ("lower-case version", b"GET / http/1.1\r\nHost: a\r\n\r\n"),
    ("HTTP/0.9 request line", b"GET /\r\n\r\n"),
    ("HTTP/2 prior-knowledge preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    ("missing Host", b"GET / HTTP/1.1\r\nX: y\r\n\r\n"),
    ("duplicate Host", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
    ("Host with a space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
    ("Host with userinfo", b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n"),
    ("Host with a bad port", b"GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n"),
    ("absolute-form with userinfo", b"GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("CONNECT", b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"),
    ("head over max_request_head", G + b"X-Big: " + b"x" * 5000 + b"\r\n\r\n"),
    ("129 header fields", G + b"".join(b"X-%d: y\r\n" % i for i in range(129)) + b"\r\n"),
    ("stray LF before the request", b"\n" + G + b"\r\n"),
    ("a TLS ClientHello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40),
]
for what, head in CASES:
    before = conns()
    s = e2elib.tcp_connect(PH)
    try:
        s.sendall(head)
    except OSError:
        pass
    rs = H.read_responses(s, limit=2)
    ok = len(rs) == 1 and rs[0][0] == 400 and rs[0][1].get("connection") == "close" and H.closed(s)
    s.close()
    time.sleep(0.05)
    after = conns()
    check(ok and after == before, "%s: %s, backend connections %d -> %d"
          % (what, [r[0] for r in rs], before, after))

def exchange(port, data, n, tls=False, heads=(), pace=None):
    s = e2elib.tls_connect(port) if tls else e2elib.tcp_connect(port)
    if pace:
        for i in range(0, len(data), pace):
            s.sendall(data[i:i + pace])
            time.sleep(0.002)
    else:
        s.sendall(data)
    rs = H.read_responses(s, limit=n, heads=heads)
    return s, rs

import json
def body(r):
    return json.loads(r[2]) if r[2] else None

# keep-alive + pipelining, every kind of framing, plain and TLS
for port, tls in ((PH, False), (PS, True)):
    name = "TLS" if tls else "plain"
    before = conns()
    cl_body = os.urandom(70000)
    chunks = [os.urandom(n) for n in (1, 100, 16384, 70001, 3)]
    chunked = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\nX-Trailer: t\r\n\r\n"
    pipe = [b"GET /1 HTTP/1.1\r\nHost: localhost\r\n\r\n",
            b"POST /2 HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % len(cl_body) + cl_body,
            b"POST /3 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked,
            b"HEAD /4 HTTP/1.1\r\nHost: localhost\r\n\r\n",
            b"GET /chunked5 HTTP/1.1\r\nHost: localhost\r\n\r\n",
            b"\r\n" + b"GET /6 HTTP/1.1\r\nHost: localhost\r\n\r\n",
            b"POST /7 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
            b"GET /8 HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n",
            b"GET /10 HTTP/1.1\r\nHost: localhost\r\n\r\n"]
    s, rs = exchange(port, b"".join(pipe), len(pipe), tls=tls, heads=(3,))
    check([r[0] for r in rs] == [200] * 10, "%s: 10 pipelined requests, 10 answers in order: %s" % (name, [r[0] for r in rs]))
    got = reqs_since(before)
    check([e["target"] for e in got] == ["/1", "/2", "/3", "/4", "/chunked5", "/6", "/7", "/8", "*", "/10"],
          "%s: the backend saw every request, in order, on one connection (%s)" % (name, sorted({e["conn"] for e in got})))
    if len(got) == 10:
        check(got[1]["body_sha256"] == hashlib.sha256(cl_body).hexdigest(), "%s: Content-Length body byte-exact" % name)
        check(got[2]["body_sha256"] == hashlib.sha256(b"".join(chunks)).hexdigest()
              and got[2]["raw_sha256"] == hashlib.sha256(chunked).hexdigest(),
              "%s: chunked body byte-exact, extensions and trailers passed as sent" % name)
    # another round on the same connection, then a bad head: 200 first, then 400
    s.sendall(b"GET /11 HTTP/1.1\r\nHost: localhost\r\n\r\n" + b"GET /12 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx")
    rs = H.read_responses(s, limit=3)
    check([r[0] for r in rs] == [200, 400] and H.closed(s), "%s: keep-alive: the bad second head gets 400 after the 200: %s"
          % (name, [r[0] for r in rs]))
    check([e["target"] for e in reqs_since(before)][-1] == "/11", "%s: the bad head never reached the backend" % name)
    s.close()

# a head arriving byte by byte
before = conns()
s, rs = exchange(PH, b"GET /slowly HTTP/1.1\r\nHost: a\r\nX-Long: " + b"y" * 200 + b"\r\n\r\n", 1, pace=1)
check(rs and rs[0][0] == 200 and body(rs[0])["target"] == "/slowly", "a head sent byte by byte")
s.close()
# a bad chunk: 400 at once (the head was already passed on)
s, rs = exchange(PH, b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n", 2)
check([r[0] for r in rs] == [400] and H.closed(s), "bad chunk size: 400 and closed (%s)" % [r[0] for r in rs])
s.close()
s, rs = exchange(PH, b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello!!\r\n", 2)
check([r[0] for r in rs] == [400] and H.closed(s), "chunk longer than its size: 400 (%s)" % [r[0] for r in rs])
s.close()

# a 256 MiB upload streams through; tlsgate's peak memory stays small
def hwm():
    for ln in open("/proc/%s/status" % TG_PID):
        if ln.startswith("VmHWM:"):
            return int(ln.split()[1]) // 1024
hwm0 = hwm()
size = 256 << 20
blk = os.urandom(1 << 20)
sha = hashlib.sha256()
s = e2elib.tcp_connect(PH, timeout=60)
s.sendall(b"PUT /big HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size)
t0 = time.time()
for _ in range(size >> 20):
    s.sendall(blk)
    sha.update(blk)
rs = H.read_responses(s, limit=1, timeout=60)
dt = time.time() - t0
ok = rs and rs[0][0] == 200 and body(rs[0])["body_sha256"] == sha.hexdigest()
check(ok, "256 MiB upload byte-exact in %.1f s" % dt)
check(hwm() < hwm0 + 32, "tlsgate peak RSS %d MiB before, %d MiB after the upload" % (hwm0, hwm()))
s.close()
sys.exit(1 if bad else 0)
EOF

assert_log_contains 'http-refused: 400 framing: both Content-Length and Transfer-Encoding'
assert_log_contains 'http-refused: 400 malformed: obsolete line folding'
assert_log_contains 'http-refused: 400 malformed: bare LF in the request head'
assert_log_contains 'http-refused: 400 head-too-large: request head larger than max_request_head \(4096 bytes\)'
assert_log_contains 'http-refused: 400 unsupported: HTTP/2 prior-knowledge preface'
assert_log_contains 'http-refused: 400 malformed: bad character 0x01 in field X'
assert_log_contains 'http-refused: 400 framing: chunked request body: bad chunk size line'
stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || error "tlsgate exited $TLSGATE_RC on SIGTERM"
finish
