#!/usr/bin/env node
// tests/browser/ws-client.js -- Node `ws` echo client: the same code for ws:// and wss://.
//
//   node tests/browser/ws-client.js URL [--ca FILE] [--pfx FILE --pfx-password-file FILE]
//        [--expect-refused]
//
// Sends text (ASCII, empty, 200 000 UTF-16 units of mixed scripts) and binary (all 256
// byte values, empty, 1 MiB random) pipelined, then 20 round trips, and checks that every
// echo is byte-exact; ends with a clean close. --ca trusts FILE for wss:// (no other trust
// is used, certificate and host name are verified); --pfx presents a client certificate.
// --expect-refused: the connection must fail (exit 0 if it does, 1 if it opens).
// Prints one "ok:"/"FAILED:" line per check; exit 0 when all pass.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const WebSocket = require('ws');
const WS_VERSION = require('ws/package.json').version;

const argv = process.argv.slice(2);
const o = { url: null, ca: null, pfx: null, pass: null, expectRefused: false };
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--ca') o.ca = argv[++i];
  else if (a === '--pfx') o.pfx = argv[++i];
  else if (a === '--pfx-password-file') o.pass = argv[++i];
  else if (a === '--expect-refused') o.expectRefused = true;
  else if (!o.url && !a.startsWith('-')) o.url = a;
  else { console.error(`ws-client: bad argument ${a}`); process.exit(2); }
}
if (!o.url) { console.error('ws-client: URL required'); process.exit(2); }

let failures = 0;
const check = (ok, what) => { if (!ok) failures++; console.log(`${ok ? 'ok' : 'FAILED'}: ${what}`); return ok; };
const sha = (b) => crypto.createHash('sha256').update(b).digest('hex').slice(0, 16);

const tlsOpts = {};
if (o.ca) tlsOpts.ca = fs.readFileSync(o.ca);
if (o.pfx) {
  tlsOpts.pfx = fs.readFileSync(o.pfx);
  tlsOpts.passphrase = fs.readFileSync(o.pass, 'utf8').replace(/\r?\n$/, '');
}

const deadline = setTimeout(() => { check(false, 'ws-client timed out after 40 s'); process.exit(3); }, 40000);

function connect() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(o.url, { ...tlsOpts, handshakeTimeout: 10000, perMessageDeflate: false, maxPayload: 64 << 20 });
    const queue = [], waiters = [];
    let closeInfo = null;
    ws.on('open', () => resolve({
      ws,
      recv: () => queue.length ? Promise.resolve(queue.shift()) :
        closeInfo ? Promise.reject(new Error(`closed (${closeInfo})`)) :
          new Promise((res, rej) => waiters.push({ res, rej })),
      close: () => new Promise((res) => { ws.once('close', (code) => res(code)); ws.close(1000, 'done'); }),
    }));
    ws.on('message', (data, isBinary) => {
      const m = { data, isBinary };
      if (waiters.length) waiters.shift().res(m); else queue.push(m);
    });
    ws.on('error', (e) => reject(e));
    ws.on('close', (code) => {
      closeInfo = code;
      while (waiters.length) waiters.shift().rej(new Error(`closed (${code})`));
    });
  });
}

async function main() {
  console.log(`ws-client: Node ${process.version}, ws ${WS_VERSION}, ${o.url}${o.pfx ? ' with client certificate ' + o.pfx : ''}`);
  let c;
  try {
    c = await connect();
  } catch (e) {
    if (o.expectRefused) return check(true, `connection refused as expected: ${e.code || ''} ${e.message}`);
    return check(false, `connect ${o.url}: ${e.code || ''} ${e.message}`);
  }
  if (o.expectRefused) {
    check(false, `connection to ${o.url} was NOT refused`);
    c.ws.terminate();
    return;
  }
  const sock = c.ws._socket;
  if (sock && typeof sock.getProtocol === 'function') {
    const cert = sock.getPeerCertificate();
    console.log(`ws-client: TLS ${sock.getProtocol()} ${sock.getCipher().name}, server ${cert.subject && cert.subject.CN} issued by ${cert.issuer && cert.issuer.CN}`);
  }
  check(true, `WebSocket open to ${o.url}`);
  let big = '';
  while (big.length < 200000) big += `tlsgate \u2713 \u00e9\u00e8 \u4e2d\u6587 \ud83d\ude80 ${big.length}\n`;
  const texts = ['hello tlsgate \u2713 \ud83d\ude80', '', big];
  const bins = [Buffer.from(Array.from({ length: 256 }, (_, i) => i)), Buffer.alloc(0), crypto.randomBytes(1 << 20)];
  for (const t of texts) c.ws.send(t);
  for (const b of bins) c.ws.send(b);
  for (const t of texts) {
    const m = await c.recv();
    check(!m.isBinary && m.data.toString('utf8') === t, `text message (${Buffer.byteLength(t)} bytes UTF-8) echoed exactly as text`);
  }
  for (const b of bins) {
    const m = await c.recv();
    check(m.isBinary && Buffer.compare(m.data, b) === 0, `binary message (${b.length} bytes) echoed byte-exact sha256=${sha(b)}...`);
  }
  let rt = true;
  for (let i = 0; i < 20 && rt; i++) {
    const isBin = i % 2 === 1;
    const msg = isBin ? crypto.randomBytes(1 + i * 997) : `round trip ${i} ${'x'.repeat(i * 1013)}`;
    c.ws.send(msg);
    const m = await c.recv();
    rt = m.isBinary === isBin && Buffer.compare(m.data, Buffer.from(msg)) === 0;
  }
  check(rt, '20 request/response round trips echoed exactly');
  const code = await c.close();
  check(code === 1000, `clean close (code ${code})`);
}

main()
  .catch((e) => check(false, `ws-client: ${e.stack || e}`))
  .finally(() => {
    clearTimeout(deadline);
    console.log(`ws-client: ${failures ? 'FAILED' : 'all checks passed'}`);
    process.exit(failures ? 1 : 0);
  });
