#!/usr/bin/python3
"""tlsgate demo backend: plain HTTP and WebSocket echo on one port.

    /usr/bin/python3 tools/demo-backend.py --port PORT [--host 127.0.0.1]

HTTP GET (any request that does not ask for a WebSocket upgrade):
    /            200 text/plain "hello from the tlsgate demo backend\n" + "path: PATH\n"
    /big?n=N     200 application/octet-stream, exactly N bytes
WebSocket (any path): every text or binary message is echoed back unchanged.

With --udp, UDP datagrams to the same port number are echoed too (for a
DTLS listener in front).

Prints "listening on HOST:PORT" once ready; exits cleanly on SIGTERM/SIGINT.
Needs Debian's python3-websockets (10.x, asyncio API).
"""
import argparse
import asyncio
import http
import logging
import signal
import sys
import urllib.parse

import websockets

HELLO = b"hello from the tlsgate demo backend\n"
MAX_BIG = 1 << 30          # refuse /big?n= above 1 GiB
PATTERN = bytes(range(256)) * 256  # 64 KiB


async def process_request(path, headers):
    if headers.get("Upgrade", "").lower() == "websocket":
        return None  # continue the WebSocket handshake
    url = urllib.parse.urlsplit(path)
    if url.path == "/big":
        try:
            n = int(urllib.parse.parse_qs(url.query).get("n", ["0"])[0])
        except ValueError:
            n = -1
        if n < 0 or n > MAX_BIG:
            return (http.HTTPStatus.BAD_REQUEST, [("Content-Type", "text/plain")],
                    b"bad n (0..%d)\n" % MAX_BIG)
        reps, rest = divmod(n, len(PATTERN))
        body = PATTERN * reps + PATTERN[:rest]
        return (http.HTTPStatus.OK, [("Content-Type", "application/octet-stream")], body)
    body = HELLO + b"path: " + path.encode("utf-8", "replace") + b"\n"
    return (http.HTTPStatus.OK, [("Content-Type", "text/plain; charset=utf-8")], body)


async def echo(ws, path=None):
    try:
        async for message in ws:
            await ws.send(message)
    except websockets.ConnectionClosed:
        pass


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--verbose", action="store_true", help="log every connection")
    ap.add_argument("--udp", action="store_true",
                    help="also echo UDP datagrams on the same port (behind a DTLS listener)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="demo-backend: %(message)s")

    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))

    async with websockets.serve(echo, args.host, args.port,
                                process_request=process_request,
                                max_size=64 * 1024 * 1024,
                                max_queue=64,
                                close_timeout=60,
                                ping_interval=None):
        transport = None
        if args.udp:
            class UdpEcho(asyncio.DatagramProtocol):
                def connection_made(self, t):
                    self.t = t

                def datagram_received(self, data, addr):
                    self.t.sendto(data, addr)
            transport, _ = await loop.create_datagram_endpoint(
                UdpEcho, local_addr=(args.host, args.port))
        print(f"listening on {args.host}:{args.port}", flush=True)
        await stop
        if transport:
            transport.close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except OSError as e:
        print(f"demo-backend: {e}", file=sys.stderr)
        sys.exit(1)
