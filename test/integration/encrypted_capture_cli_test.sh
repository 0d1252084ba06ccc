#!/bin/sh
# `--transport-security encrypted` through the real program: a client writes random blocks over
# reliable UDP and over TCP to a server that records everything it sends and receives
# (`--capture`); no 32-byte piece of the data may appear in the capture, and the data reads back.
# The control run (integrity only) must show the data in its capture, so the search can fail.
# Usage: encrypted_capture_cli_test.sh IPSAN. 127.0.0.1 only, port 0; readiness is the server's
# "listening on" line read from a pipe (no sleeps).
set -eu
IPSAN=$1
dir=$(mktemp -d "${TMPDIR:-/tmp}/ipsan_encrypted_capture.XXXXXX")
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for f in "$dir"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; head -n 40 "$f" >&2; }; done
  exit 1
}
key=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
umask 077
echo "alice $key" >"$dir/keys"
echo "$key" >"$dir/alice.key"

# found PCAP DATA: how many 32-byte pieces of DATA (at 32-byte steps) occur in PCAP.
found() {
  python3 - "$1" "$2" <<'PY'
import sys
cap = open(sys.argv[1], "rb").read()
data = open(sys.argv[2], "rb").read()
print(sum(1 for i in range(0, len(data) - 31, 32) if data[i:i + 32] in cap))
PY
}

# run MODE: one server capturing, a UDP and a TCP client writing and reading back random data.
run() {
  mode=$1
  mkfifo "$dir/$mode.fifo"
  "$IPSAN" --log-level info server --listen 127.0.0.1 --port 0 --key-file "$dir/keys" --device ram:8M \
    --transport-security "$mode" --capture "$dir/$mode.pcap" \
    >"$dir/$mode.fifo" 2>"$dir/$mode.server.log" &
  spid=$!
  pids="$pids $spid"
  exec 4<"$dir/$mode.fifo"
  IFS= read -r line <&4 || fail "$mode server did not start"
  cat <&4 >"$dir/$mode.out.log" &
  exec 4<&-
  udp=$(echo "$line" | sed -n 's/.* udp=\([0-9]*\) .*/\1/p')
  tcp=$(echo "$line" | sed -n 's/.* tcp=\([0-9]*\) .*/\1/p')
  [ -n "$udp" ] && [ -n "$tcp" ] || fail "no ports in: $line"
  head -c 65536 /dev/urandom >"$dir/$mode.udp.bin"
  head -c 65536 /dev/urandom >"$dir/$mode.tcp.bin"
  for t in udp tcp; do
    eval port=\$$t
    C="$IPSAN client -s 127.0.0.1:$port -t $t -n alice --key-file $dir/alice.key --transport-security $mode"
    lba=0
    [ "$t" = tcp ] && lba=1024
    $C write --lba $lba -i "$dir/$mode.$t.bin" 2>"$dir/$mode.$t.w.log" || fail "$mode $t write"
    $C read --lba $lba --blocks 128 -o "$dir/$mode.$t.back" 2>"$dir/$mode.$t.r.log" ||
      fail "$mode $t read"
    cmp -s "$dir/$mode.$t.bin" "$dir/$mode.$t.back" || fail "$mode $t: data differs"
    grep -q "transport security $mode" "$dir/$mode.server.log" ||
      fail "$mode $t: the server log does not name the session's transport security"
  done
  kill -INT "$spid"
  wait "$spid" || fail "$mode server exited with $?"
  [ -s "$dir/$mode.pcap" ] || fail "$mode: no capture written"
}

run integrity
for t in udp tcp; do
  n=$(found "$dir/integrity.pcap" "$dir/integrity.$t.bin")
  # 2048 pieces written; the write and the read-back carry each at least once.
  [ "$n" -ge 2000 ] || fail "control run: only $n of 2048 clear pieces of the $t data in the capture"
done
run encrypted
for t in udp tcp; do
  n=$(found "$dir/encrypted.pcap" "$dir/encrypted.$t.bin")
  [ "$n" -eq 0 ] || fail "encrypted: $n pieces of the $t data in the capture"
done
echo "ok: integrity capture shows the data, encrypted capture shows none of it (udp and tcp)"
