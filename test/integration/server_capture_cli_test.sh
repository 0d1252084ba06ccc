#!/bin/sh
# `ipsan server --capture` end to end through the real program: a client talks to the server over
# TCP (record-marked ONC-RPC) and reliable UDP, the server records both into one pcap; tcpdump
# and tshark (when installed) read it without complaint; `ipsan replay --pcap` replays it against
# a fresh server with the same device (fast and original timing) and every reply matches.
# Usage: server_capture_cli_test.sh IPSAN. 127.0.0.1 only, port 0; readiness is the server's
# "listening on" line read from a pipe (no sleeps).
set -eu
IPSAN=$1
dir=$(mktemp -d "${TMPDIR:-/tmp}/ipsan_capture_cli.XXXXXX")
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for f in "$dir"/*.log "$dir"/*.out; do
    [ -f "$f" ] && { echo "--- $f" >&2; head -n 40 "$f" >&2; }
  done
  exit 1
}

key=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
umask 077  # key files must be private
echo "alice $key" >"$dir/keys"
echo "$key" >"$dir/alice.key"

# start_server NAME [ARGS...]: starts a server, reads its "listening on" line through a FIFO;
# sets PORT_UDP, PORT_TCP and PID.
start_server() {
  name=$1
  shift
  mkfifo "$dir/$name.fifo"
  "$IPSAN" server --listen 127.0.0.1 --port 0 --key-file "$dir/keys" --device ram:8M "$@" \
    >"$dir/$name.fifo" 2>"$dir/$name.err.log" &
  PID=$!
  pids="$pids $PID"
  exec 4<"$dir/$name.fifo"
  IFS= read -r line <&4 || fail "$name did not start: $(cat "$dir/$name.err.log")"
  # The rest of its output goes to a file (keeps the pipe drained).
  cat <&4 >"$dir/$name.log" &
  exec 4<&-
  case $line in
    *"listening on"*) ;;
    *) fail "$name: unexpected first line: $line" ;;
  esac
  PORT_UDP=$(echo "$line" | sed -n 's/.* udp=\([0-9]*\) .*/\1/p')
  PORT_TCP=$(echo "$line" | sed -n 's/.* tcp=\([0-9]*\) .*/\1/p')
  if [ -z "$PORT_UDP" ] || [ -z "$PORT_TCP" ]; then fail "$name: no ports in: $line"; fi
}

stop_server() {
  kill -INT "$1"
  wait "$1" || fail "server exited with $?"
}

# 1. A capturing server; TCP traffic, then a little reliable UDP.
start_server cap --capture "$dir/server.pcap"
cap_pid=$PID
tcp_port=$PORT_TCP
udp_port=$PORT_UDP
"$IPSAN" client -s "127.0.0.1:$tcp_port" -t tcp -n alice --key-file "$dir/alice.key" \
  verify --bytes 3M --qd 4 >"$dir/client_tcp.out" 2>&1 || fail "tcp client"
"$IPSAN" client -s "127.0.0.1:$udp_port" -n alice --key-file "$dir/alice.key" \
  verify --bytes 256K --qd 2 >"$dir/client_udp.out" 2>&1 || fail "udp client"
stop_server "$cap_pid"
# Every request the clients made (their "requests=N" lines) must be replayed and match.
requests=$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' "$dir/client_tcp.out" "$dir/client_udp.out" |
  awk '{ n += $1 } END { print n + 0 }')
[ "$requests" -gt 0 ] || fail "no request count in the client output"
[ -s "$dir/server.pcap" ] || fail "no capture written"

# 2. tcpdump / tshark read it.
if command -v tcpdump >/dev/null 2>&1; then
  tcpdump -nn -vv -r "$dir/server.pcap" >"$dir/tcpdump.out" 2>"$dir/tcpdump.err.log" ||
    fail "tcpdump -r failed"
  grep -q "Flags \[S\]" "$dir/tcpdump.out" || fail "tcpdump shows no TCP SYN"
  grep -q "Flags \[F\.\]" "$dir/tcpdump.out" || fail "tcpdump shows no TCP FIN"
  grep -q "proto UDP" "$dir/tcpdump.out" || fail "tcpdump shows no UDP"
  if grep -q "incorrect" "$dir/tcpdump.out"; then fail "tcpdump: bad checksums"; fi
  echo "tcpdump: $(grep -c ', proto ' "$dir/tcpdump.out") packets read"
else
  echo "tcpdump not installed: not checked"
fi
if command -v tshark >/dev/null 2>&1; then
  tshark -q -n -r "$dir/server.pcap" -d "tcp.port==$tcp_port,rpc" -d "udp.port==$udp_port,data" \
    -o rpc.dissect_unknown_programs:TRUE -o tcp.check_checksum:TRUE -o udp.check_checksum:TRUE \
    -o ip.check_checksum:TRUE -z expert,warn >"$dir/tshark.out" 2>&1 || fail "tshark -r failed"
  if grep -q "Warns (\|Errors (" "$dir/tshark.out"; then fail "tshark expert warnings/errors"; fi
  echo "tshark: no expert warnings or errors"
else
  echo "tshark not installed: not checked"
fi

# 3. Replay against fresh servers (the same device spec), fast and original timing.
for timing in fast original; do
  start_server "fresh_$timing"
  fresh_pid=$PID
  "$IPSAN" replay --pcap "$dir/server.pcap" -s "127.0.0.1:$PORT_UDP" -n alice \
    --key-file "$dir/alice.key" --timing "$timing" >"$dir/replay_$timing.out" 2>&1 ||
    fail "replay --timing $timing exited with $?"
  stop_server "$fresh_pid"
  summary=$(grep '^replay: ' "$dir/replay_$timing.out") || fail "no summary line"
  echo "$timing: $summary"
  matched=$(echo "$summary" | sed -n 's/^replay: \([0-9]*\) matched, 0 mismatched, 0 errors,.*/\1/p')
  [ -n "$matched" ] || fail "differences: $summary"
  [ "$matched" -eq "$requests" ] || fail "$requests requests made, $matched matched: $summary"
done
echo "PASS"
