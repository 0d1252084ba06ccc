#!/bin/sh
# The Wireshark dissector (tools/wireshark/ipsan.lua, docs/WIRESHARK.md) on captures made by
# `ipsan server --capture`: reliable UDP, TCP, and reliable UDP through `ipsan netem` with 3 % loss
# both ways. Checks, with tshark: no malformed frame, no expert error, no Lua error; every call
# matched to its reply; the decoded fields equal what the server and clients did (bytes written
# and read = the server's stop line, requests executed = the server's count, every READ/WRITE at
# the LBAs and sizes of the workload); retransmitted fragments and multi-range ACKs seen in the
# lossy run. Then synthetic datagrams of the protected wire format (synth_pcap.py).
# Usage: wireshark_test.sh IPSAN LUA. 127.0.0.1 only, port 0; readiness from the programs' output
# read through FIFOs (no sleeps). Under CI=true a missing tshark or python3 is a failure.
set -eu
IPSAN=$1
LUA=$2
SYNTH=$(dirname "$LUA")/synth_pcap.py
dir=$(mktemp -d "${TMPDIR:-/tmp}/ipsan_wireshark.XXXXXX")
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for f in "$dir"/*.log "$dir"/*.out; do
    [ -f "$f" ] && { echo "--- $f" >&2; head -n 40 "$f" >&2; }
  done
  exit 1
}
for tool in tshark python3; do
  if ! command -v $tool >/dev/null 2>&1; then
    if [ "${CI:-}" = true ]; then fail "$tool is not installed (scripts/setup.sh installs it)"; fi
    echo "SKIP: $tool not installed"
    exit 77
  fi
done
TSHARK="tshark -n -X lua_script:$LUA -o udp.try_heuristic_first:TRUE -o tcp.try_heuristic_first:TRUE"

key=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
umask 077  # key files must not be readable by others (the server refuses them)
echo "alice $key" >"$dir/keys"
echo "$key" >"$dir/alice.key"

# run_case NAME TRANSPORT NETEM BYTES QD: a capturing server, one verify client, the server stopped.
run_case() {
  name=$1 transport=$2 netem=$3 bytes=$4 qd=$5
  mkfifo "$dir/$name.fifo"
  "$IPSAN" server --listen 127.0.0.1 --port 0 --key-file "$dir/keys" --device ram:8M \
    --capture "$dir/$name.pcap" >"$dir/$name.fifo" 2>"$dir/${name}_server.err.log" &
  spid=$!
  pids="$pids $spid"
  exec 4<"$dir/$name.fifo"
  IFS= read -r line <&4 || fail "$name: server did not start"
  cat <&4 >"$dir/${name}_server.log" &
  exec 4<&-
  port=$(echo "$line" | sed -n "s/.* $transport=\([0-9]*\).*/\1/p")
  [ -n "$port" ] || fail "$name: no port in $line"
  if [ "$netem" != none ]; then
    mkfifo "$dir/$name.netem.fifo"
    "$IPSAN" netem --listen 127.0.0.1:0 --forward "127.0.0.1:$port" $netem --seed 7 \
      >"$dir/$name.netem.fifo" 2>&1 &
    npid=$!
    pids="$pids $npid"
    exec 5<"$dir/$name.netem.fifo"
    port=""
    while IFS= read -r l <&5; do
      case $l in *"listening on"*) port=${l##*:}; break ;; esac
    done
    cat <&5 >"$dir/${name}_netem.log" &
    exec 5<&-
    [ -n "$port" ] || fail "$name: netem did not start"
  fi
  "$IPSAN" client -s "127.0.0.1:$port" -t "$transport" -n alice --key-file "$dir/alice.key" \
    verify --bytes "$bytes" --qd "$qd" --io-size 64K >"$dir/${name}_client.out" 2>&1 || fail "$name: client"
  kill -INT "$spid"
  wait "$spid" || fail "$name: server exited with $?"
  [ "$netem" = none ] || kill "$npid" 2>/dev/null || true
}

