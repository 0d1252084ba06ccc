#!/bin/sh
# Exit codes of the ipsan program for usage errors: CLI11's own parse errors (unknown flag, bad
# or out-of-range value, missing subcommand) and the subcommands' argument checks both give 2;
# help and --version give 0. Usage: cli_usage_test.sh IPSAN
set -u
IPSAN=$1
TRACES=$(cd "$(dirname "$0")/../../conformance/traces" && pwd)
fail=0
expect() {  # expected-code, args...
  want=$1
  shift
  "$IPSAN" "$@" > /dev/null 2>&1
  got=$?
  if [ "$got" -ne "$want" ]; then
    echo "FAIL: ipsan $* exited $got, expected $want"
    fail=1
  else
    echo "ok: ipsan $* -> $got"
  fi
}
expect 0 --help
expect 0 --version
expect 0 netem --help
expect 2
expect 2 no-such-subcommand
expect 2 netem --no-such-flag
expect 2 netem --listen 127.0.0.1:0 --forward 127.0.0.1:1 --socket-buffer -5
expect 2 netem --listen 127.0.0.1:0 --forward 127.0.0.1:1 --socket-buffer lots
expect 2 netem --listen 127.0.0.1:0 --forward 127.0.0.1:1 --loss abc
expect 2 netem --listen 127.0.0.1:0
expect 2 server --port notaport
# ipsan server: bad options and keys are usage errors (2); a port in use is a run-time failure (1).
SRVDIR=$(mktemp -d)
trap 'rm -rf "$SRVDIR"' EXIT
printf 'alice 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n' > "$SRVDIR/keys"
chmod 600 "$SRVDIR/keys"
K="--key-file $SRVDIR/keys"
expect 2 server
expect 2 server --key-file /nonexistent/keys
expect 2 server --client-key alice=00112233445566778899aabbccddeeff
expect 2 server $K --device nosuch:1M
expect 2 server $K --device x=ram:1M
expect 2 server $K --max-io 9M
expect 2 server $K --slots 0
expect 2 server $K --transport-security none
expect 2 server $K --listen not-an-address
expect 2 server $K --duration soon
expect 2 server $K --metrics 127.0.0.1:notaport
expect 2 server $K --config /nonexistent/layout.toml
"$IPSAN" server $K -p 0 -t tcp --port-file "$SRVDIR/ports" --duration 20s > /dev/null 2>&1 &
SRVPID=$!
i=0
while [ ! -s "$SRVDIR/ports" ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
BUSY=$(sed -n 's/.*tcp=\([0-9]*\).*/\1/p' "$SRVDIR/ports")
if [ -n "$BUSY" ]; then
  expect 1 server $K -t tcp -p "$BUSY" --duration 1s
else
  echo "FAIL: the first server wrote no port file"
  fail=1
fi
kill "$SRVPID" 2>/dev/null
wait "$SRVPID" 2>/dev/null
expect 2 iscsi-portal --lun x=y --key 00
expect 2 iscsi-portal --transport carrier-pigeon --key 00
# The connection flags shared by client, iscsi-portal and replay (resolve_connect_args). Keys come
# from IPSAN_KEY or --key-file, never argv: -k/--key is refused.
IPSAN_KEY=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff
export IPSAN_KEY
expect 2 client --timeout 0s identify
expect 2 client --connect-timeout 0s identify
expect 2 client --connect-timeout soon identify
expect 2 client --server 127.0.0.1:99999 identify
expect 2 client --key-file /nonexistent/key identify
expect 2 iscsi-portal --slots 0
expect 2 replay --timeout soon "$TRACES/basics.trace"
expect 2 client -k "$IPSAN_KEY" identify
expect 2 client --key "$IPSAN_KEY" identify
IPSAN_KEY=00112233445566778899aabbccddeeff00112233445566778899aabbccddeefg  # one typo
expect 2 client identify
IPSAN_KEY=short
expect 2 client identify
unset IPSAN_KEY
# ipsan disk: device ids are 32-bit (2^32 must not wrap to 0).
expect 2 disk -a /nonexistent.sock export --name d --device-id 4294967296
expect 2 disk -a /nonexistent.sock unexport --device-id -1
# Errors name the command the user typed.
expect_msg() {  # expected stderr prefix, args...
  want=$1
  shift
  msg=$("$IPSAN" "$@" 2>&1 >/dev/null | head -1)
  case "$msg" in
    "$want"*) echo "ok: ipsan $* says '$msg'" ;;
    *) echo "FAIL: ipsan $* said '$msg', expected it to start with '$want'"; fail=1 ;;
  esac
}
expect_msg "ipsan trace import:" trace import /nonexistent/capture.pcap
expect_msg "ipsan replay:" replay --pcap /nonexistent/capture.pcap -s 127.0.0.1:1
exit $fail
