#!/usr/bin/env bash
# make_iscsi_capture.sh OUT.pcap [full|small]: records real iSCSI traffic between Debian's tgt
# target (tgtd, a 4 MiB file-backed LUN on 127.0.0.1, a free port) and libiscsi's command-line
# initiators, captured by tcpdump on lo. `small` (the committed sample) runs inquiry, read
# capacity and report luns only; `full` adds a few iscsi-test-cu read/write tests.
# Exit 77 (CTest's skip code) when tgtd, tcpdump or the initiators cannot run here.
set -uo pipefail
out=${1:?usage: make_iscsi_capture.sh OUT.pcap [full|small]}
mode=${2:-full}
skip() {
  echo "make_iscsi_capture: SKIP: $*" >&2
  [ "${CI:-}" = true ] && exit 1  # CI=true forbids skips
  exit 77
}
for t in tgtd tgtadm tcpdump iscsi-inq iscsi-readcapacity16 iscsi-ls; do
  command -v "$t" >/dev/null || skip "$t not installed (apt-get install tgt tcpdump libiscsi-bin)"
done
[ "$(id -u)" -eq 0 ] || skip "needs root (tgtd management socket, tcpdump on lo)"

work=$(mktemp -d)
tgt_pid=""; dump_pid=""
cleanup() {
  [ -n "$dump_pid" ] && kill "$dump_pid" 2>/dev/null && wait "$dump_pid" 2>/dev/null
  # tgtd -f ignores SIGTERM while it has targets: ask it to go, then make sure.
  if [ -n "$tgt_pid" ]; then
    tgtadm -C "$ctl" --op delete --mode system --force >/dev/null 2>&1
    kill -9 "$tgt_pid" 2>/dev/null; wait "$tgt_pid" 2>/dev/null
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# A free TCP port for the portal and a free control port (tgtd's management socket is keyed by it).
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])' \
       2>/dev/null) || port=$((20000 + RANDOM % 20000))
ctl=$((1000 + RANDOM % 30000))
cd "$(dirname "$out")" && out="$(pwd)/$(basename "$out")" && cd - >/dev/null
iqn="iqn.2026-11.org.ipsan:capture"
truncate -s 4M "$work/lun1.img"

tgtd -f -C "$ctl" --iscsi portal=127.0.0.1:"$port" >"$work/tgtd.log" 2>&1 &
tgt_pid=$!
for _ in $(seq 100); do
  tgtadm -C "$ctl" --lld iscsi --mode target --op show >/dev/null 2>&1 && break
  kill -0 "$tgt_pid" 2>/dev/null || skip "tgtd did not start: $(tail -3 "$work/tgtd.log")"
  sleep 0.05
done
tgtadm -C "$ctl" --lld iscsi --mode target --op new --tid 1 --targetname "$iqn" ||
  skip "tgtadm cannot create a target"
tgtadm -C "$ctl" --lld iscsi --mode logicalunit --op new --tid 1 --lun 1 \
  --backing-store "$work/lun1.img" || skip "tgtadm cannot add a LUN"
tgtadm -C "$ctl" --lld iscsi --mode target --op bind --tid 1 --initiator-address ALL ||
  skip "tgtadm cannot bind"

# Some kernels (VMs, gVisor) attach no working BPF filter to lo: capture everything, filter after.
tcpdump -i lo -U -s 0 -w "$work/all.pcap" >"$work/tcpdump.log" 2>&1 &
dump_pid=$!
for _ in $(seq 100); do
  grep -q "listening on" "$work/tcpdump.log" && break
  kill -0 "$dump_pid" 2>/dev/null || skip "tcpdump cannot capture on lo: $(cat "$work/tcpdump.log")"
  sleep 0.05
done

url="iscsi://127.0.0.1:$port/$iqn/1"
init="iqn.2026-11.org.ipsan:initiator"
iscsi-inq -i "$init" "$url" >/dev/null
iscsi-inq -i "$init" -e 1 -c 0x80 "$url" >/dev/null
iscsi-readcapacity16 -i "$init" "$url" >/dev/null
iscsi-ls -i "$init" -s "iscsi://127.0.0.1:$port" >/dev/null
if [ "$mode" = full ] && command -v iscsi-test-cu >/dev/null; then
  for t in SCSI.TestUnitReady.Simple SCSI.ReadCapacity10.Simple SCSI.Read10.BeyondEol \
           SCSI.Read10.ZeroBlocks SCSI.Write10.BeyondEol SCSI.Write10.ZeroBlocks SCSI.Write10.Async \
           SCSI.Read10.Async SCSI.Inquiry.Standard; do
    iscsi-test-cu -i "$init" --test="$t" "$url" >/dev/null 2>&1 || true
  done
fi
sleep 0.3   # let tcpdump write the last segments (it has no "flush now" command)
kill -INT "$dump_pid"; wait "$dump_pid" 2>/dev/null; dump_pid=""
tcpdump -r "$work/all.pcap" -w "$out" "tcp port $port" 2>/dev/null || skip "tcpdump cannot filter"
echo "make_iscsi_capture: wrote $out (port $port)" >&2
