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
