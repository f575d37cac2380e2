#!/usr/bin/env bash
# 80-install-paths: an installed tree works wherever tlsgate is started from.
# `make install-files` (what `make install` does after building) into a
# DESTDIR with PREFIX=/usr puts the binary in /usr/bin, the config in
# /etc/tlsgate/tlsgate.ini (SYSCONFDIR) with certs/ beside it, and a systemd
# unit whose ExecStart names both; PREFIX=/usr/local gives /usr/local/etc.
# The installed config, with identities copied into its certs/ and only its
# ports changed, is checked with -t (which prints the resolved absolute
# paths) and run with -c /abs/path from / : HTTPS and DTLS through it, then
# a SIGHUP reload, still from /.  Controls: the same config with -c given
# relative to another directory works too; a config whose relative path
# exists only relative to the current directory (not to the config's) is
# refused, so resolution really is against the config's directory.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/dtls-helpers.sh"
require_cmd openssl curl make

D=$WORK/root
make -s -C "$ROOT" --no-print-directory install-files DESTDIR="$D" PREFIX=/usr INSTALL_BIN="$TLSGATE" \
    >"$WORK/install.log" 2>&1 || fail "make install-files: $(cat "$WORK/install.log")"
for f in usr/bin/tlsgate etc/tlsgate/tlsgate.ini usr/lib/systemd/system/tlsgate.service \
         usr/share/man/man5/tlsgate.ini.5 usr/share/man/man8/tlsgate.8 usr/share/tlsgate/config/wss-front.ini; do
    [ -e "$D/$f" ] || error "not installed: /$f"
done
[ -d "$D/etc/tlsgate/certs" ] || error "no /etc/tlsgate/certs directory"
[ "$(stat -c %a "$D/etc/tlsgate/certs")" = 700 ] || error "/etc/tlsgate/certs is not mode 0700"
UNIT=$D/usr/lib/systemd/system/tlsgate.service
grep -qx 'ExecStart=/usr/bin/tlsgate -c /etc/tlsgate/tlsgate.ini' "$UNIT" \
    || error "unit does not start /usr/bin/tlsgate -c /etc/tlsgate/tlsgate.ini: $(grep Exec "$UNIT")"
grep -qx 'ExecStartPre=/usr/bin/tlsgate -t -c /etc/tlsgate/tlsgate.ini' "$UNIT" || error "unit ExecStartPre"
! grep -q '^WorkingDirectory' "$UNIT" || error "unit should not need a WorkingDirectory"
# a second install under another prefix: sysconfdir follows it
make -s -C "$ROOT" --no-print-directory install-files DESTDIR="$WORK/root2" PREFIX=/usr/local INSTALL_BIN="$TLSGATE" \
    >"$WORK/install2.log" 2>&1 || fail "make install-files PREFIX=/usr/local: $(cat "$WORK/install2.log")"
[ -f "$WORK/root2/usr/local/etc/tlsgate/tlsgate.ini" ] || error "PREFIX=/usr/local: no /usr/local/etc/tlsgate/tlsgate.ini"
grep -qx 'ExecStart=/usr/local/bin/tlsgate -c /usr/local/etc/tlsgate/tlsgate.ini' \
    "$WORK/root2/usr/local/lib/systemd/system/tlsgate.service" || error "PREFIX=/usr/local: unit ExecStart"
# installing again keeps an operator's config
echo "; edited by the operator" >>"$D/etc/tlsgate/tlsgate.ini"
make -s -C "$ROOT" --no-print-directory install-files DESTDIR="$D" PREFIX=/usr INSTALL_BIN="$TLSGATE" >/dev/null 2>&1
grep -q "edited by the operator" "$D/etc/tlsgate/tlsgate.ini" || error "a second install overwrote /etc/tlsgate/tlsgate.ini"

# identities into the installed certs/, ports moved to free ones
cp "$CERTS/server.pfx" "$CERTS/pfx-password" "$CERTS/psk.txt" "$CERTS/ca.pem" "$D/etc/tlsgate/certs/"
chmod 600 "$D/etc/tlsgate/certs/"*
CONF=$D/etc/tlsgate/tlsgate.ini
grep -q '^pfx = certs/server.pfx$' "$CONF" || fail "installed config does not name certs/server.pfx: $(grep pfx "$CONF")"
TPORT=$(free_port); UPORT=$(free_port udp); BPORT=$(free_port)
start_demo_backend "$BPORT"
EPORT=$(free_port udp); start_udp_echo "$EPORT"
sed -i -e "s#^bind = 127.0.0.1:8443#bind = 127.0.0.1:$TPORT#" -e "s#^bind = 127.0.0.1:5684#bind = 127.0.0.1:$UPORT#" \
    -e "s#^workers = auto#workers = 1#" "$CONF"
