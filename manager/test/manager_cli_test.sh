#!/bin/bash
# The storage manager end to end with real processes (docs/MANAGER.md): a manager, two servers,
# three clients. Placement (least used), grants and I/O, a client confined to its own device,
# revocation (refused within the servers' sync period), expiry, the manager down while clients
# keep working with valid grants, a server unreachable during an allocation (rolled back, nothing
# left on the server), and kill -9 of the manager in the middle of an allocation (rolled back at
# restart). Bounded polling only (no fixed sleeps as synchronisation); 127.0.0.1, port 0.
# Usage: manager_cli_test.sh IPSAN
set -eu
IPSAN=$1
dir=$(mktemp -d "${TMPDIR:-/tmp}/ipsan_manager_cli.XXXXXX")
pids=""
cleanup() {
  for p in $pids; do kill -CONT "$p" 2>/dev/null || true; kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for f in "$dir"/*.log "$dir"/*.out; do
    [ -f "$f" ] && { echo "--- $f" >&2; tail -n 25 "$f" >&2; }
  done
  exit 1
}
# poll N CMD...: run CMD every 0.2 s until it succeeds, at most N tries.
poll() {
  local n=$1; shift
  for _ in $(seq "$n"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  return 1
}
umask 077
for k in manager admin s1 s2 alice bob carol; do
  "$IPSAN" key gen -o "$dir/$k.key" >"$dir/$k.pub" || fail "key gen $k"
done
[ "$(stat -c %a "$dir/alice.key")" = 600 ] || fail "private key not 0600"
EXPECT_KEY=$("$IPSAN" key pub "$dir/alice.key")
[ "$EXPECT_KEY" = "$(cat "$dir/alice.pub")" ] || fail "key pub differs from key gen"

MPORT=""
start_manager() {
  rm -f "$dir/manager.port"
  "$IPSAN" manager serve --db "$dir/state.db" --key "$dir/manager.key" \
    --admin-key "$dir/admin.pub" --listen 127.0.0.1:${MPORT:-0} --grant-ttl 8s --alloc-timeout 4s \
    --offline-after 3s --port-file "$dir/manager.port" >>"$dir/manager.log" 2>&1 &
  MPID=$!
  pids="$pids $MPID"
  poll 100 test -s "$dir/manager.port" || fail "manager did not start"
  MPORT=$(sed -n 's/port=//p' "$dir/manager.port")
}
start_manager
M=127.0.0.1:$MPORT
admin() { "$IPSAN" manager -m "$M" --identity "$dir/admin.key" --manager-key "$dir/manager.pub" "$@"; }

admin server add s1 "$dir/s1.pub" >/dev/null || fail "server add s1"
admin server add s2 "$dir/s2.pub" >/dev/null || fail "server add s2"
for c in alice bob carol; do admin client add "$c" "$dir/$c.pub" >/dev/null || fail "client add $c"; done
if admin client add alice2 "$dir/alice.pub" >"$dir/dup.out" 2>&1; then fail "same key twice accepted"; fi
# Unknown keys are refused (and audited).
if "$IPSAN" manager -m "$M" --identity "$dir/carol.key" disk list >"$dir/carol_admin.out" 2>&1; then
  fail "a client acted as administrator"
fi
grep -q "clients may only" "$dir/carol_admin.out" || fail "client-as-admin: $(cat "$dir/carol_admin.out")"

declare -A SPORT SPID
# The servers also keep a key ring (a static client "alice"): it must not reach managed disks.
STATIC=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
echo "alice $STATIC" >"$dir/keys"
echo "$STATIC" >"$dir/alice.static"
start_server() {  # NAME CAPACITY
  local s=$1
  mkdir -p "$dir/$s"
  [ -f "$dir/$s/layout.toml" ] || printf '[backend.base]\nspec = "ram:1M"\n\n[[export]]\ndevice_id = 0\ndisk = "base"\n' >"$dir/$s/layout.toml"
  "$IPSAN" server --listen 127.0.0.1 --port 0 --identity "$dir/$s.key" \
    --manager-key "$dir/manager.pub" --manager "$M" --key-file "$dir/keys" --config "$dir/$s/layout.toml" \
    --managed-dir "$dir/$s/images" --managed-capacity "$2" --manager-sync 1s \
    --port-file "$dir/$s.port" >"$dir/$s.log" 2>&1 &
  SPID[$s]=$!
  pids="$pids ${SPID[$s]}"
  poll 100 test -s "$dir/$s.port" || fail "server $s did not start"
  SPORT[$s]=$(sed -n 's/.*tcp=\([0-9]*\).*/\1/p' "$dir/$s.port")
}
start_server s1 64M
start_server s2 128M
online() { admin server list | grep -c '"online": true' | grep -qx 2; }
poll 50 online || fail "servers did not register: $(admin server list)"

