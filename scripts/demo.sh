#!/usr/bin/env bash
# The main job on the embedded default: an ipsan server on a ramdisk, and a client that writes a
# seeded pattern, reads it back, verifies every byte and prints throughput, over reliable UDP and
# over TCP. Usage: scripts/demo.sh [BUILD_DIR] [BYTES]
set -euo pipefail
BUILD=${1:-build/release}
BYTES=${2:-256M}
IPSAN=$BUILD/tools/ipsan
[ -x "$IPSAN" ] || { echo "demo: $IPSAN not built" >&2; exit 1; }
TMP=$(mktemp -d)
SERVER_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
# A fresh random key for this run, in a file (keeps it out of the process list).
umask 077  # key files must not be readable by others (docs/SECURITY.md)
echo "demo $(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" > "$TMP/keys"
awk '{print $2}' "$TMP/keys" > "$TMP/key"
"$IPSAN" server --listen 127.0.0.1 --port 0 --port-file "$TMP/port" --key-file "$TMP/keys" \
  > "$TMP/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do [ -s "$TMP/port" ] && break; sleep 0.1; done
[ -s "$TMP/port" ] || { echo "demo: server did not start" >&2; cat "$TMP/server.log" >&2; exit 1; }
UDP=$(sed -n 's/.*udp=\([0-9]*\).*/\1/p' "$TMP/port")
TCP=$(sed -n 's/.*tcp=\([0-9]*\).*/\1/p' "$TMP/port")
head -n 2 "$TMP/server.log"
"$IPSAN" client --server 127.0.0.1:"$UDP" --transport udp --name demo --key-file "$TMP/key" identify
rc=0
"$IPSAN" client --server 127.0.0.1:"$UDP" --transport udp --name demo --key-file "$TMP/key" \
  verify --bytes "$BYTES" --io-size 1M --qd 8 --seed 1 || rc=$?
"$IPSAN" client --server 127.0.0.1:"$TCP" --transport tcp --name demo --key-file "$TMP/key" \
  verify --bytes "$BYTES" --io-size 1M --qd 8 --seed 2 || rc=$?
kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=
tail -n 1 "$TMP/server.log"
[ $rc -eq 0 ] && echo "demo: OK" || echo "demo: FAILED ($rc)"
exit $rc
