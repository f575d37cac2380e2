#!/usr/bin/env bash
# tests/run-unit.sh BIN... -- runs C unit test programs; each prints
# "N passed, N failed".  Ends with the summed line and fails on any failure.
set -u
pass=0 fail=0
for t in "$@"; do
    out=$("$t" 2>&1)
    rc=$?
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n1)
    if [ -z "$line" ]; then
        printf '%s\n' "$out"
        echo "FAIL $(basename "$t") (exit $rc, no summary: crashed?)"
        fail=$((fail + 1))
        continue
    fi
    p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}
    if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi  # e.g. a sanitizer report at exit
    pass=$((pass + p)); fail=$((fail + f))
    if [ "$f" = 0 ]; then echo "PASS $(basename "$t") ($line)"
    else printf '%s\n' "$out"; echo "FAIL $(basename "$t") ($line, exit $rc)"; fi
done
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
