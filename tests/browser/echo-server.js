#!/usr/bin/env node
// tests/browser/echo-server.js -- plaintext HTTP + WebSocket echo backend (Node `ws`)
// for the tlsgate browser tests and demos.
//
//   node tests/browser/echo-server.js --port PORT [--host 127.0.0.1] [--proxy-v2]
//
// HTTP GET
//   /  or /page.html   the test page (tests/browser/page.html)
//   /whoami            JSON: what this backend knows about the connection
//                      (peer address, and with --proxy-v2 the PROXY v2 header:
//                      original client address, TLS version, cipher, client CN)
//   anything else      404
// WebSocket
//   /whoami            sends that JSON as one text message, then closes (1000)
//   any other path     echoes every message unchanged (text as text, binary as binary)
//
// --proxy-v2: every connection must start with a PROXY protocol v2 header (as sent by
// tlsgate's `proxy_protocol = v2`); a connection without one is logged and dropped.
//
// Prints "listening on HOST:PORT" once ready, one log line per connection (with the
// PROXY info) and per WebSocket; exits 0 on SIGTERM/SIGINT.
'use strict';

const fs = require('fs');
const http = require('http');
const net = require('net');
const path = require('path');
const { WebSocketServer } = require('ws');

function parseArgs(argv) {
  const o = { host: '127.0.0.1', port: 0, proxyV2: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--port') o.port = Number(argv[++i]);
    else if (a === '--host') o.host = argv[++i];
    else if (a === '--proxy-v2') o.proxyV2 = true;
    else if (a === '-h' || a === '--help') {
      console.log(fs.readFileSync(__filename, 'utf8').split('\n').slice(1, 21).join('\n'));
      process.exit(0);
    } else {
      console.error(`echo-server: unknown argument ${a}`);
      process.exit(2);
    }
  }
  if (!Number.isInteger(o.port) || o.port <= 0 || o.port > 65535) {
    console.error('echo-server: --port PORT is required');
    process.exit(2);
  }
  return o;
}

const opts = parseArgs(process.argv.slice(2));
const PAGE = path.join(__dirname, 'page.html');
const log = (...a) => console.log('echo-server:', ...a);

// ---- PROXY protocol v2 ------------------------------------------------------------
const V2_SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const PP2_TYPE_ALPN = 0x01, PP2_TYPE_AUTHORITY = 0x02, PP2_TYPE_SSL = 0x20;
const PP2_SUBTYPE_SSL_VERSION = 0x21, PP2_SUBTYPE_SSL_CN = 0x22, PP2_SUBTYPE_SSL_CIPHER = 0x23;

function parseTlvs(buf) {
  const out = [];
  let p = 0;
  while (p < buf.length) {
    if (p + 3 > buf.length) throw new Error('truncated TLV');
    const type = buf[p], len = buf.readUInt16BE(p + 1);
    if (p + 3 + len > buf.length) throw new Error(`TLV 0x${type.toString(16)} overruns the header`);
    out.push({ type, value: buf.subarray(p + 3, p + 3 + len) });
    p += 3 + len;
  }
  return out;
}

// parseProxyV2(buf) -> { info, consumed } or null when more bytes are needed; throws if invalid
function parseProxyV2(buf) {
  const n = Math.min(buf.length, 12);
  if (!buf.subarray(0, n).equals(V2_SIG.subarray(0, n))) throw new Error('no PROXY v2 signature');
  if (buf.length < 16) return null;
  const verCmd = buf[12], fam = buf[13], len = buf.readUInt16BE(14);
  if (verCmd >> 4 !== 2) throw new Error(`PROXY version ${verCmd >> 4}, want 2`);
  if (buf.length < 16 + len) return null;
  const body = buf.subarray(16, 16 + len);
  const info = { version: 2, command: (verCmd & 0x0f) === 1 ? 'PROXY' : 'LOCAL' };
  let p = 0;
  if (fam === 0x11) {
    if (len < 12) throw new Error('short TCP4 address block');
    info.src = `${[...body.subarray(0, 4)].join('.')}:${body.readUInt16BE(8)}`;
    info.dst = `${[...body.subarray(4, 8)].join('.')}:${body.readUInt16BE(10)}`;
    p = 12;
  } else if (fam === 0x21) {
    if (len < 36) throw new Error('short TCP6 address block');
    const v6 = (b) => `[${[0, 2, 4, 6, 8, 10, 12, 14].map((i) => b.readUInt16BE(i).toString(16)).join(':')}]`;
    info.src = `${v6(body.subarray(0, 16))}:${body.readUInt16BE(32)}`;
    info.dst = `${v6(body.subarray(16, 32))}:${body.readUInt16BE(34)}`;
    p = 36;
  } else {
    info.family = `0x${fam.toString(16)}`;
  }
  for (const t of parseTlvs(body.subarray(p))) {
    if (t.type === PP2_TYPE_ALPN) info.alpn = t.value.toString('latin1');
    else if (t.type === PP2_TYPE_AUTHORITY) info.authority = t.value.toString('utf8');
    else if (t.type === PP2_TYPE_SSL) {
      if (t.value.length < 5) throw new Error('short PP2_TYPE_SSL');
      const flags = t.value[0];
      const ssl = {
        client_ssl: !!(flags & 0x01),
        client_cert_conn: !!(flags & 0x02),
        client_cert_sess: !!(flags & 0x04),
        verify: t.value.readUInt32BE(1),
      };
      for (const s of parseTlvs(t.value.subarray(5))) {
        if (s.type === PP2_SUBTYPE_SSL_VERSION) ssl.version = s.value.toString('latin1');
        else if (s.type === PP2_SUBTYPE_SSL_CN) ssl.cn = s.value.toString('utf8');
        else if (s.type === PP2_SUBTYPE_SSL_CIPHER) ssl.cipher = s.value.toString('latin1');
        else (ssl.other ||= []).push(`0x${s.type.toString(16)}`);
      }
      info.ssl = ssl;
    } else (info.other_tlvs ||= []).push(`0x${t.type.toString(16)}`);
  }
  return { info, consumed: 16 + len };
}

