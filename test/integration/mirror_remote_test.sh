#!/bin/sh
# Mirrors and replication across two real servers (the ipsan:// remote back end):
#  - server A mirrors a local file leg and a leg on server B; B is killed (-9) during a client
#    write stream: no client I/O error; B restarted on the same port: the monitor re-attaches
#    the leg and the resync copies only the regions written meanwhile (counted); legs equal;
#  - A replicates a thin disk to a device on B through `ipsan netem` (50 ms RTT, 1 % loss):
#    a full cycle and an incremental one, the target compared byte for byte; the proxy killed in
#    the middle of a (rate-limited) cycle, restarted: the next run resumes and completes;
#  - bad input: a remote leg smaller than the mirror, a replica target with a wrong key, a target
#    that does not exist: clear errors, nothing written.
# Usage: mirror_remote_test.sh IPSAN. 127.0.0.1 only; readiness read from pipes.
set -eu
IPSAN=$1
dir=$(mktemp -d "${TMPDIR:-/tmp}/ipsan_mirror_remote.XXXXXX")
pids=""
cleanup() {
  for p in $pids; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for f in "$dir"/*.log "$dir"/*.out; do
    [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
  done
  exit 1
}

key=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
bad=ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
umask 077
echo "alice $key" >"$dir/keys"
echo "$key" >"$dir/alice.key"
echo "$bad" >"$dir/bad.key"

# Server B: the remote leg (16 MiB), a replica target (8 MiB) and a small device (8 MiB).
cat >"$dir/b.toml" <<TOML
[backend.r]
spec = "file:r.img,size=16M"
[backend.rep]
spec = "file:rep.img,size=8M"
[backend.small]
spec = "file:small.img,size=8M"
[[export]]
device_id = 1
disk = "r"
[[export]]
device_id = 2
disk = "rep"
[[export]]
device_id = 3
disk = "small"
TOML

n=0
# start NAME CONFIG [PORT]: sets UDP_PORT, TCP_PORT, PID.
start() {
  n=$((n + 1))
  mkfifo "$dir/$1$n.fifo"
  "$IPSAN" server --listen 127.0.0.1 --port "${3:-0}" --key-file "$dir/keys" --config "$2" \
    --admin-socket "$dir/$1.sock" >"$dir/$1$n.fifo" 2>"$dir/$1$n.err.log" &
  PID=$!
  pids="$pids $PID"
  exec 4<"$dir/$1$n.fifo"
  IFS= read -r line <&4 || fail "server $1 did not start: $(cat "$dir/$1$n.err.log")"
  cat <&4 >"$dir/$1$n.log" &
  exec 4<&-
  UDP_PORT=$(echo "$line" | sed -n 's/.* udp=\([0-9]*\).*/\1/p')
  TCP_PORT=$(echo "$line" | sed -n 's/.* tcp=\([0-9]*\).*/\1/p')
  [ -n "$TCP_PORT" ] || fail "no port in: $line"
}
start b "$dir/b.toml"
B_PID=$PID
B_PORT=$UDP_PORT
remote="ipsan://127.0.0.1:$B_PORT"
opts="client=alice&key-file=$dir/alice.key&transport=udp&timeout=2s&fence-timeout=2s&connect-timeout=2s"

