#!/usr/bin/env bash
# tests/run-e2e.sh -- run the black-box scenarios tests/e2e/[0-9]*.sh against tlsgate.
#
#   TLSGATE=path/to/tlsgate  (default build/tlsgate)
#   CERTS=dir                (default certs/; tools/mkcerts runs first)
#   E2E_FILTER=regex         run only scenarios whose name matches (e.g. E2E_FILTER='0[1-3]|mtls')
#   E2E_TIMEOUT=seconds      per-scenario limit (default 180)
#   E2E_JOBS=N               scenarios run at once (default 4); E2E_LONG=1 adds the long
#                            ones, E2E_LONG=only runs only them (make test-long)
#   E2E_WORKDIR=dir          where work dirs go (default tests/e2e/.work; set it to run
#                            two suites at once, e.g. for both TLS builds)
#   E2E_SERIAL=0|only        leave out the "serial" scenarios / run only them (run-all.sh
#                            runs two suites' parallel parts at once, then the serial ones)
#
# A scenario passes with exit 0, is skipped with 77, fails otherwise. Each one
# logs into $E2E_WORKDIR/NAME/ and its output goes to $E2E_WORKDIR/NAME.out.
# The last line is "N passed, N failed" (", N skipped" when some were skipped).
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
E2E=$ROOT/tests/e2e
TLSGATE=${TLSGATE:-$ROOT/build/tlsgate}
case $TLSGATE in /*) ;; *) TLSGATE=$PWD/$TLSGATE ;; esac
CERTS=${CERTS:-$ROOT/certs}
case $CERTS in /*) ;; *) CERTS=$PWD/$CERTS ;; esac
TIMEOUT=${E2E_TIMEOUT:-180}
FILTER=${E2E_FILTER:-}
WORKDIR=${E2E_WORKDIR:-$E2E/.work}
case $WORKDIR in /*) ;; *) WORKDIR=$PWD/$WORKDIR ;; esac
export TLSGATE CERTS E2E_WORKDIR=$WORKDIR

if ! mk_out=$("$ROOT/tools/mkcerts" "$CERTS" 2>&1); then
    printf '%s\n' "$mk_out"
    echo "run-e2e: tools/mkcerts $CERTS failed"
    echo "0 passed, 1 failed"
    exit 1
fi
if [ ! -x "$TLSGATE" ]; then
    echo "run-e2e: no tlsgate binary at $TLSGATE (run make first)"
    echo "0 passed, 1 failed"
    exit 1
fi
mkdir -p "$WORKDIR"

# Which scenarios run, and how.  A scenario's header may say
#   # e2e: long    -- heavy (testssl, fuzzing, soak, valgrind, browsers, big
#                     matrices): only with E2E_LONG=1 (`make test-long`);
#   # e2e: serial  -- measures time, memory or descriptors of the machine:
#                     runs alone, after the parallel ones;
#   # e2e: timeout=N -- may take up to N seconds (default E2E_TIMEOUT).
# The others run E2E_JOBS at a time (default 4: scenarios mostly wait on
# peers and timers, and each picks its own ports and work dir).
JOBS=${E2E_JOBS:-4}
LONG=${E2E_LONG:-0}
SERIAL=${E2E_SERIAL:-1}
par=() ser=()
declare -A limit=()
for f in $(find "$E2E" -maxdepth 1 -name '[0-9]*.sh' | sort); do
    name=$(basename "$f" .sh)
    if [ -n "$FILTER" ] && ! [[ $name =~ $FILTER ]]; then continue; fi
    tags=$(sed -n '1,40{s/^# e2e: *//p}' "$f")
    case " $tags " in
        *" long "*) [ "$LONG" = 0 ] && continue ;;
        *) [ "$LONG" = only ] && continue ;;
    esac
    case " $tags " in
        *" serial "*) [ "$SERIAL" = 0 ] && continue; ser+=("$f") ;;
        *) [ "$SERIAL" = only ] && continue; par+=("$f") ;;
    esac
    # "# e2e: timeout=N": a scenario that needs more than E2E_TIMEOUT
    t=$(sed -n 's/.*timeout=\([0-9][0-9]*\).*/\1/p' <<<"$tags" | head -n1)
    [ -n "$t" ] && limit[$(basename "$f" .sh)]=$t
done

