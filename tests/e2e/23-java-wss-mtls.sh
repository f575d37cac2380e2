#!/usr/bin/env bash
# e2e: long timeout=300
# 23-java-wss-mtls: a fourth, independent TLS + WebSocket stack: Java's own
# java.net.http.WebSocket over JSSE (tests/browser/WsEchoClient.java), with its client
# identity loaded from a PKCS#12 file by java.security.KeyStore, against a tlsgate listener
# with verify_client = require and proxy_protocol = v2 in front of a ws:// echo server that
# reports the PROXY v2 SSL TLV. Text and binary echoes byte-exact with client1 (TLS 1.3) and
# client2 (TLS 1.2, jdk.tls.client.protocols): the backend and tlsgate's log see the right CN
# and version. No client certificate, and a certificate from a foreign CA (also sent when the
# CA list does not name its issuer): refused, logged with the reason, never reach the backend.
. "$(dirname "$0")/lib.sh"
. "$ROOT/tests/browser/lib-browser.sh"
ensure_deb java openjdk-17-jdk-headless
ensure_deb javac openjdk-17-jdk-headless
ensure_node_modules

JAVA_VERSION=$(java -version 2>&1 | head -n 1)
log "java: $JAVA_VERSION"
BPORT=$(free_port)
LPORT=$(free_port)
start_node_echo "$BPORT" --proxy-v2 backend
BLOG=$WORK/backend.log
write_config mtls.ini <<EOF
[global]
workers = 2
log_level = info

[listener:mtls]
bind = 127.0.0.1:$LPORT
transport = tcp
secure = on
pfx = $CERTS/server.pfx
pfx_password = file:$CERTS/pfx-password
verify_client = require
client_ca = $CERTS/ca.pem
backend = 127.0.0.1:$BPORT
proxy_protocol = v2
EOF
start_tlsgate "$CONFIG"

# compile once (a single-file `java WsEchoClient.java` works too, but compiles on every run)
mkdir -p "$WORK/classes"
timeout 60 javac -d "$WORK/classes" "$BROWSER_DIR/WsEchoClient.java" >"$WORK/javac.log" 2>&1 \
    || fail "javac WsEchoClient.java: $(cat "$WORK/javac.log")"

# java_client NAME [JVM-OPTIONS --] ARGS... -- run the client (bounded), output in WORK/NAME.out
java_client() {
    local name=$1 jvm=() rc; shift
    while [ $# -gt 0 ] && [ "$1" != -- ] && [[ $1 == -D* ]]; do jvm+=("$1"); shift; done
    [ "${1:-}" = -- ] && shift
    log "java ($name): WsEchoClient${jvm[*]:+ ${jvm[*]}} $*"
    timeout -k 5 60 java "${jvm[@]}" -cp "$WORK/classes" WsEchoClient "$@" >"$WORK/$name.out" 2>&1 </dev/null
    rc=$?
    sed 's/^/    | /' "$WORK/$name.out"
    return "$rc"
}
URL="wss://localhost:$LPORT/echo"
ID=(--pfx-password-file "$CERTS/pfx-password")

# --- client1, TLS 1.3 (JDK default) -----------------------------------------------------------
log_mark
java_client client1 -- "$URL" --ca "$CERTS/ca.pem" --pfx "$CERTS/client.pfx" "${ID[@]}" \
    || error "Java client1: echoes through tlsgate with a client certificate"
assert_log_contains 'handshake: TLSv1\.3 .*peer CN=client1 ' 5 --since-mark
assert_file_contains "$BLOG" 'proxy-v2 .*tls=TLSv1\.3 .*cn=client1 cert=yes verify=0' "backend: PROXY v2 says TLSv1.3, CN=client1"

# --- client2, TLS 1.2 --------------------------------------------------------------------------
log_mark
java_client client2-tls12 -Djdk.tls.client.protocols=TLSv1.2 -- "$URL" --ca "$CERTS/ca.pem" \
    --pfx "$CERTS/client2.pfx" "${ID[@]}" \
    || error "Java client2 over TLS 1.2: echoes through tlsgate with a client certificate"
assert_log_contains 'handshake: TLSv1\.2 .*peer CN=client2 ' 5 --since-mark
assert_file_contains "$BLOG" 'proxy-v2 .*tls=TLSv1\.2 .*cn=client2 cert=yes verify=0' "backend: PROXY v2 says TLSv1.2, CN=client2"

# --- no certificate / foreign certificate: refused --------------------------------------------
accepted_before=$(grep -c 'accepted' "$BLOG")
log_mark
java_client no-cert -- "$URL" --ca "$CERTS/ca.pem" --expect-refused \
    || error "Java without a client certificate was not refused"
assert_log_contains 'handshake failed: certificate required' 5 --since-mark
# a certificate from a foreign CA. JSSE by itself offers a certificate only if its issuer is
# among the CAs tlsgate names in its CertificateRequest (it is not, so it sends none); with
# --present-anyway it sends it, and tlsgate's own chain verification must refuse it.
log_mark
java_client foreign -- "$URL" --ca "$CERTS/ca.pem" --pfx "$CERTS/foreign-client.pfx" "${ID[@]}" --expect-refused \
    || error "Java with a foreign client certificate was not refused"
assert_log_contains 'handshake failed: certificate required' 5 --since-mark
log_mark
java_client foreign-anyway -- "$URL" --ca "$CERTS/ca.pem" --pfx "$CERTS/foreign-client.pfx" "${ID[@]}" \
    --present-anyway --expect-refused || error "Java presenting a foreign client certificate was not refused"
assert_log_contains 'handshake failed: certificate verify failed: .*CN=(tlsgate foreign CA|foreign)' 5 --since-mark
[ "$(grep -c 'accepted' "$BLOG")" = "$accepted_before" ] \
    || error "the backend got a connection from a refused client: $(tail -n 3 "$BLOG")"

stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || error "tlsgate exited $TLSGATE_RC on SIGTERM"
finish
