#!/usr/bin/python3
"""Regenerates tests/fuzz/corpus/tls_server/: what real TLS clients send a
server, recorded from Python's ssl module (OpenSSL 3) talking to a Python
server over memory BIOs, with the certificate and key embedded in
fuzz_tls_server.c (so client certificates chain to its client_ca).

Each seed is one flag byte (fuzz_tls_server.c: bit 0 = listener, 0 "fuzz",
1 "fuzzmtls"; bits 1-7 = read size, 0 = one read) followed by every byte
the client sent, in order.  Replayed, the server's randomness differs, so
a replay goes as far as the first message that depends on it (Finished,
CertificateVerify): far enough to reach ClientHello parsing, ALPN, and in
TLS 1.2 the client Certificate message with verify_cb and the ACL.

    /usr/bin/python3 tests/fuzz/gen-tls-seeds.py [OUTDIR]
"""
import os, re, ssl, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus", "tls_server")

src = open(os.path.join(HERE, "fuzz_tls_server.c")).read()
def pem_from_c(name):
    lines = re.findall(r'"(.*)\\n"', re.search(r"static const char %s\[\] =\n((?:\s+\".*\"\n?)+);" % name, src).group(1))
    return "\n".join(lines) + "\n"

tmp = tempfile.mkdtemp(prefix="tls-seeds.")
def path(n): return os.path.join(tmp, n)
open(path("ca.pem"), "w").write(pem_from_c("cert_pem"))
open(path("ca.key"), "w").write(pem_from_c("key_pem"))

def run(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

def client_cert(name, cn, san, ca=None):
    """A P-256 client cert signed by the embedded CA (or self-signed if ca is False)."""
    ext = path(name + ".ext")
    open(ext, "w").write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
                         "extendedKeyUsage=clientAuth\nsubjectAltName=%s\n" % san)
    run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-out", path(name + ".key"))
    run("openssl", "req", "-new", "-key", path(name + ".key"), "-subj", "/CN=" + cn,
        "-out", path(name + ".csr"))
    if ca is False:
        run("openssl", "x509", "-req", "-in", path(name + ".csr"), "-signkey", path(name + ".key"),
            "-days", "20000", "-extfile", ext, "-out", path(name + ".pem"))
    else:
        run("openssl", "x509", "-req", "-in", path(name + ".csr"), "-CA", path("ca.pem"),
            "-CAkey", path("ca.key"), "-set_serial", "7", "-days", "20000", "-extfile", ext,
            "-out", path(name + ".pem"))
    return path(name + ".pem"), path(name + ".key")

good = client_cert("good", "fuzz-client",
                   "DNS:client.fuzz.test,IP:192.0.2.7,URI:spiffe://fuzz/client")
other = client_cert("other", "someone-else", "DNS:other.fuzz.test,IP:2001:db8::7")
foreign = client_cert("foreign", "foreign", "DNS:foreign.test", ca=False)

def record(version=None, cert=None, alpn=None, sni="localhost", ciphers=None,
           data=b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", close=True):
    """Runs one handshake over memory BIOs; returns the client's bytes."""
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(path("ca.pem"), path("ca.key"))
    sctx.load_verify_locations(path("ca.pem"))
    sctx.verify_mode = ssl.CERT_OPTIONAL
    sctx.set_alpn_protocols(["h2", "http/1.1"])
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE
    if version == "1.2":
        cctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if version == "1.3":
        cctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if ciphers:
        cctx.set_ciphers(ciphers)
    if cert:
        cctx.load_cert_chain(*cert)
    if alpn:
        cctx.set_alpn_protocols(alpn)
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = cctx.wrap_bio(c_in, c_out, server_hostname=sni)
    s = sctx.wrap_bio(s_in, s_out, server_side=True)
    sent = bytearray()
    def pump():
        d = c_out.read()
        sent.extend(d)
        s_in.write(d)
        c_in.write(s_out.read())
    for _ in range(20):
        done = 0
        for obj in (c, s):
            try:
                obj.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                done += 1
        pump()
        if done == 2:
            break
    try:
        if data:
            c.write(data)
        if close:
            c.unwrap()
    except ssl.SSLError:
        pass
    pump()
    return bytes(sent)

seeds = {
    "tls13-alpn": (0, record(alpn=["h2", "http/1.1"])),
    "tls13-plain": (0, record(version="1.3")),
    "tls13-nosni": (0, record(sni=None)),
    "tls12-aesgcm": (0, record(version="1.2", ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")),
    "tls12-chacha": (0, record(version="1.2", ciphers="ECDHE-ECDSA-CHACHA20-POLY1305")),
    "tls12-cbc-only": (0, record(version="1.2", ciphers="ECDHE-ECDSA-AES128-SHA")),
    "tls12-alpn-unknown": (0, record(version="1.2", alpn=["spdy/1"])),
    "mtls12-good": (1, record(version="1.2", cert=good)),
    "mtls12-other": (1, record(version="1.2", cert=other)),
    "mtls12-foreign": (1, record(version="1.2", cert=foreign)),
    "mtls12-nocert": (1, record(version="1.2")),
    "mtls13-good": (1, record(version="1.3", cert=good)),
}
os.makedirs(OUT, exist_ok=True)
for name, (which, data) in sorted(seeds.items()):
    open(os.path.join(OUT, name), "wb").write(bytes([which]) + data)
    # the same bytes in small reads (7 bytes), as a slow client sends them
    open(os.path.join(OUT, name + "-7"), "wb").write(bytes([(7 << 1) | which]) + data)
# Not TLS at all, and an SSLv2-compatible ClientHello (RFC 5246 appendix E.2)
v2hello = bytes.fromhex("8031" "01" "0301" "0018" "0000" "0010"
                        "00c02b" "00c02f" "00009e" "00009c" "00002f" "000035" "000005" "0000ff") \
          + bytes(range(16))
open(os.path.join(OUT, "sslv2-hello"), "wb").write(b"\x00" + v2hello)
open(os.path.join(OUT, "http-request"), "wb").write(b"\x00GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
open(os.path.join(OUT, "proxy-v1"), "wb").write(b"\x00PROXY TCP4 192.0.2.1 192.0.2.2 1234 443\r\n")
subprocess.run(["rm", "-rf", tmp])
print("wrote %d seeds to %s" % (len(seeds) * 2 + 3, OUT))
