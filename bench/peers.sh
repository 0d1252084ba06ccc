#!/usr/bin/env bash
# bench/peers.sh: ipsan against the block-over-network servers a user would pick instead, on this
# machine, in one run. Each peer serves a RAM-backed 1 GiB disk on 127.0.0.1; the same workloads
# run against each with fio (NBD peers), iscsi-perf (iSCSI: Debian's fio has no libiscsi engine)
# and `ipsan bench` (ipsan over reliable UDP and over TCP), then one table with ratios to ipsan.
#
#   peers:     nbdkit memory plugin (NBD, fio nbd engine), qemu-nbd on a file in /dev/shm (NBD),
#              tgt on a file in /dev/shm (iSCSI, reads only: iscsi-perf cannot write),
#              ipsan server ram:1G over UDP and over TCP (`ipsan bench`), and the same server
#              through `ipsan nbd-export` (ipsan-nbd-udp/-tcp: fio's nbd engine, the load generator
#              of the NBD peers; the export's ipsan link is reliable UDP or TCP)
#   workloads: 1 MiB sequential write QD8 (also fills the region), 4 KiB random write QD32,
#              4 KiB random read QD1 and QD32, 1 MiB sequential read QD8; region 256 MiB
#   limits:    memcpy bandwidth (64 MiB), loopback TCP and UDP iperf3 (UDP with 1452-byte
#              datagrams, rudp's size), loopback UDP round trip (ipsan_udp_rtt)
#   --loss:    repeats the 4 KiB workloads under 1 % and 5 % packet loss: nftables
#              `numgen random mod 100 < N drop` on the input hook, inside `unshare -n` (a private
#              loopback; nothing leaves it), for the TCP peers and ipsan over UDP (and TCP)
#
# Pinning: every server runs under `taskset -c $SERVER_CPU` (default 0) and every client under
# `taskset -c $CLIENT_CPU` (default 1): one vCPU each, the fair split on a 2-vCPU machine.
# `--pin same` puts both on CPU 0 (lowest QD1 latency: no cross-CPU wake-up).
# CPU per I/O: client = user+system ticks of the client process (the wrapper's cutime+cstime
# after it exits), server = utime+stime delta of the server process from /proc/PID/stat (for
# ipsan-nbd-*: ipsan server + ipsan nbd-export, both on the server CPU), both divided by the
# completed I/Os.
#
# Usage: bench/peers.sh [--build DIR] [--quick] [--runtime S] [--loss] [--only PEERS]
#                       [--workloads NAMES] [--pin split|same] [--out DIR]
# (--workloads: a subset by name, e.g. "rr4k_qd1 rr4k_qd32"; default all)
# Needs: fio nbdkit qemu-utils tgt libiscsi-bin iperf3 nftables (missing peers are skipped with a
# note). Runs as root for tgt and unshare. Cleans up every process it starts.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=$ROOT/build/bench
RUNTIME=10
LOSS=0
ONLY="ipsan-udp ipsan-tcp ipsan-nbd-udp ipsan-nbd-tcp nbdkit qemu-nbd tgt"
PIN="split"
OUT=$ROOT/bench/results
WORKLOADS=""    # names to run (empty: all)
INNER_LOSS=""   # internal: run the loss section at this percentage (inside unshare -n)

while [ $# -gt 0 ]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --quick) RUNTIME=3; shift ;;
    --runtime) RUNTIME=$2; shift 2 ;;
    --loss) LOSS=1; shift ;;
    --only) ONLY=$2; shift 2 ;;
    --workloads) WORKLOADS=$2; shift 2 ;;
    --pin) PIN=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --inner-loss) INNER_LOSS=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -e/{/^set -e/!p}' "$0"; exit 0 ;;
    *) echo "peers.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done
case $RUNTIME in ''|*[!0-9]*) echo "peers.sh: --runtime takes whole seconds" >&2; exit 2 ;; esac
case $PIN in
  split) SERVER_CPU=0; CLIENT_CPU=1 ;;
  same) SERVER_CPU=0; CLIENT_CPU=0 ;;
  *) echo "peers.sh: --pin split|same" >&2; exit 2 ;;
esac
IPSAN=$BUILD/tools/ipsan
[ -x "$IPSAN" ] || { echo "peers.sh: $IPSAN not built (ninja -C $BUILD ipsan ipsan_udp_rtt ipsan_micro_bench)" >&2; exit 1; }
mkdir -p "$OUT"
HZ=$(getconf CLK_TCK)
TMP=$(mktemp -d /tmp/ipsan-peers.XXXXXX)
SERVER_PID=
EXPORT_PID=   # ipsan nbd-export, when the peer is ipsan-nbd-*
PIDS=()
SHM_FILES=()

