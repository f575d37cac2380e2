#!/usr/bin/env bash
# 83-docs-keys: the docs cannot drift from the config schema. Every key of
# proxy/daemon/config.c's tables (global_keys, listener_keys) that is built (no
# F_NOT_YET flag) must have an entry in man/tlsgate.ini.5 (a .TP term line
# naming it) and in README.md (a table row whose first cell names it in
# backquotes). Keys still flagged F_NOT_YET are not required: whoever builds
# one removes the flag, and from then on this test asks for its docs.
# Controls: the extraction finds the keys it must (bind, psk, session_timeout,
# a plausible count), and the checker fails on copies of the docs with one
# key's entry removed.
. "$(dirname "$0")/lib.sh"

# keys FILE -> "name" lines of built keys, from both schema tables
keys() {
    awk '
        /^static const key_spec_t (global|listener)_keys\[\] = \{/ { t = 1; next }
        t && /^\};/ { t = 0 }
        t && /^[ \t]*\{"[a-z0-9_]+", T_/ {
            if ($0 ~ /F_NOT_YET/) next
            match($0, /"[a-z0-9_]+"/); print substr($0, RSTART + 1, RLENGTH - 2)
        }' "$1"
}
# missing KEYSFILE MAN README -> prints "man: KEY" / "README: KEY" for each gap
missing() {
    local k
    while read -r k; do
        awk -v k="$k" '
            prev == ".TP" { line = $0; gsub(/\\-/, "-", line); gsub(/"/, " ", line); gsub(/,/, " ", line)
                            n = split(line, w, /[ \t]+/); for (i = 1; i <= n; i++) if (w[i] == k) found = 1 }
            { prev = $0 }
            END { exit !found }' "$2" || echo "man: $k"
        awk -v k="$k" -F'|' '
            /^\|/ { if (index($2, "`" k "`")) found = 1 }
            END { exit !found }' "$3" || echo "README: $k"
    done <"$1"
}

keys "$ROOT/proxy/daemon/config.c" >"$WORK/keys.txt"
n=$(wc -l <"$WORK/keys.txt")
log "$n built keys in the schema; not yet built: $(grep -c 'F_NOT_YET}' "$ROOT/proxy/daemon/config.c")"
[ "$n" -ge 40 ] || fail "only $n keys extracted from proxy/daemon/config.c: the extraction is broken"
for k in workers bind psk psk_identity_hint ticket_key_file ocsp dtls_cookie dtls_mtu session_timeout backend; do
    grep -qx "$k" "$WORK/keys.txt" || fail "extraction lacks the built key $k"
done

missing "$WORK/keys.txt" "$ROOT/man/tlsgate.ini.5" "$ROOT/README.md" >"$WORK/missing.txt"
if [ -s "$WORK/missing.txt" ]; then
    error "keys without docs: $(tr '\n' ' ' <"$WORK/missing.txt")"
fi

# controls: remove one key's entry and the checker must notice
awk 'prev == ".TP" && /^\.B session_timeout$/ { prev = $0; next } { print; prev = $0 }' \
    "$ROOT/man/tlsgate.ini.5" >"$WORK/man-minus.5"
printf 'session_timeout\npsk\n' >"$WORK/two.txt"
out=$(missing "$WORK/two.txt" "$WORK/man-minus.5" "$ROOT/README.md")
[ "$out" = "man: session_timeout" ] || error "control: a man page without session_timeout's entry gave: '$out'"
grep -v '^| `psk`' "$ROOT/README.md" >"$WORK/README-minus.md"
out=$(missing "$WORK/two.txt" "$ROOT/man/tlsgate.ini.5" "$WORK/README-minus.md")
[ "$out" = "README: psk" ] || error "control: a README without psk's row gave: '$out'"
finish
