#!/usr/bin/env bash
# 60-security-matrix: every trust decision on TCP against the certificate
# shapes of tools/mkcerts, one tlsgate with a listener per decision.
# Each row says accept or refuse and, for a refusal, the reason the log must
# give for that very connection (found by the client's source port); every
# decision has an accepted control row.
#   client side (TLS 1.2 and 1.3 each): chain (trusted, via a trusted
#     intermediate, unknown root + intermediate, foreign CA, self-signed,
#     expired, revoked), names with a NUL (CN, DNS/URI SAN), a CN with a
#     newline (which must not start a log line of its own), no certificate;
#     allow_clients cn / san:dns / san:ip / san:uri /
#     sha256; verify_client none / optional / require, optional + ACL.
#   backend side: chain + name (trusted, intermediate, unknown CA that is not
#     self-signed -- with and without its intermediate --, self-signed,
#     expired, wrong name), backend_pin sha256 and
#     spki-sha256 with backend_verify off (the pin alone decides) and on
#     (pin and chain), a pin list (any entry matches).
# Resumption after a policy change: 61-resumption-policy.sh; backend
# ciphers: 62-backend-ciphers.sh.
. "$(dirname "$0")/lib.sh"
require_cmd openssl

# free ports in one go (a python start per port is slow on a busy machine),
# by lib.sh's free_port rules: 20000-32767, recorded in its registry file
mapfile -t PORTS < <("$PY" - 64 "$_PORTS_FILE" <<'PY'
import fcntl, random, socket, sys, time
want, path, now = int(sys.argv[1]), sys.argv[2], time.time()
with open(path, "a+") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    f.seek(0)
    recent = [l for l in f.read().splitlines()
              if len(l.split()) == 2 and l.split()[0].isdigit() and now - float(l.split()[1]) < 1800]
    given, out = {l.split()[0] for l in recent}, []
    for _ in range(5000):
        if len(out) == want:
            break
        port = random.randint(20000, 32767)
        if str(port) in given or port in out:
            continue
        try:
            for t in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                s = socket.socket(socket.AF_INET, t)
                try:
                    s.bind(("127.0.0.1", port))
                finally:
                    s.close()
        except OSError:
            continue
        out.append(port)
        recent.append("%d %d" % (port, now))
    f.seek(0); f.truncate(); f.write("\n".join(recent) + "\n")
print("\n".join(map(str, out)))
PY
)
[ "${#PORTS[@]}" = 64 ] || fail "could not get 64 free ports"
NEXT_PORT=0
next_port() { PORT=${PORTS[$NEXT_PORT]}; NEXT_PORT=$((NEXT_PORT + 1)); }

fp() { openssl x509 -in "$CERTS/$1" -noout -fingerprint -sha256 | sed 's/.*=//; s/://g'; }
spki() { openssl x509 -in "$CERTS/$1" -noout -pubkey | openssl pkey -pubin -outform DER | openssl dgst -sha256 -binary | base64; }
PIN_SERVER="sha256:$(fp server.pem)"
PIN_OTHER="sha256:$(fp other.pem)"
SPKI_SERVER="spki-sha256:$(spki server.pem)"
SPKI_UNKNOWN="spki-sha256:$(spki unknown-server.pem)"
PIN_UNKNOWN="sha256:$(fp unknown-server.pem)"
FP_CLIENT=$(fp client.pem)

# --- TLS echo backends, one port per certificate shape ----------------------------------
write_py tlsbackends <<'EOF'
import os, socket, ssl, sys, threading
C = os.environ["CERTS"]
def serve(port, chain, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(C, chain), os.path.join(C, key))
    ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port)); ls.listen(64)
    def one(c):
        try:
            s = ctx.wrap_socket(c, server_side=True)
            while True:
                d = s.recv(4096)
                if not d: break
                s.sendall(d)
        except (OSError, ssl.SSLError):
            pass
        finally:
            c.close()
    while True:
        c, _ = ls.accept()
        threading.Thread(target=one, args=(c,), daemon=True).start()
args = sys.argv[1:]
for i in range(0, len(args), 3):
    threading.Thread(target=serve, args=(int(args[i]), args[i + 1], args[i + 2]), daemon=True).start()
