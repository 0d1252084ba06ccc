#!/usr/bin/env bash
# nbd_export_test.sh: `ipsan nbd-export` against real NBD clients from Debian.
#
#   nbd_export_test.sh IPSAN_BINARY PART
#
# Starts `ipsan server` (ram devices 0: 64 MiB, 1: 16 MiB) and `ipsan nbd-export` in front of it
# (exports disk=0 and ro=1,ro; port 0), then per PART:
#   basic       nbdinfo (flags, block sizes), nbdinfo --list, nbdinfo --map, nbdsh: every command
#   errors      nbdsh: unknown export, beyond the end, oversized, unaligned, read-only, FAST_ZERO
#   clients     nbdcopy round trip, qemu-img info/convert/compare, fio's nbd engine with verify
#   tls         PSK (psktool) and X.509 (certtool) with --tls require; a plain client is refused
#   unix        the same export on a Unix socket only (nbdinfo, nbdcopy, qemu-img compare)
#   netem       the export's ipsan link through --netem lossy-1pct: nbdcopy, fio verify
#   badclients  garbage handshakes, a hang-up mid-request, a bad request magic: no crash, a client
#               connected meanwhile goes on
# A missing client tool fails the test under CI=true (exit 77, a CTest skip, elsewhere).
set -uo pipefail

