# shellcheck shell=bash
# tests/browser/lib-browser.sh -- sourced by the real-client scenarios (tests/e2e/2N-*.sh)
# after tests/e2e/lib.sh.
#
# Provides: BROWSER_DIR, ensure_deb CMD PACKAGE, ensure_node_modules, ensure_chromium,
# use_case_config SRC DEST [FROM=TO ...], flip KEY SECTION FILE, config_section FILE SECTION,
# nss_trust_ca DIR, start_node_echo PORT [--proxy-v2] [NAME], run_browser NAME ARGS...,
# run_ws_client NAME ARGS..., assert_file_contains FILE REGEX WHAT.

BROWSER_DIR=$ROOT/tests/browser
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
export CHROMIUM

# ensure_deb CMD PACKAGE -- CMD must exist; if not, and we are root with apt-get, try to
# install Debian PACKAGE (bounded), then skip the scenario if CMD is still missing.
ensure_deb() {
    local cmd=$1 pkg=$2
    if [ -x "$cmd" ] || command -v "$cmd" >/dev/null 2>&1; then return 0; fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "$cmd missing: apt-get install $pkg (make deps should have done this)"
        DEBIAN_FRONTEND=noninteractive timeout 80 apt-get -o DPkg::Lock::Timeout=20 install -y -q \
            --no-install-recommends "$pkg" >"$WORK/apt-$pkg.log" 2>&1 \
            || log "apt-get install $pkg failed: $(tail -n 2 "$WORK/apt-$pkg.log" | tr '\n' ' ')"
    fi
    [ -x "$cmd" ] || command -v "$cmd" >/dev/null 2>&1 || skip "$cmd not available (Debian package $pkg cannot be installed here)"
}

# ensure_node_modules -- tests/browser/node_modules from the committed package-lock.json
# (npm ci when missing or older than the lock file); serialised between scenarios.
ensure_node_modules() {
    require_cmd node npm
    local stamp=$BROWSER_DIR/node_modules/.package-lock.json
    if [ -f "$stamp" ] && [ ! "$BROWSER_DIR/package-lock.json" -nt "$stamp" ] \
       && [ -d "$BROWSER_DIR/node_modules/ws" ] && [ -d "$BROWSER_DIR/node_modules/playwright-core" ]; then
        return 0
    fi
    mkdir -p "$E2E_DIR/.work"
    log "installing tests/browser/node_modules (npm ci)"
    (
        flock -w 120 9 || exit 99
        [ -f "$stamp" ] && [ ! "$BROWSER_DIR/package-lock.json" -nt "$stamp" ] && exit 0
        cd "$BROWSER_DIR" && timeout 100 npm ci --no-audit --no-fund --loglevel=error
    ) 9>"$E2E_DIR/.work/.npm-ci.lock" >"$WORK/npm-ci.log" 2>&1 \
        || fail "npm ci in tests/browser failed: $(tail -n 5 "$WORK/npm-ci.log")"
    [ -d "$BROWSER_DIR/node_modules/playwright-core" ] || fail "npm ci did not install playwright-core"
}

# ensure_chromium -- Debian's chromium, certutil (libnss3-tools) and the npm packages
ensure_chromium() {
    ensure_deb "$CHROMIUM" chromium
    ensure_deb certutil libnss3-tools
    ensure_node_modules
    CHROMIUM_VERSION=$("$CHROMIUM" --version 2>/dev/null | head -n 1)
    log "browser: $CHROMIUM_VERSION; playwright-core $(node -p 'require(process.argv[1]).version' "$BROWSER_DIR/node_modules/playwright-core/package.json")"
}

# use_case_config SRC DEST [FROM=TO ...] -- copy config/SRC to WORK/DEST with every FROM
# replaced by TO (literal strings; used to move the example's fixed ports to free ones),
# and make the example's relative ../certs/ paths work from WORK: they become certs/
# (relative to the copy's directory, WORK), and WORK/certs -> $CERTS.
use_case_config() {
    local src=$ROOT/config/$1 dest=$WORK/$2 pair from to; shift 2
    [ -f "$src" ] || fail "missing example config $src"
    [ -e "$WORK/certs" ] || ln -s "$CERTS" "$WORK/certs"
    sed 's#\([= :]\)\.\./certs/#\1certs/#g' "$src" >"$dest"
    for pair in "$@"; do
        from=${pair%%=*}; to=${pair#*=}
        grep -qF -- "$from" "$dest" || fail "test bug: $from not found in config/$(basename "$src")"
        FROM=$from TO=$to perl -pi -e 's/\Q$ENV{FROM}\E/$ENV{TO}/g' "$dest"
    done
}

# check_shipped_config NAME -- tlsgate -t on config/NAME exactly as shipped, in a copy
# of the tree's layout (WORK/shipped/config/NAME, WORK/shipped/certs -> $CERTS), run
# from another directory: its ../certs/ paths resolve against the config's directory.
check_shipped_config() {
    mkdir -p "$WORK/shipped/config"
    [ -e "$WORK/shipped/certs" ] || ln -s "$CERTS" "$WORK/shipped/certs"
    cp "$ROOT/config/$1" "$WORK/shipped/config/$1"
    check_config "$WORK/shipped/config/$1"
}

# flip KEY SECTION FILE -- in [listener:SECTION] of FILE, set KEY (secure | backend_secure)
# to on and uncomment the keys that go with it (";pfx = ..." lines written commented out in
# the example). Only KEY's own line and those commented lines change.
flip() {
    local key=$1 section=$2 file=$3 keys
    case $key in
        secure) keys='pfx|pfx_password|verify_client|client_ca' ;;
        backend_secure) keys='backend_pfx|backend_pfx_password|backend_ca|backend_sni' ;;
        *) fail "flip: unknown key $key" ;;
    esac
    awk -v sec="[listener:$section]" -v key="$key" -v keys="^;[ \t]*($keys)[ \t]*=" '
        /^[ \t]*\[/ { insec = ($1 == sec) }
        insec && $0 ~ "^[ \t]*" key "[ \t]*=[ \t]*off" { sub(/=[ \t]*off/, "= on"); hits++ }
        insec && $0 ~ keys { sub(/^;[ \t]*/, "") }
        { print }
        END { if (!hits) exit 3 }' "$file" >"$file.tmp" || fail "flip: no \"$key = off\" in [listener:$section] of $file"
    mv "$file.tmp" "$file"
}