print("listening", flush=True)
threading.Event().wait()
EOF
declare -A BK
bargs=()
for shape in trusted:server.pem:server.key int:int-server-chain.pem:int-server.key \
             unknown:unknown-server-chain.pem:unknown-server.key unknownleaf:unknown-server.pem:unknown-server.key selfsigned:server-selfsigned.pem:server-selfsigned.key \
             expired:server-expired.pem:server-expired.key wrongname:other.pem:other.key; do
    IFS=: read -r name chainf keyf <<<"$shape"
    next_port; BK[$name]=$PORT
    bargs+=("${BK[$name]}" "$chainf" "$keyf")
done
bg_start tlsbackends "$PY" "$WORK/tlsbackends.py" "${bargs[@]}"
BPID=$BG_PID
for name in "${!BK[@]}"; do wait_listen "${BK[$name]}" 10 "$BPID" || fail "TLS backend $name did not start: $(cat "$WORK/tlsbackends.log")"; done
next_port; EPORT=$PORT
start_echo "$EPORT"

# --- one tlsgate, a listener per decision ------------------------------------------------------
declare -A LP
ROWS=$WORK/rows
: > "$ROWS"
row() { echo "$*" >> "$ROWS"; }   # row KIND LISTENER SHAPE EXPECT REASON-REGEX
{
    printf '[global]\nworkers = 1\nlog_level = info\ndrain_timeout = 1s\n'
    front_listener() {  # NAME KEY=VALUE...
        local n=$1; shift
        next_port; LP[$n]=$PORT
        printf '\n[listener:%s]\nbind = 127.0.0.1:%s\npfx = %s\npfx_password = file:%s\nbackend = 127.0.0.1:%s\n' \
            "$n" "${LP[$n]}" "$CERTS/server.pfx" "$CERTS/pfx-password" "$EPORT"
        printf '%s\n' "$@"
    }
    back_listener() {  # NAME BACKEND-SHAPE KEY=VALUE...
        local n=$1 b=$2; shift 2
        next_port; LP[$n]=$PORT
        printf '\n[listener:%s]\nbind = 127.0.0.1:%s\nsecure = off\nbackend = 127.0.0.1:%s\nbackend_secure = on\n' \
            "$n" "${LP[$n]}" "${BK[$b]}"
        printf '%s\n' "$@"
    }
    REQ=("verify_client = require" "client_ca = $CERTS/ca.pem")
    front_listener chain "${REQ[@]}"
    front_listener crl "${REQ[@]}" "crl = $CERTS/crl.pem"
    front_listener acl_cn "${REQ[@]}" "allow_clients = cn:client1"
    front_listener acl_dns "${REQ[@]}" "allow_clients = san:dns:client1.test"
    front_listener acl_uri "${REQ[@]}" "allow_clients = san:uri:spiffe://tlsgate.test/client1"
    front_listener acl_ip "${REQ[@]}" "allow_clients = san:ip:10.1.2.3"
    front_listener acl_sha "${REQ[@]}" "allow_clients = sha256:$FP_CLIENT"
    front_listener none "verify_client = none"
    front_listener optional "verify_client = optional" "client_ca = $CERTS/ca.pem"
    front_listener optional_acl "verify_client = optional" "client_ca = $CERTS/ca.pem" "allow_clients = cn:client1"
    # backend chain + name (backend_verify = on, backend_ca = the dev CA)
    for b in trusted int unknown unknownleaf selfsigned expired wrongname; do
        back_listener "bv_$b" "$b" "backend_ca = $CERTS/ca.pem"
    done
    # pin only (backend_verify = off): sha256 of server.pem
    for b in trusted unknown unknownleaf selfsigned expired wrongname; do
        back_listener "pin_$b" "$b" "backend_verify = off" "backend_pin = $PIN_SERVER"
    done
    # pin only, spki-sha256 of a key certified by the unknown CA
    for b in unknown trusted selfsigned; do
        back_listener "spki_$b" "$b" "backend_verify = off" "backend_pin = $SPKI_UNKNOWN"
    done
    # a pin list: other.pem's certificate or server.pem's key
    for b in trusted wrongname unknown; do
        back_listener "list_$b" "$b" "backend_verify = off" "backend_pin = $PIN_OTHER, $SPKI_SERVER"
    done
    # chain and pin together
    back_listener both_trusted trusted "backend_ca = $CERTS/ca.pem" "backend_pin = $PIN_SERVER"
    back_listener both_int int "backend_ca = $CERTS/ca.pem" "backend_pin = $PIN_SERVER"
    back_listener both_unknown unknown "backend_ca = $CERTS/ca.pem" "backend_pin = $PIN_UNKNOWN"
} > "$WORK/matrix.ini"
CONFIG=$WORK/matrix.ini

