#!/bin/sh
# `ipsan server --device ipsan://...` through the real program: server B re-exports server A's
# device 0; a client writes and reads through B (checked against A directly); A is stopped (a
# write through B fails with io-error within the remote's timeouts) and restarted on the same
# port (writes through B work again); bad remote specs are refused at start-up with the reason.
# Usage: remote_cli_test.sh IPSAN. 127.0.0.1 only; readiness is each server's "listening on"
# line read from a pipe.
set -eu
IPSAN=$1
dir=$(mktemp -d "${TMPDIR:-/tmp}/ipsan_remote_cli.XXXXXX")
apid=""
bpid=""
cleanup() {
  [ -n "$bpid" ] && kill "$bpid" 2>/dev/null || true
  [ -n "$apid" ] && kill "$apid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for f in "$dir"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 30 "$f" >&2; }; done
  exit 1
}
umask 077
ka=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
kb=1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100
printf 'alice %s\nb %s\n' "$ka" "$kb" >"$dir/a.keys"
printf 'alice %s\n' "$ka" >"$dir/b.keys"
echo "$ka" >"$dir/alice.key"
echo "$kb" >"$dir/b.key"

# start NAME ARGS...: runs `ipsan server ARGS` in the background, waits for its first line,
# sets $spid and $sline.
start() {
  name=$1
  shift
  rm -f "$dir/$name.fifo"
  mkfifo "$dir/$name.fifo"
  "$IPSAN" server "$@" >"$dir/$name.fifo" 2>"$dir/$name.err.log" &
  spid=$!
  exec 4<"$dir/$name.fifo"
  IFS= read -r sline <&4 || fail "server $name did not start: $(cat "$dir/$name.err.log")"
  cat <&4 >"$dir/$name.log" &
  exec 4<&-
}

start a --listen 127.0.0.1 --port 0 --key-file "$dir/a.keys" --device "file:$dir/a.img,size=8M"
apid=$spid
PA=$(echo "$sline" | sed -n 's/.* udp=\([0-9]*\) .*/\1/p')
[ -n "$PA" ] || fail "no port in: $sline"
REMOTE="ipsan://127.0.0.1:$PA/0?client=b&key-file=$dir/b.key&timeout=1s&fence-timeout=1s"
start b --listen 127.0.0.1 --port 0 --key-file "$dir/b.keys" --device "$REMOTE"
bpid=$spid
PB=$(echo "$sline" | sed -n 's/.* udp=\([0-9]*\) .*/\1/p')
[ -n "$PB" ] || fail "no port in: $sline"
A="$IPSAN client -s 127.0.0.1:$PA -n alice --key-file $dir/alice.key"
B="$IPSAN client -s 127.0.0.1:$PB -n alice --key-file $dir/alice.key"

# B's device 0 is A's: same size; data written through B is on A.
[ "$($B capacity 2>"$dir/cap.log")" = "512 16384" ] || fail "capacity through B: $(cat "$dir/cap.log")"
$B verify --bytes 2M --io-size 64K >"$dir/verify.out" 2>"$dir/verify.log" ||
  fail "verify through B: $(cat "$dir/verify.out")"
head -c 65536 /dev/urandom >"$dir/in.bin"
$B write --lba 64 -i "$dir/in.bin" 2>"$dir/w.log" || fail "write through B"
$A read --lba 64 --blocks 128 -o "$dir/direct.bin" 2>"$dir/r.log" || fail "read from A"
cmp "$dir/in.bin" "$dir/direct.bin" || fail "A does not hold what was written through B"

# A stops: a write through B fails with io-error after B's remote deadline (1s + 1s + 1s), long
# before the client's own 30 s.
kill -INT "$apid"
wait "$apid" || fail "server A exited with $?"
apid=""
t0=$(date +%s)
$B write --lba 64 -i "$dir/in.bin" >"$dir/down.out" 2>"$dir/down.log" &&
  fail "a write through B succeeded with A down"
t1=$(date +%s)
grep -q "io-error" "$dir/down.log" || fail "with A down, B said: $(cat "$dir/down.log")"
[ $((t1 - t0)) -lt 20 ] || fail "with A down, the write took $((t1 - t0)) s"

# A comes back on the same port with the same image: B's back end logs in again by itself.
start a --listen 127.0.0.1 --port "$PA" --key-file "$dir/a.keys" --device "file:$dir/a.img,size=8M"
apid=$spid
head -c 4096 /dev/urandom >"$dir/again.bin"
ok=""
for i in 1 2 3 4 5 6 7 8 9 10; do
  if $B write --lba 64 -i "$dir/again.bin" >"$dir/again.out" 2>"$dir/again.log"; then
    ok=1
    break
  fi
done
[ -n "$ok" ] || fail "writes through B did not recover after A came back: $(cat "$dir/again.log")"
$B read --lba 64 --blocks 8 -o "$dir/back.bin" 2>"$dir/r2.log" || fail "read through B"
cmp "$dir/again.bin" "$dir/back.bin" || fail "read back through B differs"

# Bad remote specs: refused at start-up, with the reason.
if "$IPSAN" server --listen 127.0.0.1 --port 0 --key-file "$dir/b.keys" \
  --device "ipsan://127.0.0.1:$PA/0?client=b&colour=red&key-file=$dir/b.key" \
  >"$dir/bad1.out" 2>"$dir/bad1.log"; then
  fail "an unknown option was accepted"
fi
grep -q "unknown option 'colour'" "$dir/bad1.log" || fail "bad option said: $(cat "$dir/bad1.log")"
if "$IPSAN" server --listen 127.0.0.1 --port 0 --key-file "$dir/b.keys" \
  --device "ipsan://127.0.0.1:$PA/7?client=b&key-file=$dir/b.key" \
  >"$dir/bad2.out" 2>"$dir/bad2.log"; then
  fail "an unknown remote device was accepted"
fi
grep -q "unknown-device" "$dir/bad2.log" || fail "unknown device said: $(cat "$dir/bad2.log")"
if "$IPSAN" server --listen 127.0.0.1 --port 0 --key-file "$dir/b.keys" \
  --device "ipsan://127.0.0.1:$PA/0?client=b&key-file=$dir/alice.key" \
  >"$dir/bad3.out" 2>"$dir/bad3.log"; then
  fail "a wrong key was accepted"
fi
grep -q "auth-failed" "$dir/bad3.log" || fail "wrong key said: $(cat "$dir/bad3.log")"

kill -INT "$bpid"
wait "$bpid" || fail "server B exited with $?"
bpid=""
kill -INT "$apid"
wait "$apid" || fail "server A exited with $?"
apid=""
echo "remote_cli: ok"
