#!/usr/bin/env node
// tests/browser/drive.js -- drive Debian's headless Chromium with playwright-core:
// load the test page, run its WebSocket checks, print one line per check.
//
//   node tests/browser/drive.js --dir DIR --page URL [--echo WSURL]... [--whoami WSURL]
//        [--refused WSURL]... [--expect-cert-error] [--issuer TEXT] [--json FILE]
//
//   --dir DIR        fresh state for this browser: DIR/profile is the --user-data-dir and
//                    DIR/home is the browser's HOME (so DIR/home/.pki/nssdb is the NSS
//                    database Chromium reads its local trust anchors from)
//   --page URL       page to load (tests/browser/page.html served by echo-server.js)
//   --echo WSURL     run the page's echo check against WSURL (text + binary, byte-exact);
//                    --echo auto: the page's own default (ws:// or wss:// + host of the page + /echo)
//   --whoami WSURL   ask the backend what it saw (PROXY v2 info), printed as "whoami: JSON"
//   --refused WSURL  the page must NOT get a WebSocket open on WSURL
//   --expect-cert-error  loading --page must fail with a certificate error (and nothing else
//                    is run): proves the trust in the other runs comes from the NSS database
//   --issuer TEXT    for an https page: the certificate issuer Chromium saw must contain TEXT
//   --json FILE      write all results as JSON
//   --resolve RULES  Chromium --host-resolver-rules (e.g. "MAP rebind.test 127.0.0.1")
//   --expect-status N  loading --page must answer HTTP N (then nothing else is run)
//   --fetch URL      the page fetch()es URL with a custom header (so a CORS preflight goes
//                    first); the response must be readable with HTTP 200
//   --fetch-refused URL  the same fetch must fail (network error / CORS refusal)
// Exit status: 0 all checks passed, 1 a check failed, 2 usage/launch error, 3 timeout.
// CHROMIUM (default /usr/bin/chromium) overrides the browser binary.
'use strict';

const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');

const args = { echo: [], refused: [], whoami: null, page: null, dir: null, expectCertError: false, issuer: null, json: null,
  resolve: null, expectStatus: null, fetch: [], fetchRefused: [] };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const val = () => { if (i + 1 >= argv.length) usage(`${a} needs a value`); return argv[++i]; };
  if (a === '--dir') args.dir = val();
  else if (a === '--page') args.page = val();
  else if (a === '--echo') args.echo.push(val());
  else if (a === '--refused') args.refused.push(val());
  else if (a === '--whoami') args.whoami = val();
  else if (a === '--expect-cert-error') args.expectCertError = true;
  else if (a === '--issuer') args.issuer = val();
  else if (a === '--json') args.json = val();
  else if (a === '--resolve') args.resolve = val();
  else if (a === '--expect-status') args.expectStatus = Number(val());
  else if (a === '--fetch') args.fetch.push(val());
  else if (a === '--fetch-refused') args.fetchRefused.push(val());
  else usage(`unknown argument ${a}`);
}
function usage(msg) {
  console.error(`drive.js: ${msg}`);
  process.exit(2);
}
if (!args.dir || !args.page) usage('--dir and --page are required');

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--no-proxy-server', '--disable-dev-shm-usage',
];
const results = { chromium: null, user_agent: null, page: args.page, tls: null, checks: [] };
let failures = 0;
const check = (ok, what) => {
  results.checks.push({ ok, what });
  if (!ok) failures++;
  console.log(`${ok ? 'ok' : 'FAILED'}: ${what}`);
};

let context = null;
const deadline = setTimeout(async () => {
  console.log('FAILED: drive.js timed out after 60 s');
  try { if (context) await Promise.race([context.close(), new Promise((r) => setTimeout(r, 3000))]); } catch (e) { /* exiting */ }
  process.exit(3);
}, 60000);

