#!/usr/bin/env bash
# tools/bench/deps.sh [--check | --install] -- the Debian packages that
# tools/bench/run needs.
#
#   (no argument)  print the package names, one line
#   --check        print the missing ones; exit 1 if any is missing
#   --install      apt-get install the missing ones (root or sudo)
#
# The peers (haproxy, stunnel4, hitch, nginx + libnginx-mod-stream) are only
# used as programs started by tools/bench/run with generated configurations;
# nothing under /etc is read or changed.  On a machine with systemd, Debian's
# maintainer scripts start the nginx and haproxy services on install (on
# ports 80 and none by default): stop or disable them if that matters there.
# linux-perf and valgrind are only for profiling (see tools/bench/README.md).
set -euo pipefail

PKGS=(
    # build tlsgate (both TLS libraries) and the bench's own C helpers
    gcc make libc6-dev pkg-config libuv1-dev libinih-dev libssl-dev android-libboringssl-dev
    # certificates (tools/mkcerts), openssl speed, the driver script
    openssl python3
    # the load generator and the peers
    wrk haproxy stunnel4 hitch nginx libnginx-mod-stream
    # profiling where tlsgate loses
    linux-perf valgrind
)

missing() {
    local p
    for p in "${PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || echo "$p"
    done
}

case "${1:-}" in
    "") echo "${PKGS[*]}" ;;
    --check)
        m=$(missing)
        # shellcheck disable=SC2086  # one line, names separated by spaces
        if [ -n "$m" ]; then echo "missing:" $m; exit 1; fi
        echo "all bench packages installed"
        ;;
    --install)
        m=$(missing)
        [ -z "$m" ] && { echo "all bench packages installed"; exit 0; }
        SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
        $SUDO apt-get update
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends $m
        ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) echo "usage: $0 [--check | --install]" >&2; exit 2 ;;
esac