# config_section FILE SECTION -- print [global] and [listener:SECTION] of FILE (to run the
# listeners of one example file as separate tlsgate processes)
config_section() {
    awk -v want="[listener:$2]" '
        /^[ \t]*\[/ { keep = ($1 == "[global]" || $1 == want) }
        keep' "$1"
}

# nss_trust_ca DIR -- create DIR/home/.pki/nssdb (the NSS database Chromium on Linux reads
# for local trust anchors: $HOME/.pki/nssdb) trusting $CERTS/ca.pem for TLS servers
nss_trust_ca() {
    local db=$1/home/.pki/nssdb
    mkdir -p "$db"
    certutil -d "sql:$db" -N --empty-password >"$WORK/certutil.log" 2>&1 || fail "certutil -N: $(cat "$WORK/certutil.log")"
    certutil -d "sql:$db" -A -t "C,," -n tlsgate-dev -i "$CERTS/ca.pem" >>"$WORK/certutil.log" 2>&1 \
        || fail "certutil -A: $(cat "$WORK/certutil.log")"
    certutil -d "sql:$db" -L | grep >/dev/null -c 'tlsgate-dev.*C,,' || fail "CA not in $db: $(certutil -d "sql:$db" -L)"
}

# start_node_echo PORT [--proxy-v2] [NAME] -- tests/browser/echo-server.js; PID in BG_PID
start_node_echo() {
    local port=$1 pv2='' name
    [ "${2:-}" = --proxy-v2 ] && { pv2=--proxy-v2; shift; }
    name=${2:-echo-$port}
    bg_start "$name" node "$BROWSER_DIR/echo-server.js" --port "$port" $pv2
    wait_ready "$BG_PID" "$WORK/$name.log" "echo-server on port $port"
}

# run_browser NAME ARGS... -- node drive.js --dir WORK/NAME ARGS (bounded); output in
# WORK/NAME.out (also shown); returns drive.js's status
run_browser() {
    local name=$1 rc; shift
    log "chromium ($name): drive.js $*"
    timeout -k 5 75 node "$BROWSER_DIR/drive.js" --dir "$WORK/$name" --json "$WORK/$name.json" "$@" \
        >"$WORK/$name.out" 2>&1 </dev/null
    rc=$?
    sed 's/^/    | /' "$WORK/$name.out"
    grep -q '^LAUNCH-ERROR' "$WORK/$name.out" && fail "chromium could not be started by playwright-core (see above)"
    return "$rc"
}

# run_ws_client NAME ARGS... -- node ws-client.js ARGS (bounded); output in WORK/NAME.out
run_ws_client() {
    local name=$1 rc; shift
    log "node ws client ($name): ws-client.js $*"
    timeout -k 5 45 node "$BROWSER_DIR/ws-client.js" "$@" >"$WORK/$name.out" 2>&1 </dev/null
    rc=$?
    sed 's/^/    | /' "$WORK/$name.out"
    return "$rc"
}

# assert_file_contains FILE REGEX WHAT [TIMEOUT_S=5] -- poll FILE for grep -E REGEX
assert_file_contains() {
    local file=$1 re=$2 what=$3 t=${4:-5} end
    end=$(( $(now_ms) + t * 1000 ))
    until grep -qaE -- "$re" "$file" 2>/dev/null; do
        if [ "$(now_ms)" -ge "$end" ]; then
            error "$what: no line matching /$re/ in $(basename "$file")"
            tail -n 15 "$file" 2>/dev/null | sed 's/^/    | /'
            return 1
        fi
        sleep 0.05
    done
    log "$what:"; grep -aE -- "$re" "$file" | head -n 3 | sed 's/^/    | /'
}
