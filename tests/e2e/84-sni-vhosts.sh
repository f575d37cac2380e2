#!/usr/bin/env bash
# 84-sni-vhosts: several [listener:NAME] sections on one bind, chosen by the
# ClientHello's server name (server_name, strict_sni).
#   1. -t prints the sections of each shared bind and which is the default;
#      the example config/sni-vhosts.ini passes -t.
#   2. one port, four sections: web (no server_name: the default; a pfx
#      list of three identities), secure
#      (secure.test and special.apps.test: other identity, dev-CA client
#      certificates required, TLS 1.3 only), apps (*.apps.test: foreign-CA
#      client certificates required) and lax2 (lax2.test, nothing asked),
#      each with its own backend.  openssl s_client -servername proves the
#      identity served, the CA names asked for, the backend reached, that
#      client1 passes secure and is refused by apps while the foreign client
#      is the other way round, that no certificate is refused by secure, that
#      an exact name beats the wildcard, that case does not matter, that a
#      wildcard is one label, and that no name / an unclaimed name lands on
#      the default; min_version of secure refuses TLS 1.2 there (control:
#      TLS 1.2 to the default).  A pfx list picks by name inside a section
#      (web, and two on the strict port), and never hands one section's
#      identity to another.  curl --resolve does the same over HTTP.
#      Metrics (handshakes, bytes) and /readyz are per section.
#   3. sessions are partitioned per section: a session (ticket, shared
#      ticket_key_file) of the lax default section, offered (the ClientHello
#      grows by the ticket) to secure, is not resumed and the client without
#      a certificate is refused; offered to lax2 it is not resumed either
#      (full handshake); it resumes on its own section (control).  TLS 1.2
#      and 1.3.
#   4. strict_sni on another port: named sections pass (control), an
#      unclaimed name and a ClientHello without a name are refused and logged;
#      a lone section with strict_sni refuses names not its own.
#   5. per-bind keys that differ, two default sections, server_name on udp
#      or on a plaintext listener: -t fails with file:line: [section] key.
#   6. reload removes lax2 and adds extra while a connection to apps stays up
#      and keeps echoing; lax2.test then lands on the default, extra.test on
#      its new backend.
#   7. systemd socket activation: one socket named after a non-default
#      section serves the whole bind.
#   8. (with SoftHSM2) a section whose key is on a PKCS#11 token, beside a
#      default section with a file key, TLS 1.2 and 1.3.
. "$(dirname "$0")/lib.sh"
require_cmd openssl socat curl

# backends that say who they are, then wait for one line; apps (E) echoes
# lines until "ping"
BA=$(free_port); BB=$(free_port); BD=$(free_port); BX=$(free_port); BE=$(free_port)
backend() {  # backend NAME PORT SHELL-COMMAND
    bg_start "backend-$1" socat -t 5 "TCP-LISTEN:$2,bind=127.0.0.1,fork,reuseaddr" "SYSTEM:$3"
    wait_listen "$2" 10 "$BG_PID" || fail "backend $1 did not start"
}
for b in "a $BA" "b $BB" "d $BD" "x $BX"; do
    backend "${b% *}" "${b#* }" "echo from-${b% *}; head -n 1 >/dev/null"
done
backend e "$BE" 'while read -r l; do echo "$l"; [ "$l" = ping ] && exit 0; done'
head -c 80 /dev/urandom > "$WORK/ticket.key"; chmod 600 "$WORK/ticket.key"

# a third server identity, www.third.test, for the pfx lists
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/third.key" \
    -subj "/CN=www.third.test" -out "$WORK/third.csr" 2>"$WORK/third.err" &&
openssl x509 -req -in "$WORK/third.csr" -CA "$CERTS/ca.pem" -CAkey "$CERTS/ca.key" -set_serial 8484 -days 30 \
    -extfile <(printf 'subjectAltName = DNS:www.third.test\nextendedKeyUsage = serverAuth\n') \
    -out "$WORK/third.pem" 2>>"$WORK/third.err" &&
openssl pkcs12 -export -in "$WORK/third.pem" -inkey "$WORK/third.key" -certfile "$CERTS/ca.pem" \
    -passout "file:$CERTS/pfx-password" -out "$WORK/third.pfx" 2>>"$WORK/third.err" ||
    fail "cannot make third.pfx: $(cat "$WORK/third.err")"
SERVER=$CERTS/server.pfx; OTHER=$CERTS/other.pfx; THIRD=$WORK/third.pfx

