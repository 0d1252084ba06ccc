#!/bin/bash
# ipsan-vm.sh: run a program inside a throw-away QEMU guest that has real SG_IO disks, and
# return its exit code. Used by the CTests labelled `vm` (test/vm/CMakeLists.txt).
#
#   /dev/sg0 (+/dev/sda)  virtio-scsi scsi-hd  (QEMU's SCSI disk emulation, UNMAP/WRITE SAME)
#   /dev/sg1 (+/dev/sdb)  AHCI ide-hd          (ATA disk behind libata's SAT: ATA PASS-THROUGH)
#   /dev/sg2 (+/dev/sdc)  virtio-scsi scsi-hd  64 MiB with injected errors (blkdebug): reads of
#                         sector 2000 -> MEDIUM ERROR, writes of 3000 -> DATA PROTECT/space
#                         allocation failed, reads of 4000 -> ABORTED COMMAND (EIO)
#
# usage: ipsan-vm.sh [-e VAR=VALUE]... PROGRAM|DIRECTORY [ARGS...]
#   PROGRAM    an ELF (or script) copied to /t/ in the guest and run with ARGS.
#   DIRECTORY  copied to /t/; runs /t/run (a shell script) with ARGS, cwd /t.
#   Shared libraries of every ELF copied in are found with the host's ldd and copied too.
# The guest program sees SG_SCSI=/dev/sg0 SG_ATA=/dev/sg1 SG_SCSI_FAULTY=/dev/sg2 SD_SCSI SD_ATA
# IPSAN_VM_DISK_BYTES, a
# busybox userland, the sg3-utils tools, loopback networking (127.0.0.1), and /tmp on tmpfs.
#
# Environment knobs:
#   IPSAN_VM_CACHE    kernel + base initramfs cache (default /tmp/ipsan-vm-cache)
#   IPSAN_VM_KERNEL_DEBS  where scripts/setup.sh put the guest kernel .deb
#                     (default /var/cache/ipsan/vm-kernel)
#   IPSAN_VM_TIMEOUT  seconds before the guest is killed (default 300)
#   IPSAN_VM_MEM      MiB of guest memory (default 1024)
#   IPSAN_VM_DISK     disk size for both disks (default 512M)
#   IPSAN_VM_ACCEL    tcg (default) | kvm (-cpu host; where nested KVM works)
#   IPSAN_VM_SCSI_BS  logical block size of the SCSI disk (default 512)
#   IPSAN_VM_VERBOSE=1  kernel messages on the console; IPSAN_VM_KEEP=1 keep the work dir
# Exit: the program's exit code; 77 = qemu cannot run here (CTest SKIP; 1 under CI=true);
#       124 = timeout;
#       125 = the guest started but did not report an exit code.
set -uo pipefail

CACHE=${IPSAN_VM_CACHE:-/tmp/ipsan-vm-cache}
KERNEL_DEBS=${IPSAN_VM_KERNEL_DEBS:-/var/cache/ipsan/vm-kernel}
TMO=${IPSAN_VM_TIMEOUT:-300}
MEM=${IPSAN_VM_MEM:-1024}
DISK=${IPSAN_VM_DISK:-512M}
ACCEL=${IPSAN_VM_ACCEL:-tcg}
SKIP=77
say() { echo "[ipsan-vm] $*" >&2; }
# A skip counts as a pass in CTest: under CI=true "cannot run here" is a failure instead.
skip() {
  if [ "${CI:-}" = true ]; then say "FAIL (CI=true forbids skips): $*"; exit 1; fi
  say "SKIP: $*"; exit $SKIP
}
die() { say "ERROR: $*"; exit 125; }

