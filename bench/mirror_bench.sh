#!/bin/sh
# bench/mirror_bench.sh: mirror write latency and IOPS against a single leg, resync rate, and
# replication cycle throughput (docs/MIRROR.md). Prints figures; asserts nothing.
#
#   single   one file leg (in /dev/shm), exported alone
#   mirror2  a mirror of two file legs (in /dev/shm), bitmap region 1 MiB
#   mirror-r a mirror of one file leg and one leg on a second server over loopback (reliable UDP)
#   workloads: 4 KiB random write QD1 and QD32, 256 MiB region, over TCP from `ipsan bench`
#   resync:  a leg taken offline, 256 MiB written sequentially, `mirror resync`: MB/s of the job
#   replication (--repl): a 1 GiB thin disk filled, full cycle, then 10 % of its chunks changed and
#            an incremental cycle, to a device on the second server through `ipsan netem`
#            (25 ms each way = 50 ms RTT) at 0 % and 1 % loss
#
# Usage: bench/mirror_bench.sh [--build DIR] [--runtime S] [--repl]
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=$ROOT/build/debug
RUNTIME=5
REPL=0
while [ $# -gt 0 ]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --runtime) RUNTIME=$2; shift 2 ;;
    --repl) REPL=1; shift ;;
    *) echo "mirror_bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
IPSAN=$BUILD/tools/ipsan
dir=$(mktemp -d /dev/shm/ipsan_mirror_bench.XXXXXX)
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in $pids; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
key=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
umask 077
echo "alice $key" >"$dir/keys"
echo "$key" >"$dir/alice.key"

start() {  # NAME CONFIG: sets UDP_PORT TCP_PORT PID
  mkfifo "$dir/$1.fifo"
  "$IPSAN" --log-level warn server --listen 127.0.0.1 --port 0 --key-file "$dir/keys" --config "$2" \
    --admin-socket "$dir/$1.sock" >"$dir/$1.fifo" 2>"$dir/$1.err" &
  PID=$!
  pids="$pids $PID"
  exec 4<"$dir/$1.fifo"
  IFS= read -r line <&4
  cat <&4 >/dev/null &
  exec 4<&-
  UDP_PORT=$(echo "$line" | sed -n 's/.* udp=\([0-9]*\).*/\1/p')
  TCP_PORT=$(echo "$line" | sed -n 's/.* tcp=\([0-9]*\).*/\1/p')
}

cat >"$dir/b.toml" <<TOML
[backend.r]
spec = "file:r.img,size=512M"
[backend.rep]
spec = "file:rep.img,size=1G"
[[export]]
device_id = 1
disk = "r"
[[export]]
device_id = 2
disk = "rep"
TOML
start b "$dir/b.toml"
B_PORT=$UDP_PORT
opts="client=alice&key-file=$dir/alice.key&transport=udp"
cat >"$dir/a.toml" <<TOML
[backend.s]
spec = "file:s.img,size=512M"
[backend.l1]
spec = "file:l1.img,size=512M"
[backend.l2]
spec = "file:l2.img,size=512M"
[backend.bm2]
spec = "file:bm2.img,size=1M"
[mirror.mirror2]
legs = ["l1", "l2"]
bitmap = "bm2"
[backend.l3]
spec = "file:l3.img,size=512M"
[backend.lr]
spec = "ipsan://127.0.0.1:$B_PORT/1?$opts"
[backend.bm3]
spec = "file:bm3.img,size=1M"
[mirror.mirrorr]
legs = ["l3", "lr"]
bitmap = "bm3"
[backend.pb]
spec = "file:pool.img,size=1200M"
[pool.p1]
device = "pb"
disks = { vm1 = "1G" }
[[export]]
device_id = 1
disk = "s"
[[export]]
device_id = 2
disk = "mirror2"
[[export]]
device_id = 3
disk = "mirrorr"
[[export]]
device_id = 4
disk = "vm1"
TOML
start a "$dir/a.toml"
A_PORT=$TCP_PORT
disk() { "$IPSAN" disk -a "$dir/a.sock" "$@"; }
wait_synced() {  # MIRROR
  while :; do
    disk mirror status --mirror "$1" >"$dir/st" 2>&1
    grep -q "healthy" "$dir/st" && return 0
    sleep 0.5
  done
}
echo "# initial sync of the mirrors (512 MiB each)"
t0=$(date +%s.%N)
wait_synced mirror2
t1=$(date +%s.%N)
echo "initial sync mirror2 (two local legs): $(echo "512 / ($t1 - $t0)" | bc -l | cut -c1-6) MiB/s (includes start-up)"
wait_synced mirrorr
bench() {  # LABEL DEVICE ARGS...
  label=$1 dev=$2
  shift 2
  "$IPSAN" bench -s "127.0.0.1:$A_PORT" -t tcp -n alice --key-file "$dir/alice.key" -d "$dev" \
    --size 256M --runtime "${RUNTIME}s" --json --label "$label" "$@" 2>/dev/null |
    python3 -c 'import json,sys; j=json.loads(sys.stdin.read()); print("%-22s iops %8.0f  lat p50 %7.1f us  p99 %7.1f us" % (j.get("label"), j.get("iops", 0), j["latency"].get("p50_us", 0), j["latency"].get("p99_us", 0)))'
}
echo "# 4 KiB random writes over TCP, ${RUNTIME}s each"
for qd in 1 32; do
  bench "single qd$qd" 1 --rw randwrite --bs 4K --qd $qd
  bench "mirror2 qd$qd" 2 --rw randwrite --bs 4K --qd $qd
  bench "mirror-remote qd$qd" 3 --rw randwrite --bs 4K --qd $qd