P=$(free_port); S=$(free_port); M=$(free_port); L=$(free_port)
ID="pfx_password = file:$CERTS/pfx-password
ticket_key_file = $WORK/ticket.key"
section() {  # section NAME SERVER_NAME PFX BACKEND [extra lines]
    printf '\n[listener:%s]\nbind = 127.0.0.1:%s\n' "$1" "$P"
    [ -n "$2" ] && printf 'server_name = %s\n' "$2"
    printf 'pfx = %s\n%s\nbackend = 127.0.0.1:%s\n' "$3" "$ID" "$4"
    shift 4
    printf '%s\n' "$@"
}
conf() {  # conf with|without lax2 with|without extra
    {
        printf '[global]\nworkers = 2\nlog_level = debug\nmetrics = 127.0.0.1:%s\n' "$M"
        section web "" "$SERVER, $OTHER, $THIRD" "$BA"
        section secure "secure.test, special.apps.test" "$OTHER" "$BB" \
            "verify_client = require" "client_ca = $CERTS/ca.pem" "min_version = 1.3"
        section apps "*.apps.test" "$SERVER" "$BE" \
            "verify_client = require" "client_ca = $CERTS/foreign-ca.pem"
        [ "$1" = with ] && section lax2 "lax2.test, www.third.test" "$SERVER" "$BD" "ciphers = ECDHE+CHACHA20"
        [ "$2" = with ] && section extra "extra.test" "$OTHER" "$BX"
        cat <<EOF

[listener:one]
bind = 127.0.0.1:$S
server_name = one.test
strict_sni = on
$SERVER_PFX
backend = 127.0.0.1:$BA

[listener:two]
bind = 127.0.0.1:$S
server_name = two.test, *.two.test, www.third.test
strict_sni = on
pfx = $OTHER, $THIRD
pfx_password = file:$CERTS/pfx-password
backend = 127.0.0.1:$BB

[listener:solo]
bind = 127.0.0.1:$L
server_name = solo.test
strict_sni = on
$SERVER_PFX
backend = 127.0.0.1:$BD
EOF
    } > "$WORK/sni.ini"
    CONFIG=$WORK/sni.ini
}
C1=(-cert "$CERTS/client.pem" -key "$CERTS/client.key")
CF=(-cert "$CERTS/foreign-client.pem" -key "$CERTS/foreign-client.key")

# sc PORT NAME [s_client args...]: GOT = from-X | echo | none; CN = served
# certificate's CN; RESUMED = 0|1 from tlsgate's handshake line; what the
# backend sent in WORK/N-NAME.data, s_client's report in WORK/N-NAME.out
N=0
sc() {
    local port=$1 name=$2 mark; shift 2
    N=$((N + 1))
    mark=$(stat -c %s "$TLSGATE_LOG")
    OUT=$WORK/$N-$name.out
    timeout 10 openssl s_client -connect "127.0.0.1:$port" -CAfile "$CERTS/ca.pem" -brief -ign_eof "$@" \
        < <(printf 'ping\n') >"$WORK/$N-$name.data" 2>"$OUT"
    GOT=$(grep -aoE '^from-[a-z]$' "$WORK/$N-$name.data" | head -n 1)
    [ -n "$GOT" ] || { grep >/dev/null -ax ping "$WORK/$N-$name.data" && GOT=echo || GOT=none; }
    CN=$(grep -aoE '^Peer certificate: .*CN ?= ?[a-z.]+' "$OUT" | head -n 1 | sed -E 's/.*CN ?= ?//')
    sleep 0.1
    if tail -c +"$((mark + 1))" "$TLSGATE_LOG" | grep >/dev/null -ac "handshake: TLS.* resumed"; then RESUMED=1; else RESUMED=0; fi
}
expect() {  # expect WHAT GOT [CN]
    if [ "$GOT" = "$2" ] && { [ -z "${3:-}" ] || [ "$CN" = "$3" ]; }; then
        log "ok: $1: $GOT${3:+, CN=$CN}"
    else
        error "$1: expected $2${3:+ with CN=$3}, got $GOT CN=$CN ($(grep -aiE 'alert|error' "$OUT" | head -n 2 | tr '\n' ' '))"
    fi
}