cleanup() {
  for p in "${PIDS[@]}"; do kill_wait "$p"; done
  for f in "${SHM_FILES[@]}"; do rm -f "$f"; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

note() { echo "peers.sh: $*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
server_ticks() {
  local t e=0
  t=$(awk '{print $14+$15}' "/proc/$SERVER_PID/stat" 2>/dev/null || echo 0)
  [ -n "$EXPORT_PID" ] && e=$(awk '{print $14+$15}' "/proc/$EXPORT_PID/stat" 2>/dev/null || echo 0)
  echo $((t + e))
}
wait_port() {  # wait_port PORT: until something listens on 127.0.0.1:PORT (TCP), max 10 s
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

kill_wait() {  # kill_wait PID: SIGTERM, then SIGKILL after 3 s (tgtd ignores SIGTERM)
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 1 30); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

stop_server() {
  if [ -n "$EXPORT_PID" ]; then
    kill_wait "$EXPORT_PID"
    EXPORT_PID=
  fi
  if [ -n "$SERVER_PID" ]; then
    kill_wait "$SERVER_PID"
    SERVER_PID=
  fi
  sleep 0.3
}

# ---- servers: each sets SERVER_PID and TARGET (what the client needs) ----
KEYS=$TMP/keys
umask 077  # key files must be private
echo "bench $(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" > "$KEYS"
awk '{print $2}' "$KEYS" > "$TMP/key"

start_ipsan() {  # start_ipsan udp|tcp
  rm -f "$TMP/port"
  taskset -c $SERVER_CPU "$IPSAN" server --listen 127.0.0.1 --port 0 --port-file "$TMP/port" \
    --key-file "$KEYS" --device ram:1G --slots 256 > "$TMP/ipsan-server.log" 2>&1 &
  SERVER_PID=$!; PIDS+=("$SERVER_PID")
  for _ in $(seq 1 100); do [ -s "$TMP/port" ] && break; sleep 0.1; done
  [ -s "$TMP/port" ] || { note "ipsan server did not start"; cat "$TMP/ipsan-server.log" >&2; return 1; }
  TARGET=$(sed -n "s/.*$1=\([0-9]*\).*/\1/p" "$TMP/port")
}

start_ipsan_nbd() {  # start_ipsan_nbd udp|tcp: ipsan server + ipsan nbd-export in front of it
  start_ipsan "$1" || return 1
  rm -f "$TMP/nbd.port"
  taskset -c $SERVER_CPU "$IPSAN" nbd-export --server "127.0.0.1:$TARGET" --transport "$1" \
    --name bench --key-file "$TMP/key" --slots 256 --timeout 20s --listen 127.0.0.1:0 \
    --port-file "$TMP/nbd.port" --export disk=0 > "$TMP/nbd-export.log" 2>&1 &
  EXPORT_PID=$!; PIDS+=("$EXPORT_PID")
  for _ in $(seq 1 100); do [ -s "$TMP/nbd.port" ] && break; sleep 0.1; done
  [ -s "$TMP/nbd.port" ] || { note "ipsan nbd-export did not start"; cat "$TMP/nbd-export.log" >&2; return 1; }
  TARGET="nbd://127.0.0.1:$(cat "$TMP/nbd.port")/disk"
}

start_nbdkit() {
  local port; port=$(free_port)
  taskset -c $SERVER_CPU nbdkit -f -i 127.0.0.1 -p "$port" memory 1G > "$TMP/nbdkit.log" 2>&1 &
  SERVER_PID=$!; PIDS+=("$SERVER_PID")
  wait_port "$port" || { note "nbdkit did not start"; return 1; }
  TARGET="nbd://127.0.0.1:$port/"
}

start_qemu_nbd() {
  local port img=/dev/shm/ipsan-bench-qemu-nbd.img; port=$(free_port)
  SHM_FILES+=("$img"); rm -f "$img"; truncate -s 1G "$img"
  taskset -c $SERVER_CPU qemu-nbd -f raw -b 127.0.0.1 -p "$port" -t -e 8 --cache=writeback \
    --aio=threads "$img" > "$TMP/qemu-nbd.log" 2>&1 &
  SERVER_PID=$!; PIDS+=("$SERVER_PID")
  wait_port "$port" || { note "qemu-nbd did not start"; return 1; }
  TARGET="nbd://127.0.0.1:$port/"
}

TGT_CTL=7   # tgtd control socket number (keeps clear of a system tgtd on 0)
start_tgt() {
  local port img=/dev/shm/ipsan-bench-tgt.img iqn=iqn.2026-11.org.ipsan:bench; port=$(free_port)
  SHM_FILES+=("$img"); rm -f "$img"; truncate -s 1G "$img"
  taskset -c $SERVER_CPU tgtd -f -C $TGT_CTL --iscsi "portal=127.0.0.1:$port" > "$TMP/tgtd.log" 2>&1 &
  SERVER_PID=$!; PIDS+=("$SERVER_PID")
  wait_port "$port" || { note "tgtd did not start"; return 1; }
  tgtadm -C $TGT_CTL --lld iscsi --op new --mode target --tid 1 -T "$iqn" &&
    tgtadm -C $TGT_CTL --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b "$img" &&
    tgtadm -C $TGT_CTL --lld iscsi --op bind --mode target --tid 1 -I ALL ||
    { note "tgtadm set-up failed"; return 1; }
  TARGET="iscsi://127.0.0.1:$port/$iqn/1"
}

# ---- clients: each writes $TMP/run.out and prints "ops seconds client_ticks" ----
# run_client CMD...: runs CMD pinned; prints the client's user+system ticks.
run_client() {
  ( taskset -c $CLIENT_CPU "$@" > "$TMP/run.out" 2> "$TMP/run.err" || echo "rc=$?" >> "$TMP/run.err"
    awk '{print $16+$17}' "/proc/$BASHPID/stat" )
}

# record PEER WORKLOAD LOSS TOOL CLIENT_TICKS SERVER_TICKS: parses $TMP/run.out into one CSV row.
record() {
  python3 - "$@" "$TMP/run.out" "$HZ" >> "$CSV" <<'PY' || note "no result for $1 $2 (see below)"
import json, re, sys
peer, wl, loss, tool, cticks, sticks, path, hz = sys.argv[1:9]
text = open(path, errors="replace").read()
hz = float(hz); ops = secs = mbps = 0.0; p = {}
if tool == "fio":
    j = json.loads(text[text.index("{"):])["jobs"][0]
    secs = j["job_runtime"] / 1e3
    for d in ("read", "write"):
        x = j[d]
        if x["total_ios"] == 0: continue
        ops += x["total_ios"]; mbps += x["bw_bytes"] / 1e6
        pc = x["lat_ns"].get("percentile") or x["clat_ns"]["percentile"]
        p = {k: pc[v] / 1e3 for k, v in (("p50", "50.000000"), ("p90", "90.000000"),
                                          ("p99", "99.000000"), ("p99.9", "99.900000"))}
elif tool == "ipsan":
    j = json.loads(text.strip().splitlines()[-1])
    ops, secs, mbps = j["ops"], j["seconds"], j["mb_per_s"]
    p = {k: j["latency"][k + "_us"] for k in ("p50", "p90", "p99", "p99.9")}
elif tool == "iscsi-perf":
    m = re.findall(r"iops average (\d+) \((\d+) MB/s\)", text)
    if not m: raise SystemExit("no iscsi-perf average")
    iops = float(m[-1][0]); secs = float(re.search(r"run for (\d+) seconds", text).group(1))
    ops = iops * secs
    bs = int(re.search(r"\((\d+) byte\)", text).group(1)); mbps = iops * bs / 1e6
    m1 = re.search(r"with 1 parallel", text)
    if m1: p = {"p50": 1e6 / iops}  # QD1: mean latency from IOPS (iscsi-perf prints no percentiles)
if ops <= 0 or secs <= 0: raise SystemExit("no I/O completed")
iops = ops / secs
cpu_c = float(cticks) / hz * 1e6 / ops
cpu_s = float(sticks) / hz * 1e6 / ops if float(sticks) >= 0 else -1
f = lambda v: "" if v is None else f"{v:.1f}"
print(",".join([peer, wl, loss, f"{iops:.0f}", f"{mbps:.1f}", f(p.get("p50")), f(p.get("p90")),
                f(p.get("p99")), f(p.get("p99.9")), f"{cpu_c:.2f}", f"{cpu_s:.2f}"]))
PY
}

# run_workload PEER WORKLOAD RW BS QD LOSS
run_workload() {
  local peer=$1 wl=$2 rw=$3 bs=$4 qd=$5 loss=$6 tool s0 s1 ct
  s0=$(server_ticks)
  case $peer in
    ipsan-udp|ipsan-tcp)
      tool=ipsan
      ct=$(run_client "$IPSAN" bench --server "127.0.0.1:$TARGET" --transport "${peer#ipsan-}" \
        --name bench --key-file "$TMP/key" --rw "$rw" --bs "$bs" --qd "$qd" --size 256M \
        --runtime "${RUNTIME}s" --timeout 20s --json --label "$peer") ;;
    nbdkit|qemu-nbd|ipsan-nbd-udp|ipsan-nbd-tcp)
      tool=fio
      ct=$(run_client fio --name="$wl" --ioengine=nbd --uri="$TARGET" --rw="$rw" --bs="$bs" \
        --iodepth="$qd" --size=256m --runtime="$RUNTIME" --time_based --ramp_time=0 \
        --lat_percentiles=1 --output-format=json) ;;
    tgt)
      tool=iscsi-perf
      case $rw in
        randread) ct=$(run_client timeout $((RUNTIME + 15)) iscsi-perf -m "$qd" -b $(( ${bs%k} * 2 )) -r -t "$RUNTIME" "$TARGET") ;;
        read) ct=$(run_client timeout $((RUNTIME + 15)) iscsi-perf -m "$qd" -b 2048 -t "$RUNTIME" "$TARGET") ;;
        *) note "tgt: $wl skipped (iscsi-perf only reads; Debian's fio has no libiscsi engine)"; return 0 ;;
      esac ;;
  esac
  s1=$(server_ticks)
  record "$peer" "$wl" "$loss" "$tool" "$ct" "$((s1 - s0))" || { tail -n 3 "$TMP/run.err" >&2; true; }
}

