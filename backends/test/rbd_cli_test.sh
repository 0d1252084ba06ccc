#!/usr/bin/env bash
# rbd_cli_test.sh: `ipsan server --device rbd:...` as a user runs it, against the cluster of the
# CTest fixture `ceph` (IPSAN_CEPH_DIR, scripts/ceph-cluster.sh). Usage:
#   rbd_cli_test.sh IPSAN failover      gateway A (a process) killed with SIGKILL while it holds
#                                       the image; gateway B is refused without takeover, takes
#                                       over with it; the client's acknowledged data is all there
#   rbd_cli_test.sh IPSAN snapshots     `ipsan disk snapshot create/list/delete`, `disk diff` and a
#                                       read-only export of the snapshot, on an RBD back end
#   rbd_cli_test.sh IPSAN iscsi RUNNER BASELINE
#                                       a short iscsi-test-cu subset (the lossy_rtt list, clean
#                                       link) through `ipsan iscsi-portal` on an RBD-backed disk
# 127.0.0.1 only, port 0. Without a cluster: exit 77, or 1 under CI=true.
set -uo pipefail
IPSAN=${1:?ipsan binary}
MODE=${2:?failover or iscsi}
D=${IPSAN_CEPH_DIR:-}
if [[ -z $D || ! -f $D/ceph.conf ]]; then
  echo "no Ceph cluster (IPSAN_CEPH_DIR; scripts/ceph-cluster.sh start DIR)"
  [[ ${CI:-} == true ]] && exit 1
  exit 77
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/ipsan-rbd-cli.XXXXXX")
img="cli-$MODE-$$-$RANDOM"
RBD=(timeout 60 rbd --conf "$D/ceph.conf" --keyring "$D/client.admin.keyring")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  "${RBD[@]}" snap purge "rbd/$img" >/dev/null 2>&1
  "${RBD[@]}" rm "rbd/$img" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for f in "$work"/*.log; do [[ -f $f ]] && { echo "--- $f" >&2; tail -n 30 "$f" >&2; }; done
  exit 1
}
"${RBD[@]}" create --size 128M "rbd/$img" || fail "rbd create"
SPEC="rbd:rbd/$img,conf=$D/ceph.conf,keyring=$D/client.admin.keyring"
umask 077
key=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
echo "alice $key" >"$work/keys"
echo "$key" >"$work/alice.key"

start_server() {  # NAME SPEC -> sets PORT; the server's pid is appended to pids
  local name=$1 spec=$2
  rm -f "$work/$name.port"
  "$IPSAN" server --listen 127.0.0.1 --port 0 --port-file "$work/$name.port" \
    --key-file "$work/keys" --device "$spec" >"$work/$name.log" 2>&1 &
  pids+=($!)
  local pid=$! i
  for ((i = 0; i < 600; i++)); do
    [[ -s $work/$name.port ]] && break
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  [[ -s $work/$name.port ]] || return 1
  PORT=$(sed 's/.*udp=\([0-9]*\).*/\1/' "$work/$name.port")
}

case $MODE in
  failover)
    start_server a "$SPEC" || fail "gateway A did not start"
    C="$IPSAN client -s 127.0.0.1:$PORT -n alice --key-file $work/alice.key"
    $C verify --bytes 32M --io-size 256K --seed 11 --write-only --json >"$work/w.out" \
      2>"$work/w.log" || fail "write through gateway A"
    grep -q '"ok":true' "$work/w.out" || fail "write through A: $(cat "$work/w.out")"
    $C capacity >"$work/cap.out" 2>/dev/null || fail "capacity"
    [[ $(cat "$work/cap.out") == "512 262144" ]] || fail "capacity printed $(cat "$work/cap.out")"
    apid=${pids[0]}
    # Gateway B while A is alive: refused, with the reason, quickly.
    start_server b "$SPEC" && fail "gateway B started while A holds the lock"
    grep -q "exclusive lock held by another gateway" "$work/b.log" ||
      fail "B's refusal does not say why: $(cat "$work/b.log")"
    # A dies without a word (no lock release); B takes over and fences it.
    kill -KILL "$apid"
    wait "$apid" 2>/dev/null
    t0=$SECONDS
    start_server b2 "$SPEC,takeover" || fail "gateway B did not take over"
    echo "takeover after SIGKILL took $((SECONDS - t0)) s"
    C="$IPSAN client -s 127.0.0.1:$PORT -n alice --key-file $work/alice.key"
    $C verify --bytes 32M --io-size 256K --seed 11 --read-only --json >"$work/r.out" \
      2>"$work/r.log" || fail "read through gateway B"
    grep -q '"ok":true' "$work/r.out" || fail "data lost in the failover: $(cat "$work/r.out")"
    $C verify --bytes 8M --lba 131072 --seed 12 --json >"$work/v.out" 2>"$work/v.log" ||
      fail "write and verify through gateway B"
    grep -q '"ok":true' "$work/v.out" || fail "B: $(cat "$work/v.out")"
    # Online growth by `rbd resize` reaches the client.
    "${RBD[@]}" resize --size 192M "rbd/$img" >/dev/null 2>&1 || fail "rbd resize"
    for ((i = 0; i < 100; i++)); do
      $C capacity >"$work/cap.out" 2>/dev/null
      [[ $(cat "$work/cap.out") == "512 393216" ]] && break
      sleep 0.2
    done
    [[ $(cat "$work/cap.out") == "512 393216" ]] || fail "capacity after resize: $(cat "$work/cap.out")"
    echo "rbd_cli failover: ok"
    ;;
  snapshots)
    # `ipsan disk snapshot ...` on an RBD back end of a layout: native RBD snapshots.
    cat >"$work/layout.toml" <<TOML