// ---- HTTP + WebSocket ---------------------------------------------------------------
let connSeq = 0;

function whoami(socket) {
  return {
    backend: 'tests/browser/echo-server.js',
    conn: socket.connId,
    peer: `${socket.remoteAddress}:${socket.remotePort}`,
    proxy: socket.proxyInfo || null,
  };
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  // CORS as a remote would answer it for its own web app: any Origin may read, and a
  // preflight is answered (tests/e2e/78-browser-http-guard.sh: tlsgate passes preflights on)
  const origin = req.headers.origin;
  const cors = origin ? { 'Access-Control-Allow-Origin': origin, Vary: 'Origin' } : {};
  const send = (code, type, body) => {
    res.writeHead(code, { ...cors, 'Content-Type': type, 'Cache-Control': 'no-store', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  };
  log(`conn ${req.socket.connId}: HTTP ${req.method} ${req.url}`);
  if (origin) log(`conn ${req.socket.connId}: CORS ${req.method} ${req.url} origin=${origin}`);
  if (req.method === 'OPTIONS' && req.headers['access-control-request-method']) {
    res.writeHead(204, { ...cors, 'Access-Control-Allow-Methods': 'GET',
      'Access-Control-Allow-Headers': req.headers['access-control-request-headers'] || '',
      'Access-Control-Max-Age': '0', 'Content-Length': 0 });
    return res.end();
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain', 'GET only\n');
  if (url.pathname === '/' || url.pathname === '/page.html') {
    return send(200, 'text/html; charset=utf-8', fs.readFileSync(PAGE));
  }
  if (url.pathname === '/whoami') return send(200, 'application/json', JSON.stringify(whoami(req.socket)) + '\n');
  if (url.pathname === '/favicon.ico') return send(204, 'image/x-icon', '');
  return send(404, 'text/plain', 'not found\n');
});
server.keepAliveTimeout = 5000;

const wss = new WebSocketServer({ noServer: true, maxPayload: 64 << 20, perMessageDeflate: false });
server.on('upgrade', (req, socket, head) => {
  wss.handleUpgrade(req, socket, head, (ws) => {
    const id = socket.connId;
    const url = new URL(req.url, 'http://x');
    log(`conn ${id}: WebSocket ${url.pathname} origin=${req.headers.origin || '-'}`);
    if (url.pathname === '/whoami') {
      ws.send(JSON.stringify(whoami(socket)), () => ws.close(1000, 'whoami done'));
      return;
    }
    let n = 0;
    ws.on('message', (data, isBinary) => {
      n++;
      ws.send(data, { binary: isBinary });
      log(`conn ${id}: echoed ${isBinary ? 'binary' : 'text'} message #${n}, ${data.length} bytes`);
    });
    ws.on('close', (code) => log(`conn ${id}: WebSocket closed (${code}) after ${n} messages`));
    ws.on('error', (e) => log(`conn ${id}: WebSocket error: ${e.message}`));
  });
});

function describe(socket) {
  const pi = socket.proxyInfo;
  if (!pi) return `from ${socket.remoteAddress}:${socket.remotePort}`;
  const s = pi.ssl;
  const tls = s ? ` tls=${s.version || '?'} cipher=${s.cipher || '?'} cn=${s.cn || '-'} cert=${s.client_cert_conn ? 'yes' : 'no'} verify=${s.verify}` : ' tls=no';
  return `from ${socket.remoteAddress}:${socket.remotePort} proxy-v2 src=${pi.src || pi.family} dst=${pi.dst || '-'}${tls}` +
    (pi.authority ? ` sni=${pi.authority}` : '') + (pi.alpn ? ` alpn=${pi.alpn}` : '');
}

const front = net.createServer((socket) => {
  socket.connId = ++connSeq;
  socket.on('error', (e) => log(`conn ${socket.connId}: socket error: ${e.message}`));
  if (!opts.proxyV2) {
    log(`conn ${socket.connId}: accepted ${describe(socket)}`);
    server.emit('connection', socket);
    return;
  }
  let buf = Buffer.alloc(0);
  const timer = setTimeout(() => {
    log(`conn ${socket.connId}: no complete PROXY v2 header within 10s, dropped`);
    socket.destroy();
  }, 10000);
  const onData = (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    let r;
    try {
      r = parseProxyV2(buf);
    } catch (e) {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      log(`conn ${socket.connId}: bad PROXY v2 header (${e.message}), dropped; first bytes ${buf.subarray(0, 16).toString('hex')}`);
      socket.destroy();
      return;
    }
    if (!r) return;
    clearTimeout(timer);
    socket.removeListener('data', onData);
    socket.pause();
    socket.proxyInfo = r.info;
    log(`conn ${socket.connId}: accepted ${describe(socket)}`);
    const rest = buf.subarray(r.consumed);
    if (rest.length) socket.unshift(rest);
    server.emit('connection', socket);
    socket.resume();
  };
  socket.on('data', onData);
});

front.listen(opts.port, opts.host, () => {
  console.log(`listening on ${opts.host}:${opts.port}${opts.proxyV2 ? ' (PROXY v2 required)' : ''}`);
});
front.on('error', (e) => {
  console.error(`echo-server: ${e.message}`);
  process.exit(1);
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    log(`${sig}, exiting`);
    process.exit(0);
  });
}