# Placement: least used first. s2 (128M) takes alice's 32M and bob's 48M; then s1 (64M free)
# beats s2 (48M free) for carol's 40M.
admin disk create --size 32M --for alice --name da >"$dir/da.out" || fail "create da"
grep -q "on s2 as device" "$dir/da.out" || fail "da placement: $(cat "$dir/da.out")"
admin disk create --size 48M --for bob --name db >"$dir/db.out" || fail "create db"
grep -q "on s2 as device" "$dir/db.out" || fail "db placement: $(cat "$dir/db.out")"
admin disk create --size 40M --for carol --name dc >"$dir/dc.out" || fail "create dc"
grep -q "on s1 as device" "$dir/dc.out" || fail "dc placement: $(cat "$dir/dc.out")"
if admin disk create --size 100G --for alice >"$dir/big.out" 2>&1; then fail "100G accepted"; fi
grep -q "no server can hold" "$dir/big.out" || fail "big: $(cat "$dir/big.out")"
dev() { sed -n 's/.* as device \([0-9]*\) .*/\1/p' "$dir/$1.out"; }
DA=$(dev da); DB=$(dev db); DC=$(dev dc)

# port SERVER -> its address; client NAME SERVER DEVICE CMD... (grant from the manager)
client() {
  local who=$1 s=$2 d=$3; shift 3
  "$IPSAN" client -s "127.0.0.1:${SPORT[$s]}" -t tcp --identity "$dir/$who.key" --manager "$M" \
    --manager-key "$dir/manager.pub" --connect-timeout 5s -d "$d" "$@"
}
client_file() {  # NAME SERVER DEVICE CMD...: the grant from a file (no manager involved)
  local who=$1 s=$2 d=$3; shift 3
  "$IPSAN" client -s "127.0.0.1:${SPORT[$s]}" -t tcp --identity "$dir/$who.key" \
    --grant "$dir/$who.grant" --connect-timeout 3s --timeout 3s -d "$d" "$@"
}
head -c 65536 /dev/urandom >"$dir/A"
client alice s2 "$DA" write --lba 0 -i "$dir/A" >"$dir/wa.out" 2>&1 || fail "alice write"
client alice s2 "$DA" read --lba 0 --blocks 128 -o "$dir/A.back" >"$dir/ra.out" 2>&1 || fail "alice read"
cmp -s "$dir/A" "$dir/A.back" || fail "alice read back different data"
client bob s2 "$DB" write --lba 0 -i "$dir/A" >/dev/null 2>&1 || fail "bob write"
client carol s1 "$DC" read --lba 0 --blocks 8 -o /dev/null >/dev/null 2>&1 || fail "carol read"
# Bob's session reaches his device only: alice's disk is invisible to him.
if client bob s2 "$DA" read --lba 0 --blocks 8 -o "$dir/steal" >"$dir/steal.out" 2>&1; then
  fail "bob read alice's disk"
fi
grep -qi "unknown.device" "$dir/steal.out" || fail "bob on da: $(cat "$dir/steal.out")"
# The key-ring client of the same name logs in but does not see the managed disk.
"$IPSAN" client -s "127.0.0.1:${SPORT[s2]}" -t tcp -n alice --key-file "$dir/alice.static" \
  --connect-timeout 3s -d 0 capacity >/dev/null 2>&1 || fail "static key login (device 0)"
if "$IPSAN" client -s "127.0.0.1:${SPORT[s2]}" -t tcp -n alice --key-file "$dir/alice.static" \
     --connect-timeout 3s -d "$DA" capacity >"$dir/static.out" 2>&1; then
  fail "a key-ring client reached a managed disk"
fi
grep -qi "unknown.device" "$dir/static.out" || fail "static on da: $(cat "$dir/static.out")"

# A grant of read-only access is enforced by the server.
admin disk grant da carol --read-only >/dev/null || fail "grant da to carol"
"$IPSAN" manager -m "$M" --identity "$dir/carol.key" --manager-key "$dir/manager.pub" \
  grant fetch --disk da -o "$dir/carol.grant" >/dev/null || fail "carol fetch ro grant"
client_file carol s2 "$DA" read --lba 0 --blocks 128 -o "$dir/A.carol" >/dev/null 2>&1 || fail "carol ro read"
cmp -s "$dir/A" "$dir/A.carol" || fail "carol read different data"
if client_file carol s2 "$DA" write --lba 0 -i "$dir/A" >"$dir/rowrite.out" 2>&1; then
  fail "carol wrote through a read-only grant"
