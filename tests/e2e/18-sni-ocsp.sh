#!/usr/bin/env bash
# 18-sni-ocsp: a listener with several PFX identities serves the one whose
# certificate names the server the client asks for (SNI), the first one
# otherwise; ocsp = FILE staples a real OCSP response (made here with
# `openssl ocsp` as the responder) for clients that ask (-status), which
# see "Cert Status: good". A file that is not DER is refused by -t.
. "$(dirname "$0")/lib.sh"

BPORT=$(free_port); PORT=$(free_port)
start_echo "$BPORT"

# An OCSP response for server.pem, signed by the dev CA.
serial=$(openssl x509 -in "$CERTS/server.pem" -noout -serial | cut -d= -f2)
end=$(date -u -d "$(openssl x509 -in "$CERTS/server.pem" -noout -enddate | cut -d= -f2)" +%y%m%d%H%M%SZ)
subj=$(openssl x509 -in "$CERTS/server.pem" -noout -subject -nameopt compat | sed 's/^subject=//')
printf 'V\t%s\t\t%s\tunknown\t%s\n' "$end" "$serial" "$subj" > "$WORK/index.txt"
openssl ocsp -index "$WORK/index.txt" -rsigner "$CERTS/ca.pem" -rkey "$CERTS/ca.key" -CA "$CERTS/ca.pem" \
    -issuer "$CERTS/ca.pem" -cert "$CERTS/server.pem" -respout "$WORK/resp.der" -ndays 1 >/dev/null 2>&1 \
    || fail "openssl ocsp could not make a response"

write_config sni.ini <<EOF
$(global_section workers=1)

[listener:sni]
bind = 127.0.0.1:$PORT
pfx = $CERTS/server.pfx, $CERTS/other.pfx
pfx_password = file:$CERTS/pfx-password
ocsp = $WORK/resp.der
backend = 127.0.0.1:$BPORT
EOF
check_config "$CONFIG"
grep -q "SNI alternative: /O=tlsgate/CN=other.example" <<<"$CHECK_OUT" || error "-t summary does not list the SNI identity: $CHECK_OUT"
grep -q "OCSP stapled" <<<"$CHECK_OUT" || error "-t summary does not mention OCSP: $CHECK_OUT"
start_tlsgate "$CONFIG"

served() {  # served [SNI] -> CN of the certificate served
    local sni=()
    [ -n "${1:-}" ] && sni=(-servername "$1") || sni=(-noservername)
    echo | timeout 5 openssl s_client -connect "127.0.0.1:$PORT" "${sni[@]}" 2>/dev/null \
        | openssl x509 -noout -subject -nameopt compat 2>/dev/null | sed 's/.*CN=//'
}
for case in "localhost:localhost" "other.example:other.example" "unknown.test:localhost" ":localhost"; do
    sni=${case%%:*}; want=${case#*:}
    got=$(served "$sni")
    [ "$got" = "$want" ] && log "ok: SNI '${sni:-none}' -> $got" || error "SNI '${sni:-none}' served '$got', wanted $want"
done
# the other.example identity really works end to end, verified by name
"$PY" - "$PORT" <<'EOF' && log "ok: data flows over the SNI identity" || error "no echo over the SNI identity"
import sys, e2elib
s = e2elib.tls_connect(int(sys.argv[1]), sni="other.example")
s.sendall(b"hi\n"); assert e2elib.recv_exact(s, 3) == b"hi\n"
EOF

status=$(echo | timeout 5 openssl s_client -connect "127.0.0.1:$PORT" -servername localhost -status \
         -CAfile "$CERTS/ca.pem" 2>/dev/null)
grep -q "OCSP Response Status: successful" <<<"$status" && grep -q "Cert Status: good" <<<"$status" \
    && log "ok: OCSP response stapled (successful, good)" || error "no stapled OCSP response: $(grep -i ocsp <<<"$status")"
nostatus=$(echo | timeout 5 openssl s_client -connect "127.0.0.1:$PORT" -servername localhost 2>/dev/null)
grep -q "OCSP Response Status" <<<"$nostatus" && error "OCSP sent to a client that did not ask" || true

echo "not der" > "$WORK/bad.der"
sed "s|^ocsp = .*|ocsp = $WORK/bad.der|" "$CONFIG" > "$WORK/bad.ini"
check_config "$WORK/bad.ini"
[ "$CHECK_RC" = 1 ] && grep -qE "bad.ini:[0-9]+: \[listener:sni\] ocsp: .*not a DER OCSP response" <<<"$CHECK_OUT" \
    && log "ok: non-DER ocsp file refused" || error "bad ocsp file not refused: $CHECK_OUT"
finish