# --- the rows -------------------------------------------------------------------------------------
CHAIN_UNKNOWN='certificate verify failed: unable to get (local )?issuer certificate'
SELF='certificate verify failed: self.signed certificate'
NUL_CN='certificate verify failed: client certificate refused: CN contains a NUL byte'
NOT_IN='is not in allow_clients'
NO_CERT='certificate required'
# client rows: client LISTENER CERT-SHAPE accept|refuse REASON
row client chain client accept -
row client chain int-client accept -
row client chain unknown-client refuse "$CHAIN_UNKNOWN"
row client chain foreign-client refuse "$CHAIN_UNKNOWN"
row client chain client-selfsigned refuse "$SELF"
row client chain client-expired refuse 'certificate verify failed: certificate has expired'
row client chain client-revoked accept -
row client crl client accept -
row client crl client-revoked refuse 'certificate verify failed: certificate revoked'
row client crl int-client refuse 'certificate verify failed: unable to get certificate CRL'
row client chain client-nul refuse "$NUL_CN"
row client chain client-nulsan refuse 'certificate verify failed: client certificate refused: a (DNS|URI) SAN contains a NUL byte'
row client chain client-newline accept -
row client chain - refuse "$NO_CERT"
row client acl_cn client accept -
row client acl_cn client2 refuse "client certificate CN=client2 .*$NOT_IN"
row client acl_cn client-nul refuse "$NUL_CN"
row client acl_cn client-newline refuse "client certificate CN=client1"
row client acl_cn unknown-client refuse "$CHAIN_UNKNOWN"
row client acl_cn client-selfsigned refuse "$SELF"
row client acl_dns client accept -
row client acl_dns client2 refuse "$NOT_IN"
row client acl_dns client-nulsan refuse 'SAN contains a NUL byte'
row client acl_uri client accept -
row client acl_uri client2 refuse "$NOT_IN"
row client acl_uri client-nulsan refuse 'SAN contains a NUL byte'
row client acl_ip client-ip accept -
row client acl_ip client refuse "$NOT_IN"
row client acl_sha client accept -
row client acl_sha client2 refuse "$NOT_IN"
row client acl_sha client-selfsigned refuse "$SELF"
row client none - accept -
row client none client-expired accept -
row client optional - accept -
row client optional client accept -
row client optional client-expired refuse 'certificate has expired'
row client optional_acl client accept -
row client optional_acl - refuse "$NO_CERT"
row client optional_acl client2 refuse "$NOT_IN"
# backend rows: backend LISTENER - accept|refuse REASON
row backend bv_trusted - accept -
row backend bv_int - accept -
row backend bv_unknown - refuse "$CHAIN_UNKNOWN"
row backend bv_unknownleaf - refuse "$CHAIN_UNKNOWN"
row backend bv_selfsigned - refuse "$SELF"
row backend bv_expired - refuse 'certificate verify failed: certificate has expired'
row backend bv_wrongname - refuse 'certificate verify failed: IP address mismatch \(wanted 127.0.0.1, got CN=other.example'
PINFAIL='certificate verify failed: backend certificate does not match backend_pin'
row backend pin_trusted - accept -
row backend pin_unknown - refuse "$PINFAIL"
row backend pin_unknownleaf - refuse "$PINFAIL"
row backend pin_selfsigned - refuse "$PINFAIL"
row backend pin_expired - refuse "$PINFAIL"
row backend pin_wrongname - refuse "$PINFAIL"
row backend spki_unknown - accept -
row backend spki_trusted - refuse "$PINFAIL"
row backend spki_selfsigned - refuse "$PINFAIL"
row backend list_trusted - accept -
row backend list_wrongname - accept -
row backend list_unknown - refuse "$PINFAIL"
row backend both_trusted - accept -
row backend both_int - refuse "$PINFAIL"
row backend both_unknown - refuse "$CHAIN_UNKNOWN"

