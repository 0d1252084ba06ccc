#!/usr/bin/env bash
# run_iscsi_test_cu.sh: grades ipsan's SCSI layer with libiscsi's conformance suite.
#
#   run_iscsi_test_cu.sh IPSAN_BINARY BASELINE_FILE [NETEM_PROFILE [TESTS BASELINE_KEY]]
#
# Starts `ipsan server` (a ramdisk, port 0) and `ipsan iscsi-portal` (port 0; with NETEM_PROFILE
# an in-process netem::UdpProxy impairs the client<->server link), runs `iscsi-test-cu -t ALL
# --dataloss --allow-sanitize` (or `-t TESTS`, a comma-separated list) with two initiator names
# and the portal as its own multipath peer (ALL.Sanitize apart, see below; SANITIZE is allowed: the
# LUN is a scratch ramdisk), and counts real passes, failures and skips (CUnit counts a skipped
# test as passed: a test whose output shows "[SKIPPED]" before its result is a skip here). Fails
# if real passes drop below the baseline file's `min_real_passes=N` (or BASELINE_KEY=N). Exits 77
# (CTest SKIP_RETURN_CODE) if iscsi-test-cu is missing.
#
# ISCSI_CHAP=mutual: the portal requires CHAP (secrets in a 0600 file, --chap-file), admits only
# the suite's two initiator names (--allow-initiator), and libiscsi authenticates both ways; the
# secrets reach iscsi-test-cu through LIBISCSI_CHAP_* environment variables, never argv.
set -uo pipefail

IPSAN=${1:?ipsan binary}
BASELINE=${2:?baseline file}
NETEM=${3:-}
TESTS=${4:-ALL}
BASELINE_KEY=${5:-min_real_passes}
SUITE_TIMEOUT=${ISCSI_TEST_CU_TIMEOUT:-600}

if ! command -v iscsi-test-cu >/dev/null 2>&1; then
  echo "iscsi-test-cu not installed (Debian package libiscsi-bin; scripts/setup.sh installs it)"
  [ "${CI:-}" = true ] && exit 1  # a skip would hide the missing suite
  exit 77
fi