ENVS=()
while [ $# -gt 0 ]; do
  case "$1" in
    -e) [ $# -ge 2 ] || die "-e needs VAR=VALUE"; ENVS+=("$2"); shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { sed -n '2,30p' "$0" >&2; exit 2; }
TARGET=$(readlink -f "$1") || die "bad path $1"
shift
[ -e "$TARGET" ] || die "no such file: $TARGET"

# ------------------------------------------------------------------ host tools (installed once)
need_tools() {
  # Installed by scripts/setup.sh; a test never installs anything (two VM tests running
  # apt-get at once lost the dpkg lock and turned themselves into skips).
  local need=()
  command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
  # The initramfs needs a static busybox (no libc in the guest besides what we copy).
  if [ ! -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then need+=(busybox-static); fi
  command -v sg_inq >/dev/null || need+=(sg3-utils)
  command -v cpio >/dev/null || need+=(cpio)
  command -v depmod >/dev/null || need+=(kmod)
  [ ${#need[@]} -eq 0 ] && return 0
  skip "missing ${need[*]}: run scripts/setup.sh"
}

# ------------------------------------------------------------------ guest kernel (cached)
get_kernel() {
  [ -f "$CACHE/kernel/.done" ] && return 0
  # The full Debian kernel package (linux-image-cloud-amd64 has no AHCI), fetched by
  # scripts/setup.sh into $KERNEL_DEBS; extracted here, never installed, never downloaded here.
  local deb
  deb=$(ls -t "$KERNEL_DEBS"/linux-image-*.deb 2>/dev/null | head -1)
  [ -n "$deb" ] || skip "no guest kernel package in $KERNEL_DEBS: run scripts/setup.sh"
  say "unpacking kernel package $(basename "$deb")"
  rm -rf "$CACHE/kernel"
  mkdir -p "$CACHE/kernel"
  dpkg-deb -x "$deb" "$CACHE/kernel" || skip "cannot unpack $deb"
  depmod -b "$CACHE/kernel" "$(ls "$CACHE/kernel/lib/modules")" || skip "depmod failed"
  touch "$CACHE/kernel/.done"
}

copy_libs() {  # copy_libs ROOT ELF...: the shared libraries each ELF needs, per the host's ldd
  local root=$1 f l
  shift
  for f in "$@"; do
    for l in $(ldd "$f" 2>/dev/null | grep -o '/[^ ]*'); do
      [ -e "$root$l" ] || { mkdir -p "$root$(dirname "$l")"; cp -L "$l" "$root$l"; }
    done
  done
}

# ------------------------------------------------------------------ base initramfs (cached)
build_base() {
  local kv r=$CACHE/root stage m p b
  kv=$(ls "$CACHE/kernel/lib/modules")
  say "building base initramfs (kernel $kv)"
  rm -rf "$r"
  mkdir -p "$r"/{bin,sbin,dev,proc,sys,tmp,t,lib/modules,usr/bin,etc}
  cp /bin/busybox "$r/bin/busybox"
  for a in $(/bin/busybox --list); do [ -e "$r/bin/$a" ] || ln -s busybox "$r/bin/$a"; done
  # Module load lists, one per stage, dependencies first, each module once.
  : > "$r/lib/modules/all"
  for stage in "sd_mod sg virtio_pci" "virtio_scsi" "ahci"; do
    for m in $stage; do
      modprobe -d "$CACHE/kernel" -S "$kv" --show-depends "$m" | awk '$1=="insmod"{print $2}' |
        while read -r p; do
          b=$(basename "$p")
          grep -qx "$b" "$r/lib/modules/all" && continue
          cp "$p" "$r/lib/modules/$b"
          echo "$b" >> "$r/lib/modules/all"
          echo "$b"
        done
    done > "$r/lib/modules/stage.${stage%% *}"
  done
  cp /usr/bin/sg_* "$r/usr/bin/" 2>/dev/null || true
  copy_libs "$r" "$r"/usr/bin/*
  [ -e "$r/lib64/ld-linux-x86-64.so.2" ] || { mkdir -p "$r/lib64"; cp -L /lib64/ld-linux-x86-64.so.2 "$r/lib64/"; }
  cat > "$r/init" <<'INIT'
#!/bin/sh
export PATH=/usr/bin:/bin:/sbin HOME=/tmp
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mount -t tmpfs tmp /tmp
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up
load() {
  while read -r m; do
    case $m in scsi_mod.ko) insmod /lib/modules/$m scan=manual ;; *) insmod /lib/modules/$m 2>/dev/null ;; esac
  done < /lib/modules/stage.$1
}
wait_sg() { i=0; while [ ! -e /sys/class/scsi_generic/sg$1 ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; }
blk_of() { ls /sys/class/scsi_generic/$1/device/block 2>/dev/null | head -n1; }
load sd_mod
load virtio_scsi
# scan=manual: probing all virtio-scsi targets costs seconds under TCG; scan the one disk we attach.
for h in /sys/class/scsi_host/host*; do [ "$(cat $h/proc_name)" = virtio_scsi ] && echo "0 0 0" > $h/scan; done
wait_sg 0
load ahci
wait_sg 1
# The fault-injecting SCSI disk (target 1) last, so sg0/sg1 stay the two plain disks.
for h in /sys/class/scsi_host/host*; do [ "$(cat $h/proc_name)" = virtio_scsi ] && echo "0 1 0" > $h/scan; done
wait_sg 2
export SG_SCSI=/dev/sg0 SG_ATA=/dev/sg1 SD_SCSI=/dev/$(blk_of sg0) SD_ATA=/dev/$(blk_of sg1)
[ -e /dev/sg2 ] && export SG_SCSI_FAULTY=/dev/sg2
for d in /sys/class/scsi_generic/sg*; do
  echo "ipsan-vm: /dev/${d##*/}: $(cat $d/device/vendor 2>/dev/null) $(cat $d/device/model 2>/dev/null) -> /dev/$(blk_of ${d##*/})"
done
[ -f /t/.env ] && . /t/.env
cd /t
echo "IPSAN-VM-START"
sh /t/.run < /dev/console > /dev/console 2>&1
rc=$?
echo "IPSAN-VM-EXIT-CODE=$rc"
sync
poweroff -f
INIT
  chmod +x "$r/init"
  (cd "$r" && find . | sort | cpio -o -H newc --quiet > "$CACHE/base.cpio.tmp") && mv "$CACHE/base.cpio.tmp" "$CACHE/base.cpio"
  cp "$0" "$CACHE/base.stamp"
}

mkdir -p "$CACHE" || skip "cannot create cache $CACHE"
exec 9>"$CACHE/.lock"
flock 9  # concurrent runs share one cache
need_tools
get_kernel
if [ ! -f "$CACHE/base.cpio" ] || ! cmp -s "$0" "$CACHE/base.stamp"; then build_base; fi
flock -u 9
KERNEL=$(ls "$CACHE"/kernel/boot/vmlinuz-* 2>/dev/null | head -n1)
[ -n "$KERNEL" ] || skip "no kernel image in $CACHE"

# ------------------------------------------------------------------ per-run payload
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ipsan-vm.XXXXXX") || skip "mktemp failed"
cleanup() { if [ "${IPSAN_VM_KEEP:-0}" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi; }
trap cleanup EXIT
P=$WORK/payload
mkdir -p "$P/t"
if [ -d "$TARGET" ]; then
  cp -a "$TARGET/." "$P/t/"
  [ -f "$P/t/run" ] || die "directory mode: $TARGET/run missing"
  PROG="sh /t/run"
else
  cp "$TARGET" "$P/t/"
  PROG=/t/$(basename "$TARGET")
fi
while IFS= read -r -d '' f; do
  if head -c4 "$f" | grep -q ELF; then copy_libs "$P" "$f"; fi
done < <(find "$P/t" -type f -print0)
q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
{
  printf 'exec %s' "$PROG"
  for a in "$@"; do printf ' %s' "$(q "$a")"; done
  echo
} > "$P/t/.run"
DISK_BYTES=$(numfmt --from=iec "$DISK")
{
  echo "export IPSAN_VM_DISK_BYTES=$DISK_BYTES IPSAN_VM_SCSI_DPOFUA=1"
  # CI=true travels into the guest: a test that skips there fails (ipsan/testing/skip.h).
  [ "${CI:-}" = true ] && echo "export CI=true"
  for v in "${ENVS[@]+"${ENVS[@]}"}"; do printf 'export %s=%s\n' "${v%%=*}" "$(q "${v#*=}")"; done
} > "$P/t/.env"
(cd "$P" && find . | cpio -o -H newc --quiet) > "$WORK/payload.cpio"
cat "$CACHE/base.cpio" "$WORK/payload.cpio" > "$WORK/initrd.cpio"
truncate -s "$DISK" "$WORK/scsi.img" "$WORK/ata.img"
truncate -s 64M "$WORK/faulty.img"
# /dev/sg2: QEMU's blkdebug fails I/O touching these 512-byte sectors; scsi-disk turns the errno
# into sense data: ENODATA -> MEDIUM ERROR 11h/00h, ENOSPC -> DATA PROTECT 27h/07h,
# EIO -> ABORTED COMMAND 00h/06h.
cat > "$WORK/blkdebug.conf" <<'CONF'
[inject-error]
event = "read_aio"
errno = "61"
sector = "2000"
once = "off"

[inject-error]
event = "write_aio"
errno = "28"
sector = "3000"
once = "off"

[inject-error]
event = "read_aio"
errno = "5"
sector = "4000"
once = "off"
CONF

CMDLINE="console=ttyS0 panic=-1 oops=panic mitigations=off"
if [ "${IPSAN_VM_VERBOSE:-0}" = 1 ]; then CMDLINE+=" loglevel=7"; else CMDLINE+=" quiet loglevel=1"; fi
BIOS=()
[ -f /usr/share/qemu/qboot.rom ] && BIOS=(-bios /usr/share/qemu/qboot.rom)  # boots faster than SeaBIOS
case "$ACCEL" in
  kvm) ACC=(-accel kvm -cpu host) ;;
  tcg) ACC=(-accel tcg,thread=multi -cpu max) ;;
  *) ACC=(-accel tcg,thread=multi -cpu max) ;;  # nested KVM is often broken (MSR faults)
esac
BS=${IPSAN_VM_SCSI_BS:-512}

START=$(date +%s.%N)
timeout --foreground -k 5 "$TMO" qemu-system-x86_64 -nodefaults -no-user-config -nographic -no-reboot \
  "${ACC[@]}" "${BIOS[@]}" -M q35 -smp 2 -m "$MEM" \
  -kernel "$KERNEL" -initrd "$WORK/initrd.cpio" -append "$CMDLINE" \
  -chardev stdio,id=con,signal=off -serial chardev:con \
  -device virtio-scsi-pci,id=scsi0 \
  -drive if=none,id=d_scsi,file="$WORK/scsi.img",format=raw,cache=unsafe,discard=unmap \
  -device scsi-hd,drive=d_scsi,bus=scsi0.0,channel=0,scsi-id=0,lun=0,vendor=IPSANVM,product=SCSI-DISK,serial=IPSANSCSI0,dpofua=on,logical_block_size=$BS,physical_block_size=$BS \
  -drive if=none,id=d_ata,file="$WORK/ata.img",format=raw,cache=unsafe,discard=unmap \
  -device ide-hd,drive=d_ata,bus=ide.0,model=IPSAN-VM-ATA-DISK,serial=IPSANATA0 \
  -drive if=none,id=d_bad,driver=raw,file.driver=blkdebug,file.config="$WORK/blkdebug.conf",file.image.filename="$WORK/faulty.img",cache=unsafe,rerror=report,werror=report \
  -device scsi-hd,drive=d_bad,bus=scsi0.0,channel=0,scsi-id=1,lun=0,vendor=IPSANVM,product=FAULTY-DISK,serial=IPSANBAD0 \
  < /dev/null 2>&1 | tr -d '\r' | tee "$WORK/console.log"
QRC=${PIPESTATUS[0]}
say "guest wall time $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $START}") s (${ACC[*]})"
[ "$QRC" = 124 ] && { say "timeout after ${TMO}s"; exit 124; }
RC=$(sed -n 's/^IPSAN-VM-EXIT-CODE=\([0-9]*\)$/\1/p' "$WORK/console.log" | tail -n1)
if [ -z "$RC" ]; then
  grep -q '^IPSAN-VM-START' "$WORK/console.log" || skip "qemu could not boot the guest (rc=$QRC)"
  die "guest ended without an exit code (qemu rc=$QRC)"
fi
exit "$RC"
