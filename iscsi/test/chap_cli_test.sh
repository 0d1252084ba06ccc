#!/usr/bin/env bash
# chap_cli_test.sh IPSAN: `ipsan iscsi-portal` with CHAP, an initiator allow-list and a connection
# cap against libiscsi's real initiator (iscsi-inq). Mutual CHAP with the right secrets logs in; a
# wrong initiator secret, a wrong target secret (the initiator refuses the target), an initiator
# not on the list and no credentials at all are refused; idle connections beyond the cap do not
# keep a good initiator out. Secrets go through LIBISCSI_CHAP_* environment variables, never argv.
# Under CI=true a missing iscsi-inq is a failure, otherwise a skip (77).
set -uo pipefail
IPSAN=${1:?ipsan binary}
if ! command -v iscsi-inq >/dev/null 2>&1; then
  echo "iscsi-inq not installed (Debian package libiscsi-bin)"
  [ "${CI:-}" = true ] && exit 1
  exit 77
fi
WORK=$(mktemp -d /tmp/ipsan-chap.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$WORK"/*.log; do echo "--- $f"; tail -20 "$f"; done; exit 1; }
wait_for_file() {
  for _ in $(seq 1 300); do [ -s "$1" ] && return 0; kill -0 "$2" 2>/dev/null || return 1; sleep 0.1; done
  return 1
}

umask 077
KEY=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
echo "t $KEY" > "$WORK/keys"
echo "$KEY" > "$WORK/t.key"
printf 'initiator alice alice-secret-0123\ntarget portal portal-secret-4567\n' > "$WORK/chap"
"$IPSAN" server --listen 127.0.0.1 --port 0 --port-file "$WORK/server.port" \
  --key-file "$WORK/keys" --device ram:16M > "$WORK/server.log" 2>&1 &
PIDS+=($!)
wait_for_file "$WORK/server.port" "${PIDS[0]}" || fail "server did not start"
UDP=$(sed 's/.*udp=\([0-9]*\).*/\1/' "$WORK/server.port")
ALLOWED=iqn.2026-11.org.ipsan:allowed
"$IPSAN" iscsi-portal -s "127.0.0.1:$UDP" -n t --key-file "$WORK/t.key" -l 127.0.0.1:0 \
  --port-file "$WORK/portal.port" --target-name chap --chap-file "$WORK/chap" \
  --allow-initiator "$ALLOWED" --max-connections 4 --login-timeout 30s > "$WORK/portal.log" 2>&1 &
PIDS+=($!)
wait_for_file "$WORK/portal.port" "${PIDS[1]}" || fail "portal did not start"
PORT=$(cat "$WORK/portal.port")
URL="iscsi://127.0.0.1:$PORT/iqn.2026-11.org.ipsan:chap/0"

inq() {  # USER SECRET TARGET_USER TARGET_SECRET INITIATOR
  env -u LIBISCSI_CHAP_USERNAME -u LIBISCSI_CHAP_PASSWORD \
    ${1:+LIBISCSI_CHAP_USERNAME=$1} ${2:+LIBISCSI_CHAP_PASSWORD=$2} \
    ${3:+LIBISCSI_CHAP_TARGET_USERNAME=$3} ${4:+LIBISCSI_CHAP_TARGET_PASSWORD=$4} \
    timeout 20 iscsi-inq -i "$5" "$URL" > "$WORK/inq.out" 2>&1
}

inq alice alice-secret-0123 portal portal-secret-4567 "$ALLOWED" ||
  { cat "$WORK/inq.out"; fail "mutual CHAP with the right secrets was refused"; }
grep -qi "ipsan\|vendor" "$WORK/inq.out" || { cat "$WORK/inq.out"; fail "no INQUIRY data"; }
echo "ok: mutual CHAP login and INQUIRY"
inq alice alice-secret-0123 "" "" "$ALLOWED" || fail "one-way CHAP was refused"
echo "ok: one-way CHAP"
inq alice alice-secret-9999 portal portal-secret-4567 "$ALLOWED" && fail "a wrong secret logged in"
echo "ok: wrong initiator secret refused"
inq alice alice-secret-0123 portal portal-secret-9999 "$ALLOWED" && fail "a wrong target secret was accepted by the initiator"
echo "ok: a target that cannot prove its secret is refused by the initiator"
inq alice alice-secret-0123 portal portal-secret-4567 iqn.2026-11.org.ipsan:made-up &&
  fail "an initiator not on the list logged in"
echo "ok: initiator not on the allow-list refused"
inq "" "" "" "" "$ALLOWED" && fail "a login without CHAP was accepted"
echo "ok: no credentials refused"
grep -q "login failed (2/1)" "$WORK/portal.log" || fail "no authentication failure (class 2, detail 1) logged"
grep -q "login failed (2/2)" "$WORK/portal.log" || fail "no authorization failure (class 2, detail 2) logged"

# Idle connections beyond the cap (4): a good initiator still gets in.
for i in $(seq 3 14); do eval "exec $i<>/dev/tcp/127.0.0.1/$PORT" || fail "connect $i"; done
inq alice alice-secret-0123 portal portal-secret-4567 "$ALLOWED" ||
  { cat "$WORK/inq.out"; fail "idle connections beyond the cap locked a good initiator out"; }
echo "ok: 12 idle connections beyond a cap of 4 did not lock a good initiator out"
for i in $(seq 3 14); do eval "exec $i>&-"; done
echo "PASS"