WORK=$(mktemp -d /tmp/ipsan-iscsi-cu.XXXXXX)
SERVER_PID=""
PORTAL_PID=""
cleanup() {
  [ -n "$PORTAL_PID" ] && kill "$PORTAL_PID" 2>/dev/null && wait "$PORTAL_PID" 2>/dev/null
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

# Waits (bounded) for a file the other process writes once it is listening.
wait_for_file() {
  local f=$1 pid=$2
  for _ in $(seq 1 300); do
    [ -s "$f" ] && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

umask 077  # key files must be private
KEY=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
echo "cu $KEY" > "$WORK/keys"
echo "$KEY" > "$WORK/cu.key"

"$IPSAN" server --listen 127.0.0.1 --port 0 --port-file "$WORK/server.port" \
  --key-file "$WORK/keys" --device ram:128M > "$WORK/server.log" 2>&1 &
SERVER_PID=$!
if ! wait_for_file "$WORK/server.port" "$SERVER_PID"; then
  echo "server did not start"; cat "$WORK/server.log"; exit 1
fi
UDP_PORT=$(sed 's/.*udp=\([0-9]*\).*/\1/' "$WORK/server.port")

# --background-rate: SANITIZE OVERWRITE of the 128 MiB LUN takes ~8 s at 16 MiB/s. libiscsi's
# Sanitize.Reset needs it still running after ~5 s (3 s wait, task management, reconnect); an
# unpaced overwrite of a ramdisk ends in about a second.
PORTAL_ARGS=(iscsi-portal -s "127.0.0.1:$UDP_PORT" -n cu --key-file "$WORK/cu.key"
             -l 127.0.0.1:0 --port-file "$WORK/portal.port" --target-name conformance
             --background-rate 16M)
[ -n "$NETEM" ] && PORTAL_ARGS+=(--netem "$NETEM" --netem-seed 7)
if [ "${ISCSI_CHAP:-}" = mutual ]; then
  CHAP_SECRET=$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')
  CHAP_TARGET_SECRET=$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')
  printf 'initiator cu-user %s\ntarget cu-target %s\n' "$CHAP_SECRET" "$CHAP_TARGET_SECRET" > "$WORK/chap"
  PORTAL_ARGS+=(--chap-file "$WORK/chap"
                --allow-initiator iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test
                --allow-initiator iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test-2)
  export LIBISCSI_CHAP_USERNAME=cu-user LIBISCSI_CHAP_PASSWORD=$CHAP_SECRET
  export LIBISCSI_CHAP_TARGET_USERNAME=cu-target LIBISCSI_CHAP_TARGET_PASSWORD=$CHAP_TARGET_SECRET
  echo "mutual CHAP on (MD5: the only CHAP_A libiscsi 1.19 offers), initiator allow-list on"
fi
"$IPSAN" "${PORTAL_ARGS[@]}" > "$WORK/portal.log" 2>&1 &
PORTAL_PID=$!
if ! wait_for_file "$WORK/portal.port" "$PORTAL_PID"; then
  echo "portal did not start"; cat "$WORK/portal.log"; exit 1
fi
PORT=$(cat "$WORK/portal.port")
URL="iscsi://127.0.0.1:$PORT/iqn.2026-11.org.ipsan:conformance/0"

run_suite() {  # LABEL TESTS URL...
  local label=$1 tests=$2
  shift 2
  echo "iscsi-test-cu -t $label --dataloss --allow-sanitize against $*${NETEM:+ (client<->server link: netem $NETEM)}"
  timeout "$SUITE_TIMEOUT" iscsi-test-cu -t "$tests" --dataloss --allow-sanitize \
    -i iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test \
    -I iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test-2 \
    "$@" >> "$WORK/suite.log" 2>&1
}
: > "$WORK/suite.log"
if [ "$TESTS" = ALL ]; then
  # Every test of ALL once, in two invocations: all suites but Sanitize with the portal as its own
  # multipath peer, then ALL.Sanitize with one URL. With a multipath peer libiscsi's second
  # session is shared by the suite's tests (mpath_sd2_put does not log it out), so the RESERVE(6)
  # that Sanitize.Reservations takes from initiator 2 is still held when Sanitize.Reset sends its
  # SANITIZE from initiator 1, which must then get RESERVATION CONFLICT. With one URL the second
  # session is a clone that logs out after each test, ending its reservation.
  MAIN=$(iscsi-test-cu -l | grep -E '^ALL\.[^.]+$' | grep -vx 'ALL.Sanitize' | paste -sd, -)
  run_suite "ALL (without ALL.Sanitize)" "$MAIN" "$URL" "$URL"
  RC=$?
  if [ $RC -ne 124 ]; then
    run_suite ALL.Sanitize ALL.Sanitize "$URL"
    RC=$?
  fi
else
  run_suite "$TESTS" "$TESTS" "$URL" "$URL"
  RC=$?
fi
if [ $RC -eq 124 ]; then
  echo "iscsi-test-cu did not finish within ${SUITE_TIMEOUT}s"; tail -40 "$WORK/suite.log"; exit 1
fi

# Per test: "  Test: NAME ..." then messages, then "passed" or "FAILED" at the start of a line (or
# right after "..."). "[SKIPPED]" before the result makes it a skip.
awk '
  function result(text) {
    if (text ~ /^passed/) return "passed";
    if (text ~ /^FAILED/) return "FAILED";
    return "";
  }
  function feed(text,   r) {
    if (!in_test) return;
    r = result(text);
    if (r == "") { if (index(text, "[SKIPPED]")) skip = 1; return; }
    in_test = 0;
    if (r == "FAILED") { failed++; print "FAILED  " suite "." name > "/dev/stderr"; }
    else if (skip) { skipped++; print "SKIPPED " suite "." name > "/dev/stderr"; }
    else passed++;
  }
  /^Suite: / { suite = substr($0, 8); next }
  /^  Test: / {
    line = substr($0, 9);
    p = index(line, " ...");
    name = substr(line, 1, p - 1);
    in_test = 1; skip = 0;
    rest = substr(line, p + 4);
    sub(/^ +/, "", rest);
    feed(rest);
    next
  }
  { t = $0; sub(/^ +/, "", t); if (t ~ /^(passed|FAILED)/) feed(t); else if (index($0, "[SKIPPED]")) feed($0); }
  END { printf "passed=%d failed=%d skipped=%d total=%d\n", passed, failed, skipped, passed + failed + skipped }
' "$WORK/suite.log" > "$WORK/counts" 2> "$WORK/details"
sort "$WORK/details"
grep -A3 "Run Summary" "$WORK/suite.log"
COUNTS=$(cat "$WORK/counts")
echo "iscsi-test-cu $TESTS: $COUNTS (passed = real passes, skips counted apart)"
PASSED=$(sed 's/.*passed=\([0-9]*\).*/\1/' "$WORK/counts")
BASE=$(sed -n "s/^$BASELINE_KEY=\([0-9]*\).*/\1/p" "$BASELINE")
if [ -z "$BASE" ]; then echo "no $BASELINE_KEY in $BASELINE"; exit 1; fi
FAILED=$(sed 's/.*failed=\([0-9]*\).*/\1/' "$WORK/counts")
if [ "$PASSED" -lt "$BASE" ]; then
  echo "REGRESSION: $PASSED real passes (baseline $BASE), $FAILED failed"
  grep -E "FAILED|SKIPPED" "$WORK/details"
  tail -5 "$WORK/portal.log"
  exit 1
fi
echo "OK: $PASSED real passes >= baseline $BASE"
