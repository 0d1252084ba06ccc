#!/bin/sh
# conformance/rudp/figures.sh: the reliable-udp figures of bench/RESULTS.md. Starts `ipsan server`
# (1 GiB ramdisk, UDP on 127.0.0.1), then for each impairment an `ipsan netem` proxy in front of
# it, and runs rudp_loadgen through the proxy: 4 KiB random reads at QD32 and 1 MiB sequential
# writes at QD8. Prints one RESULT line per run (goodput, p50/p99 latency, rudp counters).
#
#   conformance/rudp/figures.sh [BUILD_DIR (build/conf-rel)] [SECONDS per run (8)]
set -eu
B=${1:-build/conf-rel}
T=${2:-8}
IPSAN=$B/tools/ipsan
LG=$B/conformance/rudp/rudp_loadgen
W=$(mktemp -d)
SRV=
NM=
cleanup() {
  [ -n "$NM" ] && kill "$NM" 2>/dev/null || true
  [ -n "$SRV" ] && kill "$SRV" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT INT TERM

key=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
umask 077  # key files must be private
echo "bench $key" > "$W/keys"
echo "$key" > "$W/bench.key"
"$IPSAN" server --listen 127.0.0.1 --port 0 --transport udp --port-file "$W/port" \
  --key-file "$W/keys" --device ram:1G --slots 64 > "$W/server.log" 2>&1 &
SRV=$!
i=0
while [ ! -s "$W/port" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
PORT=$(sed -n 's/.*udp=\([0-9]*\).*/\1/p' "$W/port")
echo "server udp port $PORT; $(nproc) cpus; load $(cut -d' ' -f1-3 /proc/loadavg)"

run() {  # label, netem flags...
  label=$1
  shift
  "$IPSAN" netem --listen 127.0.0.1:0 --forward 127.0.0.1:"$PORT" --seed 7 "$@" \
    > "$W/netem.log" 2>&1 &
  NM=$!
  i=0
  while ! grep -q '^listening on' "$W/netem.log" && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  via=$(sed -n 's/^listening on //p' "$W/netem.log")
  "$LG" --server "$via" --name bench --key-file "$W/bench.key" --pattern randread --bs 4096 \
    --qd 32 --runtime "$T" --label "$label" || true
  "$LG" --server "$via" --name bench --key-file "$W/bench.key" --pattern write --bs 1M \
    --qd 8 --runtime "$T" --label "$label" || true
  kill "$NM" 2>/dev/null || true
  wait "$NM" 2>/dev/null || true
  NM=
  grep -E '^(up|down|proxy):' "$W/netem.log" | sed "s/^/  $label netem /" || true
}

# Reference: no proxy at all (what the proxy itself costs).
"$LG" --server 127.0.0.1:"$PORT" --name bench --key-file "$W/bench.key" --pattern randread \
  --bs 4096 --qd 32 --runtime "$T" --label direct || true
"$LG" --server 127.0.0.1:"$PORT" --name bench --key-file "$W/bench.key" --pattern write --bs 1M \
  --qd 8 --runtime "$T" --label direct || true
run none
run loss-0.1% --loss 0.1%
run loss-1% --loss 1%
run loss-5% --loss 5%
run bursty --burst 1%,25%
run delay-1ms --delay 1ms
run reorder-10% --delay 1ms --reorder 10%
run dup-1% --duplicate 1%
run rtt-20ms --delay 10ms
# The same with 8 MiB proxy socket buffers: without them the one-threaded proxy drops part of a
# 20 ms window in bursts (see socket_drops), which is the proxy's limit, not the path's.
run rtt-20ms-buf8M --delay 10ms --socket-buffer 8388608