IPSAN=${1:?ipsan binary}
PART=${2:?part}
WORK=$(mktemp -d /tmp/ipsan-nbd-test.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; for f in "$WORK"/*.log; do echo "--- $f"; tail -20 "$f"; done; exit 1; }
need() {
  for t in "$@"; do
    if ! command -v "$t" >/dev/null 2>&1; then
      if [ "${CI:-}" = true ]; then fail "$t is not installed (scripts/setup.sh installs it)"; fi
      echo "$t is not installed: skipped"; exit 77
    fi
  done
}
wait_for_file() {  # FILE PID: bounded wait for a file the process writes once listening
  for _ in $(seq 1 300); do
    [ -s "$1" ] && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
need nbdinfo nbdsh python3
umask 077  # key files must be private (docs/SECURITY.md)
KEY=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
echo "nbdtest $KEY" > "$WORK/keys"
echo "$KEY" > "$WORK/client.key"
"$IPSAN" server --listen 127.0.0.1 --port 0 --port-file "$WORK/server.port" --key-file "$WORK/keys" \
  --device 0=ram:64M --device 1=ram:16M > "$WORK/server.log" 2>&1 &
SERVER_PID=$!; PIDS+=("$SERVER_PID")
wait_for_file "$WORK/server.port" "$SERVER_PID" || fail "server did not start"
UDP_PORT=$(sed 's/.*udp=\([0-9]*\).*/\1/' "$WORK/server.port")

EXPORT_PID=
start_export() {  # extra nbd-export arguments
  rm -f "$WORK/export.port"
  "$IPSAN" nbd-export -s "127.0.0.1:$UDP_PORT" -n nbdtest --key-file "$WORK/client.key" \
    --port-file "$WORK/export.port" --export disk=0 --export ro=1,ro "$@" > "$WORK/export.log" 2>&1 &
  EXPORT_PID=$!; PIDS+=("$EXPORT_PID")
  wait_for_file "$WORK/export.port" "$EXPORT_PID" || fail "nbd-export did not start"
  PORT=$(cat "$WORK/export.port")
  URI="nbd://127.0.0.1:$PORT/disk"
}
check_alive() { kill -0 "$EXPORT_PID" 2>/dev/null || fail "nbd-export died"; }
stop_export() {
  kill "$EXPORT_PID"; wait "$EXPORT_PID"; local rc=$?
  [ $rc -eq 0 ] || fail "nbd-export exited $rc on SIGTERM"
}
nbdsh_run() {  # URI-or-empty SCRIPT: runs a Python script in nbdsh; its failure fails the test
  echo "$2" > "$WORK/script.py"
  # nbdsh runs `python3 -m nbd`: Debian's python3 (python3-libnbd), not another one on PATH.
  PATH=/usr/bin:$PATH nbdsh -c "URI='$1'" -c "exec(open('$WORK/script.py').read())" ||
    fail "nbdsh script failed"
}

case $PART in
basic)
  start_export -l 127.0.0.1:0
  nbdinfo "$URI" > "$WORK/info.txt" || fail "nbdinfo"
  cat "$WORK/info.txt"
  grep -q 'export-size: 67108864' "$WORK/info.txt" || fail "size"
  grep -q 'can_multi_conn: true' "$WORK/info.txt" || fail "multi-conn"
  grep -q 'can_fast_zero: true' "$WORK/info.txt" || fail "fast zero"
  grep -q 'block_size_minimum: 512' "$WORK/info.txt" || fail "block size"
  grep -q 'block_size_maximum: 33554432' "$WORK/info.txt" || fail "max block size"
  nbdinfo "nbd://127.0.0.1:$PORT/ro" | grep -q 'is_read_only: true' || fail "ro export"
  nbdinfo --list "nbd://127.0.0.1:$PORT" > "$WORK/list.txt" || fail "nbdinfo --list"
  grep -q 'export="disk"' "$WORK/list.txt" && grep -q 'export="ro"' "$WORK/list.txt" || fail "list"
  nbdinfo --map "$URI" > "$WORK/map.txt" || fail "nbdinfo --map"
  cat "$WORK/map.txt"
  # Everything reported allocated (the generic request set has no allocation query).
  grep -qE '^ +0 +67108864 +0 +data' "$WORK/map.txt" || fail "map"
  nbdsh_run "$URI" '
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.connect_uri(URI)
assert h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
assert h.can_flush() and h.can_fua() and h.can_zero() and h.can_cache() and h.can_df()
assert h.can_multi_conn() and h.can_fast_zero() and not h.is_read_only()
buf = bytes(range(256)) * 256                      # 64 KiB
h.pwrite(buf, 1048576)
h.pwrite(buf, 2097152, nbd.CMD_FLAG_FUA)
assert h.pread(65536, 1048576) == buf
strict = h.get_strict_mode(); h.set_strict_mode(0)  # libnbd would refuse an unaligned read itself
assert h.pread(1000, 1048576 + 3) == buf[3:1003]    # unaligned read
h.set_strict_mode(strict)
h.flush()
h.zero(4096, 1048576)
assert h.pread(4096, 1048576) == bytes(4096)
h.zero(4096, 1048576 + 4096, nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FAST_ZERO)
assert h.pread(8192, 1048576) == bytes(8192)
assert h.pread(4096, 1048576 + 8192) == buf[8192:12288]
h.cache(1048576, 0)
seen = []
h.block_status(65536, 0, lambda ctx, off, ents, err: seen.append((ctx, list(ents))) or 0)
assert seen == [("base:allocation", [65536, 0])], seen
# a read of 8 MiB: split by the export into the server transfer limit, one reply
assert len(h.pread(8 << 20, 0)) == 8 << 20
# multi-conn: a second connection sees the first one'"'"'s completed write after FLUSH
h2 = nbd.NBD(); h2.connect_uri(URI)
h2.pwrite(b"\x5a" * 4096, 3 << 20); h.flush()
assert h.pread(4096, 3 << 20) == b"\x5a" * 4096
h2.shutdown(); h.shutdown()
print("basic nbdsh: ok")'
  # trim is not advertised for ram devices? check what the server says and use it when offered.
  nbdsh_run "$URI" '
h.connect_uri(URI)
if h.can_trim():
    h.trim(65536, 1048576)
    print("trim: ok")
else:
    print("trim: not offered by this device")
h.shutdown()'
  check_alive; stop_export
  ;;
errors)
  start_export -l 127.0.0.1:0
  nbdsh_run "$URI" '
import errno
def expect(err, fn, *args):
    try:
        fn(*args)
    except nbd.Error as e:
        assert e.errnum == err, (fn.__name__, args, e.errnum, e.string)
        return
    raise AssertionError("no error from %s%r" % (fn.__name__, args))
u = nbd.NBD(); u.set_export_name("nosuch")
try:
    u.connect_uri(URI.rsplit("/", 1)[0] + "/nosuch")
    raise AssertionError("unknown export accepted")
except nbd.Error as e:
    print("unknown export:", e.string)
