# shellcheck shell=bash
# tests/e2e/pkcs11-helpers.sh -- sourced (after lib.sh) by the PKCS#11 scenarios 9x-*.sh.
#
# Provides: TG_LIB (OpenSSL | BoringSSL), SOFTHSM (the SoftHSM2 module), make_token
# (the dev keys on a fresh SoftHSM2 token under WORK/token via tools/mkcerts-token,
# SOFTHSM2_CONF exported, PIN file in PINFILE), build_shim (tests/pkcs11-shim/shim.c
# -> SHIM, a module forwarding to SoftHSM2 that can be slow, count logins and
# pretend the token was removed; see the source), shim_logins (C_Login calls logged).

require_cmd softhsm2-util pkcs11-tool openssl curl cc
TG_LIB=$("$TLSGATE" -V | awk -F': ' '/^TLS library/ { split($2, a, " "); print a[1] }')
SOFTHSM=${SOFTHSM:-/usr/lib/softhsm/libsofthsm2.so}
[ -f "$SOFTHSM" ] || skip "no SoftHSM2 module at $SOFTHSM (apt-get install softhsm2)"
TOKEN_URI="pkcs11:token=tlsgate-dev"

make_token() {
    "$ROOT/tools/mkcerts-token" "$CERTS" "$WORK/token" >"$WORK/mkcerts-token.log" 2>&1 \
        || fail "tools/mkcerts-token failed: $(cat "$WORK/mkcerts-token.log")"
    export SOFTHSM2_CONF=$WORK/token/softhsm2.conf
    PINFILE=$WORK/token/pin
    log "SoftHSM2 token tlsgate-dev with server, server-rsa and client keys (SOFTHSM2_CONF=$SOFTHSM2_CONF)"
}

build_shim() {
    SHIM=$WORK/shim.so
    cc -O1 -shared -fPIC -I/usr/include/p11-kit-1 -o "$SHIM" "$ROOT/tests/pkcs11-shim/shim.c" \
        >"$WORK/shim-build.log" 2>&1 || fail "cannot build the PKCS#11 shim: $(cat "$WORK/shim-build.log")"
    export TG_SHIM_TARGET=$SOFTHSM TG_SHIM_LOG=$WORK/shim.log
    [ "$TG_LIB" = BoringSSL ] && export TG_SHIM_DEEPBIND=1
    : >"$TG_SHIM_LOG"
}

shim_logins() { grep -c '^login' "$TG_SHIM_LOG" 2>/dev/null || true; }

_libs=$(ldd "$TLSGATE" 2>/dev/null)
if [ "$TG_LIB" = BoringSSL ] && [[ $_libs == *libasan* || $_libs == *libtsan* ]]; then
    skip "BoringSSL with a sanitizer cannot host PKCS#11 modules (they link the system OpenSSL; tlsgate refuses them in this build)"
fi
