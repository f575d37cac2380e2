import os, sys, threading, time, e2elib
ports, stopfile = [int(p) for p in sys.argv[1].split(",")], sys.argv[2]
ok, bad, errs = [0], [0], []
def run(port):
    end = time.time() + 60
    while not os.path.exists(stopfile) and time.time() < end:
        try:
            s = e2elib.tls_connect(port)
            s.sendall(b"hello\n")
            assert e2elib.recv_exact(s, 6) == b"hello\n"
            s.close()
            ok[0] += 1
        except Exception as e:
            bad[0] += 1
            errs.append("%s: %r" % (port, e))
        time.sleep(0.01)
ts = [threading.Thread(target=run, args=(p,)) for p in ports]
for t in ts: t.start()
for t in ts: t.join()
print("handshakes ok=%d failed=%d" % (ok[0], bad[0]))
for e in errs[:5]: print("  " + e)
sys.exit(1 if bad[0] or ok[0] == 0 else 0)