# the udp listener's backend: the UDP echo (second backend line of the file)
awk -v b="$BPORT" -v e="$EPORT" '/^\[listener:dtls\]/{u=1} /^backend = 127.0.0.1:8080$/{ $0 = "backend = 127.0.0.1:" (u ? e : b) } {print}' \
    "$CONF" >"$CONF.new" && mv "$CONF.new" "$CONF"
grep -q "127.0.0.1:$TPORT" "$CONF" && grep -q "127.0.0.1:$EPORT" "$CONF" || fail "could not move the ports: $(cat "$CONF")"

BIN=$D/usr/bin/tlsgate
# -t from / with an absolute -c: resolved absolute paths are printed
OUT=$(cd / && timeout 20 "$BIN" -t -c "$CONF" 2>&1); RC=$?
[ "$RC" = 0 ] || fail "tlsgate -t -c $CONF from /: $OUT"
grep -qF "relative paths resolve against $D/etc/tlsgate" <<<"$OUT" || error "-t does not name the config directory: $OUT"
grep -qF "[listener:wss] pfx = $D/etc/tlsgate/certs/server.pfx" <<<"$OUT" || error "-t does not print the absolute pfx: $OUT"
grep -qF "[listener:dtls] psk = file:$D/etc/tlsgate/certs/psk.txt" <<<"$OUT" || error "-t does not print the absolute psk file: $OUT"
grep -qF "pfx_password = file:$D/etc/tlsgate/certs/pfx-password" <<<"$OUT" || error "-t does not print the password file: $OUT"
log "-t from /: $(grep -c '^  \[listener' <<<"$OUT") resolved paths printed"
# -c relative to another directory
OUT=$(cd "$D/etc" && timeout 20 "$BIN" -t -c tlsgate/tlsgate.ini 2>&1) || error "tlsgate -t -c tlsgate/tlsgate.ini from /etc: $OUT"
grep -qF "[listener:wss] pfx = $D/etc/tlsgate/certs/server.pfx" <<<"$OUT" || error "relative -c: pfx not resolved against the config dir: $OUT"

# control: a path that exists relative to the cwd but not to the config's directory
mkdir -p "$WORK/elsewhere/certs" "$WORK/cfgdir"
cp "$CERTS/server.pfx" "$CERTS/pfx-password" "$WORK/elsewhere/certs/"
cat >"$WORK/cfgdir/cwd.ini" <<EOT
[listener:a]
bind = 127.0.0.1:$(free_port)
pfx = certs/server.pfx
pfx_password = file:certs/pfx-password
backend = 127.0.0.1:$BPORT
EOT
OUT=$(cd "$WORK/elsewhere" && timeout 20 "$BIN" -t -c "$WORK/cfgdir/cwd.ini" 2>&1); RC=$?
[ "$RC" = 1 ] || error "a path relative to the cwd only was accepted (rc $RC): $OUT"
grep -qF "$WORK/cfgdir/certs/pfx-password" <<<"$OUT" || error "the refusal does not name the resolved path: $OUT"
cp -r "$WORK/elsewhere/certs" "$WORK/cfgdir/"
OUT=$(cd "$WORK/elsewhere" && timeout 20 "$BIN" -t -c "$WORK/cfgdir/cwd.ini" 2>&1) || error "control: certs/ beside the config refused: $OUT"

# run it from /
( cd / && exec "$BIN" -c "$CONF" ) >"$WORK/installed.log" 2>&1 </dev/null &
TLSGATE_PID=$!; TLSGATE_LOG=$WORK/installed.log
track_pid "$TLSGATE_PID" tlsgate
wait_listen "$TPORT" 10 "$TLSGATE_PID" || fail "installed tlsgate did not listen: $(cat "$WORK/installed.log")"
wait_running
[ "$(readlink "/proc/$TLSGATE_PID/cwd")" = / ] || error "tlsgate does not run in /"
body=$(curl -sS --max-time 10 --cacert "$CERTS/ca.pem" "https://localhost:$TPORT/" 2>&1) || error "curl through the installed tlsgate: $body"
log "https from the installed tree: $(head -c 80 <<<"$body")"
"$PY" - "$UPORT" <<'PYEOF' || error "DTLS through the installed tlsgate (PSK from the installed certs/psk.txt)"
import sys
import dtlslib as d
c = d.s_client(int(sys.argv[1]), "-psk", d.psk_key(), "-psk_identity", "client1", "-cipher", "PSK")
got = c.roundtrip(["installed-1", "installed-2"])
c.close()
print("dtls echoes:", got)
sys.exit(0 if len(got) == 2 else 1)
PYEOF
kill -HUP "$TLSGATE_PID"
assert_log_contains "reloaded: generation 2" 10 || error "SIGHUP reload from / failed: $(tail -5 "$TLSGATE_LOG")"
body=$(curl -sS --max-time 10 --cacert "$CERTS/ca.pem" "https://localhost:$TPORT/" 2>&1) || error "curl after reload: $body"
stop_tlsgate
[ "$TLSGATE_RC" = 0 ] || error "tlsgate exited $TLSGATE_RC"
finish
