#!/bin/sh
# guest-e2e.sh: runs INSIDE the VM (as /t/run, next to the ipsan binary): an ipsan server exports
# the guest's real SG_IO disks (sg: on the SCSI disk, ata: on the ATA disk) and an ipsan client on
# 127.0.0.1 writes, reads back and checks a seeded pattern over both transports.
set -u
IPSAN=/t/ipsan
KEY=ipsan-vm-e2e-key
(umask 077; echo "$KEY" > /tmp/vm.key)  # keys never in argv (docs/SECURITY.md)
fail() { echo "guest-e2e: FAIL: $*"; [ -n "${SRV:-}" ] && kill "$SRV" 2>/dev/null; exit 1; }

echo "guest-e2e: probe"
$IPSAN probe "$SG_SCSI" || fail "probe $SG_SCSI"
$IPSAN probe --json "$SG_ATA" > /tmp/ata.json || fail "probe --json $SG_ATA"
grep -q '"lba48": true' /tmp/ata.json || fail "probe --json did not report the ATA disk"

$IPSAN server --listen 127.0.0.1 --port 0 --transport both \
  --device "0=sg:$SG_SCSI" --device "1=ata:$SG_ATA" \
  --client-key "vm=file:/tmp/vm.key" --port-file /tmp/ports &
SRV=$!
i=0
while [ ! -s /tmp/ports ] && [ $i -lt 600 ]; do
  kill -0 $SRV 2>/dev/null || fail "server exited early"
  sleep 0.05; i=$((i + 1))
done
[ -s /tmp/ports ] || fail "server did not write its port file"
UDP=$(sed -n 's/.*udp=\([0-9]*\).*/\1/p' /tmp/ports)
TCP=$(sed -n 's/.*tcp=\([0-9]*\).*/\1/p' /tmp/ports)
echo "guest-e2e: server up: udp=$UDP tcp=$TCP"

client() { port=$1; tr=$2; shift 2; $IPSAN client -s "127.0.0.1:$port" -t "$tr" -n vm --key-file /tmp/vm.key "$@"; }
for dev in 0 1; do
  client "$UDP" udp -d $dev identify || fail "identify device $dev"
  client "$UDP" udp -d $dev verify --bytes 4M --io-size 256K --qd 8 --seed 7$dev \
    || fail "verify over udp, device $dev"
  # Read back over the other transport what the first run wrote.
  client "$TCP" tcp -d $dev verify --bytes 4M --io-size 64K --qd 4 --seed 7$dev --read-only \
    || fail "read-only verify over tcp, device $dev"
  client "$UDP" udp -d $dev verify --bytes 1M --io-size 4K --qd 16 --seed 9$dev --lba 100001 \
    || fail "unaligned small-io verify, device $dev"
  client "$UDP" udp -d $dev flush || fail "flush device $dev"
done
kill $SRV
wait $SRV 2>/dev/null
echo "guest-e2e: PASS"
exit 0
