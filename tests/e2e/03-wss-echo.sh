#!/usr/bin/env bash
# 03-wss-echo: wss:// through tlsgate to the ws:// demo backend with Python
# websockets: text, 1 MiB random binary byte-exact, 20 messages in a row,
# 20 pipelined messages, and two clients at once.
. "$(dirname "$0")/lib.sh"
"$PY" -c 'import websockets' 2>/dev/null || skip "python3-websockets not installed"

BPORT=$(free_port)
LPORT=$(free_port)
start_demo_backend "$BPORT"
write_config wss.ini <<EOF
$(global_section workers=1 log_level=debug)

[listener:wss]
bind = 127.0.0.1:$LPORT
transport = tcp
secure = on
$SERVER_PFX
backend = 127.0.0.1:$BPORT
EOF
start_tlsgate "$CONFIG"

"$PY" - "$LPORT" <<'EOF' || fail "wss echo checks failed"
import asyncio, os, random, ssl, sys
import websockets
import e2elib

port = int(sys.argv[1])
ctx = ssl.create_default_context(cafile=e2elib.cert("ca.pem"))
url = "wss://localhost:%d/echo" % port

def check(cond, what):
    if not cond:
        print("FAILED:", what, flush=True)
        sys.exit(1)
    print("ok:", what, flush=True)

async def one_client(tag):
    async with websockets.connect(url, ssl=ctx, max_size=16 << 20, open_timeout=10,
                                  close_timeout=5, ping_interval=None) as ws:
        text = "hello tlsgate \u2713 %s" % tag
        await ws.send(text)
        got = await asyncio.wait_for(ws.recv(), 10)
        check(got == text, "%s: text echoed" % tag)

        blob = os.urandom(1 << 20)
        await ws.send(blob)
        got = await asyncio.wait_for(ws.recv(), 20)
        check(isinstance(got, bytes) and got == blob, "%s: 1 MiB random binary echoed byte-exact" % tag)

        rnd = random.Random(tag)
        for i in range(20):
            if i % 2:
                msg = os.urandom(rnd.randrange(0, 200000))
            else:
                msg = "message %d " % i + "x" * rnd.randrange(0, 70000)
            await ws.send(msg)
            got = await asyncio.wait_for(ws.recv(), 10)
            if got != msg:
                check(False, "%s: message %d (%s, %d bytes) echoed" % (tag, i, type(msg).__name__, len(msg)))
        print("ok: %s: 20 messages in a row echoed" % tag, flush=True)

        msgs = [os.urandom(rnd.randrange(1, 50000)) for _ in range(20)]
        for m in msgs:
            await ws.send(m)
        got = [await asyncio.wait_for(ws.recv(), 10) for _ in msgs]
        check(got == msgs, "%s: 20 pipelined messages echoed in order" % tag)

async def main():
    await one_client("solo")
    await asyncio.gather(one_client("a"), one_client("b"))

asyncio.run(asyncio.wait_for(main(), 60))
EOF

stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || fail "tlsgate exited $TLSGATE_RC on SIGTERM"
log "ok"
