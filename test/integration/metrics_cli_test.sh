#!/bin/sh
# Live metrics end to end through the real program (docs/METRICS.md): a server with --metrics and
# --admin-socket; scrapes /metrics over HTTP before and after a known workload over UDP and TCP;
# checks the values moved exactly as the workload says, that `promtool check metrics` accepts every
# scrape, that `ipsan stats` reports the same numbers, and that the endpoint refuses what is not a
# scrape. Usage: metrics_cli_test.sh IPSAN. 127.0.0.1 only, port 0; readiness from the server's
# output read through a FIFO (no sleeps). Under CI=true a missing curl or promtool is a failure.
set -eu
IPSAN=$1
dir=$(mktemp -d "${TMPDIR:-/tmp}/ipsan_metrics_cli.XXXXXX")
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for f in "$dir"/*.log "$dir"/*.out; do
    [ -f "$f" ] && { echo "--- $f" >&2; head -n 60 "$f" >&2; }
  done
  exit 1
}
for tool in curl promtool nbdinfo; do
  if ! command -v $tool >/dev/null 2>&1; then
    if [ "${CI:-}" = true ]; then fail "$tool is not installed (scripts/setup.sh installs it)"; fi
    echo "SKIP: $tool not installed"
    exit 77
  fi
done

key=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
umask 077  # key files must not be readable by others (the server refuses them)
echo "alice $key" >"$dir/keys"
echo "$key" >"$dir/alice.key"

mkfifo "$dir/server.fifo"
"$IPSAN" server --listen 127.0.0.1 --port 0 --key-file "$dir/keys" --device ram:8M \
  --metrics 127.0.0.1:0 --admin-socket "$dir/admin.sock" >"$dir/server.fifo" 2>"$dir/server.err.log" &
PID=$!
pids="$PID"
exec 4<"$dir/server.fifo"
IFS= read -r line <&4 || fail "server did not start: $(cat "$dir/server.err.log")"
IFS= read -r mline <&4 || fail "no metrics line"
cat <&4 >"$dir/server.log" &
exec 4<&-
PORT_UDP=$(echo "$line" | sed -n 's/.* udp=\([0-9]*\) .*/\1/p')
PORT_TCP=$(echo "$line" | sed -n 's/.* tcp=\([0-9]*\) .*/\1/p')
PORT_M=$(echo "$mline" | sed -n 's/.*metrics on .* port=\([0-9]*\)$/\1/p')
[ -n "$PORT_UDP" ] && [ -n "$PORT_TCP" ] && [ -n "$PORT_M" ] || fail "no ports in: $line / $mline"
URL="http://127.0.0.1:$PORT_M/metrics"

scrape() {  # scrape NAME: saves, checks content type and promtool
  curl -sS -D "$dir/$1.head" -o "$dir/$1.prom" "$URL" || fail "scrape $1"
  grep -qi '^content-type: text/plain; version=0.0.4' "$dir/$1.head" || fail "content type: $(cat "$dir/$1.head")"
  promtool check metrics <"$dir/$1.prom" >"$dir/promtool_$1.log" 2>&1 ||
    fail "promtool check metrics rejects scrape $1: $(cat "$dir/promtool_$1.log")"
}
# value FILE SERIES: the value of one exact series line (0 if absent).
value() {
  awk -v s="$2" '$1 == s { print $2; found = 1 } END { if (!found) print 0 }' "$1"
}

scrape before
[ "$(value "$dir/before.prom" ipsan_server_logins_total)" = 0 ] || fail "logins before I/O"
grep -q '^ipsan_device_capacity_bytes{device="0",name="disk0"} 8388608$' "$dir/before.prom" ||
  fail "no capacity series"

# The workload: 1 MiB verified (written then read back) over UDP, 512 KiB over TCP.
"$IPSAN" client -s "127.0.0.1:$PORT_UDP" -n alice --key-file "$dir/alice.key" \
  verify --bytes 1M --qd 4 >"$dir/client_udp.out" 2>&1 || fail "udp client"
