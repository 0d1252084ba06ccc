#!/usr/bin/env bash
# The long chaos matrix (outside `make test`; docs/HA.md): generated schedules for seeds
# FIRST..FIRST+COUNT-1, each run by `ipsan chaos run`, then a summary. A failing schedule is
# saved as OUT/fail-seed-N.toml (rerun: ipsan chaos run OUT/fail-seed-N.toml) with its log.
#   ha/test/chaos_matrix.sh [IPSAN] [FIRST] [COUNT] [OUT]
# Exit 0 only if every run passed.
set -u
IPSAN=${1:-build/release/tools/ipsan}
FIRST=${2:-1}
COUNT=${3:-100}
OUT=${4:-chaos-matrix-out}
mkdir -p "$OUT"
pass=0 failed=0 harness=0
pauses=()
recov=()
for ((seed = FIRST; seed < FIRST + COUNT; seed++)); do
  "$IPSAN" chaos gen --seed "$seed" -o "$OUT/seed-$seed.toml" || exit 2
  "$IPSAN" chaos run "$OUT/seed-$seed.toml" >"$OUT/seed-$seed.log" 2>&1
  rc=$?
  p=$(sed -n 's/.*longest pause between acks \([0-9]*\)ms.*/\1/p' "$OUT/seed-$seed.log")
  [[ -n $p ]] && pauses+=("$p")
  recov+=($(sed -n 's/.*first acknowledged write \([0-9]*\)ms later.*/\1/p' "$OUT/seed-$seed.log"))
  if [[ $rc -eq 0 ]]; then
    pass=$((pass + 1))
    rm -f "$OUT/seed-$seed.toml" "$OUT/seed-$seed.log"
  else
    if grep -q "harness failure" "$OUT/seed-$seed.log"; then harness=$((harness + 1)); else failed=$((failed + 1)); fi
    mv "$OUT/seed-$seed.toml" "$OUT/fail-seed-$seed.toml"
    echo "seed $seed: FAILED (exit $rc), see $OUT/seed-$seed.log"
  fi
  echo "seed $seed: exit $rc, longest pause ${p:-?}ms"
done
echo "runs $COUNT: $pass passed, $failed failed the check, $harness harness failures"
if [[ ${#pauses[@]} -gt 0 ]]; then
  sorted=($(printf '%s\n' "${pauses[@]}" | sort -n))
  n=${#sorted[@]}
  echo "longest pause between acknowledgements per run (ms): p50 ${sorted[$(( (n - 1) * 50 / 100 ))]}" \
       "p99 ${sorted[$(( (n - 1) * 99 / 100 ))]} max ${sorted[$((n - 1))]} (n=$n)"
fi
if [[ ${#recov[@]} -gt 0 ]]; then
  sorted=($(printf '%s\n' "${recov[@]}" | sort -n))
  n=${#sorted[@]}
  echo "recovery (end of a fault -> next acknowledged write, ms): p50 ${sorted[$(( (n - 1) * 50 / 100 ))]}" \
       "p99 ${sorted[$(( (n - 1) * 99 / 100 ))]} max ${sorted[$((n - 1))]} (n=$n)"
fi
[[ $failed -eq 0 && $harness -eq 0 ]]