# check NAME BYTES: the dissector's view of NAME.pcap against the workload and the server's log.
check() {
  name=$1 bytes=$2
  pcap="$dir/$name.pcap"
  $TSHARK -2 -r "$pcap" -V >"$dir/${name}_V.out" 2>"$dir/${name}_tshark.log" || fail "$name: tshark -V"
  if grep -E -q "Malformed|\[malformed\]|Lua Error|Dissector bug" "$dir/${name}_V.out" "$dir/${name}_tshark.log"; then
    fail "$name: malformed frames or Lua errors: $(grep -E -m3 "Malformed|malformed|Lua Error|Dissector bug" "$dir/${name}_V.out" "$dir/${name}_tshark.log")"
  fi
  if grep -q "Expert Info (Error/" "$dir/${name}_V.out"; then
    fail "$name: expert errors: $(grep -m3 "Expert Info (Error/" "$dir/${name}_V.out")"
  fi
  # One line per RPC message: type, proc, reply_in / call_in, xid, seq, lba, blocks, data length,
  # status. Frames holding several messages give comma-separated lists: split them.
  $TSHARK -2 -r "$pcap" -Y ipsan -T fields -E separator=/t -E aggregator=, \
    -e ipsan.msg_type -e ipsan.proc -e ipsan.reply_in -e ipsan.call_in -e ipsan.xid \
    -e ipsan.reply_proc -e ipsan.lba -e ipsan.blocks -e ipsan.data.length -e ipsan.status \
    >"$dir/${name}_fields.out" 2>"$dir/${name}_fields.log" || fail "$name: tshark -T fields"
  python3 - "$dir/${name}_fields.out" "$dir/${name}_server.log" "$bytes" "$name" <<'PY' || fail "$name: fields disagree with the workload"
import re, sys
rows, server_log, want, name = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
calls = replies = logouts = 0
unmatched = []
written = read = 0
ops = {}
lbas = {"20": [], "21": []}
for line in open(rows):
    f = line.rstrip("\n").split("\t")
    types = f[0].split(",")
    # Several messages per frame only happen for one kind at a time in these captures; keep
    # the lists aligned by index where present.
    cols = [c.split(",") if c else [] for c in f]
    proc_i = reply_i = call_i = 0
    for i, t in enumerate(types):
        if t == "0":
            calls += 1
            proc = cols[1][i] if i < len(cols[1]) else "?"
            ops[proc] = ops.get(proc, 0) + 1
            if (i >= len(cols[2]) or not cols[2][i]) and proc != "3":
                unmatched.append(line)  # (a client may close before LOGOUT's reply arrives)
            if proc == "3":
                logouts += 1
            if proc in lbas:
                lbas[proc].append((int(cols[6][proc_i]), int(cols[7][proc_i])))
                proc_i += 1
            if proc == "21":
                written += int(cols[8][0])
        else:
            replies += 1
            if i >= len(cols[3]) or not cols[3][i]:
                unmatched.append(line)
            if cols[5] and cols[5][i] == "20" and cols[9][i] == "0":
                read += int(cols[8][-1])
assert not unmatched, f"{len(unmatched)} messages without their call/reply: {unmatched[:3]}"
assert calls - logouts <= replies <= calls, f"{calls} calls, {replies} replies"
stop = open(server_log).read()
m = re.search(r"executed=(\d+).*read_bytes=(\d+) written_bytes=(\d+)", stop)
assert m, "no stop line in the server log"
executed, srv_read, srv_written = map(int, m.groups())
assert written == srv_written == want, f"WRITE data {written}, server wrote {srv_written}, workload {want}"
assert read == srv_read == want, f"READ data {read}, server read {srv_read}, workload {want}"
device_calls = sum(n for p, n in ops.items() if int(p) >= 10)
assert device_calls == executed, f"{device_calls} device calls decoded, server executed {executed}"
# The verify workload: 64 KiB requests (128 blocks) covering 0 .. bytes/512, each LBA once.
for proc in ("20", "21"):
    got = sorted(lbas[proc])
    assert got == [(lba, 128) for lba in range(0, want // 512, 128)], f"{proc}: {got[:4]}..."
print(f"{name}: {calls} calls matched to {replies} replies, {device_calls} device calls, "
      f"{written} bytes written, {read} read")
PY
}

run_case udp udp none 512K 4
check udp 524288
run_case tcp tcp none 512K 4
check tcp 524288
run_case lossy udp "--loss 3%" 512K 4
check lossy 524288
# Loss shows: fragments sent again (the server's retransmissions) and ACKs with gaps.
dups=$($TSHARK -r "$dir/lossy.pcap" -Y "ipsan_rudp.msg.duplicate" 2>/dev/null | wc -l)
gaps=$($TSHARK -r "$dir/lossy.pcap" -Y "ipsan_rudp.ack.range_count > 1" 2>/dev/null | wc -l)
echo "lossy: $dups frames with retransmitted fragments, $gaps ACKs with gaps"
[ "$dups" -gt 0 ] || fail "lossy: no retransmitted fragment decoded"
[ "$gaps" -gt 0 ] || fail "lossy: no multi-range ACK decoded"

# The protected wire format (synthetic; today's server does not send it yet).
python3 "$SYNTH" "$dir/synth.pcap" || fail "synth_pcap.py"
$TSHARK -r "$dir/synth.pcap" -V >"$dir/synth_V.out" 2>"$dir/synth_tshark.log" || fail "synth: tshark"
if grep -E -q "Malformed|\[malformed\]|Lua Error|Dissector bug" "$dir/synth_V.out" "$dir/synth_tshark.log"; then
  fail "synth: malformed"
fi
$TSHARK -r "$dir/synth.pcap" -T fields -e ipsan_rudp.type -e ipsan_rudp.flags -e ipsan_rudp.pn \
  -e ipsan_rudp.cookie -e ipsan_rudp.tag -e ipsan_rudp.ciphertext -e ipsan_rudp.reset_token \
  -e ipsan_rudp.reason -e ipsan.proc -e ipsan.lba -e ipsan.cred.seq -e ipsan_rudp.bind.session \
  >"$dir/synth_fields.out" 2>&1 ||
  fail "synth: fields"
python3 - "$dir/synth_fields.out" <<'PY' || fail "synth: unexpected decode: $(cat "$dir/synth_fields.out")"
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip() and "Running" not in l]
assert len(rows) == 7, rows
t = [r[0] for r in rows]
assert t == ["1", "6", "3", "3", "3", "5", "4"], t
assert rows[0][3] and rows[1][3], "cookies"                       # HELLO's COOKIE frame, RETRY
assert rows[0][11] == "0x7d6a09e1735d8b46", rows[0]               # HELLO's BIND frame
assert rows[2][1] == "0x0002" and rows[2][4] and rows[2][8] == "20"  # protected, tag, READ call
assert rows[2][9] == "72623859790382856" and rows[2][10] == "42"
assert rows[3][1] == "0x0006" and rows[3][5] and not rows[3][8]   # encrypted: opaque
assert rows[4][6], "RESET_TOKEN frame"
assert rows[5][7] == "19" and rows[5][4]                          # protected CLOSE
assert rows[6][6] and rows[6][7] == "2"                           # RESET with token
print("synthetic protected-format datagrams decoded")
PY
echo "PASS"
