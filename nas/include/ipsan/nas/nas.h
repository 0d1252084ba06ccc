// ipsan/nas/nas.h: an NFSv3 (RFC 1813) + MOUNT v3 server over an ext4 file system (libext2fs)
// that lives on an ipsan block device: the sans-I/O core.
//
// Nas::handle() takes one ONC-RPC call message (a TCP record or a UDP datagram) and returns the
// reply (empty: drop, as RFC 5531 asks for non-calls). It answers the NFS (100003 v3), MOUNT
// (100005 v3) and portmapper (100000 v2: NULL, GETPORT, DUMP) programs, so one port serves a
// client that is told the ports (libnfs: nfs://host/path?nfsport=P&mountport=P) or asks the
// portmapper on that port. Credentials: AUTH_SYS (AUTH_NONE is the anonymous user).
//
// File handles (24 bytes) are (magic, file-system id from the superblock UUID, inode number,
// inode generation, export index): stable across restarts; a handle of a deleted or reused inode
// is NFS3ERR_STALE. Every operation that changes metadata writes the file system's metadata
// (superblock, group descriptors, bitmaps) to the device before replying, so a killed server
// leaves a consistent image; FILE_SYNC/DATA_SYNC writes, COMMIT and the namespace operations also
// flush the device. The write verifier is random per Nas instance (changes on restart).
//
// Threading: not thread-safe. libext2fs is single-threaded: create, use and destroy a Nas on one
// thread (the server's file-system thread).
#pragma once

#include <utility>  // before Asio

#include <boost/asio/ip/address.hpp>
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ipsan/base/bytes.h"
#include "ipsan/base/result.h"
#include "ipsan/nas/block_device.h"

namespace ipsan::nas {

// One `[[export]]` entry of the exports file (see docs/NAS.md).
struct Export {
  std::string path = "/";                         // directory inside the file system (MNT path)
  std::vector<std::string> clients{"127.0.0.0/8"};  // CIDRs or addresses; "*" = anyone
  bool read_only = false;
  bool root_squash = true;  // uid 0 -> anon_uid, gid 0 -> anon_gid
  std::uint32_t anon_uid = 65534;
  std::uint32_t anon_gid = 65534;
};

// Parses an exports TOML file's text (`[[export]]` tables). Errors name the entry and the key.
Result<std::vector<Export>, Error> parse_exports(std::string_view toml_text);

struct MkfsOptions {
  std::uint32_t block_size = 4096;   // 1024, 2048 or 4096
  std::uint32_t inode_ratio = 16384;  // bytes per inode
  std::uint32_t root_uid = 0;
  std::uint32_t root_gid = 0;
  std::uint32_t root_mode = 0755;
  std::string label;
  std::array<std::uint8_t, 16> uuid{};  // all zero: random (fixed only for tests and fuzzing)
};

// Formats `dev` with a fresh ext4 file system (extents, no journal) readable by Linux and
// e2fsprogs. Everything on the device is lost.
Result<void, Error> mkfs(BlockDevice& dev, const MkfsOptions& options);

struct Peer {
  boost::asio::ip::address address;
  bool tcp = true;
};

struct NasOptions {
  std::vector<Export> exports{Export{}};
  std::uint16_t tcp_port = 0;  // what the portmapper answers for NFS and MOUNT
  std::uint16_t udp_port = 0;
};

struct NasStats {
  std::uint64_t calls = 0;
  std::uint64_t garbage = 0;  // GARBAGE_ARGS replies
};

class Nas {
 public:
  // Opens the file system on `dev` (which must outlive the Nas) read-write, checks the exports.
  static Result<std::unique_ptr<Nas>, Error> open(BlockDevice& dev, NasOptions options);
  ~Nas();
  Nas(const Nas&) = delete;
  Nas& operator=(const Nas&) = delete;

  // One RPC call in, the reply out (empty: nothing to send).
  Bytes handle(ByteSpan call, const Peer& peer);

  // Writes all metadata, flushes the device and closes the file system (also done by ~Nas).
  Result<void, Error> close();

  void set_ports(std::uint16_t tcp, std::uint16_t udp);
  const NasStats& stats() const;
  std::uint64_t write_verifier() const;

  struct Impl;

 private:
  explicit Nas(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ipsan::nas
