#!/bin/sh
# Every conformance trace replayed by `ipsan replay` against a real `ipsan server -c server.toml`
# (the conformance layout), over UDP, over TCP and over UDP through netem lossy-1pct: every line
# must match, except the lines server.differences lists as different by design (reported, not
# failing; a listed line that matches fails as a stale entry). Also checks that the list cannot
# hide a new mismatch. Usage: replay_server_test.sh IPSAN TRACE_DIR [NETEM_SEED]
# 127.0.0.1 only, port 0; readiness is the server's "listening on" line read from a pipe.
set -eu
IPSAN=$1
TRACES=$2
SEED=${3:-7}
dir=$(mktemp -d "${TMPDIR:-/tmp}/ipsan_replay_server.XXXXXX")
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for f in "$dir"/*.log "$dir"/*.json; do [ -f "$f" ] && { echo "--- $f" >&2; head -c 4000 "$f" >&2; echo >&2; }; done
  exit 1
}
umask 077
key=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
echo "alice $key" >"$dir/keys"
echo "$key" >"$dir/alice.key"
mkfifo "$dir/server.fifo"
"$IPSAN" server --listen 127.0.0.1 --port 0 --key-file "$dir/keys" -c "$TRACES/server.toml" \
  >"$dir/server.fifo" 2>"$dir/server.err.log" &
pid=$!
exec 4<"$dir/server.fifo"
IFS= read -r line <&4 || fail "server did not start: $(cat "$dir/server.err.log")"
cat <&4 >"$dir/server.log" &
exec 4<&-
PORT=$(echo "$line" | sed -n 's/.* udp=\([0-9]*\) .*/\1/p')
[ -n "$PORT" ] || fail "no port in: $line"
R="$IPSAN replay -s 127.0.0.1:$PORT -n alice --key-file $dir/alice.key"

# One run per transport, every trace, one server (traces are independent of the order and of
# what earlier runs wrote).
echo "netem seed $SEED"
run() {
  name=$1
  shift
  rc=0
  $R "$TRACES"/*.trace --expected-differences "$TRACES/server.differences" --json "$@" \
    >"$dir/$name.json" 2>"$dir/$name.log" || rc=$?
  [ "$(wc -l <"$dir/$name.json")" -eq 1 ] || fail "$name: --json printed more than one line"
  for want in '"ok":true' '"mismatched":0,' '"errors":0,' '"stale_entries":\[\]'; do
    grep -q "$want" "$dir/$name.json" || fail "$name: no $want"
  done
  grep -q '"matched":[1-9]' "$dir/$name.json" || fail "$name: nothing matched"
  grep -q '"expected_differences":[1-9]' "$dir/$name.json" || fail "$name: no expected difference"
  [ "$rc" -eq 0 ] || fail "$name: exit status $rc"
  echo "$name: $(sed -n 's/.*"matched":\([0-9]*\).*/\1/p' "$dir/$name.json") matched, $(sed -n 's/.*"expected_differences":\([0-9]*\),.*/\1/p' "$dir/$name.json") expected differences"
}
run udp -t udp
run tcp -t tcp
run lossy -t udp --netem lossy-1pct --netem-seed "$SEED"

# The text report names every expected difference with its reason.
$R "$TRACES/errors.trace" --expected-differences "$TRACES/server.differences" \
  >"$dir/text.log" 2>&1 || fail "text report run failed"
grep -q "errors.trace:41: EXPECTED DIFFERENCE (fault injection" "$dir/text.log" ||
  fail "the text report does not give the reason"

# The list cannot hide a new mismatch: without its first ata.trace entry, that line fails...
grep -v '^ata.trace:51 ' "$TRACES/server.differences" >"$dir/fewer.differences"
rc=0
$R "$TRACES/ata.trace" --expected-differences "$dir/fewer.differences" >"$dir/fewer.log" 2>&1 || rc=$?
[ "$rc" -eq 1 ] || fail "a mismatch not in the list did not fail the run (exit $rc)"
grep -q "1 mismatched" "$dir/fewer.log" || fail "unexpected report: $(cat "$dir/fewer.log")"
# ...and an entry for a line that matches is stale and fails the run.
{ cat "$TRACES/server.differences"; echo "ata.trace:7 listed although it matches"; } >"$dir/stale.differences"
rc=0
$R "$TRACES/ata.trace" --expected-differences "$dir/stale.differences" >"$dir/stale.log" 2>&1 || rc=$?
[ "$rc" -eq 1 ] || fail "a stale entry did not fail the run (exit $rc)"
grep -q "STALE ENTRY: ata.trace:7" "$dir/stale.log" || fail "stale entry not reported: $(cat "$dir/stale.log")"

# trace import --json: one summary object (the committed tgt capture has 19 usable commands).
PCAP="$TRACES/../pcap/tgt_small.pcap"
"$IPSAN" trace import "$PCAP" -o "$dir/tgt.trace" --json >"$dir/import.json" 2>"$dir/import.log" ||
  fail "trace import --json failed"
[ "$(wc -l <"$dir/import.json")" -eq 1 ] || fail "trace import --json printed more than one line"
grep -q '"imported":19' "$dir/import.json" || fail "trace import --json: $(cat "$dir/import.json")"
grep -q '^scsi ' "$dir/tgt.trace" || fail "trace import --json wrote no trace"
echo "ok"
