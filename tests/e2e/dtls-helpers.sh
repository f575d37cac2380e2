# shellcheck shell=bash
# tests/e2e/dtls-helpers.sh -- sourced (after lib.sh) by the UDP/DTLS scenarios 3x-*.sh.
#
# Provides: TG_LIB (OpenSSL | BoringSSL, from tlsgate -V), wait_running (the
# start-up log line: UDP sockets cannot be connect-probed), start_udp_echo,
# udp_stats FIELD (a number from the udp stats lines logged when tlsgate
# stops), and the Python module dtlslib (import dtlslib): a UDP echo server,
# drivers for `openssl s_client -dtls1_2` and `gnutls-cli --udp` that send
# lines one by one and wait for each echo, a ClientHello recorder, and a
# DTLS record parser.

TG_LIB=$("$TLSGATE" -V | awk -F': ' '/^TLS library/ { split($2, a, " "); print a[1] }')
PSK_KEY=$(awk -F: '$1 == "client1" { print $2 }' "$CERTS/psk.txt")

# wait_running [TIMEOUT_S=10] -- until tlsgate logged that its workers run
wait_running() {
    local t=${1:-10} end
    end=$(( $(now_ms) + t * 1000 ))
    until grep -q "running with" "$TLSGATE_LOG" 2>/dev/null; do
        is_alive "$TLSGATE_PID" || { wait_exit "$TLSGATE_PID" 2; fail "tlsgate exited (status ${WAIT_RC:-?}) at start-up"; }
        [ "$(now_ms)" -ge "$end" ] && fail "tlsgate did not start within ${t}s"
        sleep 0.05
    done
}

# start_udp_echo PORT [NAME] -- Python UDP echo server on 127.0.0.1:PORT; PID in BG_PID
start_udp_echo() {
    local port=$1 name=${2:-udp-echo-$1} end
    bg_start "$name" "$PY" "$WORK/dtlslib.py" echo "$port"
    end=$(( $(now_ms) + 10000 ))
    until grep -q "^listening" "$WORK/$name.log" 2>/dev/null; do
        is_alive "$BG_PID" || fail "udp echo on port $port died: $(cat "$WORK/$name.log")"
        [ "$(now_ms)" -ge "$end" ] && fail "udp echo on port $port not ready in 10s"
        sleep 0.05
    done
}

# udp_stats NAME [LISTENER] -- sums counter NAME (e.g. "created",
# "hello-verify", "half-open peak") over the "udp stats"/"udp drops" lines
# of TLSGATE_LOG (of every worker; of one listener if given)
udp_stats() {
    "$PY" - "$TLSGATE_LOG" "$1" "${2:-}" <<'EOF'
import re, sys
total, found = 0, False
for line in open(sys.argv[1], errors="replace"):
    if "udp stats:" not in line and "udp drops:" not in line:
        continue
    if sys.argv[3] and "listener %s (worker" % sys.argv[3] not in line:
        continue
    m = re.search(r"[:,;] " + re.escape(sys.argv[2]) + r" (\d+)", line)
    if m:
        total += int(m.group(1)); found = True
print(total if found else "missing")
EOF
}

cat >"$WORK/dtlslib.py" <<'PYEOF'
"""UDP/DTLS helpers for tlsgate e2e scenarios (written by tests/e2e/dtls-helpers.sh)."""
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

if __name__ == "__main__":
    if sys.argv[1] == "echo":
        echo_server(int(sys.argv[2]))
    else:
        sys.exit("unknown command " + sys.argv[1])
PYEOF
