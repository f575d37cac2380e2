#!/usr/bin/env bash
# 81-long-lists: list keys may be repeated (each line appends) and a long
# value may continue on indented lines, joined without a separator.
# - allow_clients holds 50 sha256 fingerprints: 48 random ones on 24
#   repeated lines, then a line whose value continues on an indented line
#   with the 50th, the real client1 certificate's. client1 is admitted
#   (curl through to the backend); client2, issued by the same CA, is
#   refused as "not in allow_clients" (the control).
# - ciphers is one 230-character TLS 1.2 list on three lines, the last
#   suite's name split in the middle (ECDHE-ECDSA-CHACHA20- / POLY1305): a
#   TLS 1.2 client offering only that suite connects, so the halves were
#   joined; one offering only ECDHE-ECDSA-AES128-GCM-SHA256 (not in the
#   list) is refused, so the list is in force.
# - backend on two lines: the first line's backend is dead, the second's
#   answers.
# - errors keep their own line: a pfx list whose second line names a
#   missing file is refused at that line; a non-list key set twice is still
#   an error naming both lines.
. "$(dirname "$0")/lib.sh"
require_cmd openssl curl

BPORT=$(free_port); DEAD=$(free_port); PORT=$(free_port)
start_demo_backend "$BPORT"
fp() { openssl x509 -in "$1" -noout -fingerprint -sha256 | sed 's/.*=//; s/://g' | tr 'A-F' 'a-f'; }
REAL=$(fp "$CERTS/client.pem")
[ ${#REAL} = 64 ] || fail "fingerprint of client.pem: '$REAL'"
rand() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }

# 230 characters of TLS 1.2 suites, none usable with the ECDSA server key
# except the last one, which is split over two lines
LIST="ECDHE-RSA-AES128-SHA"
for i in 1 2 3 4 5; do LIST="$LIST:AES128-GCM-SHA256:AES256-GCM-SHA384"; done
LIST="$LIST:ECDHE-ECDSA-CHACHA20-POLY1305"
[ ${#LIST} = 230 ] || fail "test bug: the cipher list is ${#LIST} characters"
log "ciphers value: ${#LIST} characters"
PART1=${LIST:0:120}
REST=${LIST:120}
PART2=${REST%ECDHE-ECDSA-CHACHA20-POLY1305}ECDHE-ECDSA-CHACHA20-
PART3=POLY1305
[ "$PART1$PART2$PART3" = "$LIST" ] || fail "test bug: split does not rejoin"

CONFIG=$WORK/lists.ini
{
    printf '[global]\nworkers = 1\n\n[listener:acl]\nbind = 127.0.0.1:%s\n' "$PORT"
    printf 'pfx = %s/server.pfx\npfx_password = file:%s/pfx-password\n' "$CERTS" "$CERTS"
    printf 'verify_client = require\nclient_ca = %s/ca.pem\n' "$CERTS"
    for i in $(seq 24); do printf 'allow_clients = sha256:%s, sha256:%s\n' "$(rand)" "$(rand)"; done
    printf 'allow_clients = sha256:%s,   ; the 49th, and on the next line the 50th\n' "$(rand)"
    printf '    sha256:%s\n' "$REAL"
    printf 'ciphers = %s\n' "$PART1"
    printf '    %s\n' "$PART2"
    printf '\t%s\n' "$PART3"
    printf 'backend = 127.0.0.1:%s\n' "$DEAD"
    printf 'backend = 127.0.0.1:%s\n' "$BPORT"
} >"$CONFIG"
n=$(grep -o 'sha256:' "$CONFIG" | wc -l)
[ "$n" = 50 ] || fail "test bug: $n fingerprints"
awk 'length($0) > 198 { bad = 1 } END { exit bad }' "$CONFIG" || fail "test bug: a line over 198 characters"
check_config "$CONFIG"
[ "$CHECK_RC" = 0 ] || fail "tlsgate -t lists.ini: $CHECK_OUT"
start_tlsgate "$CONFIG"

# client1 (the 50th fingerprint) is admitted; TLS 1.3 is unaffected by ciphers
out=$(curl -sS --max-time 10 --cacert "$CERTS/ca.pem" --cert "$CERTS/client.pem" --key "$CERTS/client.key" \
    "https://localhost:$PORT/" 2>&1) || error "client1 (50th fingerprint) refused: $out"
# client2 is not in the list
if out=$(curl -sS --max-time 10 --cacert "$CERTS/ca.pem" --cert "$CERTS/client2.pem" --key "$CERTS/client2.key" \
    "https://localhost:$PORT/" 2>&1); then
    error "client2 (not listed) was let through: $out"
fi
assert_log_contains "CN=client2.*not in allow_clients" || error "client2's refusal is not logged as an allow_clients refusal"
assert_log_contains "backend: connected to 127.0.0.1:$BPORT" || error "no backend connection via the second backend line"

# the continued cipher list: only the split suite matches the ECDSA key
s12() {
    timeout 10 openssl s_client -connect "127.0.0.1:$PORT" -tls1_2 -cipher "$1" -servername localhost \
        -CAfile "$CERTS/ca.pem" -cert "$CERTS/client.pem" -key "$CERTS/client.key" </dev/null 2>&1
}
out=$(s12 ECDHE-ECDSA-CHACHA20-POLY1305)
grep -q 'Cipher is ECDHE-ECDSA-CHACHA20-POLY1305' <<<"$out" \
    || error "TLS 1.2 with the suite split over two lines failed: $(grep -iE 'cipher|alert|error' <<<"$out" | head -3)"
out=$(s12 ECDHE-ECDSA-AES128-GCM-SHA256)
if grep -q 'Cipher is ECDHE-ECDSA-AES128-GCM-SHA256' <<<"$out"; then
    error "control: a suite outside the 230-character list was accepted"
fi
stop_tlsgate

# errors name the line of their own item
MISSING=$WORK/missing.pfx
write_config pfx-lines.ini <<EOT
[listener:p]
bind = 127.0.0.1:$(free_port)
$SERVER_PFX
backend = 127.0.0.1:$BPORT
pfx = $MISSING
EOT
check_config "$CONFIG"
[ "$CHECK_RC" = 1 ] || error "a missing second pfx was accepted: $CHECK_OUT"
grep -qE "pfx-lines.ini:6: \[listener:p\] pfx: .*missing.pfx" <<<"$CHECK_OUT" \
    || error "the missing pfx is not reported at its own line (6): $CHECK_OUT"
write_config twice.ini <<EOT
[listener:t]
bind = 127.0.0.1:$(free_port)
secure = off
backend = 127.0.0.1:$BPORT
idle_timeout = 1m
idle_timeout = 2m
EOT
check_config "$CONFIG"
[ "$CHECK_RC" = 1 ] && grep -qE "twice.ini:6: \[listener:t\] idle_timeout: set twice \(first at line 5\)" <<<"$CHECK_OUT" \
    || error "a non-list key set twice: $CHECK_OUT"
finish
