# shellcheck shell=bash
# tests/e2e/lib.sh -- sourced by every black-box scenario (tests/e2e/NN-name.sh).
#
# Provides: WORK (per-scenario work dir, also the cwd), TLSGATE, CERTS, PY,
# free_port, wait_port, wait_listen, wait_udp, wait_not_listening,
# start_tlsgate, stop_tlsgate, check_config, wait_exit, stop_pid, bg_start, wait_ready,
# global_section and SERVER_PFX (config pieces), ca_config, start_capture,
# start_demo_backend, start_echo, start_py_server, write_config, write_py,
# fail (stop now), error + finish (record, go on, fail at the end), skip, log,
# assert_log_contains, assert_log_not_contains, log_mark/log_since,
# require_cmd; Python helpers live in tests/e2e/py (on PYTHONPATH: import e2elib).
# Exit codes: 0 pass, 77 skip, anything else fail. Cleanup kills only the
# PIDs recorded here (TERM, then KILL after a bounded wait).

set -u
set -o pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$E2E_DIR/../.." && pwd)
NAME=${E2E_NAME:-$(basename "$0" .sh)}
PY=/usr/bin/python3
TLSGATE=${TLSGATE:-$ROOT/build/tlsgate}
case $TLSGATE in /*) ;; *) TLSGATE=$ROOT/$TLSGATE ;; esac
CERTS=${CERTS:-$ROOT/certs}
mkdir -p "$CERTS" && CERTS=$(cd "$CERTS" && pwd)
WORK=${E2E_WORKDIR:-$E2E_DIR/.work}/$NAME
rm -rf "$WORK"
mkdir -p "$WORK"
cd "$WORK" || exit 1
# Python helpers: tests/e2e/py (import e2elib, dtlslib, http_helpers), then what
# a scenario writes into WORK with write_py
export TLSGATE CERTS WORK PYTHONPATH=$E2E_DIR/py:$WORK PYTHONDONTWRITEBYTECODE=1

_T0=${EPOCHREALTIME//[!0-9]/}
now_ms() { local t=${EPOCHREALTIME//[!0-9]/}; echo $((t / 1000)); }
# The polling loops below run in every waiting scenario, many at once: they
# fork nothing per round. _deadline T sets _END (ms); _past_deadline tests it;
# nap SECONDS sleeps without a process (a read that times out on an empty pipe;
# bg_start and start_tlsgate do not pass that pipe on).
_deadline() { local t=${EPOCHREALTIME//[!0-9]/}; _END=$(( t / 1000 + ${1%.*} * 1000 )); }
_past_deadline() { local t=${EPOCHREALTIME//[!0-9]/}; [ $(( t / 1000 )) -ge "$_END" ]; }
exec {_NAP_FD}<> <(:)
nap() { read -r -t "$1" -u "$_NAP_FD" _ 2>/dev/null; return 0; }
log() { local t=${EPOCHREALTIME//[!0-9]/}; printf '[%s %6.2fs] %s\n' "$NAME" "$(( (t - _T0) / 10000 ))e-2" "$*"; }

_PIDS=()
_TLSGATE_PIDS=()
declare -A _REAPED=()
declare -A _PIDNAME=()
_TG_N=0
TLSGATE_PID=
TLSGATE_LOG=
TLSGATE_RC=
BG_PID=

fail() {
    echo "FAIL [$NAME]: $*" >&2
    if [ -n "$TLSGATE_LOG" ] && [ -f "$TLSGATE_LOG" ]; then
        echo "--- last 40 lines of $TLSGATE_LOG" >&2
        tail -n 40 "$TLSGATE_LOG" >&2
        echo "---" >&2
    fi
    exit 1
}
skip() { echo "SKIP [$NAME]: $*"; exit 77; }
# error MSG -- record a failed check and go on (independent cases); finish fails if any
ERRORS=0
error() {
    ERRORS=$((ERRORS + 1))
    echo "ERROR [$NAME]: $*" >&2
}
finish() {
    [ "$ERRORS" = 0 ] || fail "$ERRORS check(s) failed (see ERROR lines above)"
    log "ok"
}
require_cmd() {
    local c
    for c in "$@"; do command -v "$c" >/dev/null 2>&1 || skip "$c not installed"; done
}

[ -x "$TLSGATE" ] || fail "tlsgate binary not found at $TLSGATE (build it with make)"
if [ ! -f "$CERTS/.done" ]; then
    "$ROOT/tools/mkcerts" "$CERTS" >/dev/null || fail "tools/mkcerts $CERTS failed"
fi

# ---- processes ------------------------------------------------------------------
track_pid() { _PIDS+=("$1"); _PIDNAME[$1]=${2:-pid}; }

# _running PID -- the process exists and is neither a zombie nor dead (no fork:
# /proc/PID/stat is "PID (comm) STATE ...")
_running() {
    local line st
    { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
    st=${line##*) }; st=${st%% *}
    case $st in Z|X|"") return 1 ;; *) return 0 ;; esac
}
is_alive() { [ -z "${_REAPED[$1]:-}" ] && _running "$1"; }

# wait_exit PID [TIMEOUT_S=10] -> 0 when exited (exit status in WAIT_RC), 1 on timeout
wait_exit() {
    local pid=$1 t=${2:-10} _END
    _deadline "$t"
    if [ -n "${_REAPED[$pid]:-}" ]; then WAIT_RC=${_REAPED[$pid]}; return 0; fi
    while _running "$pid"; do
        _past_deadline && return 1
        nap 0.05
    done
    wait "$pid" 2>/dev/null
    WAIT_RC=$?
    _REAPED[$pid]=$WAIT_RC
    return 0
}

# bg_start NAME CMD... -- run CMD in the background, output in WORK/NAME.log; PID in BG_PID
bg_start() {
    local name=$1; shift
    "$@" >"$WORK/$name.log" 2>&1 </dev/null {_NAP_FD}>&- &
    BG_PID=$!
    track_pid "$BG_PID" "$name"
}

# stop_pid PID [TIMEOUT_S=5] -- TERM, bounded wait, KILL; exit status in WAIT_RC
stop_pid() {
    local pid=$1 t=${2:-5}
    [ -n "${_REAPED[$pid]:-}" ] && { WAIT_RC=${_REAPED[$pid]}; return 0; }
    kill -TERM "$pid" 2>/dev/null
    wait_exit "$pid" "$t" && return 0
    log "pid $pid (${_PIDNAME[$pid]:-?}) ignored SIGTERM for ${t}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null
    wait_exit "$pid" 5
    return 1
}

_cleanup() {
    local rc=$? pid _END
    trap - EXIT TERM INT
    set +e
    for pid in "${_PIDS[@]}"; do
        is_alive "$pid" && kill -TERM "$pid" 2>/dev/null
    done
    _deadline 5
    for pid in "${_PIDS[@]}"; do
        while is_alive "$pid" && ! _past_deadline; do nap 0.05; done
        if is_alive "$pid"; then
            echo "cleanup: pid $pid (${_PIDNAME[$pid]:-?}) still alive after SIGTERM, sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null
        fi
    done
    for pid in "${_PIDS[@]}"; do
        [ -n "${_REAPED[$pid]:-}" ] && continue
        wait_exit "$pid" 5 || continue
    done
    # a crashed tlsgate fails the scenario even if the checks passed
    for pid in "${_TLSGATE_PIDS[@]}"; do
        case ${_REAPED[$pid]:-0} in
            132|134|135|136|139)
                echo "FAIL [$NAME]: tlsgate pid $pid died with signal $(( ${_REAPED[$pid]} - 128 )) (crash)" >&2
                [ "$rc" = 0 ] && rc=1 ;;
        esac
    done
    local f
    for f in "$WORK"/tlsgate*.log; do
        [ -f "$f" ] || continue
        if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:|ThreadSanitizer' "$f"; then
            echo "FAIL [$NAME]: sanitizer report in $f:" >&2
            grep -E -A15 'AddressSanitizer|LeakSanitizer|runtime error:|ThreadSanitizer' "$f" | head -40 >&2
            [ "$rc" = 0 ] && rc=1
        fi
    done
    exit "$rc"
}
trap _cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# ---- ports ----------------------------------------------------------------------
# free_port [tcp|udp] -- a port on 127.0.0.1 that is free now and that no
# other scenario of this run was given.  Scenarios run in parallel and call
# this in $(subshells), and two suites may run at once (both builds), so the
# ports handed out are recorded in one file per user (under flock) for half
# an hour.  Ports come from 20000-32767, below Linux's
# ephemeral range, so the clients' own outgoing connections cannot take a
# port between the moment it is chosen and the moment it is bound.
_PORTS_FILE=${E2E_PORTS_FILE:-${TMPDIR:-/tmp}/tlsgate-e2e-ports-$(id -u)}
free_port() {
    local now=$EPOCHSECONDS fd p n keep used
    # (shell, awk and ss: a Python start-up per port cost more CPU than most scenarios)
    exec {fd}>>"$_PORTS_FILE" || fail "free_port: cannot open $_PORTS_FILE"
    flock "$fd" || fail "free_port: cannot lock $_PORTS_FILE"
    keep=$(awk -v now="$now" 'NF == 2 && $1 ~ /^[0-9]+$/ && now - $2 < 1800' "$_PORTS_FILE")
    used=" $(awk '{ printf "%s ", $1 }' <<<"$keep")"
    for ((n = 0; n < 500; n++)); do
        p=$(( 20000 + ((RANDOM << 15 | RANDOM) % 12768) ))
        [[ $used == *" $p "* ]] && continue
        # no TCP or UDP socket of any state (TIME_WAIT included) has it as its local port
        [ -z "$(ss -Htuan "( sport = :$p )" 2>/dev/null)" ] || continue
        { [ -n "$keep" ] && printf '%s\n' "$keep"; printf '%s %s\n' "$p" "$now"; } >"$_PORTS_FILE"
        exec {fd}>&-
        echo "$p"
        return 0
    done
    exec {fd}>&-
    fail "free_port: no free port found"
}

# wait_port HOST PORT [TIMEOUT_S=10] [PID] -- until a TCP connect succeeds (bounded);
# returns 1 on timeout, 2 if PID died meanwhile
wait_port() {
    local host=$1 port=$2 t=${3:-10} pid=${4:-} _END
    _deadline "$t"
    while :; do
        if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then return 0; fi
        if [ -n "$pid" ] && ! is_alive "$pid"; then return 2; fi
        _past_deadline && return 1
        nap 0.05
    done
}

# _listening tcp|udp PORT -- a socket in LISTEN (tcp) / bound (udp) state on PORT
# (ss asks the kernel for that port only: /proc/net/tcp lists every socket of the
# machine, thousands on a busy one, and this runs every 50 ms while waiting)
_listening() {
    local opt=-Hltn
    [ "$1" = udp ] && opt=-Hlun
    [ -n "$(ss "$opt" "( sport = :$2 )" 2>/dev/null)" ]
}

# wait_listen PORT [TIMEOUT_S=10] [PID] / wait_udp PORT [TIMEOUT_S] [PID]:
# wait for a listening socket without connecting to it (no noise in logs)
wait_listen() { _wait_sock tcp "$@"; }
wait_udp() { _wait_sock udp "$@"; }
_wait_sock() {
    local kind=$1 port=$2 t=${3:-10} pid=${4:-} _END
    _deadline "$t"
    while ! _listening "$kind" "$port"; do
        if [ -n "$pid" ] && ! is_alive "$pid"; then return 2; fi
        _past_deadline && return 1
        nap 0.05
    done
}

# wait_refused PORT [TIMEOUT_S=5] -- until nothing listens on PORT any more
wait_not_listening() {
    local port=$1 t=${2:-5} _END
    _deadline "$t"
    while _listening tcp "$port"; do
        _past_deadline && return 1
        nap 0.05
    done
}

# ---- configs and tlsgate ----------------------------------------------------------
# write_config FILE <<EOF ... EOF  -- writes WORK/FILE, sets CONFIG to its path
write_config() {
    CONFIG=$WORK/$1
    cat >"$CONFIG"
}

# Config pieces for write_config heredocs:
#   $(global_section workers=1 log_level=debug [KEY=VALUE...]) -- a [global] section
#   $SERVER_PFX -- the server certificate lines (certs/server.pfx, its password file)
global_section() {
    local kv
    echo "[global]"
    for kv in "$@"; do echo "${kv%%=*} = ${kv#*=}"; done
}
SERVER_PFX="pfx = $CERTS/server.pfx
pfx_password = file:$CERTS/pfx-password"

# ca_config SERIAL [LEAF_LINE...] -- WORK/ca.cnf: `openssl ca -config` over the dev CA
# (certs/ca.pem) for certificates and CRLs a scenario makes (database in WORK/ca/,
# first serial SERIAL); its [ leaf ] extensions are a client certificate's, plus LEAF_LINEs
ca_config() {
    local serial=$1; shift
    mkdir -p "$WORK/ca/newcerts"; : >"$WORK/ca/index.txt"
    echo 01 >"$WORK/ca/crlnumber"; echo "$serial" >"$WORK/ca/serial"
    cat >"$WORK/ca.cnf" <<EOF
[ ca ]
default_ca = d
[ d ]
dir = $WORK/ca
database = $WORK/ca/index.txt
new_certs_dir = $WORK/ca/newcerts
crlnumber = $WORK/ca/crlnumber
serial = $WORK/ca/serial
certificate = $CERTS/ca.pem
private_key = $CERTS/ca.key
default_md = sha256
default_crl_days = 30
policy = p
copy_extensions = none
unique_subject = no
[ p ]
commonName = supplied
[ leaf ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
EOF
    [ $# = 0 ] || printf '%s\n' "$@" >>"$WORK/ca.cnf"
}

# write_py NAME <<'EOF' ... EOF -- writes WORK/NAME.py (for background Python clients)
write_py() { cat >"$WORK/$1.py"; }

# _config_tcp_ports FILE -- ports of bind= lines in sections whose transport is not udp
_config_tcp_ports() {
    awk '
        function flush() { if (port != "" && transport != "udp") print port; port = ""; transport = "tcp" }
        /^[ \t]*\[/ { flush(); next }
        /^[ \t]*bind[ \t]*=/ { v = $0; sub(/[;#].*$/, "", v); sub(/^[^=]*=[ \t]*/, "", v); gsub(/[ \t]/, "", v)
                               n = split(v, a, ":"); port = a[n]; next }
        /^[ \t]*transport[ \t]*=/ { v = $0; sub(/[;#].*$/, "", v); sub(/^[^=]*=[ \t]*/, "", v); gsub(/[ \t]/, "", v); transport = v }
        END { flush() }' "$1"
}

# start_tlsgate CONFIG [PORT...] -- run "$TLSGATE" -c CONFIG in the background
# (log in WORK/tlsgate.log, then tlsgate.2.log, ...), set TLSGATE_PID/TLSGATE_LOG,
# wait until every PORT (default: every tcp bind port in CONFIG) is listening.
start_tlsgate() {
    local conf=$1 p rc; shift
    [ -f "$conf" ] || conf=$WORK/$conf
    [ -f "$conf" ] || fail "start_tlsgate: no config $1"
    _TG_N=$((_TG_N + 1))
    if [ "$_TG_N" = 1 ]; then TLSGATE_LOG=$WORK/tlsgate.log; else TLSGATE_LOG=$WORK/tlsgate.$_TG_N.log; fi
    "$TLSGATE" -c "$conf" >"$TLSGATE_LOG" 2>&1 </dev/null {_NAP_FD}>&- &
    TLSGATE_PID=$!
    track_pid "$TLSGATE_PID" tlsgate
    _TLSGATE_PIDS+=("$TLSGATE_PID")
    log "started tlsgate pid $TLSGATE_PID -c $conf (log $TLSGATE_LOG)"
    local ports=("$@")
    [ "${#ports[@]}" = 0 ] && mapfile -t ports < <(_config_tcp_ports "$conf")
    for p in "${ports[@]}"; do
        wait_listen "$p" 10 "$TLSGATE_PID"; rc=$?
        case $rc in
            0) ;;
            2) wait_exit "$TLSGATE_PID" 2; fail "tlsgate exited (status ${WAIT_RC:-?}) before listening on port $p" ;;
            *) fail "tlsgate did not listen on port $p within 10s" ;;
        esac
    done
}

