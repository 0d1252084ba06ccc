#!/bin/sh
# `ipsan client` as a new user types it (the README's commands): flags after the command word,
# a line on stderr for read / write / flush / trim, verify --json and --progress. Usage: client_cli_test.sh IPSAN.
# 127.0.0.1 only, port 0; readiness is the server's "listening on" line read from a pipe.
set -eu
IPSAN=$1
dir=$(mktemp -d "${TMPDIR:-/tmp}/ipsan_client_cli.XXXXXX")
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for f in "$dir"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; head -n 40 "$f" >&2; }; done
  exit 1
}
umask 077
key=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
echo "alice $key" >"$dir/keys"
echo "$key" >"$dir/alice.key"
mkfifo "$dir/server.fifo"
"$IPSAN" server --listen 127.0.0.1 --port 0 --key-file "$dir/keys" --device ram:8M \
  --device ram:4M >"$dir/server.fifo" 2>"$dir/server.err.log" &
pid=$!
exec 4<"$dir/server.fifo"
IFS= read -r line <&4 || fail "server did not start: $(cat "$dir/server.err.log")"
cat <&4 >"$dir/server.log" &
exec 4<&-
PORT=$(echo "$line" | sed -n 's/.* udp=\([0-9]*\) .*/\1/p')
[ -n "$PORT" ] || fail "no port in: $line"
C="$IPSAN client -s 127.0.0.1:$PORT -n alice --key-file $dir/alice.key"

# -d after the command word selects the device (device 1 is 4 MiB = 8192 blocks of 512).
$C capacity -d 1 >"$dir/cap.out" 2>"$dir/cap.log" || fail "capacity -d 1 failed"
[ "$(cat "$dir/cap.out")" = "512 8192" ] || fail "capacity -d 1 printed '$(cat "$dir/cap.out")'"
$C -d 1 capacity >"$dir/cap0.out" 2>"$dir/cap0.log" || fail "-d 1 capacity failed"
grep -q "key of client 'alice' read as 64 hex digits" "$dir/cap0.log" ||
  fail "stderr does not say how the key was read: $(cat "$dir/cap0.log")"
[ "$(cat "$dir/cap0.out")" = "512 8192" ] || fail "-d 1 capacity printed '$(cat "$dir/cap0.out")'"
# ... as do the connection flags.
$IPSAN client capacity -s 127.0.0.1:$PORT -n alice --key-file "$dir/alice.key" >"$dir/c2.out" \
  2>&1 || fail "connection flags after the command word: $(cat "$dir/c2.out")"

# Every command says what it did.
head -c 4096 /dev/urandom >"$dir/in.bin"
$C write -d 1 --lba 8 -i "$dir/in.bin" 2>"$dir/w.log" || fail "write"
grep -q "wrote 4 KiB at lba 8" "$dir/w.log" || fail "write said: $(cat "$dir/w.log")"
$C read -d 1 --lba 8 --blocks 8 -o "$dir/out.bin" 2>"$dir/r.log" || fail "read"
grep -q "read 4 KiB at lba 8" "$dir/r.log" || fail "read said: $(cat "$dir/r.log")"
cmp "$dir/in.bin" "$dir/out.bin" || fail "read back differs"
$C flush -d 1 2>"$dir/f.log" || fail "flush"
grep -q "flushed device 1" "$dir/f.log" || fail "flush said: $(cat "$dir/f.log")"
$C trim -d 1 --lba 8 --blocks 8 2>"$dir/t.log" || fail "trim"
grep -q "trimmed 8 blocks at lba 8" "$dir/t.log" || fail "trim said: $(cat "$dir/t.log")"

# verify --json: one object, ok and byte counts.
$C verify --bytes 1M --io-size 64K --json >"$dir/v.out" 2>"$dir/v.log" || fail "verify --json"
[ "$(wc -l <"$dir/v.out")" -eq 1 ] || fail "verify --json printed more than one line"
grep -q '"ok":true' "$dir/v.out" || fail "verify --json: $(cat "$dir/v.out")"
grep -q '"bytes_read":1048576' "$dir/v.out" || fail "verify --json: $(cat "$dir/v.out")"
# verify --progress: the shared progress line on stderr (each phase's end at least), stdout clean.
$C verify --bytes 1M --io-size 64K --json --progress >"$dir/vp.out" 2>"$dir/vp.log" ||
  fail "verify --progress"
grep -q "verify: write 1 MiB of 1 MiB" "$dir/vp.log" || fail "no write progress: $(cat "$dir/vp.log")"
grep -q "verify: read 1 MiB of 1 MiB" "$dir/vp.log" || fail "no read progress: $(cat "$dir/vp.log")"
[ "$(wc -l <"$dir/vp.out")" -eq 1 ] || fail "verify --progress wrote progress to stdout"
kill -INT "$pid"
wait "$pid" || fail "server exited with $?"
pid=""

# No server there any more: over UDP the command says so after --connect-timeout (it used to
# wait for the 30 s request timeout and say "timeout"); over TCP the refusal is reported at once,
# not after the connect timeout (30 s here).
timeout 60 $C -t udp --connect-timeout 2s identify >"$dir/none.out" 2>"$dir/none.log" &&
  fail "identify with no server succeeded over udp"
grep -q "no server answered at 127.0.0.1:$PORT over udp within 2s" "$dir/none.log" ||
  fail "no server over udp said: $(cat "$dir/none.log")"
t0=$(date +%s)
timeout 60 $C -t tcp --connect-timeout 30s identify >"$dir/none.out" 2>"$dir/none.log" &&
  fail "identify with no server succeeded over tcp"
t1=$(date +%s)
grep -q "cannot connect to 127.0.0.1:$PORT over tcp: .*refused" "$dir/none.log" ||
  fail "no server over tcp said: $(cat "$dir/none.log")"
[ $((t1 - t0)) -lt 20 ] || fail "no server over tcp took $((t1 - t0)) s (not reported at once)"
echo "client_cli: ok"
