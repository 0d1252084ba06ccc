#!/bin/sh
# Thin pools through the real program: a server with a pool declared in its TOML layout, a client
# writing over TCP, snapshots / clones / diff / check through `ipsan disk` on the admin socket,
# bad input refused with clear errors, and `kill -9` of the server in the middle of a write
# stream: after restart every write acknowledged after a FLUSH (or with FUA) is there, the
# snapshot is intact and the map checks clean.
# Usage: thin_cli_test.sh IPSAN. 127.0.0.1 only, port 0; readiness is read from a pipe.
set -eu
IPSAN=$1
dir=$(mktemp -d "${TMPDIR:-/tmp}/ipsan_thin_cli.XXXXXX")
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
umask 077  # key files must be private (docs/SECURITY.md)
echo "alice $key" >"$dir/keys"
echo "$key" >"$dir/alice.key"
cat >"$dir/layout.toml" <<TOML
[backend.b1]
spec = "file:pool.img,size=64M"

[pool.p1]
device = "b1"
disks = { vm1 = "8M" }

[[export]]
device_id = 1
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
# refused CMD... : must fail with a message containing $EXPECT
refused() {
  if disk "$@" >"$dir/refused.out" 2>&1; then fail "accepted: disk $*"; fi
  grep -q "$EXPECT" "$dir/refused.out" || fail "disk $*: expected '$EXPECT', got: $(cat "$dir/refused.out")"
}

head -c 65536 /dev/urandom >"$dir/A"
head -c 65536 /dev/urandom >"$dir/B"
start_server
client -d 1 write --lba 0 --fua -i "$dir/A" >/dev/null || fail "write A"
disk snapshot create --disk vm1 --name s1 >"$dir/snap.out" || fail "snapshot create"
client -d 1 write --lba 0 -i "$dir/B" >/dev/null || fail "write B"
client -d 1 flush >/dev/null || fail "flush"
disk diff --from s1 --to vm1 >"$dir/diff.out" || fail "diff"
grep -q "128 blocks of 512 bytes changed in 1 extents" "$dir/diff.out" || fail "diff: $(cat "$dir/diff.out")"
disk show >"$dir/show.out" || fail "show"
grep -q "pool p1" "$dir/show.out" || fail "show has no pool line"

# Bad input: clear errors, nothing changed.
EXPECT="no thin disk" refused snapshot create --disk nope --name x
EXPECT="already" refused snapshot create --disk vm1 --name s1
EXPECT="no thin volume" refused snapshot delete --name nope
EXPECT="exported" refused snapshot rollback --disk vm1 --snapshot s1
EXPECT="not a snapshot" refused snapshot clone --snapshot vm1 --name c0
EXPECT="no thin volume" refused diff --from s1 --to nope
disk snapshot list >"$dir/list.out" || fail "list"
[ "$(grep -c '^snapshot\|^disk\|^clone' "$dir/list.out")" -eq 2 ] || fail "list: $(cat "$dir/list.out")"

# A clone of the snapshot, exported and written; the snapshot does not change.
disk snapshot clone --snapshot s1 --name c1 >/dev/null || fail "clone"
disk export --name c1 --device-id 3 >/dev/null || fail "export clone"
disk export --name s1 --device-id 2 --read-only >/dev/null || fail "export snapshot"
EXPECT="exported" refused snapshot delete --name s1
client -d 3 write --lba 8 --fua -i "$dir/B" >/dev/null || fail "write clone"
client -d 2 read --lba 0 --blocks 128 -o "$dir/s1.read" >/dev/null || fail "read s1"
cmp -s "$dir/A" "$dir/s1.read" || fail "snapshot changed by a clone write"

# kill -9 in the middle of a stream of writes (acknowledged, not flushed).
mkfifo "$dir/progress"
(
  i=0
  while [ $i -lt 200 ]; do
    client -d 1 write --lba $((256 + (i % 64) * 8)) -i "$dir/A" >/dev/null 2>&1 || exit 0
    echo "$i"
    i=$((i + 1))
  done
) >"$dir/progress" &
writer=$!
exec 5<"$dir/progress"
# The kill comes after a seeded number of acknowledged writes (IPSAN_THIN_CLI_SEED).
seed=${IPSAN_THIN_CLI_SEED:-5}
echo "thin_cli_test: kill -9 after $((1 + seed % 12)) writes (IPSAN_THIN_CLI_SEED=$seed)"
k=0
while [ $k -lt $((1 + seed % 12)) ] && IFS= read -r _ <&5; do k=$((k + 1)); done
kill -9 "$PID"
wait "$writer" 2>/dev/null || true
exec 5<&-
start_server
disk check >"$dir/check.out" 2>&1 || fail "check after kill -9: $(cat "$dir/check.out")"
grep -q "ok: map consistent" "$dir/check.out" || fail "check output: $(cat "$dir/check.out")"
client -d 1 read --lba 0 --blocks 128 -o "$dir/vm1.read" >/dev/null || fail "read vm1 after restart"
cmp -s "$dir/B" "$dir/vm1.read" || fail "flushed write B lost after kill -9"
client -d 2 read --lba 0 --blocks 128 -o "$dir/s1.read2" >/dev/null || fail "read s1 after restart"
cmp -s "$dir/A" "$dir/s1.read2" || fail "snapshot s1 changed after kill -9"
disk snapshot list >"$dir/list2.out" || fail "list after restart"
grep -q "c1" "$dir/list2.out" || fail "clone lost after restart"
# Rollback (after unexporting) and delete in any order.
disk unexport --device-id 1 >/dev/null || fail "unexport vm1"
disk snapshot rollback --disk vm1 --snapshot s1 >/dev/null || fail "rollback"
disk export --name vm1 --device-id 1 >/dev/null || fail "re-export vm1"
client -d 1 read --lba 0 --blocks 128 -o "$dir/vm1.read2" >/dev/null || fail "read after rollback"
cmp -s "$dir/A" "$dir/vm1.read2" || fail "rollback did not restore the snapshot"
disk unexport --device-id 2 >/dev/null || fail "unexport s1"
disk snapshot delete --name s1 >/dev/null || fail "delete s1 (its clone c1 stays)"
client -d 3 read --lba 8 --blocks 128 -o "$dir/c1.read" >/dev/null || fail "read c1"
cmp -s "$dir/B" "$dir/c1.read" || fail "clone changed by deleting its snapshot"
disk check >/dev/null || fail "final check"
kill -INT "$PID"
wait "$PID" || fail "server exit $?"
echo "thin_cli_test: ok"