# Between the two clients: a connection and a session are visible (the UDP client logged out, so
# none now; the UDP transport totals have moved).
scrape middle
[ "$(value "$dir/middle.prom" 'ipsan_transport_messages_received_total{transport="udp",index="0"}')" -gt 0 ] ||
  fail "udp transport totals did not move"
"$IPSAN" client -s "127.0.0.1:$PORT_TCP" -t tcp -n alice --key-file "$dir/alice.key" \
  verify --bytes 512K --qd 2 >"$dir/client_tcp.out" 2>&1 || fail "tcp client"
scrape after

a="$dir/after.prom"
[ "$(value "$a" ipsan_server_logins_total)" = 2 ] || fail "logins: $(value "$a" ipsan_server_logins_total), want 2"
w=$(value "$a" 'ipsan_device_bytes_total{device="0",op="write"}')
r=$(value "$a" 'ipsan_device_bytes_total{device="0",op="read"}')
[ "$w" = 1572864 ] || fail "written bytes $w, want 1572864"
[ "$r" = 1572864 ] || fail "read bytes $r, want 1572864"
[ "$(value "$a" ipsan_server_written_bytes_total)" = "$w" ] || fail "server total != device total"
# Every request counted once in the histogram; +Inf bucket == _count == requests.
for op in read write; do
  n=$(value "$a" "ipsan_device_requests_total{device=\"0\",op=\"$op\"}")
  c=$(value "$a" "ipsan_device_request_duration_seconds_count{device=\"0\",op=\"$op\"}")
  inf=$(value "$a" "ipsan_device_request_duration_seconds_bucket{device=\"0\",op=\"$op\",le=\"+Inf\"}")
  [ "$n" -gt 0 ] && [ "$n" = "$c" ] && [ "$n" = "$inf" ] || fail "$op: requests=$n count=$c +Inf=$inf"
  [ "$(value "$a" "ipsan_device_errors_total{device=\"0\",op=\"$op\"}")" = 0 ] || fail "$op errors"
done
[ "$(value "$a" 'ipsan_transport_messages_received_total{transport="tcp",index="1"}')" -gt 0 ] ||
  fail "tcp transport totals did not move"
# Counters never go back (the UDP connection closed between the scrapes).
for s in 'ipsan_transport_messages_received_total{transport="udp",index="0"}' \
         'ipsan_transport_datagrams_received_total{transport="udp",index="0"}'; do
  m=$(value "$dir/middle.prom" "$s")
  n=$(value "$a" "$s")
  [ "$n" -ge "$m" ] || fail "$s went back from $m to $n"
done

# `ipsan stats`: the same numbers (no I/O since the last scrape).
"$IPSAN" stats -a "$dir/admin.sock" --compact >"$dir/stats.out" 2>&1 || fail "ipsan stats"
python3 - "$dir/stats.out" "$w" <<'PY' || fail "ipsan stats disagrees: $(head -c 600 "$dir/stats.out")"
import json, sys
m = json.load(open(sys.argv[1]))
want = int(sys.argv[2])
def get(name, **labels):
    for s in m[name]["samples"]:
        if s["labels"] == labels:
            return s
    raise SystemExit(f"no {name} {labels}")
assert m["ipsan_server_written_bytes_total"]["type"] == "counter"
assert get("ipsan_server_written_bytes_total")["value"] == want
assert get("ipsan_device_bytes_total", device="0", op="read")["value"] == want
h = get("ipsan_device_request_duration_seconds", device="0", op="write")
assert h["buckets"][-1] == ["+Inf", h["count"]] and h["count"] > 0
assert get("ipsan_server_logins_total")["value"] == 2
PY

# Not a scrape: 404, 405, 400; the endpoint still serves afterwards.
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
[ "$(code "http://127.0.0.1:$PORT_M/")" = 404 ] || fail "/ not 404"
[ "$(code -X POST "$URL")" = 405 ] || fail "POST not 405"
[ "$(code -H "X-Big: $(head -c 9000 /dev/zero | tr '\0' a)" "$URL")" = 431 ] || fail "huge head not 431"
printf 'garbage\r\n\r\n' | curl -s --max-time 5 telnet://127.0.0.1:$PORT_M >"$dir/garbage.out" 2>&1 || true
grep -q '^HTTP/1.1 400' "$dir/garbage.out" || fail "garbage not answered 400: $(cat "$dir/garbage.out")"
scrape last

# ipsan iscsi-portal --metrics: the portal's and its client driver's counters.
mkfifo "$dir/portal.fifo"
"$IPSAN" iscsi-portal -s "127.0.0.1:$PORT_UDP" -n alice --key-file "$dir/alice.key" \
  --listen 127.0.0.1:0 --metrics 127.0.0.1:0 >"$dir/portal.fifo" 2>"$dir/portal.err.log" &
PPID_=$!
pids="$pids $PPID_"
exec 4<"$dir/portal.fifo"
IFS= read -r pline <&4 || fail "portal did not start: $(cat "$dir/portal.err.log")"
IFS= read -r pmline <&4 || fail "portal: no metrics line"
cat <&4 >"$dir/portal.log" &
exec 4<&-
PM=$(echo "$pmline" | sed -n 's/.*metrics on http:\/\/127.0.0.1:\([0-9]*\)\/metrics$/\1/p')
[ -n "$PM" ] || fail "portal: no metrics port in: $pmline"
URL="http://127.0.0.1:$PM/metrics"
scrape portal
[ "$(value "$dir/portal.prom" ipsan_client_logins_total)" = 1 ] || fail "portal: client logins"
[ "$(value "$dir/portal.prom" ipsan_client_requests_total)" -gt 0 ] || fail "portal: no client requests"
[ "$(value "$dir/portal.prom" ipsan_iscsi_logins_total)" = 0 ] || fail "portal: iscsi logins"
kill -INT "$PPID_"
wait "$PPID_" || fail "portal exited with $?"

# ipsan nbd-export --metrics: after one nbdinfo, one NBD handshake counted.
mkfifo "$dir/nbd.fifo"
"$IPSAN" nbd-export -s "127.0.0.1:$PORT_UDP" -n alice --key-file "$dir/alice.key" \
  --listen 127.0.0.1:0 --metrics 127.0.0.1:0 >"$dir/nbd.fifo" 2>"$dir/nbd.err.log" &
NPID=$!
pids="$pids $NPID"
exec 4<"$dir/nbd.fifo"
IFS= read -r nline <&4 || fail "nbd-export did not start: $(cat "$dir/nbd.err.log")"
IFS= read -r nmline <&4 || fail "nbd-export: no metrics line"
cat <&4 >"$dir/nbd.log" &
exec 4<&-
NP=$(echo "$nline" | sed -n 's/.*listening on 127.0.0.1:\([0-9]*\) .*/\1/p')
PM=$(echo "$nmline" | sed -n 's/.*metrics on http:\/\/127.0.0.1:\([0-9]*\)\/metrics$/\1/p')
[ -n "$NP" ] && [ -n "$PM" ] || fail "nbd-export: no ports in: $nline / $nmline"
nbdinfo "nbd://127.0.0.1:$NP" >"$dir/nbdinfo.out" 2>&1 || fail "nbdinfo"
URL="http://127.0.0.1:$PM/metrics"
scrape nbd
[ "$(value "$dir/nbd.prom" ipsan_nbd_handshakes_total)" = 1 ] || fail "nbd: handshakes"
[ "$(value "$dir/nbd.prom" ipsan_client_logins_total)" = 1 ] || fail "nbd: client logins"
kill -INT "$NPID"
wait "$NPID" || fail "nbd-export exited with $?"

kill -INT "$PID"
wait "$PID" || fail "server exited with $?"
echo "PASS: written=$w read=$r"
