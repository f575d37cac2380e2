#!/usr/bin/env bash
# 01-config-check: `tlsgate -t` accepts a good config and names file:line and key
# for every kind of bad one; `tlsgate -V` names tlsgate and libuv.
. "$(dirname "$0")/lib.sh"

LPORT=$(free_port)
BPORT=$(free_port)

# base_config: 11 lines; line 5 is the section header, 6 bind, 8 secure, 9 pfx, 10 pfx_password
base_config() {
    cat <<EOF
$(global_section workers=1 log_level=debug)

[listener:web]
bind = 127.0.0.1:$LPORT
transport = tcp
secure = on
$SERVER_PFX
backend = 127.0.0.1:$BPORT
EOF
}

# --- good config --------------------------------------------------------------------
write_config good.ini < <(base_config; printf '; a long comment line that is still well under the limit: %s\n' "$(printf 'x%.0s' $(seq 1 120))")
check_config "$CONFIG"
log "tlsgate -t good.ini -> $CHECK_RC"; printf '%s\n' "$CHECK_OUT" | sed 's/^/    | /'
[ "$CHECK_RC" = 0 ] || fail "tlsgate -t rejected a good config (exit $CHECK_RC): $CHECK_OUT"
grep -q "web" <<<"$CHECK_OUT" || fail "summary of a good config does not name listener 'web'"
grep -q "$LPORT" <<<"$CHECK_OUT" || fail "summary of a good config does not show the bind port $LPORT"

# expect_error NAME LINE-REGEX KEY-REGEX [EXTRA-REGEX] -- tlsgate -t on WORK/NAME must exit 1,
# and one output line must contain "NAME:LINE" and KEY (and EXTRA, case-insensitive)
expect_error() {
    local file=$1 line=$2 key=$3 extra=${4:-}
    check_config "$WORK/$file"
    log "tlsgate -t $file -> exit $CHECK_RC"; printf '%s\n' "$CHECK_OUT" | sed 's/^/    | /'
    [ "$CHECK_RC" = 1 ] || { error "$file: expected exit 1, got $CHECK_RC"; return 1; }
    local hits
    hits=$(grep -E -- "$file:($line)([^0-9]|$)" <<<"$CHECK_OUT" | grep -E -- "$key")
    [ -n "$hits" ] || { error "$file: no error line naming $file:$line and /$key/ in: $CHECK_OUT"; return 1; }
    if [ -n "$extra" ]; then
        grep -qiE -- "$extra" <<<"$hits" || { error "$file: error line does not explain /$extra/: $hits"; return 1; }
    fi
}

# unknown key (line 12)
{ base_config; echo "frobnicate = yes"; } >"$WORK/unknown-key.ini"
expect_error unknown-key.ini 12 frobnicate "unknown"

# unknown section (header line 12, key line 13)
{ base_config; printf '[bogus]\nx = 1\n'; } >"$WORK/unknown-section.ini"
expect_error unknown-section.ini "12|13" bogus "unknown"

# bad boolean (line 8)
base_config | sed 's/^secure = on$/secure = maybe/' >"$WORK/bad-bool.ini"
grep -q "secure = maybe" "$WORK/bad-bool.ini" || fail "test bug: sed"
expect_error bad-bool.ini 8 secure "maybe|on|off|bool"

# bad duration (line 12)
{ base_config; echo "idle_timeout = 5 parsecs"; } >"$WORK/bad-duration.ini"
expect_error bad-duration.ini 12 idle_timeout "duration|parsecs|ms|suffix"

# bad duration in [global] (line 4)
base_config | sed '3a drain_timeout = soon' >"$WORK/bad-global-duration.ini"
expect_error bad-global-duration.ini 4 drain_timeout

# missing bind: the error names the section header line (5)
base_config | sed '/^bind = /d' >"$WORK/missing-bind.ini"
expect_error missing-bind.ini 5 bind "missing|required"

# a line longer than 200 characters (line 12)
{ base_config; printf 'backend_sni = %s\n' "$(printf 'a%.0s' $(seq 1 250))"; } >"$WORK/long-line.ini"
expect_error long-line.ini 12 "." "long|length|200"

# wrong pfx password (pfx_password is line 10, pfx line 9); the secret must not be echoed
base_config | sed 's|^pfx_password = .*|pfx_password = pass:s3cr3t-Wr0ng|' >"$WORK/wrong-password.ini"
expect_error wrong-password.ini "9|10" "pfx" "password|decrypt|mac"
grep -q "s3cr3t-Wr0ng" <<<"$CHECK_OUT" && error "the wrong password itself appears in the error output"

# missing pfx file (line 9)
base_config | sed "s|^pfx = .*|pfx = $WORK/does-not-exist.pfx|" >"$WORK/missing-pfx.ini"
expect_error missing-pfx.ini 9 "does-not-exist.pfx" "no such file|not found|cannot open|exist"

# several errors in one file are all reported
{ base_config | sed 's/^secure = on$/secure = maybe/'; echo "frobnicate = yes"; } >"$WORK/two-errors.ini"
expect_error two-errors.ini 8 secure
expect_error two-errors.ini 12 frobnicate

# --- -V --------------------------------------------------------------------------------
V=$(timeout 10 "$TLSGATE" -V 2>&1); rc=$?
log "tlsgate -V -> $rc"; printf '%s\n' "$V" | sed 's/^/    | /'
[ "$rc" = 0 ] || fail "tlsgate -V exited $rc"
grep -qi "tlsgate" <<<"$V" || fail "tlsgate -V does not name tlsgate"
grep -qi "libuv" <<<"$V" || fail "tlsgate -V does not name libuv"
grep -qiE "boringssl|openssl" <<<"$V" || fail "tlsgate -V does not name the TLS library"

finish