[backend.vm]
spec = "$SPEC"

[[export]]
device_id = 0
disk = "vm"
TOML
    "$IPSAN" server --listen 127.0.0.1 --port 0 --port-file "$work/s.port" --key-file "$work/keys" \
      --config "$work/layout.toml" --admin-socket "$work/adm.sock" >"$work/s.log" 2>&1 &
    pids+=($!)
    for ((i = 0; i < 600; i++)); do [[ -s $work/s.port ]] && break; sleep 0.1; done
    [[ -s $work/s.port ]] || fail "server with layout did not start"
    PORT=$(sed 's/.*udp=\([0-9]*\).*/\1/' "$work/s.port")
    C="$IPSAN client -s 127.0.0.1:$PORT -n alice --key-file $work/alice.key"
    disk() { "$IPSAN" disk -a "$work/adm.sock" "$@"; }
    $C verify --bytes 8M --seed 21 --json >"$work/v1.out" 2>"$work/v1.log" || fail "verify 1"
    disk snapshot create --disk vm --name monday >"$work/sc.out" 2>&1 || fail "snapshot create: $(cat "$work/sc.out")"
    grep -q "monday" "$work/sc.out" || fail "snapshot create said: $(cat "$work/sc.out")"
    "${RBD[@]}" snap ls "rbd/$img" | grep -q monday || fail "no RBD snapshot 'monday'"
    grep -q "snap=monday" "$work/layout.toml" || fail "snapshot not persisted in the layout"
    disk snapshot list --disk vm >"$work/sl.out" 2>&1 || fail "snapshot list: $(cat "$work/sl.out")"
    grep -q "monday" "$work/sl.out" || fail "snapshot list: $(cat "$work/sl.out")"
    # New data on the disk; the snapshot, exported read-only, still has the old.
    $C verify --bytes 1M --seed 22 --json >"$work/v2.out" 2>"$work/v2.log" || fail "verify 2"
    disk export --name monday --device-id 5 --read-only >"$work/ex.out" 2>&1 || fail "export: $(cat "$work/ex.out")"
    $C -d 5 verify --bytes 8M --seed 21 --read-only --json >"$work/v3.out" 2>"$work/v3.log" ||
      fail "snapshot does not hold the old data: $(cat "$work/v3.out" "$work/v3.log")"
    head -c 4096 /dev/urandom >"$work/blk"
    $C -d 5 write --lba 0 -i "$work/blk" >"$work/w5.out" 2>&1 && fail "write to a snapshot succeeded"
    disk diff --from monday --to vm >"$work/diff.out" 2>&1 || fail "diff: $(cat "$work/diff.out")"
    grep -q "changed lba 0 " "$work/diff.out" || fail "diff: $(cat "$work/diff.out")"
    disk snapshot delete --name monday >"$work/sd.out" 2>&1 && fail "deleted an exported snapshot"
    disk unexport --device-id 5 >/dev/null 2>&1 || fail "unexport"
    disk snapshot delete --name monday >"$work/sd.out" 2>&1 || fail "snapshot delete: $(cat "$work/sd.out")"
    "${RBD[@]}" snap ls "rbd/$img" | grep -q monday && fail "RBD snapshot still there"
    grep -q "snap=monday" "$work/layout.toml" && fail "snapshot still in the layout"
    echo "rbd_cli snapshots: ok"
    ;;
  iscsi)
    RUNNER=${3:?run_iscsi_test_cu.sh}
    BASELINE=${4:?baseline}
    tests="ALL.Inquiry,ALL.ReadCapacity10,ALL.ReadCapacity16,ALL.TestUnitReady"
    tests+=",ALL.Read10,ALL.Write10,ALL.WriteSame16,ALL.Unmap,ALL.PrinReadKeys"
    tests+=",ALL.ProutRegister,ALL.ProutReserve,ALL.ProutClear,ALL.ProutPreempt"
    tests+=",ALL.Reserve6,ALL.iSCSIcmdsn,ALL.iSCSIdatasn,ALL.iSCSIResiduals"
    tests+=",ALL.iSCSITMF,ALL.MultipathIO"
    ISCSI_DEVICE=$SPEC "$RUNNER" "$IPSAN" "$BASELINE" "" "$tests" min_real_passes_lossy_rtt
    exit $?
    ;;
  *) echo "unknown mode $MODE"; exit 2 ;;
esac