cat >"$dir/a.toml" <<TOML
[backend.la]
spec = "file:a.img,size=16M"
[backend.lr]
spec = "$remote/1?$opts"
[backend.bm]
spec = "file:bm.img,size=1M"
[mirror.m1]
legs = ["la", "lr"]
bitmap = "bm"
region = "64K"
[backend.pb]
spec = "file:pool.img,size=64M"
[pool.p1]
device = "pb"
disks = { vm1 = "8M" }
[[export]]
device_id = 1
disk = "m1"
[[export]]
device_id = 2
disk = "vm1"
TOML
start a "$dir/a.toml"
A_PORT=$TCP_PORT
client() { "$IPSAN" client -s "127.0.0.1:$A_PORT" -t tcp -n alice --key-file "$dir/alice.key" "$@"; }
disk() { "$IPSAN" disk -a "$dir/a.sock" "$@"; }
refused() {
  if "$@" >"$dir/refused.out" 2>&1; then fail "accepted: $*"; fi
  grep -q "$EXPECT" "$dir/refused.out" || fail "$*: expected '$EXPECT', got: $(cat "$dir/refused.out")"
}
wait_in_sync() {
  i=0
  while :; do
    disk mirror status --mirror m1 >"$dir/status.out" 2>&1 || fail "mirror status"
    if [ "$(grep -c ' in-sync ' "$dir/status.out")" = 2 ]; then return 0; fi
    i=$((i + 1))
    [ $i -lt 900 ] || fail "mirror not in sync after 180 s: $(cat "$dir/status.out")"
    sleep 0.2  # polling the server's state
  done
}
resync_regions() { sed -n 's/.* resync \([0-9]*\) regions.*/\1/p' "$dir/status.out"; }

wait_in_sync
[ "$(resync_regions)" = 256 ] || fail "initial sync copied $(resync_regions) regions"
cmp -s "$dir/a.img" "$dir/r.img" || fail "legs differ after the initial sync"

# Kill B during a write stream: every client write succeeds.
head -c 65536 /dev/urandom >"$dir/A"
i=0
while [ $i -lt 40 ]; do
  [ $i = 10 ] && { kill -9 "$B_PID"; wait "$B_PID" 2>/dev/null || true; }
  client -d 1 write --lba $((i * 256)) -i "$dir/A" >/dev/null 2>"$dir/w.err" || fail "client write $i failed while a leg was down: $(cat "$dir/w.err")"
  i=$((i + 1))
done
client -d 1 flush >/dev/null || fail "flush with a leg down"
disk mirror status --mirror m1 >"$dir/status.out"
grep -q "leg lr *failed" "$dir/status.out" || fail "lr not failed: $(cat "$dir/status.out")"
stale=$(sed -n 's/.*leg lr *failed *stale \([0-9]*\) bytes.*/\1/p' "$dir/status.out")
[ "$stale" -le $((31 * 65536)) ] && [ "$stale" -ge $((30 * 65536)) ] || fail "stale $stale bytes"
before=$(resync_regions)
start b "$dir/b.toml" "$B_PORT"
B_PID=$PID
wait_in_sync
copied=$(( $(resync_regions) - before ))
[ "$copied" = $((stale / 65536)) ] || fail "resync copied $copied regions, $((stale / 65536)) were stale"
cmp -s "$dir/a.img" "$dir/r.img" || fail "legs differ after the resync"

# Bad input: a remote leg smaller than the mirror.
EXPECT="fewer than the mirror" refused disk mirror add --mirror m1 --leg ls --spec "$remote/3?$opts"

# Replication through netem: 50 ms RTT, 1 % loss.
mkfifo "$dir/netem.fifo"
start_netem() {
  "$IPSAN" netem --listen "127.0.0.1:${1:-0}" --forward "127.0.0.1:$B_PORT" --delay 25ms --loss 1% \
    --seed 7 >"$dir/netem.fifo" 2>"$dir/netem.err.log" &
  NETEM_PID=$!
  pids="$pids $NETEM_PID"
  exec 5<"$dir/netem.fifo"
  while IFS= read -r l <&5; do
    case "$l" in "listening on "*) NETEM_PORT=${l##*:}; break ;; esac
  done
  cat <&5 >"$dir/netem.log" &
  exec 5<&-
  [ -n "${NETEM_PORT:-}" ] || fail "netem did not start: $(cat "$dir/netem.err.log")"
}
start_netem
r() { "$IPSAN" replicate -a "$dir/a.sock" "$@"; }
head -c 8388608 /dev/urandom >"$dir/vm1.data"
i=0
while [ $i -lt 128 ]; do
  dd if="$dir/vm1.data" of="$dir/chunk" bs=65536 skip=$i count=1 2>/dev/null
  client -d 2 write --lba $((i * 128)) -i "$dir/chunk" >/dev/null || fail "vm1 write $i"
  i=$((i + 1))