# ---- 1. -t -------------------------------------------------------------------
conf with without
check_config "$CONFIG"
[ "$CHECK_RC" = 0 ] || fail "-t refused the good config: $CHECK_OUT"
for want in "bind 127.0.0.1:$P: 4 SNI sections, strict_sni off: \[listener:web\] \(no server_name\) \(default: no or unclaimed name\); \[listener:secure\] secure.test, special.apps.test; \[listener:apps\] \*.apps.test; \[listener:lax2\] lax2.test, www.third.test" \
            "bind 127.0.0.1:$S: 2 SNI sections, strict_sni on \(unclaimed names refused\): \[listener:one\] one.test \(default\); \[listener:two\] two.test, \*.two.test, www.third.test"; do
    grep >/dev/null -cE "$want" <<<"$CHECK_OUT" || error "-t does not print /$want/: $CHECK_OUT"
done

check_config "$ROOT/config/sni-vhosts.ini"
[ "$CHECK_RC" = 0 ] && grep >/dev/null -c "3 SNI sections" <<<"$CHECK_OUT" ||
    error "config/sni-vhosts.ini does not pass -t: $CHECK_OUT"

start_tlsgate "$CONFIG"

# ---- 2. dispatch ----------------------------------------------------------------
sc "$P" default -servername localhost;                  expect "localhost -> web" from-a localhost
sc "$P" noname -noservername;                          expect "no server name -> the default web" from-a localhost
sc "$P" unclaimed -servername nobody.test;             expect "unclaimed name -> the default web" from-a localhost
sc "$P" two-labels -servername a.b.apps.test;           expect "a.b.apps.test (a wildcard is one label) -> web" from-a localhost
ca_names() {  # ca_names SERVERNAME: the CA names the section asks client certificates of
    timeout 10 openssl s_client -connect "127.0.0.1:$P" -servername "$1" </dev/null 2>&1 |
        sed -n '/^Acceptable client certificate CA names/,/^[A-Z]/p'
}
sc "$P" secure-c1 -servername secure.test "${C1[@]}";   expect "secure.test with client1 -> secure" from-b other.example
CAS=$(ca_names secure.test)
grep >/dev/null -c "CN *= *tlsgate dev CA" <<<"$CAS" || error "secure did not ask for the dev CA: $CAS"
sc "$P" secure-nocert -servername secure.test;         expect "secure.test without a certificate is refused" none
assert_log_contains "on secure: close: handshake failed: certificate required" 5 >/dev/null
sc "$P" secure-foreign -servername secure.test "${CF[@]}"; expect "secure.test with the foreign client is refused" none
sc "$P" secure-case -servername SECURE.Test "${C1[@]}"; expect "SECURE.Test (case) -> secure" from-b other.example
sc "$P" exact -servername special.apps.test "${C1[@]}"; expect "special.apps.test: exact beats *.apps.test" from-b other.example
sc "$P" apps-foreign -servername x.apps.test "${CF[@]}"; expect "x.apps.test with the foreign client -> apps (echo)" echo localhost
CAS=$(ca_names x.apps.test)
grep >/dev/null -c "CN *= *tlsgate foreign CA" <<<"$CAS" || error "apps did not ask for the foreign CA: $CAS"
ca_names localhost | grep >/dev/null -c "CN *= *tlsgate" && error "web (no client certificates) asked for some"
sc "$P" apps-c1 -servername x.apps.test "${C1[@]}";     expect "x.apps.test with client1 (dev CA) is refused" none
sc "$P" lax2 -servername lax2.test;                     expect "lax2.test -> lax2" from-d localhost
# the pfx list of a section still picks an identity by name: web's third
# identity is not lax2's to serve (OpenSSL would fall back to the first
# context's servername callback), other.example is web's (unclaimed)
sc "$P" lax2-third -servername www.third.test;          expect "www.third.test -> lax2, its own single identity" from-d localhost
sc "$P" web-other -servername other.example;            expect "other.example -> web, whose pfx list picks other.pfx" from-a other.example
sc "$P" secure-tls12 -tls1_2 -servername secure.test "${C1[@]}"; expect "TLS 1.2 to secure (min_version 1.3) is refused" none
sc "$P" web-tls12 -tls1_2 -servername localhost;        expect "TLS 1.2 to web (control)" from-a localhost
# a section's own TLS 1.2 suites: lax2 offers only ChaCha20, web (the
# context every connection starts on) AES-GCM too
GCM=ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256
CHACHA=ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305
sc "$P" lax2-gcm -tls1_2 -cipher "$GCM" -servername lax2.test;       expect "TLS 1.2 AES-GCM only to lax2 (ciphers ChaCha20) is refused" none
sc "$P" web-gcm -tls1_2 -cipher "$GCM" -servername localhost;        expect "TLS 1.2 AES-GCM only to web (control)" from-a localhost
sc "$P" lax2-chacha -tls1_2 -cipher "$CHACHA" -servername lax2.test; expect "TLS 1.2 ChaCha20 to lax2 (control)" from-d localhost

