#!/bin/bash
# Figures for docs/MANAGER.md / bench/RESULTS.md (prints, asserts nothing):
#  - login + one CAPACITY call with a static key vs a grant (whole `ipsan client` process, A/B
#    interleaved, N rounds);
#  - allocations per second: N sequential `disk create`, then N in parallel.
# Usage: manager_bench.sh IPSAN [N]
set -eu
IPSAN=$1
N=${2:-20}
dir=$(mktemp -d "${TMPDIR:-/tmp}/ipsan_manager_bench.XXXXXX")
pids=""
trap 'for p in $pids; do kill -9 $p 2>/dev/null || true; done; rm -rf "$dir"' EXIT
umask 077
for k in manager admin s1 alice; do "$IPSAN" key gen -o "$dir/$k.key" >"$dir/$k.pub"; done
"$IPSAN" manager serve --db "$dir/state.db" --key "$dir/manager.key" --admin-key "$dir/admin.pub" \
  --listen 127.0.0.1:0 --port-file "$dir/m.port" --alloc-timeout 30s >"$dir/m.log" 2>&1 &
pids="$pids $!"
for _ in $(seq 100); do [ -s "$dir/m.port" ] && break; sleep 0.1; done
M=127.0.0.1:$(sed -n 's/port=//p' "$dir/m.port")
A() { "$IPSAN" manager -m "$M" --identity "$dir/admin.key" --manager-key "$dir/manager.pub" "$@"; }
A server add s1 "$dir/s1.pub" >/dev/null
A client add alice "$dir/alice.pub" >/dev/null
key=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
echo "alice $key" >"$dir/keys"; echo "$key" >"$dir/alice.static"
printf '[backend.base]\nspec = "ram:1M"\n\n[[export]]\ndevice_id = 0\ndisk = "base"\n' >"$dir/s1.toml"
"$IPSAN" server --listen 127.0.0.1 --port 0 --identity "$dir/s1.key" --manager-key "$dir/manager.pub" \
  --manager "$M" --key-file "$dir/keys" --config "$dir/s1.toml" --managed-dir "$dir/img" \
  --managed-capacity 1T --manager-sync ${SYNC:-1s} --port-file "$dir/s1.port" >"$dir/s1.log" 2>&1 &
SPID=$!
pids="$pids $SPID"
for _ in $(seq 100); do [ -s "$dir/s1.port" ] && break; sleep 0.1; done
P=$(sed -n 's/.*tcp=\([0-9]*\).*/\1/p' "$dir/s1.port")
for _ in $(seq 50); do A server list | grep -q '"online": true' && break; sleep 0.2; done
A disk create --size 1M --for alice --name d0 >/dev/null
"$IPSAN" manager -m "$M" --identity "$dir/alice.key" --manager-key "$dir/manager.pub" grant fetch --disk d0 -o "$dir/alice.grant" >/dev/null
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
ts=0; tg=0
for _ in $(seq "$N"); do
  t=$(date +%s%N); "$IPSAN" client -s 127.0.0.1:$P -t tcp -n alice --key-file "$dir/alice.static" -d 0 capacity >/dev/null 2>&1; ts=$((ts + $(ms $t)))
  t=$(date +%s%N); "$IPSAN" client -s 127.0.0.1:$P -t tcp --identity "$dir/alice.key" --grant "$dir/alice.grant" -d 1 capacity >/dev/null 2>&1; tg=$((tg + $(ms $t)))
done
echo "login+capacity, whole process, mean of $N (A/B interleaved): static key $((ts / N)) ms, grant $((tg / N)) ms"
t=$(date +%s%N)
for i in $(seq "$N"); do A disk create --size 1M --for alice --name s$i >/dev/null; done
e=$(ms $t); echo "sequential: $N allocations in $e ms = $(( N * 1000 / (e > 0 ? e : 1) )).$(( (N * 100000 / (e > 0 ? e : 1)) % 100 )) /s"
t=$(date +%s%N)
cp=""
for i in $(seq "$N"); do A disk create --size 1M --for alice --name p$i >/dev/null & cp="$cp $!"; done
for j in $cp; do wait "$j" || true; done
e=$(ms $t); echo "parallel: $N allocations in $e ms = $(( N * 1000 / (e > 0 ? e : 1) )) /s"
echo "ready disks: $(A disk list | grep -c '"state": "ready"')"
echo "server RSS with $((2 * N + 1)) managed disks: $(ps -o rss= -p "$SPID") KiB"
