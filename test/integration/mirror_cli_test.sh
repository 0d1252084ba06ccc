#!/bin/sh
# Mirrors and replication through the real program: a server with a two-leg mirror and a thin
# pool in its TOML layout, a client writing over TCP, `ipsan disk mirror`, `ipsan replicate` and
# `ipsan job` on the admin socket.
#  - initial full sync, then every client write on both legs (the leg images compared);
#  - a leg taken out during writes: no client error, the resync copies only the written regions
#    (counted), legs equal after;
#  - verify finds a corrupted region, --repair fixes it;
#  - kill -9 of the server during a (rate-limited) resync: after restart the resync resumes and
#    the legs end equal, the data intact;
#  - replication: a full cycle, then an incremental one copying only the changed chunks, the target
#    compared byte for byte with the disk;
#  - bad input: a leg smaller than the mirror, removing the last in-sync leg, a replica target in
#    use or too small, unknown names: clear errors, nothing changed.
# Usage: mirror_cli_test.sh IPSAN. 127.0.0.1 only, port 0; readiness is read from a pipe.
set -eu
IPSAN=$1
dir=$(mktemp -d "${TMPDIR:-/tmp}/ipsan_mirror_cli.XXXXXX")
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
umask 077
echo "alice $key" >"$dir/keys"
echo "$key" >"$dir/alice.key"
cat >"$dir/layout.toml" <<TOML
[backend.la]
spec = "file:a.img,size=16M"

[backend.lb]
spec = "file:b.img,size=16M"

[backend.bm]
spec = "file:bm.img,size=1M"

[mirror.m1]
legs = ["la", "lb"]
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

n=0
start_server() {
  n=$((n + 1))
  mkfifo "$dir/srv$n.fifo"
  "$IPSAN" server --listen 127.0.0.1 --port 0 --key-file "$dir/keys" --config "$dir/layout.toml" \
    --admin-socket "$dir/admin.sock" >"$dir/srv$n.fifo" 2>"$dir/srv$n.err.log" &
  PID=$!
  pids="$pids $PID"
  exec 4<"$dir/srv$n.fifo"
  IFS= read -r line <&4 || fail "server did not start: $(cat "$dir/srv$n.err.log")"
  cat <&4 >"$dir/srv$n.log" &
  exec 4<&-
  PORT=$(echo "$line" | sed -n 's/.* tcp=\([0-9]*\).*/\1/p')
  [ -n "$PORT" ] || fail "no tcp port in: $line"
}
client() { "$IPSAN" client -s "127.0.0.1:$PORT" -t tcp -n alice --key-file "$dir/alice.key" "$@"; }
disk() { "$IPSAN" disk -a "$dir/admin.sock" "$@"; }
refused() {
  if "$@" >"$dir/refused.out" 2>&1; then fail "accepted: $*"; fi
  grep -q "$EXPECT" "$dir/refused.out" || fail "$*: expected '$EXPECT', got: $(cat "$dir/refused.out")"
}
# Waits (bounded: 120 s) until `disk mirror status` shows both legs in sync.
wait_in_sync() {
  i=0
  while :; do
    disk mirror status --mirror m1 >"$dir/status.out" 2>&1 || fail "mirror status"
    if [ "$(grep -c ' in-sync ' "$dir/status.out")" = 2 ]; then return 0; fi
    i=$((i + 1))
    [ $i -lt 600 ] || fail "mirror not in sync after 120 s: $(cat "$dir/status.out")"
    sleep 0.2  # polling the server's state, not synchronising with it
  done
}
resync_regions() { sed -n 's/.* resync \([0-9]*\) regions.*/\1/p' "$dir/status.out"; }
legs_equal() { cmp -s "$dir/a.img" "$dir/b.img"; }
# Waits for job $1 to end; prints its line to $dir/job.out.
wait_job() {
  i=0
  while :; do
    "$IPSAN" job -a "$dir/admin.sock" list >"$dir/jobs.out" || fail "job list"
    line=$(grep "^job $1 " "$dir/jobs.out" || true)
    case "$line" in *running*|"") ;; *) echo "$line" >"$dir/job.out"; return 0 ;; esac
    i=$((i + 1))
    [ $i -lt 600 ] || fail "job $1 did not end: $line"
    sleep 0.2
  done
}

head -c 65536 /dev/urandom >"$dir/A"
head -c 65536 /dev/urandom >"$dir/B"
start_server
wait_in_sync
legs_equal || fail "legs differ after the initial sync"
[ "$(resync_regions)" = 256 ] || fail "initial sync copied $(resync_regions) regions, expected 256"

# Writes reach both legs.
for l in 0 128 1000 20000; do client -d 1 write --lba $l --fua -i "$dir/A" >/dev/null || fail "write $l"; done
client -d 1 flush >/dev/null || fail "flush"
legs_equal || fail "legs differ after writes"

# A leg out during writes: no client error; the resync copies only the four written regions.
disk mirror offline --mirror m1 --leg lb >/dev/null || fail "offline"
client -d 1 write --lba 0 -i "$dir/B" >/dev/null || fail "degraded write 1"
client -d 1 write --lba 4096 -i "$dir/B" >/dev/null || fail "degraded write 2"
client -d 1 write --lba 8190 -i "$dir/B" >/dev/null || fail "degraded write 3 (two regions)"
client -d 1 flush >/dev/null || fail "degraded flush"
disk mirror status --mirror m1 >"$dir/status.out"
grep -q "DEGRADED" "$dir/status.out" || fail "not degraded: $(cat "$dir/status.out")"
grep -q "leg lb *failed *stale 262144 bytes" "$dir/status.out" || fail "stale bytes: $(cat "$dir/status.out")"
legs_equal && fail "legs equal while lb was out"
disk mirror resync --mirror m1 >/dev/null || fail "resync"
wait_in_sync
[ "$(resync_regions)" = 260 ] || fail "resync copied $(( $(resync_regions) - 256 )) regions, expected 4"
legs_equal || fail "legs differ after resync"
client -d 1 read --lba 8190 --blocks 128 -o "$dir/r.out" >/dev/null || fail "read"
cmp -s "$dir/B" "$dir/r.out" || fail "read back differs"