h.set_strict_mode(0)           # send what the server must refuse
h.connect_uri(URI)
size = h.get_size()
expect(errno.EINVAL, h.pread, 512, size)                   # beyond the end
expect(errno.EINVAL, h.pread, 1024, size - 512)
expect(errno.ENOSPC, h.pwrite, bytes(512), size)
expect(errno.EOVERFLOW, h.pread, (32 << 20) + 512, 0)      # larger than the maximum block size
expect(errno.EOVERFLOW, h.pwrite, bytes((32 << 20) + 512), 0)
expect(errno.EINVAL, h.pwrite, bytes(100), 3)               # below the minimum block size
expect(errno.EINVAL, h.block_status, 512, 0, lambda *a: 0)  # no meta context negotiated
h.pwrite(b"\x11" * 512, 0)                                  # the connection is still in step
assert h.pread(512, 0) == b"\x11" * 512
r = nbd.NBD(); r.set_strict_mode(0)
r.connect_uri(URI.rsplit("/", 1)[0] + "/ro")
assert r.is_read_only()
expect(errno.EPERM, r.pwrite, bytes(4096), 0)
expect(errno.EPERM, r.zero, 4096, 0)
expect(errno.EPERM, r.trim, 4096, 0)
assert len(r.pread(4096, 0)) == 4096
r.shutdown(); h.shutdown()
print("errors: ok")'
  check_alive; stop_export
  ;;
clients)
  need nbdcopy qemu-img fio
  start_export -l 127.0.0.1:0
  head -c 32M /dev/urandom > "$WORK/src.img"
  truncate -s 64M "$WORK/src.img"
  nbdcopy "$WORK/src.img" "$URI" || fail "nbdcopy to the export"
  nbdcopy "$URI" "$WORK/back.img" || fail "nbdcopy from the export"
  cmp "$WORK/src.img" "$WORK/back.img" || fail "nbdcopy round trip differs"
  nbdcopy --connections=4 --requests=16 "$URI" "$WORK/back4.img" || fail "nbdcopy multi-conn"
  cmp "$WORK/src.img" "$WORK/back4.img" || fail "nbdcopy multi-conn differs"
  qemu-img info "$URI" | tee "$WORK/qinfo.txt" | grep -q 'virtual size: 64 MiB' || fail "qemu-img info"
  head -c 64M /dev/urandom > "$WORK/q.img"
  qemu-img convert -n -f raw -O raw "$WORK/q.img" "$URI" || fail "qemu-img convert to the export"
  qemu-img compare -f raw -F raw "$WORK/q.img" "$URI" || fail "qemu-img compare"
  qemu-img convert -f raw -O qcow2 "$URI" "$WORK/q.qcow2" || fail "qemu-img convert from the export"
  qemu-img compare -f raw -F qcow2 "$WORK/q.img" "$WORK/q.qcow2" || fail "qcow2 differs"
  fio --name=nbdverify --ioengine=nbd --uri="$URI" --rw=randwrite --bs=4k --size=32M \
    --iodepth=16 --verify=crc32c --do_verify=1 --verify_fatal=1 --randseed=7 --verify_state_save=0 \
    --output="$WORK/fio.txt" || { cat "$WORK/fio.txt"; fail "fio verify"; }
  grep -q 'err= 0' "$WORK/fio.txt" || { cat "$WORK/fio.txt"; fail "fio errors"; }
  check_alive; stop_export
  ;;