WORKLOADS_ALL="sw1m_qd8:write:1m:8 rw4k_qd32:randwrite:4k:32 rr4k_qd1:randread:4k:1 rr4k_qd32:randread:4k:32 sr1m_qd8:read:1m:8"
WORKLOADS_LOSS="rw4k_qd32:randwrite:4k:32 rr4k_qd1:randread:4k:1 rr4k_qd32:randread:4k:32"

run_peers() {  # run_peers LOSS WORKLOADS
  local loss=$1 wls=$2 peer w
  for peer in $ONLY; do
    case $peer in
      ipsan-udp) start_ipsan udp || continue ;;
      ipsan-tcp) start_ipsan tcp || continue ;;
      ipsan-nbd-udp|ipsan-nbd-tcp)
        have fio || { note "fio missing: $peer skipped"; continue; }
        start_ipsan_nbd "${peer#ipsan-nbd-}" || continue ;;
      nbdkit) have nbdkit && have fio || { note "nbdkit/fio missing: skipped"; continue; }; start_nbdkit || continue ;;
      qemu-nbd) have qemu-nbd && have fio || { note "qemu-nbd/fio missing: skipped"; continue; }; start_qemu_nbd || continue ;;
      tgt) have tgtd && have iscsi-perf || { note "tgt/iscsi-perf missing: skipped"; continue; }; start_tgt || continue ;;
      *) note "unknown peer $peer"; continue ;;
    esac
    for w in $wls; do
      IFS=: read -r name rw bs qd <<< "$w"
      if [ -n "$WORKLOADS" ] && [[ " $WORKLOADS " != *" $name "* ]]; then continue; fi
      note "$peer $name (loss $loss %, ${RUNTIME}s)"
      run_workload "$peer" "$name" "$rw" "$bs" "$qd" "$loss"
    done
    stop_server
  done
}