fi
grep -qi "protect" "$dir/rowrite.out" || fail "ro write: $(cat "$dir/rowrite.out")"

# Revocation: alice keeps a copy of her grant; after revoke the server refuses it within the
# sync period (1 s; polled up to 5 s), and the manager no longer hands one out.
"$IPSAN" manager -m "$M" --identity "$dir/alice.key" --manager-key "$dir/manager.pub" \
  grant fetch --disk da -o "$dir/alice.grant" >/dev/null || fail "alice fetch"
client_file alice s2 "$DA" capacity >/dev/null 2>&1 || fail "alice with grant file"
admin disk revoke da alice >/dev/null || fail "revoke"
T0=$(date +%s%N)
refused_now() { ! client_file alice s2 "$DA" capacity >/dev/null 2>&1; }
poll 25 refused_now || fail "revoked grant still accepted after 5 s"
T1=$(date +%s%N)
echo "revocation took effect after $(( (T1 - T0) / 1000000 )) ms"
if client alice s2 "$DA" capacity >"$dir/revoked.out" 2>&1; then fail "manager renewed a revoked grant"; fi
grep -q "no grant" "$dir/revoked.out" || fail "revoked: $(cat "$dir/revoked.out")"
poll 25 sh -c "'$IPSAN' manager -m '$M' --identity '$dir/admin.key' audit | grep -q 'login-refused alice.*revoked'" \
  || fail "refused login not audited: $(admin audit)"

# Manager down: bob's grant (valid for 8 s) keeps working; a new fetch fails clearly.
"$IPSAN" manager -m "$M" --identity "$dir/bob.key" --manager-key "$dir/manager.pub" \
  grant fetch --disk db -o "$dir/bob.grant" >/dev/null || fail "bob fetch"
kill -9 "$MPID"
wait "$MPID" 2>/dev/null || true
client_file bob s2 "$DB" read --lba 0 --blocks 128 -o "$dir/B.back" >/dev/null 2>&1 || fail "bob with manager down"
cmp -s "$dir/A" "$dir/B.back" || fail "bob read different data"
if client bob s2 "$DB" capacity >"$dir/down.out" 2>&1; then fail "fetch worked with the manager down"; fi
grep -q "manager 127.0.0.1" "$dir/down.out" || fail "manager down: $(cat "$dir/down.out")"
# Expiry: the same grant file is refused once its 8 s are over.
expired_now() { ! client_file bob s2 "$DB" capacity >/dev/null 2>&1; }
poll 60 expired_now || fail "expired grant still accepted"
start_manager

# Server unreachable during an allocation (stopped): clear error, nothing left after it resumes.
poll 50 online || fail "servers did not come back"
kill -STOP "${SPID[s1]}"
if admin disk create --size 8M --server s1 --for carol --name dx >"$dir/dx.out" 2>&1; then
  fail "allocation on a stopped server succeeded"
fi
grep -q "rolled back" "$dir/dx.out" || fail "dx: $(cat "$dir/dx.out")"
kill -CONT "${SPID[s1]}"
gone() { ! admin disk list | grep -q "\"$1\""; }
poll 50 gone dx || fail "dx still listed: $(admin disk list)"
[ ! -e "$dir/s1/images/dx.img" ] || fail "dx image left on s1"

# kill -9 of the manager in the middle of an allocation: rolled back at restart.
kill -STOP "${SPID[s1]}"
admin disk create --size 8M --server s1 --for carol --name dk >"$dir/dk.out" 2>&1 &
CPID=$!
creating() { admin disk show dk | grep -q creating; }
poll 50 creating || fail "dk never in state creating"
kill -9 "$MPID"
wait "$MPID" 2>/dev/null || true
wait "$CPID" 2>/dev/null && fail "create survived the manager's death"
kill -CONT "${SPID[s1]}"
start_manager
poll 50 gone dk || fail "dk not rolled back after restart: $(admin disk list)"
[ ! -e "$dir/s1/images/dk.img" ] || fail "dk image left on s1"
admin audit --limit 1000 >"$dir/audit.out" || fail "audit"
for a in disk-create grant revoke login-refused disk-rollback disk-create-failed server-register; do
  grep -q " $a " "$dir/audit.out" || fail "audit has no $a"
done
# Deleting a disk revokes its grants and removes the image.
admin disk delete dc >"$dir/del.out" || fail "delete dc"
poll 50 gone dc || fail "dc not deleted"
[ ! -e "$dir/s1/images/dc.img" ] || fail "dc image left"
echo "manager_cli: all checks passed"
