"""Scripted backend: python3 faultsrv.py PORT [tls CERT KEY].
First line from a client: ECHO | RESET | BLAST | HANG | SLOW n | STREAM.
With 'tls' it is a TLS echo server; with 'silent' it accepts and never talks."""
import socket, ssl, struct, sys, threading, time
port, mode = int(sys.argv[1]), (sys.argv[2] if len(sys.argv) > 2 else "plain")
held = []

def rst(c):
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()

def readline(c):
    buf = b""
    while not buf.endswith(b"\n"):
        d = c.recv(1)
        if not d:
            raise EOFError
        buf += d
    return buf.decode().strip()

def handle(c, n):
    try:
        if mode == "silent":
            held.append(c)
            return
        line = readline(c)
        print("#%d: %s" % (n, line), flush=True)
        if line == "ECHO":
            c.sendall(b"ECHO ok\n")
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)
            c.close()
        elif line == "RESET":
            c.sendall(b"partial-\n")
            readline(c)            # the client has the bytes: "GO"
            rst(c)
        elif line == "BLAST":
            c.setblocking(False)
            sent = 0
            t0 = time.monotonic()
            while sent < (1 << 20) and time.monotonic() - t0 < 5:
                try:
                    sent += c.send(b"x" * 65536)
                except BlockingIOError:
                    time.sleep(0.01)
            print("#%d: blasted %d bytes, resetting" % (n, sent), flush=True)
            rst(c)
        elif line == "HANG":
            held.append(c)          # read, never answer, never close
        elif line.startswith("SLOW"):
            count = int(line.split()[1])
            for i in range(count):
                c.sendall(bytes([65 + i % 26]))
                time.sleep(0.02)
            c.shutdown(socket.SHUT_WR)
            while c.recv(65536):
                pass
            c.close()
        elif line == "STREAM":
            try:
                while True:
                    c.sendall(b"s" * 65536)
            except OSError as e:
                print("#%d: stream ended: %s" % (n, e), flush=True)
            c.close()
    except (OSError, EOFError) as e:
        print("#%d: %s" % (n, e), flush=True)

ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port))
ls.listen(64)
ctx = None
if mode == "tls":
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[3], sys.argv[4])
print("listening on 127.0.0.1:%d (%s)" % (port, mode), flush=True)
n = 0
while True:
    c, _ = ls.accept()
    n += 1
    if ctx:
        def tls_echo(c=c, n=n):
            try:
                s = ctx.wrap_socket(c, server_side=True)
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    s.sendall(d)
                s.close()
            except (OSError, ssl.SSLError) as e:
                print("#%d: %s" % (n, e), flush=True)
        threading.Thread(target=tls_echo, daemon=True).start()
    else:
        threading.Thread(target=handle, args=(c, n), daemon=True).start()