check_config "$CONFIG"
[ "$CHECK_RC" = 0 ] || fail "matrix config refused: $CHECK_OUT"
grep -q "a client without one is refused" <<<"$CHECK_OUT" ||
    error "-t does not say what verify_client = optional + allow_clients does: $CHECK_OUT"
start_tlsgate "$CONFIG"

for n in "${!LP[@]}"; do echo "$n ${LP[$n]}"; done > "$WORK/ports"
"$PY" - "$ROWS" "$WORK/ports" "$TLSGATE_LOG" <<'EOF' || fail "security matrix: rows failed (see above)"
import os, re, socket, ssl, sys, time
import e2elib
rows_file, ports_file, log_file = sys.argv[1:4]
ports = dict((l.split()[0], int(l.split()[1])) for l in open(ports_file))
C = os.environ["CERTS"]
CHAINS = {"int-client": "int-client-chain.pem", "unknown-client": "unknown-client-chain.pem"}

def attempt(kind, lst, shape, version):
    """Returns (accepted, source port)."""
    raw = e2elib.tcp_connect(ports[lst], timeout=5)
    sport = raw.getsockname()[1]
    try:
        if kind == "client":
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(os.path.join(C, "ca.pem"))
            if version == "1.2":
                ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            else:
                ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            if shape != "-":
                ctx.load_cert_chain(os.path.join(C, CHAINS.get(shape, shape + ".pem")),
                                    os.path.join(C, shape + ".key"))
            s = ctx.wrap_socket(raw, server_hostname="localhost")
        else:
            s = raw
        s.sendall(b"ping\n")
        got = b""
        while len(got) < 5:
            d = s.recv(64)
            if not d:
                break
            got += d
        return got == b"ping\n", sport
    except (OSError, ssl.SSLError):
        return False, sport
    finally:
        raw.close()

results = []
for line in open(rows_file):
    kind, lst, shape, expect, reason = line.rstrip("\n").split(" ", 4)
    for version in (("1.2", "1.3") if kind == "client" else ("-",)):
        ok, sport = attempt(kind, lst, shape, version)
        results.append((kind, lst, shape, version, expect, reason, ok, sport))

def lines_for(log, sport):
    pat = re.compile(r"client 127\.0\.0\.1:%d on " % sport)
    return [l for l in log.splitlines() if pat.search(l)]

bad = 0
deadline = time.monotonic() + 5
pending = list(results)
while True:
    log = open(log_file, errors="replace").read()
    missing = []
    for r in pending:
        kind, lst, shape, version, expect, reason, ok, sport = r
        want = reason if expect == "refuse" else r"(handshake|backend)"
        if not any(re.search(want, l, re.I) for l in lines_for(log, sport)):
            missing.append(r)
    if not missing or time.monotonic() > deadline:
        break
    time.sleep(0.1)
    pending = missing
for r in results:
    kind, lst, shape, version, expect, reason, ok, sport = r
    what = "%-7s %-15s %-18s TLS %-3s" % (kind, lst, shape, version)
    got = "accept" if ok else "refuse"
    mine = lines_for(log, sport)
    if got != expect:
        print("FAILED: %s: expected %s, got %s; log: %s" % (what, expect, got, mine[-1:] if mine else "-"))
        bad += 1
    elif expect == "refuse" and r in missing:
        print("FAILED: %s: refused, but no log line for port %d matches /%s/: %s" % (what, sport, reason, mine))
        bad += 1
    elif expect == "accept" and r in missing:
        print("FAILED: %s: accepted, but nothing logged for port %d" % (what, sport))
        bad += 1
    else:
        print("ok: %s %s%s" % (what, got, "" if expect == "accept" else "  /%s/" % reason))
# the newline CN (accepted on chain, refused on acl_cn) never starts a log line
forged = [l for l in log.splitlines() if l.startswith("forged:")]
if forged:
    print("FAILED: the CN's newline forged a log line: %r" % forged[0])
    bad += 1
else:
    print("ok: no log line was forged by the CN with a newline")
print("%d rows, %d failed" % (len(results), bad))
sys.exit(1 if bad else 0)
EOF
finish
