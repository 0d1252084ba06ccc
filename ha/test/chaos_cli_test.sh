#!/usr/bin/env bash
# chaos_cli_test.sh IPSAN MODE [ARG]: the chaos harness end to end.
#   schedule FILE  run a schedule file; must pass (exit 0, "PASS")
#   gen SEED       generate a schedule from SEED, save it, run it; must pass
#   negative FILE  run a schedule that loses writes; must fail (exit 1) naming them
set -u
IPSAN=$1 MODE=$2 ARG=${3:-}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
case $MODE in
  schedule)
    "$IPSAN" chaos run "$ARG"
    rc=$?
    [[ $rc -eq 0 ]] || { echo "FAIL: exit $rc"; exit 1; } ;;
  gen)
    "$IPSAN" chaos gen --seed "$ARG" -o "$TMP/s.toml" || exit 1
    cat "$TMP/s.toml"
    "$IPSAN" chaos run "$TMP/s.toml"
    rc=$?
    [[ $rc -eq 0 ]] || { echo "FAIL: exit $rc"; exit 1; } ;;
  negative)
    "$IPSAN" chaos run "$ARG" --dir "$TMP/run" >"$TMP/out" 2>&1
    rc=$?
    cat "$TMP/out"
    [[ $rc -eq 1 ]] || { echo "FAIL: expected exit 1, got $rc"; exit 1; }
    grep -q "FAILED: [1-9][0-9]* blocks lost" "$TMP/out" || { echo "FAIL: no lost writes reported"; exit 1; }
    grep -q "zeros, but write" "$TMP/out" || { echo "FAIL: no per-block problem printed"; exit 1; }
    grep -q '^\[\[event\]\]' "$TMP/out" || { echo "FAIL: failing schedule not printed"; exit 1; } ;;
  *) echo "unknown mode $MODE"; exit 2 ;;
esac
echo OK
