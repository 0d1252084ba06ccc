#!/usr/bin/env bash
# ceph-cluster.sh: a throw-away single-node Ceph cluster for the RBD back end's tests and for
# trying ipsan on RBD (docs/CEPH.md). Debian's ceph-mon, ceph-mgr and ceph-osd run as plain
# processes (no systemd); every path (config, keys, data, sockets, logs, pid files) is under one
# directory; monitors and OSDs listen on 127.0.0.1 only; cephx is on; each OSD is BlueStore on a
# sparse file the OSD creates itself; pool "rbd" has size 1.
#
#   scripts/ceph-cluster.sh start DIR [--osds N] [--osd-size SIZE] [--timeout S]
#       DIR must not exist or be empty. Waits (bounded) for HEALTH_OK with every PG
#       active+clean, then prints the environment lines of `env`.
#   scripts/ceph-cluster.sh env DIR     prints: export CEPH_CONF=DIR/ceph.conf CEPH_KEYRING=...
#   scripts/ceph-cluster.sh status DIR  `ceph -s`
#   scripts/ceph-cluster.sh kill-osd DIR ID | start-osd DIR ID   (fault injection for tests)
#   scripts/ceph-cluster.sh stop DIR [--keep]   kills the daemons, removes DIR unless --keep
#
# Exit status: 0 ok, 1 failure (the tail of the daemons' logs is printed), 2 usage.
set -euo pipefail

die() { echo "ceph-cluster: $*" >&2; exit 1; }
usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

