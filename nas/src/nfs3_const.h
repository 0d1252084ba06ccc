// nfs3_const.h (private): program numbers, procedures and status codes of NFSv3 (RFC 1813),
// MOUNT v3 and the portmapper v2 (RFC 1833).
#pragma once

#include <cstdint>

namespace ipsan::nas::nfs3 {

inline constexpr std::uint32_t kPmapProg = 100000, kPmapVers = 2;
inline constexpr std::uint32_t kNfsProg = 100003, kNfsVers = 3;
inline constexpr std::uint32_t kMountProg = 100005, kMountVers = 3;
inline constexpr std::uint32_t kIpProtoTcp = 6, kIpProtoUdp = 17;

inline constexpr std::uint32_t kAuthNone = 0, kAuthSys = 1;

enum Proc : std::uint32_t {
  kNull = 0, kGetattr = 1, kSetattr = 2, kLookup = 3, kAccess = 4, kReadlink = 5, kRead = 6,
  kWrite = 7, kCreate = 8, kMkdir = 9, kSymlink = 10, kMknod = 11, kRemove = 12, kRmdir = 13,
  kRename = 14, kLink = 15, kReaddir = 16, kReaddirplus = 17, kFsstat = 18, kFsinfo = 19,
  kPathconf = 20, kCommit = 21,
};
enum MountProc : std::uint32_t { kMntNull = 0, kMnt = 1, kDump = 2, kUmnt = 3, kUmntall = 4, kExport = 5 };
enum PmapProc : std::uint32_t { kPmapNull = 0, kPmapGetport = 3, kPmapDump = 4 };

enum Stat : std::uint32_t {
  kOk = 0, kPerm = 1, kNoent = 2, kIo = 5, kNxio = 6, kAcces = 13, kExist = 17, kXdev = 18,
  kNodev = 19, kNotdir = 20, kIsdir = 21, kInval = 22, kFbig = 27, kNospc = 28, kRofs = 30,
  kMlink = 31, kNametoolong = 63, kNotempty = 66, kDquot = 69, kStale = 70, kRemote = 71,
  kBadhandle = 10001, kNotSync = 10002, kBadCookie = 10003, kNotsupp = 10004, kToosmall = 10005,
  kServerfault = 10006, kBadtype = 10007, kJukebox = 10008,
};

enum Ftype : std::uint32_t { kReg = 1, kDir = 2, kBlk = 3, kChr = 4, kLnk = 5, kSock = 6, kFifo = 7 };

enum Stable : std::uint32_t { kUnstable = 0, kDataSync = 1, kFileSync = 2 };
enum CreateMode : std::uint32_t { kUnchecked = 0, kGuarded = 1, kExclusive = 2 };

inline constexpr std::uint32_t kAccessRead = 1, kAccessLookup = 2, kAccessModify = 4,
                               kAccessExtend = 8, kAccessDelete = 16, kAccessExecute = 32;

inline constexpr std::uint32_t kFhSize = 24;
inline constexpr std::uint32_t kFhMax = 64;  // NFS3_FHSIZE
inline constexpr std::uint32_t kMaxName = 255;
inline constexpr std::uint32_t kMaxPath = 1024;  // MNTPATHLEN, and symlink targets
inline constexpr std::uint32_t kMaxIo = 1u << 20;  // rtmax / wtmax
inline constexpr std::uint32_t kMaxDirReply = 1u << 20;

}  // namespace ipsan::nas::nfs3