# ---- inner loss run (inside unshare -n) ----
if [ -n "$INNER_LOSS" ]; then
  ip link set lo up
  nft add table inet ipsan_loss
  nft add chain inet ipsan_loss in '{ type filter hook input priority 0; }'
  nft add rule inet ipsan_loss in meta l4proto '{ tcp, udp }' numgen random mod 100 '<' "$INNER_LOSS" drop
  CSV=$OUT/loss.csv
  run_peers "$INNER_LOSS" "$WORKLOADS_LOSS"
  exit 0
fi

# ---- machine limits ----
limits() {
  local f=$OUT/machine.txt p
  {
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Core|Socket|L2|L3|Hypervisor)' | sed 's/  */ /g'
    echo "memory: $(free -g | awk '/Mem:/{print $2}') GiB; kernel $(uname -r)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "pinning: server CPU $SERVER_CPU, client CPU $CLIENT_CPU; runtime ${RUNTIME}s per workload"
    echo "versions: $("$IPSAN" --version) ($(git -C "$ROOT" rev-parse --short HEAD)); $(fio --version 2>/dev/null); nbdkit $(nbdkit --version 2>/dev/null | awk '{print $2}'); $(qemu-nbd --version 2>/dev/null | head -1); tgt $(tgtd -V 2>/dev/null || dpkg-query -W -f='${Version}' tgt 2>/dev/null); libiscsi-bin $(dpkg-query -W -f='${Version}' libiscsi-bin 2>/dev/null); $(iperf3 --version 2>/dev/null | head -1 | cut -d' ' -f1-2)"
    if [ -x "$BUILD/bench/ipsan_micro_bench" ]; then
      echo "memcpy 64 MiB: $(taskset -c $CLIENT_CPU "$BUILD/bench/ipsan_micro_bench" --benchmark_filter='BM_Memcpy/67108864' --benchmark_format=json 2>/dev/null | python3 -c 'import json,sys; print("%.1f GB/s" % (json.load(sys.stdin)["benchmarks"][0]["bytes_per_second"]/1e9))')"
    fi
    if have iperf3; then
      p=$(free_port)
      taskset -c $SERVER_CPU iperf3 -s -B 127.0.0.1 -p "$p" > /dev/null 2>&1 & PIDS+=("$!")
      wait_port "$p" || true
      echo "iperf3 tcp: $(taskset -c $CLIENT_CPU iperf3 -c 127.0.0.1 -p "$p" -t "$RUNTIME" -J | python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.1f MB/s" % (j["end"]["sum_received"]["bits_per_second"]/8e6))')"
      echo "iperf3 udp (1452-byte datagrams, unlimited rate, 4 MiB socket buffers): $(taskset -c $CLIENT_CPU iperf3 -c 127.0.0.1 -p "$p" -u -b 0 -l 1452 -w 4M -t "$RUNTIME" -J | python3 -c 'import json,sys; s=json.load(sys.stdin)["end"]["sum"]; print("%.1f MB/s received (%.1f MB/s sent, %.2f %% lost)" % (s["bits_per_second"]/8e6*(1-s["lost_percent"]/100), s["bits_per_second"]/8e6, s["lost_percent"]))')"
    fi
    [ -x "$BUILD/bench/ipsan_udp_rtt" ] && echo "loopback $("$BUILD/bench/ipsan_udp_rtt" 20000 $SERVER_CPU $CLIENT_CPU)"
  } > "$f"
  cat "$f"
}