curl_sni() {  # curl_sni NAME [curl args...] -> GOT
    local host=$1; shift
    GOT=$(curl -s --http0.9 --max-time 10 --cacert "$CERTS/ca.pem" --resolve "$host:$P:127.0.0.1" "$@" "https://$host:$P/" | head -n 1)
    [ -n "$GOT" ] || GOT=none
    CN=
}
curl_sni localhost;                                    expect "curl localhost -> web" from-a
curl_sni secure.test -k --cert "$CERTS/client.pem" --key "$CERTS/client.key"; expect "curl secure.test with client1 -> secure" from-b
curl_sni secure.test -k;                               expect "curl secure.test without a certificate is refused" none
curl_sni lax2.test -k;                                 expect "curl lax2.test -> lax2" from-d

# metrics and readiness per section
METRICS=$(curl -s --max-time 5 "http://127.0.0.1:$M/metrics")
for want in 'tlsgate_handshakes_total{listener="secure",result="ok"} [1-9]' \
            'tlsgate_handshakes_total{listener="secure",result="no_client_certificate"} [1-9]' \
            'tlsgate_handshakes_total{listener="apps",result="ok"} [1-9]' \
            'tlsgate_connections_total{listener="web"} [1-9]' \
            'tlsgate_bytes_total{listener="lax2",from="backend"} [1-9]'; do
    grep >/dev/null -cE "^$want" <<<"$METRICS" || error "metrics: no line /$want/: $(grep -aE 'listener="(secure|apps|lax2)"' <<<"$METRICS" | head -n 5)"
done
READY=$(curl -s --max-time 5 "http://127.0.0.1:$M/readyz")
for l in web secure apps lax2 one two solo; do
    grep >/dev/null -cE "^listener $l: ready" <<<"$READY" || error "/readyz: listener $l is not ready: $READY"
done