[[ $# -ge 2 ]] || usage
cmd=$1
dir=$2
shift 2
osd_id=
if [[ $cmd == kill-osd || $cmd == start-osd ]]; then
  [[ $# -eq 1 && $1 =~ ^[0-9]+$ ]] || usage
  osd_id=$1
  shift
fi
osds=1
osd_size=8G
timeout=120
keep=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --osds) osds=$2; shift 2 ;;
    --osd-size) osd_size=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    *) usage ;;
  esac
done
[[ $osds =~ ^[1-9]$ ]] || die "--osds must be 1..9"
[[ $timeout =~ ^[0-9]+$ ]] || die "--timeout must be seconds"

conf="$dir/ceph.conf"
ceph_() { timeout 30 ceph --conf "$conf" --name client.admin --keyring "$dir/client.admin.keyring" \
          --connect-timeout 20 "$@"; }

dump_logs() {
  for f in "$dir"/log/*.log; do
    [[ -f $f ]] || continue
    echo "---- $f (tail)" >&2
    tail -n 15 "$f" >&2
  done
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

pid_of() { [[ -f "$dir/run/$1.pid" ]] && cat "$dir/run/$1.pid"; }

wait_pid_file() {  # name, seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    if [[ -s "$dir/run/$1.pid" ]] && kill -0 "$(cat "$dir/run/$1.pid")" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

start_osd() {  # id
  ceph-osd --conf "$conf" --id "$1" || die "ceph-osd.$1 did not start"
  wait_pid_file "osd.$1" 30 || { dump_logs; die "osd.$1 did not write its pid file"; }
}

do_env() {
  echo "export CEPH_CONF=$conf"
  echo "export CEPH_KEYRING=$dir/client.admin.keyring"
  echo "export CEPH_ARGS=\"--conf $conf --keyring $dir/client.admin.keyring\""
  echo "export IPSAN_CEPH_DIR=$dir"
}

wait_healthy() {  # seconds
  local deadline=$((SECONDS + $1)) s
  while ((SECONDS < deadline)); do
    s=$(ceph_ status --format json 2>/dev/null || true)
    if [[ -n $s ]] && python3 - "$s" <<'EOF'
import json, sys
s = json.loads(sys.argv[1])
ok = s["health"]["status"] == "HEALTH_OK"
pg = s["pgmap"]
states = {x["state_name"]: x["count"] for x in pg.get("pgs_by_state", [])}
total = pg.get("num_pgs", 0)
ok = ok and total > 0 and states.get("active+clean", 0) == total
sys.exit(0 if ok else 1)
EOF
    then return 0; fi
    sleep 1
  done
  ceph_ status >&2 || true
  ceph_ health detail >&2 || true
  return 1
}

do_start() {
  command -v ceph-mon >/dev/null || die "ceph-mon not installed (apt-get install ceph-mon ceph-mgr ceph-osd)"
  if [[ -e $dir ]] && [[ -n "$(ls -A "$dir")" ]]; then die "$dir exists and is not empty"; fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  conf="$dir/ceph.conf"
  mkdir -p "$dir/run" "$dir/log" "$dir/crash"
  local fsid port
  fsid=$(python3 -c 'import uuid; print(uuid.uuid4())')
  port=$(free_port)
  cat >"$conf" <<EOF
# Written by scripts/ceph-cluster.sh: a single-node test cluster, loopback only.
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$port]
mon initial members = a
public addr = 127.0.0.1
public network = 127.0.0.0/8
cluster network = 127.0.0.0/8
ms bind msgr1 = false
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
run dir = $dir/run
crash dir = $dir/crash
pid file = $dir/run/\$name.pid
admin socket = $dir/run/\$cluster-\$name.asok
log file = $dir/log/\$name.log
log to stderr = false
err to stderr = false
keyring = $dir/\$name.keyring
mon data = $dir/mon.\$id
mgr data = $dir/mgr.\$id
osd data = $dir/osd.\$id
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
# Tests kill a gateway: a dead client's watch (and so its exclusive lock) expires after this.
osd client watch timeout = 10
client mount timeout = 20
rados mon op timeout = 30
rados osd op timeout = 0

[mon]
mon cluster log file = $dir/log/cluster.log
mon data avail warn = 1
mon data avail crit = 0

[mgr]
mgr initial modules =

[osd]
osd objectstore = bluestore
bluestore block create = true
bluestore block size = $(numfmt --from=iec "$osd_size")
bluestore fsck on mount = false
osd memory target = 939524096
bluestore cache autotune = true
osd op num shards = 2
osd op num threads per shard = 1
EOF
  # Keys: mon., client.admin (everything), and per daemon below.
  ceph-authtool --create-keyring "$dir/mon.a.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool --create-keyring "$dir/client.admin.keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
  ceph-authtool "$dir/mon.a.keyring" --import-keyring "$dir/client.admin.keyring" >/dev/null
  chmod 600 "$dir"/*.keyring
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$port]" "$dir/monmap" >/dev/null
  local t0=$SECONDS
  ceph-mon --conf "$conf" --id a --mkfs --monmap "$dir/monmap" --keyring "$dir/mon.a.keyring" \
    || { dump_logs; die "mon mkfs failed"; }
  ceph-mon --conf "$conf" --id a || { dump_logs; die "ceph-mon did not start"; }
  wait_pid_file mon.a 30 || { dump_logs; die "mon.a did not start"; }
  ceph_ auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' \
    -o "$dir/mgr.x.keyring" >/dev/null || { dump_logs; die "mon does not answer"; }
  mkdir -p "$dir/mgr.x"
  ceph-mgr --conf "$conf" --id x || { dump_logs; die "ceph-mgr did not start"; }
  local i uuid id
  for ((i = 0; i < osds; i++)); do
    uuid=$(python3 -c 'import uuid; print(uuid.uuid4())')
    id=$(ceph_ osd new "$uuid")
    mkdir -p "$dir/osd.$id"
    ceph_ auth get-or-create "osd.$id" osd 'allow *' mon 'allow profile osd' mgr 'allow profile osd' \
      -o "$dir/osd.$id.keyring" >/dev/null
    ceph-osd --conf "$conf" --id "$id" --mkfs --osd-uuid "$uuid" >"$dir/log/osd.$id.mkfs.out" 2>&1 \
      || { cat "$dir/log/osd.$id.mkfs.out" >&2; dump_logs; die "osd.$id mkfs failed"; }
    start_osd "$id"
  done
  ceph_ osd pool create rbd 32 32 >/dev/null
  ceph_ osd pool set rbd size 1 --yes-i-really-mean-it >/dev/null
  timeout 60 rbd --conf "$conf" --keyring "$dir/client.admin.keyring" pool init rbd \
    || { dump_logs; die "rbd pool init failed"; }
  if ! wait_healthy "$timeout"; then
    dump_logs
    die "not HEALTH_OK with all PGs active+clean within ${timeout}s"
  fi
  echo "ceph-cluster: $dir healthy after $((SECONDS - t0)) s" >&2
  do_env
}

do_stop() {
  [[ -d $dir ]] || exit 0
  local f pid pids=()
  for f in "$dir"/run/*.pid; do
    [[ -f $f ]] || continue
    pid=$(cat "$f")
    # Only our daemons: the process must have this cluster's config on its command line.
    if [[ -n $pid ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$conf"; then
      kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
    fi
  done
  local i
  for ((i = 0; i < 100; i++)); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  ((keep)) || rm -rf "$dir"
}

case $cmd in
  start) do_start ;;
  env) dir=$(cd "$dir" && pwd); conf="$dir/ceph.conf"; do_env ;;
  status) ceph_ -s ;;
  stop) do_stop ;;
  kill-osd)
    pid=$(pid_of "osd.$osd_id") || die "osd.$osd_id: no pid file"
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$conf" || die "osd.$osd_id is not running"
    kill -KILL "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    rm -f "$dir/run/osd.$osd_id.pid" ;;
  start-osd) start_osd "$osd_id" ;;
  *) usage ;;
esac
