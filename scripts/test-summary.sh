#!/usr/bin/env bash
# test-summary.sh JUNIT.xml...: the closing summary of `make test`. Lists every test that did not
# pass (failed, skipped, not run) from the JUnit files CTest wrote (--output-junit), then one line
# "summary: N passed, N failed, N skipped". A skip can hide an untested feature (a missing tool, a
# lost dpkg lock): under CI=true any skipped test makes this script fail.
set -uo pipefail
[ $# -ge 1 ] || { echo "usage: $0 JUNIT.xml..." >&2; exit 2; }
passed=0 failed=0 skipped=0
declare -a bad=() skips=()
for f in "$@"; do
  [ -f "$f" ] || { echo "test-summary: no such file: $f (did ctest run?)" >&2; failed=$((failed + 1)); continue; }
  label=$(basename "$(dirname "$f")")
  while IFS=$'\t' read -r status name; do
    case "$status" in
      run) passed=$((passed + 1)) ;;
      fail) failed=$((failed + 1)); bad+=("FAILED   [$label] $name") ;;
      *) skipped=$((skipped + 1)); skips+=("SKIPPED  [$label] $name ($status)") ;;
    esac
  done < <(grep -o '<testcase name="[^"]*" classname="[^"]*" time="[^"]*" status="[^"]*"' "$f" |
           sed -E 's/.*name="([^"]*)".*status="([^"]*)"/\2\t\1/')
done
for l in "${bad[@]+"${bad[@]}"}" "${skips[@]+"${skips[@]}"}"; do echo "$l"; done
[ "$skipped" -eq 0 ] || echo "test-summary: $skipped test(s) did not run (listed above)"
echo "summary: $passed passed, $failed failed, $skipped skipped"
if [ "$failed" -ne 0 ]; then exit 1; fi
if [ "$skipped" -ne 0 ] && [ "${CI:-}" = true ]; then
  echo "test-summary: CI=true: a skipped test counts as a failure" >&2
  exit 1
fi
exit 0
