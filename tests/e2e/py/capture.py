"""A TCP backend that saves, per connection, everything it received up to the
client's "END" marker into OUTDIR/connN.bin, then answers "ok".

python3 capture.py PORT OUTDIR  (lib.sh: start_capture PORT DIR)"""
import os, socket, sys, threading
port, outdir = int(sys.argv[1]), sys.argv[2]
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port)); srv.listen(64)
n = 0
def handle(c, i):
    buf = b""
    c.settimeout(10)
    try:
        while b"END" not in buf:
            d = c.recv(65536)
            if not d: break
            buf += d
        with open(os.path.join(outdir, "conn%d.bin" % i), "wb") as f:
            f.write(buf)
        c.sendall(b"ok")
    except OSError:
        pass
    c.close()
while True:
    c, _ = srv.accept()
    n += 1
    threading.Thread(target=handle, args=(c, n), daemon=True).start()