# stop_tlsgate [TIMEOUT_S=10] -- SIGTERM the current tlsgate, wait; TLSGATE_RC = exit status
stop_tlsgate() {
    local t=${1:-10}
    [ -n "$TLSGATE_PID" ] || return 0
    stop_pid "$TLSGATE_PID" "$t"
    TLSGATE_RC=$WAIT_RC
    log "tlsgate pid $TLSGATE_PID exited with status $TLSGATE_RC"
}

# check_config FILE -- run tlsgate -t -c FILE; output in CHECK_OUT, status in CHECK_RC
# shellcheck disable=SC2034  # CHECK_OUT, CHECK_RC are read by the scenarios
check_config() {
    CHECK_OUT=$(timeout 20 "$TLSGATE" -t -c "$1" 2>&1 </dev/null)
    CHECK_RC=$?
}

# ---- logs ------------------------------------------------------------------------------
# log_mark -- remember the current size of TLSGATE_LOG; log_since prints what came after
log_mark() { LOG_MARK=$(stat -c %s "$TLSGATE_LOG" 2>/dev/null || echo 0); }
log_since() { tail -c +"$(( ${LOG_MARK:-0} + 1 ))" "$TLSGATE_LOG" 2>/dev/null; }

# assert_log_contains REGEX [TIMEOUT_S=5] [--since-mark] -- grep -E (case-insensitive) in
# TLSGATE_LOG, polling (log lines may lag); prints the first matching lines
assert_log_contains() {
    local re=$1 t=${2:-5} since=${3:-} _END out
    _deadline "$t"
    while :; do
        if [ "$since" = --since-mark ]; then out=$(log_since | grep -aiE -- "$re")
        else out=$(grep -aiE -- "$re" "$TLSGATE_LOG"); fi
        if [ -n "$out" ]; then
            log "log matches /$re/:"; printf '%s\n' "$out" | head -n 5 | sed 's/^/    | /'
            return 0
        fi
        _past_deadline && fail "tlsgate log ($TLSGATE_LOG) has no line matching /$re/"
        nap 0.05
    done
}
assert_log_not_contains() {
    local out
    out=$(grep -aiE -- "$1" "$TLSGATE_LOG")
    [ -z "$out" ] || fail "tlsgate log has unexpected lines matching /$1/: $(printf '%s' "$out" | head -n 3)"
}

