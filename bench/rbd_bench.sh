#!/usr/bin/env bash
# rbd_bench.sh: ipsan on an RBD image against `rbd bench` (librbd directly) on the same cluster in
# the same run (docs/CEPH.md; figures in bench/RESULTS.md). Prints figures, asserts nothing.
#
#   bench/rbd_bench.sh IPSAN CLUSTER_DIR [RUNTIME_S]
#
# CLUSTER_DIR: a cluster from scripts/ceph-cluster.sh. The image (1 GiB) is filled first so
# reads hit real objects. Workloads: 4 KiB random read and write at QD 32, 1 MiB sequential read
# and write at QD 8; `rbd bench` with --io-threads equal to the queue depth, `ipsan bench` through
# `ipsan server --device rbd:...` over reliable UDP on 127.0.0.1. One after the other (the
# server holds the image's exclusive lock, so rbd bench runs before it starts).
set -euo pipefail
IPSAN=${1:?ipsan binary}
D=${2:?cluster dir}
RT=${3:-20}
work=$(mktemp -d /tmp/ipsan-rbd-bench.XXXXXX)
img=bench-$$
RBD=(rbd --conf "$D/ceph.conf" --keyring "$D/client.admin.keyring")
spid=""
cleanup() {
  [[ -n $spid ]] && kill "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
  "${RBD[@]}" rm "rbd/$img" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
"${RBD[@]}" create --size 1G "rbd/$img"
"${RBD[@]}" bench --io-type write --io-pattern seq --io-size 4M --io-threads 4 --io-total 1G \
  "rbd/$img" >/dev/null

rbd_bench() {  # TYPE PATTERN SIZE THREADS
  # Runs RT seconds. rbd bench prints one line a second, "SEC OPS OPS/SEC BYTES/SEC" with OPS
  # cumulative; the rate is the last OPS over the last SEC (SIGINT does not always get the
  # summary line printed).
  local out bytes
  out=$(timeout -s INT "$RT" "${RBD[@]}" bench --io-type "$1" --io-pattern "$2" --io-size "$3" \
        --io-threads "$4" --io-total 100G "rbd/$img" 2>&1 || true)
  bytes=$(numfmt --from=iec "$3")
  echo "$out" | awk -v b="$bytes" '$1 ~ /^[0-9]+$/ && $2 ~ /^[0-9]+$/ {sec = $1; ops = $2}
    END {o = sec ? ops / sec : 0; printf "%.0f IOPS, %.1f MiB/s (%d s)\n", o, o * b / 1048576, sec}'
}

declare -A ipsan_rw=([read-rand]=randread [write-rand]=randwrite [read-seq]=read [write-seq]=write)
for w in "read rand 4K 32" "write rand 4K 32" "read seq 1M 8" "write seq 1M 8"; do
  set -- $w
  printf '%-32s %s\n' "rbd bench   $1 $2 $3 qd$4:" "$(rbd_bench "$1" "$2" "$3" "$4")"
done

umask 077
key=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
echo "bench $key" >"$work/keys"
echo "$key" >"$work/bench.key"
"$IPSAN" server --listen 127.0.0.1 --port 0 --port-file "$work/port" --key-file "$work/keys" \
  --max-io 8M --device "rbd:rbd/$img,conf=$D/ceph.conf,keyring=$D/client.admin.keyring" \
  >"$work/server.log" 2>&1 &
spid=$!
for _ in $(seq 1 300); do [[ -s $work/port ]] && break; sleep 0.1; done
[[ -s $work/port ]] || { cat "$work/server.log"; exit 1; }
port=$(sed 's/.*udp=\([0-9]*\).*/\1/' "$work/port")
for w in "read rand 4K 32" "write rand 4K 32" "read seq 1M 8" "write seq 1M 8"; do
  set -- $w
  line=$("$IPSAN" bench -s "127.0.0.1:$port" -n bench --key-file "$work/bench.key" \
         --rw "${ipsan_rw[$1-$2]}" --bs "$3" --qd "$4" --size 1G --runtime "${RT}s" \
         --server-pid "$spid" 2>&1 | grep -Ei 'iops|MiB/s' | head -n 1)
  printf '%-32s %s\n' "ipsan bench $1 $2 $3 qd$4:" "$line"
done
