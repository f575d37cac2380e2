import json, socket, struct, sys, threading
SIG = b"\r\n\r\n\x00\r\nQUIT\n"
def recv_exact(c, n):
    b = b""
    while len(b) < n:
        d = c.recv(n - len(b))
        if not d:
            raise EOFError
        b += d
    return b
def tlvs(data):
    out, i = [], 0
    while i + 3 <= len(data):
        t, l = data[i], struct.unpack(">H", data[i + 1:i + 3])[0]
        out.append((t, data[i + 3:i + 3 + l]))
        i += 3 + l
    return out
def handle(c):
    try:
        h = recv_exact(c, 16)
        info = {"sig_ok": h[:12] == SIG}
        body = recv_exact(c, struct.unpack(">H", h[14:16])[0])
        addrlen = {0x11: 12, 0x21: 36}.get(h[13], 0)
        for t, v in tlvs(body[addrlen:]):
            if t == 0x20:
                info["client"] = v[0]
                info["verify"] = struct.unpack(">I", v[1:5])[0]
                for st, sv in tlvs(v[5:]):
                    info[{0x21: "version", 0x22: "cn", 0x23: "cipher"}.get(st, "sub%x" % st)] = sv.decode("latin-1")
        c.sendall(json.dumps(info).encode() + b"\n")
        while c.recv(4096):
            pass
    except (OSError, EOFError):
        pass
    finally:
        c.close()
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1])))
ls.listen(64)
print("listening", flush=True)
while True:
    c, _ = ls.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
