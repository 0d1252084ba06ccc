#!/usr/bin/env bash
# Installs the Debian packages ipsan needs to build and test (only those missing). Debian 12, root.
set -euo pipefail
PKGS=(
  build-essential cmake ninja-build g++ clang libclang-rt-14-dev pkg-config
  libboost-dev libpcap-dev libsgutils2-dev sg3-utils libcli11-dev libexpected-dev libsodium-dev
  libtomlplusplus-dev nlohmann-json3-dev libgtest-dev libgmock-dev libbenchmark-dev libssl-dev
  tcpdump tshark iproute2 nftables procps
  tgt libiscsi-bin
  # VM tests (test/vm): QEMU guest with real SG_IO / ATA devices; installed here, never by a test
  qemu-system-x86 busybox-static cpio kmod
  # NBD export, NAS, metrics, Ceph RBD, storage manager: libraries and the peers/clients tests drive
  libgnutls28-dev gnutls-bin libnbd-bin libnbd-dev python3-libnbd nbdkit qemu-utils fio iperf3
  libext2fs-dev e2fsprogs libnfs-dev libnfs-utils nfs-ganesha nfs-ganesha-vfs
  librbd-dev librados-dev ceph-mon ceph-mgr ceph-osd ceph-common
  libsqlite3-dev sqlite3 liburing-dev prometheus
)
PKGS+=("$@")
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
updated=0
apt_update() { [ $updated -eq 1 ] || { $SUDO apt-get update -qq; updated=1; }; }

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt_update
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The VM tests (test/vm) boot Debian's own kernel in QEMU: its package is downloaded here, once,
# and only unpacked by the tests (never installed on the host, never fetched by a test).
KDIR=${IPSAN_VM_KERNEL_DEBS:-/var/cache/ipsan/vm-kernel}
if ! ls "$KDIR"/linux-image-*.deb >/dev/null 2>&1; then
  kpkg() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}'; }
  pkg=$(kpkg)
  [ -n "$pkg" ] || { apt_update; pkg=$(kpkg); }
  [ -n "$pkg" ] || { echo "setup: cannot resolve linux-image-amd64" >&2; exit 1; }
  echo "setup: fetching guest kernel package $pkg into $KDIR"
  $SUDO mkdir -p "$KDIR"
  (cd "$KDIR" && $SUDO apt-get download -q "$pkg" >/dev/null 2>&1) \
    || { echo "setup: apt-get download $pkg failed" >&2; exit 1; }
fi
