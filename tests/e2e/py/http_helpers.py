"""HTTP helpers for the protocol = http scenarios (75-78): a recording
HTTP/1.1 backend and a raw client that reads a sequence of responses.

Backend:  python3 http_helpers.py backend PORT LOGFILE [--tls CERTDIR]
  Every accepted connection is logged as {"event": "conn", "conn": N, "cn": ...},
  every request as {"event": "req", "conn": N, "req": K, "method", "target",
  "headers": [[name, value], ...], "body_len", "body_sha256", "raw_sha256"} (one JSON
  object per line).  The answer is 200 with that object as its JSON body, framed
  with Content-Length; /chunked answers chunked; /slow waits 0.3 s first; a HEAD
  gets the Content-Length but no body; "Connection: close" ends the connection.
  With --tls the backend requires a client certificate signed by CERTDIR/ca.pem.
"""
import hashlib
import json
import os
import socket
import ssl
import sys
import threading
import time

LOCK = threading.Lock()


def log_line(path, obj):
    with LOCK:
        with open(path, "a") as f:
            f.write(json.dumps(obj) + "\n")


class Reader:
    def __init__(self, sock):
        self.s = sock
        self.buf = b""

    def fill(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError
        self.buf += d

    def line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        i = self.buf.index(b"\r\n")
        ln, self.buf = self.buf[:i], self.buf[i + 2:]
        return ln

    def exact(self, n):
        while len(self.buf) < n:
            self.fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d


def read_request(r):
    """Returns (method, target, headers, body_len, body_sha256, raw_sha256) or None at
    EOF.  Bodies are hashed as they stream, never kept whole."""
    try:
        ln = r.line()
        while ln == b"":
            ln = r.line()
    except EOFError:
        return None
    method, target, _ = ln.decode("latin-1").split(" ", 2)
    headers = []
    while True:
        ln = r.line()
        if ln == b"":
            break
        k, v = ln.decode("latin-1").split(":", 1)
        headers.append([k, v.strip()])
    h = {k.lower(): v for k, v in headers}
    body, raw = hashlib.sha256(), hashlib.sha256()
    n_body = 0

    def take(n, both=True):
        nonlocal n_body
        while n > 0:
            if not r.buf:
                r.fill()
            d, r.buf = r.buf[:n], r.buf[n:]
            n -= len(d)
            raw.update(d)
            if both:
                body.update(d)
                n_body += len(d)

    if h.get("transfer-encoding", "").lower() == "chunked":
        while True:
            sz = r.line()
            raw.update(sz + b"\r\n")
            n = int(sz.split(b";")[0], 16)
            if n == 0:
                while True:
                    t = r.line()
                    raw.update(t + b"\r\n")
                    if t == b"":
                        break
                break
            take(n)
            take(2, both=False)
    elif "content-length" in h:
        take(int(h["content-length"]))
    return method, target, headers, n_body, body.hexdigest(), raw.hexdigest()


def serve_conn(sock, n, logfile, cn):
    log_line(logfile, {"event": "conn", "conn": n, "cn": cn})
    r = Reader(sock)
    k = 0
    try:
        while True:
            req = read_request(r)
            if req is None:
                break
            method, target, headers, body_len, body_sha, raw_sha = req
            k += 1
            rec = {"event": "req", "conn": n, "req": k, "method": method, "target": target,
                   "headers": headers, "body_len": body_len, "body_sha256": body_sha,
                   "raw_sha256": raw_sha, "cn": cn}
            log_line(logfile, rec)
            out = json.dumps(rec).encode()
            if target.startswith("/slow"):
                time.sleep(0.3)
            close = any(k2.lower() == "connection" and v.lower() == "close" for k2, v in headers)
            if target.startswith("/chunked"):
                mid = len(out) // 2
                resp = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                        + b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (mid, out[:mid], len(out) - mid, out[mid:]))
            else:
                resp = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                        % len(out)) + (b"" if method == "HEAD" else out)
            sock.sendall(resp)
            if close:
                break
    except (EOFError, ConnectionError, ssl.SSLError, OSError, ValueError):
        pass
    finally:
        try:
            sock.close()
        except OSError:
            pass


def backend(port, logfile, certdir=None):
    ctx = None
    if certdir:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(certdir, "server.pem"), os.path.join(certdir, "server.key"))
        ctx.load_verify_locations(os.path.join(certdir, "ca.pem"))
        ctx.verify_mode = ssl.CERT_REQUIRED
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(64)
    print("listening on %d" % port, flush=True)
    n = 0
    while True:
        s, _ = ls.accept()
        n += 1
        cn = None
        if ctx:
            try:
                s.settimeout(10)
                s = ctx.wrap_socket(s, server_side=True)
                s.settimeout(None)
                for rdn in s.getpeercert().get("subject", ()):
                    for k, v in rdn:
                        if k == "commonName":
                            cn = v
            except (ssl.SSLError, OSError) as e:
                log_line(logfile, {"event": "tls-fail", "conn": n, "error": str(e)})
                s.close()
                continue
        threading.Thread(target=serve_conn, args=(s, n, logfile, cn), daemon=True).start()


# ---- client side -------------------------------------------------------------------

def events(logfile, kind=None):
    out = []
    try:
        with open(logfile) as f:
            for ln in f:
                e = json.loads(ln)
                if kind is None or e["event"] == kind:
                    out.append(e)
    except FileNotFoundError:
        pass
    return out


def read_responses(sock, limit=64, timeout=10, heads=()):
    """Reads responses until EOF (or limit): a list of (status, headers dict, body).
    heads: indexes of responses that answer HEAD requests (no body)."""
    sock.settimeout(timeout)
    r = Reader(sock)
    out = []
    try:
        while len(out) < limit:
            ln = r.line()
            status = int(ln.split(b" ")[1])
            h = {}
            while True:
                ln = r.line()
                if ln == b"":
                    break
                k, v = ln.decode("latin-1").split(":", 1)
                h[k.strip().lower()] = v.strip()
            if h.get("transfer-encoding", "").lower() == "chunked":
                body = b""
                while True:
                    n = int(r.line().split(b";")[0], 16)
                    if n == 0:
                        while r.line() != b"":
                            pass
                        break
                    body += r.exact(n + 2)[:-2]
            elif len(out) in heads:
                body = b""
            else:
                body = r.exact(int(h.get("content-length", "0")))
            out.append((status, h, body))
    except (EOFError, ConnectionError, socket.timeout, ssl.SSLError, OSError):
        pass
    return out


def closed(sock, timeout=5):
    """True when the peer closes within timeout (EOF or reset)."""
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except (ConnectionError, ssl.SSLError):
        return True
    except (socket.timeout, OSError):
        return False


if __name__ == "__main__":
    if sys.argv[1] == "backend":
        certdir = sys.argv[5] if len(sys.argv) > 5 and sys.argv[4] == "--tls" else None
        backend(int(sys.argv[2]), sys.argv[3], certdir)
