#!/bin/bash
# vm-e2e.sh IPSAN_BINARY: boots the test VM with the ipsan program and guest-e2e.sh, which runs an
# ipsan server on the guest's real SG_IO disks and an ipsan client against it over 127.0.0.1.
# Exit codes as ipsan-vm.sh (77 = cannot run qemu here: CTest SKIP).
set -uo pipefail
here=$(dirname "$(readlink -f "$0")")
[ $# -eq 1 ] && [ -x "$1" ] || { echo "usage: $0 IPSAN_BINARY" >&2; exit 2; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/ipsan-vm-e2e.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT
cp "$1" "$dir/ipsan"
cp "$here/guest-e2e.sh" "$dir/run"
"$here/ipsan-vm.sh" "$dir"
