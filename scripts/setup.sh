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
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "setup: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
