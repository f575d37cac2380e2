#!/usr/bin/env bash
# 82-secrets: how tlsgate handles secret files (issue 10 item 15).
# - Over-long secrets are refused, not cut: a PFX made with a 600-character
#   password given as file: is refused with "longer than 511 bytes" (the old
#   reader silently used the first 511 and reported a wrong password); the
#   control, a 511-character password, loads.  A password file with a second
#   line is refused too.
# - Loose modes warn (password, PSK, ticket-key files; a config holding
#   pass:): 0640 and 0644 files draw "readable by its group / everyone" in
#   -t and in the run log, naming the file; 0600 ones do not.  No warning or
#   error ever shows a secret.
# - No copy left behind: a free() wrapper (LD_PRELOAD) reports every buffer
#   given back to the allocator that still holds the secret, through -t and
#   a run with a reload: none for a file: password (stdio's buffer used to
#   keep one) nor for a pass: secret (the config text and the config's value
#   used to be freed unwiped: 2 buffers on the old code).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/dtls-helpers.sh"
require_cmd openssl

BPORT=$(free_port)
start_echo "$BPORT"
rnd=$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
mkpw() {  # mkpw LEN -> a distinctive password of LEN characters
    local p="Pw-$rnd-"
    while [ ${#p} -lt "$1" ]; do p="${p}x$rnd"; done
    printf '%s' "${p:0:$1}"
}
mkpfx() {  # mkpfx OUT PASSWORD
    openssl pkcs12 -export -in "$CERTS/server.pem" -inkey "$CERTS/server.key" -certfile "$CERTS/ca.pem" \
        -passout "file:$WORK/pfxpw.tmp" -out "$1" 2>"$WORK/openssl.err" <<<"" || fail "pkcs12: $(cat "$WORK/openssl.err")"
}
umask 077
listener() {  # listener NAME PFX PWSPEC [EXTRA]
    printf '[global]\nworkers = 1\n\n[listener:%s]\nbind = 127.0.0.1:%s\npfx = %s\npfx_password = %s\nbackend = 127.0.0.1:%s\n%s\n' \
        "$1" "$(free_port)" "$2" "$3" "$BPORT" "${4:-}"
}

# --- over-long: 600 characters refused, 511 accepted -------------------------------------
PW600=$(mkpw 600); PW511=$(mkpw 511)
printf '%s\n' "$PW600" >"$WORK/pfxpw.tmp"; mkpfx "$WORK/long.pfx"
printf '%s\n' "$PW511" >"$WORK/pfxpw.tmp"; mkpfx "$WORK/max.pfx"
rm -f "$WORK/pfxpw.tmp"
printf '%s\n' "$PW600" >"$WORK/pw600"; printf '%s\n' "$PW511" >"$WORK/pw511"
write_config long.ini < <(listener long "$WORK/long.pfx" "file:$WORK/pw600")
check_config "$CONFIG"
[ "$CHECK_RC" = 1 ] || error "a 600-character password file was accepted: $CHECK_OUT"
grep -qE "long.ini:6: \[listener:long\] pfx: .*pw600: the secret is longer than 511 bytes" <<<"$CHECK_OUT" \
    || error "no clear 'longer than 511 bytes' refusal: $CHECK_OUT"
grep -qi "wrong password" <<<"$CHECK_OUT" && error "the long password was cut and tried: $CHECK_OUT"
write_config max.ini < <(listener max "$WORK/max.pfx" "file:$WORK/pw511")
check_config "$CONFIG"
[ "$CHECK_RC" = 0 ] || error "control: a 511-character password file was refused: $CHECK_OUT"
# a second line is refused, not dropped
printf '%s\nsecond line\n' "$(mkpw 40)" >"$WORK/pw2lines"
write_config twolines.ini < <(listener twolines "$WORK/max.pfx" "file:$WORK/pw2lines")
check_config "$CONFIG"
[ "$CHECK_RC" = 1 ] && grep -q "pw2lines: holds more than one line" <<<"$CHECK_OUT" \
    || error "a two-line password file: $CHECK_OUT"
grep -qF "$PW511" <<<"$CHECK_OUT" && error "a secret appears in -t output"

# --- loose modes --------------------------------------------------------------------------
cp "$CERTS/psk.txt" "$WORK/psk.txt"
openssl rand 80 >"$WORK/tickets.key"
cp "$CERTS/pfx-password" "$WORK/pfx-password"
mode_case() {  # mode_case NAME MODE WANT_REGEX(or -) CONFIG-MAKER...
    local name=$1 mode=$2 want=$3; shift 3
    chmod "$mode" "$WORK/psk.txt" "$WORK/tickets.key" "$WORK/pfx-password"
    write_config "mode-$name.ini" < <("$@")
    chmod "$mode" "$CONFIG"
    check_config "$CONFIG"
    [ "$CHECK_RC" = 0 ] || { error "$name: -t failed: $CHECK_OUT"; return; }
    if [ "$want" = - ]; then
        grep -qiE "readable by|accessible by" <<<"$CHECK_OUT" && error "$name ($mode): a warning for private files: $CHECK_OUT"
    else
        grep -qE -- "$want" <<<"$CHECK_OUT" || error "$name ($mode): no warning /$want/ in: $CHECK_OUT"
    fi
    log "$name $mode: $(grep -ciE 'readable by|accessible by' <<<"$CHECK_OUT") warning(s)"
}
tcp_conf() {
    listener tcp "$CERTS/server.pfx" "file:$WORK/pfx-password" "ticket_key_file = $WORK/tickets.key"
}
udp_conf() {
    printf '[global]\nworkers = 1\n\n[listener:udp]\nbind = 127.0.0.1:%s\ntransport = udp\npsk = file:%s/psk.txt\nbackend = 127.0.0.1:%s\n' \
        "$(free_port udp)" "$WORK" "$BPORT"
}
pass_conf() {
    listener pass "$CERTS/server.pfx" "pass:$(cat "$CERTS/pfx-password")"
}
mode_case tcp-private 600 - tcp_conf
mode_case tcp-group 640 "$WORK/pfx-password holds a secret and is readable by its group \(mode 0640\)" tcp_conf
mode_case tcp-world 644 "$WORK/tickets.key holds session-ticket keys and is readable by everyone \(mode 0644\)" tcp_conf
mode_case udp-private 600 - udp_conf
mode_case udp-group 640 "$WORK/psk.txt holds pre-shared keys and is readable by its group" udp_conf
mode_case pass-private 600 - pass_conf
mode_case pass-world 644 "mode-pass-world.ini:7: \[listener:pass\] pfx_password: .*mode-pass-world.ini holds a pass: secret and is readable by everyone" pass_conf
# and in the log of a running tlsgate, at start
chmod 640 "$WORK/psk.txt"
write_config run-udp.ini < <(udp_conf)
start_tlsgate "$CONFIG"
wait_running
assert_log_contains "$WORK/psk.txt holds pre-shared keys and is readable by its group" || error "no warning in the run log"
stop_tlsgate

# --- no copy left behind ------------------------------------------------------------------
# A free() wrapper (LD_PRELOAD, built here) reports every buffer handed back to
# the allocator that still holds the secret. Skipped for sanitizer builds, whose
# runtime must come first.
if ldd "$TLSGATE" | grep >/dev/null -cE 'lib(a|ub|t)san'; then
    log "sanitizer build: the free() check is skipped"
    finish
    exit 0
fi
require_cmd cc
cat >"$WORK/freecheck.c" <<'CEOF'
#define _GNU_SOURCE
#include <fcntl.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
extern void __libc_free(void *);
static const char *needle;
static size_t nlen;
static int ready;
void free(void *p) {
  if (p) {
    if (!ready) {
      needle = getenv("TG_FREE_NEEDLE");
      nlen = needle ? strlen(needle) : 0;
      ready = 1;
    }
    if (nlen && memmem(p, malloc_usable_size(p), needle, nlen)) {
      const char *r = getenv("TG_FREE_REPORT");
      int fd = r ? open(r, O_WRONLY | O_APPEND | O_CREAT, 0600) : -1;
      if (fd >= 0) {
        (void)!write(fd, "freed a buffer holding the secret\n", 34);
        close(fd);
      }
    }
  }
  __libc_free(p);
}
CEOF
cc -shared -fPIC -O1 -o "$WORK/freecheck.so" "$WORK/freecheck.c" 2>"$WORK/cc.err" || fail "cc freecheck.so: $(cat "$WORK/cc.err")"
# freed_copies NEEDLE CONFIG -- FREED = copies freed unwiped by tlsgate -t, then by a run with a reload
freed_copies() {
    rm -f "$WORK/freed.txt"
    TG_FREE_NEEDLE=$1 TG_FREE_REPORT=$WORK/freed.txt LD_PRELOAD=$WORK/freecheck.so \
        timeout 20 "$TLSGATE" -t -c "$2" >/dev/null 2>&1 || { error "-t $2 under the free() check failed"; }
    TG_FREE_NEEDLE=$1 TG_FREE_REPORT=$WORK/freed.txt LD_PRELOAD=$WORK/freecheck.so "$TLSGATE" -c "$2" \
        >"$WORK/freecheck.log" 2>&1 </dev/null &
    local pid=$!
    track_pid "$pid" tlsgate-freecheck
    TLSGATE_LOG=$WORK/freecheck.log TLSGATE_PID=$pid
    wait_running
    kill -HUP "$pid"
    assert_log_contains "reloaded: generation 2" 10 || error "reload under the free() check"
    stop_pid "$pid" 10
    FREED=0
    [ -f "$WORK/freed.txt" ] && FREED=$(wc -l <"$WORK/freed.txt")
}
write_config mem.ini < <(listener mem "$WORK/max.pfx" "file:$WORK/pw511")
freed_copies "${PW511:0:40}" "$CONFIG"; n=$FREED
log "file: password: $n buffer(s) freed still holding it"
[ "$n" = 0 ] || error "file: password: $n freed buffer(s) still held it (not wiped)"
PASSPW=$(mkpw 40)
printf '%s' "$PASSPW" >"$WORK/pfxpw.tmp"; mkpfx "$WORK/pass.pfx"; rm -f "$WORK/pfxpw.tmp"
write_config memctl.ini < <(listener memctl "$WORK/pass.pfx" "pass:$PASSPW")
freed_copies "$PASSPW" "$CONFIG"; n=$FREED
log "pass: secret (config text and value): $n buffer(s) freed still holding it"
[ "$n" = 0 ] || error "pass: secret: $n freed buffer(s) still held it (config text or value not wiped)"
grep -qF "$PASSPW" "$WORK/freecheck.log" && error "the pass: secret is in the log"
finish
