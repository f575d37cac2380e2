import sys, time, e2elib
port, stopfile = int(sys.argv[1]), sys.argv[2]
s = e2elib.tls_connect(port, verify=False)
print("connected", flush=True)
n = 0
import os
while not os.path.exists(stopfile) and n < 2000:
    msg = b"ping %d\n" % n
    s.sendall(msg)
    if e2elib.recv_exact(s, len(msg)) != msg:
        print("FAILED: echo mismatch"); sys.exit(1)
    n += 1
    time.sleep(0.02)
print("ok: long-lived connection echoed %d times across the reloads" % n)