tls)
  need psktool certtool nbdcopy
  psktool -u alice -p "$WORK/keys.psk" >/dev/null || fail "psktool"
  start_export -l 127.0.0.1:0 --tls require --tls-psk "$WORK/keys.psk"
  nbdinfo "nbds://alice@127.0.0.1:$PORT/disk?tls-psk-file=$WORK/keys.psk" > "$WORK/tls.txt" ||
    fail "nbdinfo over TLS-PSK"
  grep -q 'export-size: 67108864' "$WORK/tls.txt" || fail "TLS-PSK info"
  head -c 8M /dev/urandom > "$WORK/t.img"
  nbdcopy "$WORK/t.img" "nbds://alice@127.0.0.1:$PORT/disk?tls-psk-file=$WORK/keys.psk" ||
    fail "nbdcopy over TLS-PSK"
  nbdcopy "nbds://alice@127.0.0.1:$PORT/disk?tls-psk-file=$WORK/keys.psk" "$WORK/t.back" &&
    cmp -n 8388608 "$WORK/t.back" "$WORK/t.img" || fail "TLS-PSK round trip"
  if nbdinfo "nbd://127.0.0.1:$PORT/disk" >/dev/null 2>&1; then fail "plain client accepted"; fi
  psktool -u mallory -p "$WORK/other.psk" >/dev/null
  if nbdinfo "nbds://mallory@127.0.0.1:$PORT/disk?tls-psk-file=$WORK/other.psk" >/dev/null 2>&1; then
    fail "unknown PSK user accepted"
  fi
  check_alive; stop_export
  # X.509: a CA, a server certificate for 127.0.0.1, a client certificate.
  C=$WORK/pki; mkdir -p "$C/client"
  certtool --generate-privkey --outfile "$C/ca-key.pem" 2>/dev/null
  printf 'cn = ipsan test CA\nca\ncert_signing_key\nexpiration_days = 2\n' > "$C/ca.info"
  certtool --generate-self-signed --load-privkey "$C/ca-key.pem" --template "$C/ca.info" \
    --outfile "$C/ca-cert.pem" 2>/dev/null || fail "certtool CA"
  certtool --generate-privkey --outfile "$C/server-key.pem" 2>/dev/null
  printf 'cn = localhost\ndns_name = localhost\nip_address = 127.0.0.1\ntls_www_server\nencryption_key\nsigning_key\nexpiration_days = 2\n' > "$C/server.info"
  certtool --generate-certificate --load-privkey "$C/server-key.pem" --load-ca-certificate "$C/ca-cert.pem" \
    --load-ca-privkey "$C/ca-key.pem" --template "$C/server.info" --outfile "$C/server-cert.pem" 2>/dev/null ||
    fail "certtool server"
  certtool --generate-privkey --outfile "$C/client/client-key.pem" 2>/dev/null
  printf 'cn = client\ntls_www_client\nencryption_key\nsigning_key\nexpiration_days = 2\n' > "$C/client.info"
  certtool --generate-certificate --load-privkey "$C/client/client-key.pem" --load-ca-certificate "$C/ca-cert.pem" \
    --load-ca-privkey "$C/ca-key.pem" --template "$C/client.info" --outfile "$C/client/client-cert.pem" 2>/dev/null ||
    fail "certtool client"
  cp "$C/ca-cert.pem" "$C/client/"
  start_export -l 127.0.0.1:0 --tls require --tls-certificates "$C" --tls-verify-peer
  nbdinfo "nbds://127.0.0.1:$PORT/disk?tls-certificates=$C/client" > "$WORK/x509.txt" ||
    fail "nbdinfo over TLS-X.509"
  grep -q 'export-size: 67108864' "$WORK/x509.txt" || fail "TLS-X.509 info"
  nbdcopy "$WORK/t.img" "nbds://127.0.0.1:$PORT/disk?tls-certificates=$C/client" || fail "nbdcopy X.509"
  if nbdinfo "nbd://127.0.0.1:$PORT/disk" >/dev/null 2>&1; then fail "plain client accepted"; fi
  check_alive; stop_export
  # --tls on: both plain and TLS clients.
  start_export -l 127.0.0.1:0 --tls on --tls-psk "$WORK/keys.psk"
  nbdinfo "nbd://127.0.0.1:$PORT/disk" >/dev/null || fail "plain client with --tls on"
  nbdinfo "nbds://alice@127.0.0.1:$PORT/disk?tls-psk-file=$WORK/keys.psk" >/dev/null ||
    fail "TLS client with --tls on"
  check_alive; stop_export
  ;;
unix)
  need nbdcopy qemu-img
  SOCK=$WORK/nbd.sock
  "$IPSAN" nbd-export -s "127.0.0.1:$UDP_PORT" -n nbdtest --key-file "$WORK/client.key" \
    --unix "$SOCK" --export disk=0 > "$WORK/export.log" 2>&1 &
  EXPORT_PID=$!; PIDS+=("$EXPORT_PID")
  for _ in $(seq 1 300); do [ -S "$SOCK" ] && break; sleep 0.1; done
  [ -S "$SOCK" ] || fail "no Unix socket"
  U="nbd+unix:///disk?socket=$SOCK"
  nbdinfo "$U" | grep -q 'export-size: 67108864' || fail "nbdinfo over a Unix socket"
  head -c 16M /dev/urandom > "$WORK/u.img"
  nbdcopy "$WORK/u.img" "$U" || fail "nbdcopy over a Unix socket"
  nbdcopy "$U" "$WORK/u.back" && cmp -n 16777216 "$WORK/u.back" "$WORK/u.img" ||
    fail "Unix socket round trip"
  truncate -s 64M "$WORK/u.img"
  qemu-img convert -n -f raw -O raw "$WORK/u.img" "$U" && qemu-img compare -f raw -F raw "$WORK/u.img" "$U" ||
    fail "qemu-img over a Unix socket"
  grep -q "127.0.0.1" "$WORK/export.log" && fail "listened on TCP with only --unix"
  check_alive; stop_export
  [ -e "$SOCK" ] && fail "Unix socket left behind"
  ;;