done

echo "# resync: 256 MiB written while a leg was out"
disk mirror offline --mirror mirror2 --leg l2 >/dev/null
"$IPSAN" bench -s "127.0.0.1:$A_PORT" -t tcp -n alice --key-file "$dir/alice.key" -d 2 \
  --rw write --bs 1M --qd 8 --size 256M --bytes 256M >/dev/null 2>&1
"$IPSAN" client -s "127.0.0.1:$A_PORT" -t tcp -n alice --key-file "$dir/alice.key" -d 2 flush >/dev/null 2>&1
t0=$(date +%s.%N)
disk mirror resync --mirror mirror2 >/dev/null
wait_synced mirror2
t1=$(date +%s.%N)
disk mirror status --mirror mirror2 | grep "resync"
echo "resync 256 MiB (two local legs): $(echo "256 / ($t1 - $t0)" | bc -l | cut -c1-6) MiB/s"

[ $REPL = 1 ] || exit 0
echo "# replication of a 1 GiB thin disk to server B through netem (50 ms RTT)"
"$IPSAN" bench -s "127.0.0.1:$A_PORT" -t tcp -n alice --key-file "$dir/alice.key" -d 4 \
  --rw write --bs 1M --qd 8 --bytes 1G >/dev/null 2>&1
for loss in 0 1%; do
  "$IPSAN" netem --listen 127.0.0.1:0 --forward "127.0.0.1:$B_PORT" --delay 25ms --loss $loss \
    --seed 7 >"$dir/netem.out" 2>&1 &
  np=$!
  pids="$pids $np"
  while ! grep -q "listening on" "$dir/netem.out"; do sleep 0.1; done
  NP=$(sed -n 's/listening on .*:\([0-9]*\)$/\1/p' "$dir/netem.out")
  "$IPSAN" replicate -a "$dir/a.sock" remove --disk vm1 >/dev/null 2>&1 || true
  "$IPSAN" replicate -a "$dir/a.sock" set --disk vm1 \
    --target "ipsan://127.0.0.1:$NP/2?$opts&timeout=30s" >/dev/null
  echo "loss $loss: full cycle"
  "$IPSAN" replicate -a "$dir/a.sock" run --disk vm1 --wait | grep "last cycle"
  # 10 % of the 16384 chunks of 64 KiB: every 10th.
  "$IPSAN" bench -s "127.0.0.1:$A_PORT" -t tcp -n alice --key-file "$dir/alice.key" -d 4 \
    --rw randwrite --bs 64K --qd 8 --bytes 104M --seed $$ >/dev/null 2>&1
  echo "loss $loss: incremental cycle after ~10 % random 64 KiB writes"
  "$IPSAN" replicate -a "$dir/a.sock" run --disk vm1 --wait | grep "last cycle"
  kill "$np"
done
