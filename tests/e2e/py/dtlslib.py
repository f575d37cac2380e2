"""UDP/DTLS helpers for tlsgate e2e scenarios (tests/e2e/py, on PYTHONPATH via lib.sh)."""
import os, selectors, socket, struct, subprocess, sys, time

CERTS = os.environ.get("CERTS", "certs")

def cert(name):
    return os.path.join(CERTS, name)

def psk_key(identity="client1"):
    for line in open(cert("psk.txt")):
        ident, _, key = line.strip().rpartition(":")
        if ident == identity:
            return key
    raise KeyError(identity)

# ---- a UDP echo server: python3 dtlslib.py echo PORT -------------------------------
def echo_server(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    print("listening on 127.0.0.1:%d" % port, flush=True)
    peers = set()
    while True:
        d, a = s.recvfrom(65535)
        if a not in peers:
            peers.add(a)
            print("new peer %s:%d" % a, flush=True)
        s.sendto(d, a)

# ---- driving real clients -------------------------------------------------------------
class Client:
    """A command-line DTLS client whose stdin gets lines and whose stdout is
    searched for the echoes."""

    def __init__(self, argv, name="client"):
        self.name = name
        self.argv = argv
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT)
        self.out = b""
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.p.stdout, selectors.EVENT_READ)

    def _read(self, timeout):
        for _key, _ev in self.sel.select(timeout):
            d = os.read(self.p.stdout.fileno(), 65536)
            if not d:
                return False
            self.out += d
        return True

    def wait_for(self, needle, timeout=10.0):
        """Waits until needle (bytes) shows up in the output after the last match."""
        end = time.monotonic() + timeout
        while needle not in self.out:
            left = end - time.monotonic()
            if left <= 0:
                return False
            if not self._read(min(left, 0.2)) and self.p.poll() is not None:
                return needle in self.out
        return True

    def send_line(self, text):
        self.p.stdin.write(text.encode() + b"\n")
        self.p.stdin.flush()

    def roundtrip(self, lines, timeout=10.0):
        """Sends each line and waits for its echo.  Returns the lines that came back."""
        got = []
        for line in lines:
            try:
                self.send_line(line)
            except BrokenPipeError:
                break
            if not self.wait_for(("\n" + line + "\n").encode(), timeout):
                break
            got.append(line)
        return got

    def close(self, timeout=10.0):
        """Closes stdin (the client sends close_notify and exits)."""
        try:
            self.p.stdin.close()
        except BrokenPipeError:
            pass
        end = time.monotonic() + timeout
        while self.p.poll() is None and time.monotonic() < end:
            self._read(0.1)
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(5)
        while self._read(0):
            pass
        return self.p.returncode

    def text(self):
        return self.out.decode(errors="replace")

def s_client(port, *extra, name="s_client"):
    # -ign_eof off: EOF on stdin ends the session with close_notify.
    # Output starts with "\n" so that the first echo is found as "\nLINE\n".
    c = Client(["openssl", "s_client", "-dtls1_2", "-connect", "127.0.0.1:%d" % port,
                "-no_ign_eof"] + list(extra), name)
    c.out = b"\n"
    return c

def gnutls_cli(port, *extra, name="gnutls-cli"):
    c = Client(["gnutls-cli", "--udp", "--port", str(port)] + list(extra) + ["127.0.0.1"], name)
    c.out = b"\n"
    return c

# ---- the wire ---------------------------------------------------------------------------
def records(datagram):
    """[(content_type, version, epoch, seq, body)] of a DTLS datagram."""
    out, i = [], 0
    while i + 13 <= len(datagram):
        ct, ver, epoch = struct.unpack("!BHH", datagram[i:i + 5])
        seq = int.from_bytes(datagram[i + 5:i + 11], "big")
        ln = struct.unpack("!H", datagram[i + 11:i + 13])[0]
        out.append((ct, ver, epoch, seq, datagram[i + 13:i + 13 + ln]))
        i += 13 + ln
    return out

def handshake_type(datagram):
    r = records(datagram)
    if r and r[0][0] == 22 and r[0][4]:
        return r[0][4][0]
    return None

def record_client_hello(port_file, argv_builder, timeout=10.0):
    """Starts a real client against a UDP socket of ours and returns the
    first datagram it sends (its ClientHello)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(timeout)
    p = subprocess.Popen(argv_builder(s.getsockname()[1]), stdin=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        d, _ = s.recvfrom(65535)
    finally:
        p.kill()
        p.wait(5)
        s.close()
    return d

def openssl_client_hello():
    return record_client_hello(None, lambda port: [
        "openssl", "s_client", "-dtls1_2", "-connect", "127.0.0.1:%d" % port])

def session(port, line, extra, timeout=10.0):
    """One s_client session: sends line, waits for its echo, closes with
    close_notify. Prints the client's output; exit status 0 if echoed."""
    c = s_client(port, *extra)
    got = c.roundtrip([line], timeout)
    c.close()
    sys.stdout.write(c.text())
    return 0 if got == [line] else 1

if __name__ == "__main__":
    if sys.argv[1] == "echo":
        echo_server(int(sys.argv[2]))
    elif sys.argv[1] == "s_client":   # s_client PORT LINE [s_client args...]
        sys.exit(session(int(sys.argv[2]), sys.argv[3], sys.argv[4:]))
    else:
        sys.exit("unknown command " + sys.argv[1])
