#!/usr/bin/env bash
# e2e: long serial timeout=300
# 51-testssl: TLS posture of a default listener (secure = on, nothing but
# bind, pfx and backend set) as testssl.sh (Debian package testssl.sh) sees
# it on loopback: protocols (-p), every vulnerability check (-U) and every
# cipher the server accepts, per protocol (-E), with --ip 127.0.0.1 and
# --nodns none (no DNS or other network lookups), bounded to 200 s.
# Fails on: any finding that is VULNERABLE (or of severity MEDIUM and up);
# SSLv2, SSLv3, TLS 1.0 or TLS 1.1 offered; any accepted cipher that is not
# an AEAD suite (GCM, CHACHA20-POLY1305, CCM) or, in TLS 1.2, not ECDHE;
# TLS 1.2 or 1.3 not offered; testssl not finishing. Prints a summary.
# Skips without testssl.sh, and in the ASan/UBSan pass of `make test` (the
# posture does not depend on sanitizers; it takes ~40-90 s).
. "$(dirname "$0")/lib.sh"

[ -n "${TLSGATE_SANITIZED:-}" ] && skip "TLS posture does not depend on sanitizers; checked in the release pass"
TESTSSL=$(command -v testssl || command -v testssl.sh) || skip "testssl.sh not installed (Debian: testssl.sh)"
require_cmd openssl

LPORT=$(free_port)
DEAD=$(free_port)    # no backend: testssl only talks TLS
write_config testssl.ini <<EOF
[global]
workers = 1
log_level = warn

[listener:default]
bind = 127.0.0.1:$LPORT
pfx = $CERTS/server.pfx
pfx_password = file:$CERTS/pfx-password
backend = 127.0.0.1:$DEAD
EOF
start_tlsgate "$CONFIG"

log "running $TESTSSL -p -U -E against 127.0.0.1:$LPORT (at most 200 s)"
t0=$(now_ms)
timeout -k 5 200 "$TESTSSL" --quiet --color 0 --warnings off --nodns none --ip 127.0.0.1 \
    --connect-timeout 5 --openssl-timeout 5 -p -U -E --jsonfile "$WORK/testssl.json" \
    "127.0.0.1:$LPORT" >"$WORK/testssl.out" 2>&1
rc=$?
log "testssl exited $rc after $(( ($(now_ms) - t0) / 1000 )) s (output in $WORK/testssl.out)"
[ "$rc" = 124 ] || [ "$rc" = 137 ] && fail "testssl did not finish within 200 s"
[ -s "$WORK/testssl.json" ] || fail "testssl wrote no JSON (exit $rc): $(tail -n 5 "$WORK/testssl.out")"

"$PY" - "$WORK/testssl.json" <<'EOF' || fail "testssl found problems (see above)"
import json, re, sys
findings = json.load(open(sys.argv[1]))
by_id = {f.get("id"): f for f in findings}
problems = []

def finding(i):
    return (by_id.get(i) or {}).get("finding", "(missing)")

print("protocols:")
for p in ("SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3"):
    print("  %-7s %s" % (p, finding(p)))
    offered = finding(p).startswith("offered")
    if p in ("SSLv2", "SSLv3", "TLS1", "TLS1_1") and "not offered" not in finding(p):
        problems.append("%s: %s" % (p, finding(p)))
    if p in ("TLS1_2", "TLS1_3") and not offered:
        problems.append("%s is not offered: %s" % (p, finding(p)))

print("ciphers accepted:")
ciphers = [f for f in findings if f.get("id", "").startswith("cipher-")]
for f in ciphers:
    cols = f["finding"].split()
    # "TLS 1.2   xc02b   ECDHE-ECDSA-AES128-GCM-SHA256   ECDH 253   AESGCM   128   TLS_ECDHE_..."
    name, iana = cols[3], cols[-1]
    print("  %-8s %-32s %s" % (f["id"].split("_x")[0].replace("cipher-", ""), name, iana))
    if not re.search(r"GCM|CHACHA20|CCM", iana):
        problems.append("non-AEAD cipher accepted: %s (%s)" % (name, f["id"]))
    if f["id"].startswith("cipher-tls1_2") and "ECDHE" not in iana:
        problems.append("TLS 1.2 cipher without ECDHE (no forward secrecy): %s" % name)
    if not f["id"].startswith(("cipher-tls1_2", "cipher-tls1_3")):
        problems.append("cipher accepted on an old protocol: %s (%s)" % (name, f["id"]))
if not ciphers:
    problems.append("testssl listed no accepted cipher at all (did -E run?)")

vulns = ("heartbleed", "CCS", "ticketbleed", "ROBOT", "secure_renego", "secure_client_renego",
         "CRIME_TLS", "BREACH", "POODLE_SSL", "fallback_SCSV", "SWEET32", "FREAK", "DROWN",
         "LOGJAM", "BEAST", "LUCKY13", "RC4")
print("vulnerability checks:")
for v in vulns:
    if v in by_id:
        print("  %-20s %-8s %s" % (v, by_id[v].get("severity"), finding(v)))
for f in findings:
    sev, text = f.get("severity", ""), f.get("finding", "")
    if re.search(r"(?<!not )vulnerable", text, re.I) and not re.search(r"not vulnerable", text, re.I):
        problems.append("VULNERABLE: %s: %s" % (f.get("id"), text))
    elif sev in ("MEDIUM", "HIGH", "CRITICAL"):
        problems.append("%s finding: %s: %s" % (sev, f.get("id"), text))
    if sev == "FATAL" or f.get("id") == "scanProblem":
        problems.append("testssl could not scan: %s: %s" % (f.get("id"), text))
if "heartbleed" not in by_id:
    problems.append("the vulnerability checks (-U) did not run")

print("summary: %d findings, %d accepted ciphers, %s s scan time, %d problem(s)"
      % (len(findings), len(ciphers), finding("scanTime"), len(problems)))
for p in problems:
    print("PROBLEM: " + p)
sys.exit(1 if problems else 0)
EOF
is_alive "$TLSGATE_PID" || fail "tlsgate died during the scan"
stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || fail "tlsgate exited $TLSGATE_RC on SIGTERM"
log "ok"
