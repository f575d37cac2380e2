import sys, time
import e2elib
s = e2elib.tls_connect(int(sys.argv[1]))
s.sendall(b"hello\n")
assert e2elib.recv_exact(s, 6) == b"hello\n"
print("connected", flush=True)
d = e2elib.closed_within(s, 30)
print("eof after %.2f s" % d if d is not None else "no eof in 30 s", flush=True)
