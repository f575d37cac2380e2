import os, sys, threading, time, e2elib
port, stopfile = int(sys.argv[1]), sys.argv[2]
ok = fail = 0
errors = []
lock = threading.Lock()
def worker():
    global ok, fail
    t0 = time.monotonic()
    while not os.path.exists(stopfile) and time.monotonic() - t0 < 60:
        try:
            s = e2elib.tls_connect(port, verify=False, timeout=10)
            s.sendall(b"x\n")
            assert e2elib.recv_exact(s, 2) == b"x\n"
            s.close()
            with lock: ok += 1
        except Exception as e:
            with lock:
                fail += 1
                errors.append(repr(e))
ts = [threading.Thread(target=worker) for _ in range(2)]
for t in ts: t.start()
for t in ts: t.join()
print("load: %d ok, %d failed %s" % (ok, fail, errors[:5]))
sys.exit(1 if fail or ok == 0 else 0)