netem)
  need nbdcopy fio
  start_export -l 127.0.0.1:0 --netem lossy-1pct --netem-seed 11
  head -c 16M /dev/urandom > "$WORK/n.img"
  nbdcopy "$WORK/n.img" "$URI" || fail "nbdcopy through netem"
  nbdcopy "$URI" "$WORK/n.back" && cmp -n 16777216 "$WORK/n.back" "$WORK/n.img" ||
    fail "netem round trip differs"
  fio --name=lossy --ioengine=nbd --uri="$URI" --rw=randrw --bs=16k --size=8M --iodepth=8 \
    --verify=crc32c --do_verify=1 --verify_fatal=1 --randseed=3 --verify_state_save=0 --output="$WORK/fio.txt" ||
    { cat "$WORK/fio.txt"; fail "fio verify through netem"; }
  check_alive; stop_export
  ;;
badclients)
  start_export -l 127.0.0.1:0
  python3 - "$PORT" <<'PY' || fail "bad clients"
import socket, struct, sys, random
port = int(sys.argv[1])
rng = random.Random(22)
print("seed 22")
def conn():
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s
def recv_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c: raise EOFError
        b += c
    return b
def go(s, name=b"disk"):
    g = recv_exact(s, 18); assert g[:8] == b"NBDMAGIC"
    s.sendall(struct.pack(">I", 3))
    data = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
    s.sendall(b"IHAVEOPT" + struct.pack(">II", 7, len(data)) + data)
    while True:
        h = recv_exact(s, 20); typ, ln = struct.unpack(">II", h[12:20]); recv_exact(s, ln)
        if typ == 1: return
        assert not typ & 0x80000000, hex(typ)
def req(s, typ, cookie, off, ln, flags=0, payload=b""):
    s.sendall(struct.pack(">IHHQQI", 0x25609513, flags, typ, cookie, off, ln) + payload)
    r = recv_exact(s, 16); magic, err, ck = struct.unpack(">IIQ", r)
    assert magic == 0x67446698 and ck == cookie
    return err, (recv_exact(s, ln) if typ == 0 and err == 0 else b"")
good = conn(); go(good)
assert req(good, 1, 1, 0, 4096, payload=b"\x42" * 4096)[0] == 0
def closed(s):
    try:
        while s.recv(4096): pass
        return True
    except (ConnectionResetError, socket.timeout):
        return True
for i in range(50):   # random garbage at every stage of the handshake
    s = conn()
    try:
        if i % 3: recv_exact(s, 18)
        if i % 3 == 2: s.sendall(struct.pack(">I", 1))
        s.sendall(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))))
        s.shutdown(socket.SHUT_WR)
        closed(s)
    except OSError:
        pass
    s.close()
s = conn(); recv_exact(s, 18); s.sendall(struct.pack(">I", 0xFFFFFFFF)); assert closed(s)
s = conn(); recv_exact(s, 18); s.sendall(struct.pack(">I", 1) + b"IHAVEOPT" + struct.pack(">II", 7, 0xFFFFFFF0)); assert closed(s)
s = conn(); go(s); s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 1, 9, 0, 65536) + b"x" * 1000); s.close()  # hang up mid-write
s = conn(); go(s); s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 0, 9, 0, 1 << 20)); s.close()  # hang up before the reply
s = conn(); go(s); s.sendall(b"\x00" * 28); assert closed(s)                                        # bad request magic
s = conn(); go(s); assert req(s, 0, 5, 0, 1 << 26)[0] == 75; assert req(s, 77, 6, 0, 0)[0] == 22; s.close()
err, data = req(good, 0, 2, 0, 4096)
assert err == 0 and data == b"\x42" * 4096
good.close()
print("bad clients: ok, the good connection went on")
PY
  nbdinfo "$URI" >/dev/null || fail "export unusable after the bad clients"
  check_alive; stop_export
  ;;
*) fail "unknown part $PART" ;;
esac
echo "nbd_export_test $PART: passed"