# ---- backends ----------------------------------------------------------------------------
# wait_ready PID LOGFILE WHAT [REGEX=^listening] [TIMEOUT_S=10] -- until LOGFILE has a
# line matching REGEX (for servers that cannot be probed without noise: UDP, or
# ready only after their start-up line); fails when PID dies or time runs out
wait_ready() {
    local pid=$1 file=$2 what=$3 re=${4:-^listening} t=${5:-10} _END
    _deadline "$t"
    until grep -q -- "$re" "$file" 2>/dev/null; do
        if ! is_alive "$pid"; then
            wait_exit "$pid" 2
            fail "$what exited (status ${WAIT_RC:-?}) before it was ready: $(tail -n 5 "$file" 2>/dev/null)"
        fi
        _past_deadline && fail "$what not ready within ${t}s"
        nap 0.05
    done
}

# start_demo_backend PORT [NAME] -- tools/demo-backend.py (HTTP + WebSocket echo); PID in BG_PID
start_demo_backend() {
    local port=$1 name=${2:-backend-$1}
    bg_start "$name" "$PY" "$ROOT/tools/demo-backend.py" --port "$port"
    wait_ready "$BG_PID" "$WORK/$name.log" "demo backend on port $port"
}

# start_echo PORT [NAME] -- socat TCP echo server (fork, EXEC:cat); PID in BG_PID
start_echo() {
    local port=$1 name=${2:-echo-$1}
    require_cmd socat
    bg_start "$name" socat -t 10 "TCP-LISTEN:$port,bind=127.0.0.1,fork,reuseaddr" EXEC:cat
    local pid=$BG_PID
    wait_listen "$port" 10 "$pid" || fail "socat echo on port $port did not start: $(cat "$WORK/$name.log")"
    BG_PID=$pid
}

# start_py_server KIND PORT [ARGS...] -- e2elib servers: echo | flood COUNTERFILE [SECONDS] [LIMIT]
# | sink (reads, discards) | stall (accepts, never reads); PID in BG_PID
start_py_server() {
    local kind=$1 port=$2; shift 2
    bg_start "$kind-$port" "$PY" "$E2E_DIR/py/e2elib.py" "$kind" "$port" "$@"
    local pid=$BG_PID
    wait_listen "$port" 10 "$pid" || fail "python $kind server on port $port did not start: $(cat "$WORK/$kind-$port.log")"
    BG_PID=$pid
}

# start_capture PORT DIR -- py/capture.py: a backend that saves what each connection
# sent up to "END" into DIR/connN.bin and answers "ok"; PID in BG_PID
start_capture() {
    local port=$1 dir=$2
    mkdir -p "$dir"
    bg_start "capture-$port" "$PY" "$E2E_DIR/py/capture.py" "$port" "$dir"
    local pid=$BG_PID
    wait_listen "$port" 10 "$pid" || fail "capture backend on port $port did not start: $(cat "$WORK/capture-$port.log")"
    BG_PID=$pid
}