# Verify finds a corrupted region; --repair fixes it.
printf 'corrupt' | dd of="$dir/b.img" bs=1 seek=$((100 * 65536 + 100)) conv=notrunc 2>/dev/null
disk mirror verify --mirror m1 >"$dir/verify.out" || fail "verify"
id=$(sed -n 's/^job \([0-9]*\) .*/\1/p' "$dir/verify.out" | head -1)
wait_job "$id"
disk mirror status --mirror m1 >"$dir/status.out"
grep -q "verify: 256 regions checked, 1 differ, 0 repaired" "$dir/status.out" || fail "verify: $(cat "$dir/status.out")"
disk mirror verify --mirror m1 --repair >"$dir/verify.out" || fail "verify --repair"
id=$(sed -n 's/^job \([0-9]*\) .*/\1/p' "$dir/verify.out" | head -1)
wait_job "$id"
legs_equal || fail "legs differ after verify --repair"

# Bad input.
EXPECT="fewer than the mirror" refused disk mirror add --mirror m1 --leg lc --spec "file:$dir/c.img,size=8M"
EXPECT="no mirror" refused disk mirror status --mirror nope
EXPECT="in use" refused disk mirror add --mirror m1 --leg pb
EXPECT="in use" refused disk mirror add --mirror m1 --leg bm
legs_equal || fail "a refused request changed a leg"

# kill -9 during a rate-limited resync; the restarted server finishes it.
disk mirror offline --mirror m1 --leg lb >/dev/null || fail "offline 2"
EXPECT="last in-sync" refused disk mirror remove --mirror m1 --leg la
i=0
while [ $i -lt 64 ]; do client -d 1 write --lba $((i * 512)) -i "$dir/A" >/dev/null || fail "write $i"; i=$((i + 1)); done
client -d 1 flush >/dev/null || fail "flush 2"
client -d 1 read --lba 0 --blocks 32768 -o "$dir/before.img" >/dev/null || fail "read whole"
disk mirror resync --mirror m1 --limit 1M >"$dir/resync.out" || fail "resync 2"
# Kill once some (not all) of the 64 stale regions are copied.
i=0
while :; do
  disk mirror status --mirror m1 >"$dir/status.out" 2>&1 || fail "mirror status"
  stale=$(sed -n 's/.*leg lb *syncing *stale \([0-9]*\) bytes.*/\1/p' "$dir/status.out")
  if [ -n "$stale" ] && [ "$stale" -lt 4194304 ] && [ "$stale" -gt 0 ]; then break; fi
  i=$((i + 1))
  [ $i -lt 600 ] || fail "resync made no progress: $(cat "$dir/status.out")"
  sleep 0.05
done
kill -9 "$PID"
wait "$PID" 2>/dev/null || true
start_server
wait_in_sync
legs_equal || fail "legs differ after the resync resumed"
client -d 1 read --lba 0 --blocks 32768 -o "$dir/after.img" >/dev/null || fail "read whole after"
cmp -s "$dir/before.img" "$dir/after.img" || fail "data changed across kill -9 + resync"

# Replication: full cycle, then an incremental one.
r() { "$IPSAN" replicate -a "$dir/admin.sock" "$@"; }
head -c 8388608 /dev/urandom >"$dir/vm1.data"
i=0
while [ $i -lt 128 ]; do
  dd if="$dir/vm1.data" of="$dir/chunk" bs=65536 skip=$i count=1 2>/dev/null
  client -d 2 write --lba $((i * 128)) -i "$dir/chunk" >/dev/null || fail "vm1 write $i"
  i=$((i + 1))
done
client -d 2 flush >/dev/null || fail "vm1 flush"
EXPECT="in use" refused r set --disk vm1 --target "file:$dir/pool.img"
EXPECT="smaller" refused r set --disk vm1 --target "file:$dir/small.img,size=4M"
EXPECT="no thin disk" refused r set --disk nope --target "file:$dir/replica.img,size=8M"
r set --disk vm1 --target "file:$dir/replica.img,size=8M" >/dev/null || fail "replicate set"
r run --disk vm1 --wait >"$dir/rep1.out" || fail "replicate run 1: $(cat "$dir/rep1.out")"
cmp -s "$dir/vm1.data" "$dir/replica.img" || fail "replica differs after the full cycle"
# Change 10 % (13 of 128 chunks).
for c in 3 10 17 30 44 51 60 71 80 92 101 115 127; do
  client -d 2 write --lba $((c * 128)) -i "$dir/B" >/dev/null || fail "vm1 change $c"
  dd if="$dir/B" of="$dir/vm1.data" bs=65536 seek=$c count=1 conv=notrunc 2>/dev/null
done
client -d 2 flush >/dev/null || fail "vm1 flush 2"
r run --disk vm1 --wait >"$dir/rep2.out" || fail "replicate run 2: $(cat "$dir/rep2.out")"
grep -q "last cycle 851968 bytes" "$dir/rep2.out" || fail "incremental cycle: $(cat "$dir/rep2.out")"
cmp -s "$dir/vm1.data" "$dir/replica.img" || fail "replica differs after the incremental cycle"
r status >"$dir/rstatus.out" || fail "replicate status"
grep -q "cycles 2" "$dir/rstatus.out" || fail "status: $(cat "$dir/rstatus.out")"
echo "mirror_cli: ok"