table() {  # table CSV: one table per workload, ratio = ipsan-udp / peer
  python3 - "$1" <<'PY'
import csv, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if r and r[0] != "peer"]
cols = ["iops", "MB/s", "p50 us", "p90 us", "p99 us", "p99.9 us", "cli us/io", "srv us/io"]
by = {}
for r in rows: by.setdefault((r[1], r[2]), []).append(r)
for (wl, loss), rs in by.items():
    base = next((r for r in rs if r[0] == "ipsan-udp"), None)
    print(f"\n{wl} (loss {loss} %)")
    print("| peer | " + " | ".join(cols) + " | ipsan-udp IOPS / peer |")
    print("|---" * (len(cols) + 2) + "|")
    for r in rs:
        ratio = f"{float(base[3]) / float(r[3]):.2f}x" if base and float(r[3]) > 0 else "-"
        print("| " + " | ".join([r[0]] + [v or "-" for v in r[3:11]]) + f" | {ratio} |")
PY
}

CSV=$OUT/latest.csv
echo "peer,workload,loss,iops,mbps,p50_us,p90_us,p99_us,p999_us,client_cpu_us_per_io,server_cpu_us_per_io" > "$CSV"
limits
run_peers 0 "$WORKLOADS_ALL"
table "$CSV" | tee "$OUT/table.md"

if [ "$LOSS" = 1 ]; then
  have nft && have unshare || { note "nft/unshare missing: --loss skipped"; exit 0; }
  echo "peer,workload,loss,iops,mbps,p50_us,p90_us,p99_us,p999_us,client_cpu_us_per_io,server_cpu_us_per_io" > "$OUT/loss.csv"
  for pct in 1 5; do
    unshare -n "$0" --inner-loss "$pct" --build "$BUILD" --runtime "$RUNTIME" --only "$ONLY" \
      ${WORKLOADS:+--workloads "$WORKLOADS"} \
      --pin "$PIN" --out "$OUT" || note "loss $pct % run failed"
  done
  table "$OUT/loss.csv" | tee "$OUT/loss-table.md"
fi
if have gnuplot && [ -f "$HERE/plot.gp" ]; then
  (cd "$OUT" && gnuplot "$HERE/plot.gp") || note "plot failed"
fi