# Longest first: the previous run's durations (WORKDIR/.durations, ms) order the
# parallel queue, so that no long scenario starts last and runs alone at the
# end; scenarios without a duration (new ones) go first, the rest by name.
if [ -f "$WORKDIR/.durations" ] && [ ${#par[@]} -gt 1 ]; then
    mapfile -t par < <(for f in "${par[@]}"; do
        ms=$(awk -v n="$(basename "$f" .sh)" '$1 == n { print $2 }' "$WORKDIR/.durations")
        printf '%s %s\n' "${ms:-999999999}" "$f"
    done | sort -k1,1nr -k2 | cut -d' ' -f2-)
fi
: >"$WORKDIR/.durations.new"

pass=0 failn=0 skipn=0 failed_names=()
declare -A started=()

launch() {  # launch FILE: runs one scenario in the background
    local f=$1 name
    name=$(basename "$f" .sh)
    started[$name]=$(date +%s%N)
    ( timeout -k 10 "${limit[$name]:-$TIMEOUT}" bash "$f" >"$WORKDIR/$name.out" 2>&1 </dev/null
      echo $? >"$WORKDIR/$name.rc" ) &
}

report() {  # report NAME: prints the verdict of a finished scenario
    local name=$1 out=$WORKDIR/$1.out rc secs why
    rc=$(cat "$WORKDIR/$name.rc" 2>/dev/null || echo 1)
    rm -f "$WORKDIR/$name.rc"
    secs=$(( ($(date +%s%N) - started[$name]) / 1000000 ))
    echo "$name $secs" >>"$WORKDIR/.durations.new"
    secs=$(printf '%d.%02d' $((secs / 1000)) $(( (secs % 1000) / 10 )))
    case $rc in
        0)  pass=$((pass + 1)); echo "PASS $name (${secs}s)" ;;
        77) skipn=$((skipn + 1)); echo "SKIP $name ($(grep -m1 '^SKIP' "$out" | sed 's/^SKIP \[[^]]*\]: //'))" ;;
        *)  failn=$((failn + 1)); failed_names+=("$name")
            why="exit $rc"; [ "$rc" = 124 ] && why="timed out after ${limit[$name]:-$TIMEOUT}s"
            echo "FAIL $name ($why, ${secs}s)"
            echo "------ output of $name ($out; work dir $WORKDIR/$name/)"
            sed 's/^/  | /' "$out"
            echo "------ end of $name"
            ;;
    esac
}

# Runs the given scenarios at most $1 at a time, reporting each as it ends.
run_pool() {
    local jobs=$1 f name
    shift
    local -a queue=("$@") running=()
    while [ ${#queue[@]} -gt 0 ] || [ ${#running[@]} -gt 0 ]; do
        while [ ${#queue[@]} -gt 0 ] && [ ${#running[@]} -lt "$jobs" ]; do
            f=${queue[0]}; queue=("${queue[@]:1}")
            rm -f "$WORKDIR/$(basename "$f" .sh).rc"
            launch "$f"
            running+=("$(basename "$f" .sh)")
        done
        wait -n 2>/dev/null || true
        local -a still=()
        for name in "${running[@]}"; do
            if [ -f "$WORKDIR/$name.rc" ]; then report "$name"; else still+=("$name"); fi
        done
        running=("${still[@]}")
        # wait -n may return for a job whose .rc is not written yet
        [ ${#running[@]} -gt 0 ] && [ ${#still[@]} -eq ${#running[@]} ] && sleep 0.05
    done
}

[ ${#par[@]} -gt 0 ] && run_pool "$JOBS" "${par[@]}"
[ ${#ser[@]} -gt 0 ] && run_pool 1 "${ser[@]}"

# keep the durations of scenarios that did not run this time (filtered out)
[ -f "$WORKDIR/.durations" ] && awk 'NR == FNR { seen[$1] = 1; next } !($1 in seen)' \
    "$WORKDIR/.durations.new" "$WORKDIR/.durations" >>"$WORKDIR/.durations.new"
mv "$WORKDIR/.durations.new" "$WORKDIR/.durations"

[ "$failn" -gt 0 ] && echo "failed: ${failed_names[*]}"
summary="$pass passed, $failn failed"
[ "$skipn" -gt 0 ] && summary="$summary, $skipn skipped"
echo "$summary"
[ "$failn" = 0 ]