done
client -d 2 flush >/dev/null || fail "vm1 flush"
cp "$dir/rep.img" "$dir/rep.before"
EXPECT="auth\|key" refused r set --disk vm1 --target "ipsan://127.0.0.1:$NETEM_PORT/2?client=alice&key-file=$dir/bad.key&transport=udp&connect-timeout=3s"
EXPECT="unknown\|device" refused r set --disk vm1 --target "ipsan://127.0.0.1:$NETEM_PORT/9?$opts"
cmp -s "$dir/rep.img" "$dir/rep.before" || fail "a refused target was written"
target="ipsan://127.0.0.1:$NETEM_PORT/2?client=alice&key-file=$dir/alice.key&transport=udp&timeout=15s&fence-timeout=2s"
r set --disk vm1 --target "$target" >/dev/null || fail "replicate set"
r run --disk vm1 --wait >"$dir/rep1.out" || fail "replicate run 1: $(cat "$dir/rep1.out")"
cat "$dir/rep1.out"
cmp -s "$dir/vm1.data" "$dir/rep.img" || fail "replica differs after the full cycle"
for c in 3 10 17 30 44 51 60 71 80 92 101 115 127; do
  client -d 2 write --lba $((c * 128)) -i "$dir/A" >/dev/null || fail "vm1 change $c"
  dd if="$dir/A" of="$dir/vm1.data" bs=65536 seek=$c count=1 conv=notrunc 2>/dev/null
done
client -d 2 flush >/dev/null || fail "vm1 flush 2"
r run --disk vm1 --wait >"$dir/rep2.out" || fail "replicate run 2: $(cat "$dir/rep2.out")"
cat "$dir/rep2.out"
grep -q "last cycle 851968 bytes" "$dir/rep2.out" || fail "incremental cycle: $(cat "$dir/rep2.out")"
cmp -s "$dir/vm1.data" "$dir/rep.img" || fail "replica differs after the incremental cycle"

# Partition mid-cycle: the proxy dies during a slow full cycle (new target size: full copy).
head -c 8388608 /dev/urandom >"$dir/vm1.data"
i=0
while [ $i -lt 128 ]; do
  dd if="$dir/vm1.data" of="$dir/chunk" bs=65536 skip=$i count=1 2>/dev/null
  client -d 2 write --lba $((i * 128)) -i "$dir/chunk" >/dev/null || fail "vm1 rewrite $i"
  i=$((i + 1))
done
client -d 2 flush >/dev/null || fail "vm1 flush 3"
r set --disk vm1 --target "$target" --limit 2M >/dev/null || fail "replicate set --limit"
r run --disk vm1 >/dev/null || fail "replicate run 3"
i=0
while :; do
  r status --disk vm1 >"$dir/rs.out"
  grep -q "cycle in progress: .*(\([1-9][0-9]*\) of" "$dir/rs.out" && break
  i=$((i + 1))
  [ $i -lt 600 ] || fail "cycle made no progress: $(cat "$dir/rs.out")"
  sleep 0.1
done
kill -9 "$NETEM_PID"
wait "$NETEM_PID" 2>/dev/null || true
i=0
while :; do
  "$IPSAN" job -a "$dir/a.sock" list >"$dir/jobs.out"
  grep -q "replicate .*failed" "$dir/jobs.out" && break
  i=$((i + 1))
  [ $i -lt 600 ] || fail "cycle did not fail without a link: $(cat "$dir/jobs.out")"
  sleep 0.2
done
r status --disk vm1 >"$dir/rs.out"
grep -q "cycle in progress" "$dir/rs.out" || fail "no cycle in progress after the partition"
start_netem "$NETEM_PORT"
r set --disk vm1 --target "$target" >/dev/null || fail "replicate set (no limit)"
r run --disk vm1 --wait >"$dir/rep3.out" || fail "replicate run after the partition: $(cat "$dir/rep3.out")"
cat "$dir/rep3.out"
cmp -s "$dir/vm1.data" "$dir/rep.img" || fail "replica differs after the resumed cycle"
echo "mirror_remote: ok"
