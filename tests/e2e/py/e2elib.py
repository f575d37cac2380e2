"""Helpers for tlsgate e2e scenarios (tests/e2e/py, on PYTHONPATH via lib.sh)."""
import os, socket, ssl, sys, threading, time

CERTS = os.environ.get("CERTS", "certs")

def cert(name):
    return os.path.join(CERTS, name)

def tls_context(ca="ca.pem", certfile=None, keyfile=None, verify=True, version=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_verify_locations(cert(ca))
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if certfile:
        ctx.load_cert_chain(cert(certfile), cert(keyfile) if keyfile else None)
    if version == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    elif version == "1.3":
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx

def tcp_connect(port, host="127.0.0.1", timeout=10, rcvbuf=None):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect((host, port))
    return s

def tls_connect(port, host="127.0.0.1", sni="localhost", timeout=10, rcvbuf=None, **kw):
    raw = tcp_connect(port, host, timeout, rcvbuf)
    s = tls_context(**kw).wrap_socket(raw, server_hostname=sni)
    return s

def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        d = s.recv(min(1 << 20, n - len(buf)))
        if not d:
            raise EOFError("EOF after %d of %d bytes" % (len(buf), n))
        buf += d
    return bytes(buf)

def recv_until_eof(s, limit=1 << 30):
    buf = bytearray()
    while len(buf) < limit:
        try:
            d = s.recv(1 << 20)
        except ssl.SSLZeroReturnError:
            break
        if not d:
            break
        buf += d
    return bytes(buf)

def closed_within(s, seconds):
    """Wait until the peer closes s (EOF, reset or TLS alert). Returns the delay or None."""
    t0 = time.monotonic()
    s.settimeout(0.1)
    while time.monotonic() - t0 < seconds:
        try:
            d = s.recv(65536)
            if not d:
                return time.monotonic() - t0
        except (socket.timeout, ssl.SSLWantReadError):
            continue
        except (ConnectionError, ssl.SSLError, OSError):
            return time.monotonic() - t0
    return None

PATTERN = bytes(range(256)) * 256   # 64 KiB, offset-checkable stream

def check_pattern(data, offset):
    for i in range(0, len(data), 65536):
        chunk = data[i:i + 65536]
        start = (offset + i) % 256
        want = (PATTERN[start:] + PATTERN[:start])[:len(chunk)]
        if chunk != want:
            return False
    return True

# ---- servers: python3 e2elib.py echo|flood|sink PORT [ARGS] ----------------------------
def _serve(port, handler):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(128)
    print("listening on 127.0.0.1:%d" % port, flush=True)
    n = 0
    while True:
        c, addr = ls.accept()
        n += 1
        print("accepted #%d from %s:%d" % (n, addr[0], addr[1]), flush=True)
        threading.Thread(target=handler, args=(c, n), daemon=True).start()

def _echo(c, n):
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(d)
        c.shutdown(socket.SHUT_WR)
    except OSError as e:
        print("echo #%d: %s" % (n, e), flush=True)
    finally:
        c.close()

def _flood_factory(counter_file, seconds, limit):
    def flood(c, n):
        sent, t0, last = 0, time.monotonic(), 0
        with open(counter_file, "w") as f:
            f.write("0\n")
        try:
            while sent < limit and time.monotonic() - t0 < seconds:
                sent += c.send(PATTERN[sent % 256:] + PATTERN[:sent % 256])
                if sent - last >= (1 << 20):
                    last = sent
                    with open(counter_file + ".tmp", "w") as f:
                        f.write("%d\n" % sent)
                    os.replace(counter_file + ".tmp", counter_file)
        except OSError as e:
            print("flood #%d: %s after %d bytes" % (n, e, sent), flush=True)
        with open(counter_file, "w") as f:
            f.write("%d\n" % sent)
        print("flood #%d: done, %d bytes" % (n, sent), flush=True)
        c.close()
    return flood

_held = []
def _stall(c, n):
    _held.append(c)   # accept, never read, never close

def _sink(c, n):
    try:
        while c.recv(65536):
            pass
    except OSError:
        pass
    c.close()

if __name__ == "__main__":
    kind, port = sys.argv[1], int(sys.argv[2])
    if kind == "echo":
        _serve(port, _echo)
    elif kind == "flood":
        counter = sys.argv[3]
        _serve(port, _flood_factory(counter, float(sys.argv[4]) if len(sys.argv) > 4 else 60,
                                    int(sys.argv[5]) if len(sys.argv) > 5 else 4 << 30))
    elif kind == "sink":
        _serve(port, _sink)
    elif kind == "stall":
        _serve(port, _stall)
    else:
        sys.exit("unknown server kind " + kind)