async function main() {
  const dir = path.resolve(args.dir);
  const profile = path.join(dir, 'profile'), home = path.join(dir, 'home');
  fs.mkdirSync(profile, { recursive: true });
  fs.mkdirSync(home, { recursive: true });
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: FLAGS.concat(args.resolve ? [`--host-resolver-rules=${args.resolve}`] : []),
      env: { ...process.env, HOME: home, XDG_CONFIG_HOME: path.join(home, '.config'), XDG_CACHE_HOME: path.join(home, '.cache') },
      ignoreHTTPSErrors: false,
      timeout: 30000,
    });
  } catch (e) {
    console.log(`LAUNCH-ERROR: ${e.message.split('\n')[0]}`);
    console.error(e.message);
    process.exit(2);
  }
  const browser = context.browser();
  results.chromium = browser ? browser.version() : null;
  const page = context.pages()[0] || await context.newPage();
  page.on('console', (m) => console.log(`  [page console.${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => console.log(`  [page error] ${e.message}`));

  let resp;
  try {
    resp = await page.goto(args.page, { timeout: 15000, waitUntil: 'load' });
  } catch (e) {
    const msg = e.message.split('\n')[0];
    if (args.expectCertError) {
      check(/ERR_CERT_/.test(msg), `loading ${args.page} fails with a certificate error (${msg})`);
    } else {
      check(false, `load ${args.page}: ${msg}`);
    }
    return;
  }
  if (args.expectCertError) {
    check(false, `loading ${args.page} should have failed with a certificate error, got HTTP ${resp && resp.status()}`);
    return;
  }
  results.user_agent = await page.evaluate(() => navigator.userAgent);
  console.log(`browser: Chromium ${results.chromium} (${results.user_agent})`);
  if (args.expectStatus !== null) {
    const body = resp ? (await resp.text()).trim() : '';
    check(!!resp && resp.status() === args.expectStatus,
      `page ${args.page} answered HTTP ${resp && resp.status()} (want ${args.expectStatus}): ${JSON.stringify(body.slice(0, 120))}`);
    return;
  }
  check(!!resp && resp.status() === 200, `page ${args.page} loaded (HTTP ${resp && resp.status()})`);
  const sec = resp ? await resp.securityDetails() : null;
  if (sec && sec.protocol) {
    results.tls = sec;
    console.log(`page TLS: ${sec.protocol}, subject ${sec.subjectName}, issuer ${sec.issuer}`);
    if (args.issuer) check((sec.issuer || '').includes(args.issuer), `page certificate issued by "${args.issuer}" (got "${sec.issuer}")`);
  } else {
    console.log('page TLS: none (plaintext http://)');
    if (args.issuer) check(false, `page has no TLS details but --issuer ${args.issuer} was given`);
  }
  const hasApi = await page.evaluate(() => typeof window.tlsgateTest === 'object');
  check(hasApi, 'page script loaded (window.tlsgateTest)');
  if (!hasApi) return;

  results.echo = [];
  for (const url of args.echo) {
    const r = await page.evaluate((u) => window.tlsgateTest.echo(u), url === 'auto' ? null : url);
    results.echo.push(r);
    for (const c of r.checks) check(c.ok, `[${r.url}] ${c.what}`);
    if (!r.checks.length) check(false, `[${r.url}] no checks ran`);
  }
  if (args.whoami) {
    const r = await page.evaluate((u) => window.tlsgateTest.whoami(u), args.whoami);
    results.whoami = r;
    if (r.ok) console.log(`whoami: ${JSON.stringify(r.info)}`);
    check(r.ok, `[${args.whoami}] backend answered whoami${r.ok ? '' : ': ' + r.error}`);
  }
  const doFetch = (u) => page.evaluate(async (url) => {
    try {
      const r = await fetch(url, { headers: { 'X-Tlsgate-Test': '1' }, cache: 'no-store' });
      return { ok: true, status: r.status, body: (await r.text()).slice(0, 300) };
    } catch (e) { return { ok: false, error: String(e) }; }
  }, u);
  for (const url of args.fetch) {
    const r = await doFetch(url);
    check(r.ok && r.status === 200, `[${url}] fetch with a custom header (preflighted) read HTTP ${r.status}: ${r.ok ? r.body.slice(0, 100) : r.error}`);
  }
  for (const url of args.fetchRefused) {
    const r = await doFetch(url);
    check(!r.ok, `[${url}] fetch with a custom header refused (${r.ok ? 'HTTP ' + r.status : r.error})`);
  }
  for (const url of args.refused) {
    const r = await page.evaluate((u) => window.tlsgateTest.refused(u), url);
    check(!r.opened, `[${url}] WebSocket refused (${JSON.stringify(r)})`);
  }
}

main()
  .catch((e) => { check(false, `drive.js: ${e.stack || e}`); })
  .finally(async () => {
    if (context) await Promise.race([context.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
    clearTimeout(deadline);
    if (args.json) fs.writeFileSync(args.json, JSON.stringify(results, null, 2) + '\n');
    console.log(`drive.js: ${results.checks.length - failures} checks passed, ${failures} failed`);
    process.exit(failures ? 1 : 0);
  });