# ---- 3. sessions per section --------------------------------------------------------
hello_len() {  # hello_len NAME [s_client args...]: ClientHello length as s_client -msg prints it
    timeout 10 openssl s_client -connect "127.0.0.1:$P" -msg "$@" </dev/null 2>&1 |
        grep -aoE '>>> .*Handshake \[length [0-9a-f]+\], ClientHello' | head -n 1 | sed -E 's/.*length ([0-9a-f]+).*/\1/'
}
for v in 1_2 1_3; do
    sc "$P" "lax-full-$v" "-tls$v" -servername localhost -sess_out "$WORK/lax-$v.sess"
    expect "TLS $v: full handshake on web" from-a
    [ -s "$WORK/lax-$v.sess" ] || error "TLS $v: no session saved"
    sc "$P" "lax-resume-$v" "-tls$v" -servername localhost -sess_in "$WORK/lax-$v.sess"
    expect "TLS $v: the web session resumes on web (control)" from-a
    [ "$RESUMED" = 1 ] || error "TLS $v: the web session did not resume on web"
    with=$(hello_len "-tls$v" -servername secure.test -sess_in "$WORK/lax-$v.sess")
    without=$(hello_len "-tls$v" -servername secure.test)
    if [ -n "$with" ] && [ -n "$without" ] && [ $((16#$with)) -gt $((16#$without + 100)) ]; then
        log "ok: TLS $v: the session is offered to secure (ClientHello $((16#$with)) bytes, $((16#$without)) without)"
    else
        error "TLS $v: cannot see the session offered (ClientHello '$with' vs '$without')"
    fi
    log_mark
    sc "$P" "lax-on-secure-$v" "-tls$v" -servername secure.test -sess_in "$WORK/lax-$v.sess"
    expect "TLS $v: the web session offered to secure, no certificate: refused" none
    [ "$RESUMED" = 0 ] || error "TLS $v: the web session resumed on secure"
    sc "$P" "lax-on-lax2-$v" "-tls$v" -servername lax2.test -sess_in "$WORK/lax-$v.sess"
    expect "TLS $v: the web session offered to lax2: full handshake" from-d
    [ "$RESUMED" = 0 ] || error "TLS $v: the web session resumed on lax2 (another section)"
done

# ---- 4. strict_sni ----------------------------------------------------------------------
sc "$S" strict-one -servername one.test;               expect "strict: one.test -> one (control)" from-a localhost
sc "$S" strict-two -servername x.two.test;             expect "strict: x.two.test -> two" from-b other.example
sc "$S" strict-third -servername www.third.test;       expect "strict: www.third.test -> two, whose pfx list picks third.pfx" from-b www.third.test
log_mark
sc "$S" strict-unclaimed -servername nobody.test;      expect "strict: nobody.test is refused" none
assert_log_contains "on one: close: handshake failed: strict_sni: server name 'nobody.test' matches no server_name of bind 127.0.0.1:$S" 5 --since-mark
sc "$S" strict-noname -noservername;                   expect "strict: no server name is refused" none
assert_log_contains "strict_sni: no server name sent matches no server_name" 5 --since-mark
# a lone section with strict_sni answers for its own names only
sc "$L" solo -servername solo.test;                    expect "strict, alone: solo.test -> solo (control)" from-d localhost
sc "$L" solo-other -servername secure.test;            expect "strict, alone: secure.test is refused" none

# ---- 5. config errors ----------------------------------------------------------------------
bad() {  # bad NAME REGEX: the config on stdin (two sections on one bind) fails -t with REGEX
    local f=$WORK/$1.ini
    cat > "$f"
    check_config "$f"
    if [ "$CHECK_RC" != 0 ] && grep >/dev/null -cE "$2" <<<"$CHECK_OUT"; then log "ok: -t refuses $1"
    else error "-t on $1: status $CHECK_RC, wanted /$2/: $CHECK_OUT"; fi
}
two() {  # two "extra lines of b"
    printf '[listener:a]\nbind = 127.0.0.1:%s\npfx = %s/server.pfx\n%s\nbackend = 127.0.0.1:%s\n' "$P" "$CERTS" "$ID" "$BA"
    printf '\n[listener:b]\nbind = 127.0.0.1:%s\npfx = %s/other.pfx\npfx_password = file:%s/pfx-password\nbackend = 127.0.0.1:%s\n' "$P" "$CERTS" "$CERTS" "$BB"
    printf '%s\n' "$@"
}
two "server_name = b.test" "ticket_key_file = $WORK/other.key" | bad ticket-differs \
    "ticket-differs.ini:14: \[listener:b\] ticket_key_file: differs from .*ticket-differs.ini:5: \[listener:a\] ticket_key_file, which shares bind"
two "server_name = b.test" "ticket_key_file = $WORK/ticket.key" "accept_proxy = on" | bad proxy-differs \
    "proxy-differs.ini:15: \[listener:b\] accept_proxy: differs from .*\[listener:a\] accept_proxy"
two "server_name = b.test" "ticket_key_file = $WORK/ticket.key" "strict_sni = on" | bad strict-differs \
    "strict-differs.ini:15: \[listener:b\] strict_sni: differs from"
two "ticket_key_file = $WORK/ticket.key" | bad two-defaults \
    "two-defaults.ini:9: \[listener:b\] bind: 127.0.0.1:$P is also bound by \[listener:a\], and neither has server_name"
printf '[listener:u]\nbind = 127.0.0.1:%s\ntransport = udp\npfx = %s/server.pfx\n%s\nbackend = 127.0.0.1:%s\nserver_name = u.test\n' \
    "$P" "$CERTS" "$ID" "$BA" | bad udp \
    "udp.ini:8: \[listener:u\] server_name: SNI virtual hosts are for transport = tcp only"
printf '[listener:p]\nbind = 127.0.0.1:%s\nsecure = off\nbackend = 127.0.0.1:%s\nserver_name = p.test\n' "$P" "$BA" | bad plain \
    "plain.ini:5: \[listener:p\] server_name: needs secure = on"

# ---- 6. reload: lax2 goes, extra comes, a connection to apps stays ------------------------
write_py held <<'EOF'
import os, sys, time, e2elib
s = e2elib.tls_connect(int(sys.argv[1]), sni="x.apps.test", verify=False,
                       certfile="foreign-client.pem", keyfile="foreign-client.key")
def roundtrip(line):
    s.sendall(line)
    got = b""
    while not got.endswith(b"\n"):
        chunk = s.recv(100)
        if not chunk:
            break
        got += chunk
    return got
print("first", roundtrip(b"before reload\n").decode().strip(), flush=True)
end = time.time() + 30
while not os.path.exists(sys.argv[2]) and time.time() < end:
    time.sleep(0.05)
print("second", roundtrip(b"after reload\n").decode().strip(), flush=True)
EOF
bg_start held "$PY" "$WORK/held.py" "$P" "$WORK/go"
HELD=$BG_PID
for _ in $(seq 200); do grep >/dev/null -c '^first' "$WORK/held.log" && break; sleep 0.05; done
grep >/dev/null -cx 'first before reload' "$WORK/held.log" || fail "the held connection to apps did not echo: $(cat "$WORK/held.log")"
conf without with
kill -HUP "$TLSGATE_PID"
assert_log_contains "reloaded: generation 2" 10 >/dev/null
touch "$WORK/go"
wait_exit "$HELD" 15
grep >/dev/null -cx 'second after reload' "$WORK/held.log" ||
    error "the connection to apps did not survive the reload: $(cat "$WORK/held.log")"
sc "$P" extra -servername extra.test;                  expect "after reload: extra.test -> the new section extra" from-x other.example
sc "$P" lax2-gone -servername lax2.test;               expect "after reload: lax2.test (section removed) -> web" from-a localhost
sc "$P" apps-after -servername x.apps.test "${CF[@]}"; expect "after reload: x.apps.test -> apps" echo

stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || error "tlsgate exited $TLSGATE_RC on SIGTERM (sanitizer report?)"

# ---- 7. systemd socket activation: a socket named after any section -------------------------
if command -v systemd-socket-activate >/dev/null; then
    A=$(free_port)
    conf with without
    sed -i "s/^bind = 127.0.0.1:$P\$/bind = 127.0.0.1:$(free_port)/" "$CONFIG"
    _TG_N=$((_TG_N + 1)); TLSGATE_LOG=$WORK/tlsgate.activated.log
    systemd-socket-activate -l "127.0.0.1:$A" --fdname=secure -- "$TLSGATE" -c "$CONFIG" >"$TLSGATE_LOG" 2>&1 </dev/null &
    TLSGATE_PID=$!; track_pid "$TLSGATE_PID" socket-activate; _TLSGATE_PIDS+=("$TLSGATE_PID")
    wait_listen "$A" 10 "$TLSGATE_PID" || fail "systemd-socket-activate did not listen"
    sc "$A" act-secure -servername secure.test "${C1[@]}"; expect "activated socket 'secure': secure.test -> secure" from-b
    sc "$A" act-web -servername localhost;                 expect "activated socket 'secure': localhost -> web" from-a
    assert_log_not_contains "matches no listener"
    stop_tlsgate
    [ "$TLSGATE_RC" = 0 ] || error "the activated tlsgate exited $TLSGATE_RC on SIGTERM"
else
    log "systemd-socket-activate not installed: part 7 not run"
fi
# ---- 8. a section whose key is on a PKCS#11 token (SoftHSM2), when there is one ----
SOFTHSM=${SOFTHSM:-/usr/lib/softhsm/libsofthsm2.so}
LIBS=$(ldd "$TLSGATE" 2>/dev/null); VER=$("$TLSGATE" -V 2>&1)
if ! command -v softhsm2-util >/dev/null || ! command -v pkcs11-tool >/dev/null || [ ! -f "$SOFTHSM" ]; then
    log "no SoftHSM2: part 8 not run"
elif [[ $VER == *BoringSSL* && ( $LIBS == *libasan* || $LIBS == *libtsan* ) ]]; then
    log "BoringSSL with a sanitizer cannot host PKCS#11 modules: part 8 not run"
else
    . "$E2E_DIR/pkcs11-helpers.sh"
    make_token
    {
        printf '[global]\nworkers = 1\n'
        section web "" "$SERVER" "$BA"
        section tok "tok.test" "" "$BB" "cert = $CERTS/server.pem" "key = $TOKEN_URI;object=server" \
            "pkcs11_module = $SOFTHSM" "pkcs11_pin = file:$PINFILE"
    } | sed '/^pfx = $/d' > "$WORK/token.ini"
    start_tlsgate "$WORK/token.ini"
    for v in 1_2 1_3; do
        sc "$P" "token-$v" "-tls$v" -servername tok.test -verify_return_error
        expect "TLS $v: tok.test -> tok, signed by its token key" from-b localhost
        sc "$P" "token-web-$v" "-tls$v" -servername localhost
        expect "TLS $v: localhost -> web beside it (control)" from-a localhost
    done
    stop_tlsgate
    [ "$TLSGATE_RC" = 0 ] || error "tlsgate with a token section exited $TLSGATE_RC on SIGTERM"
fi
finish
