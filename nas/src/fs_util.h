// fs_util.h (private): small helpers over libext2fs shared by mkfs and the NFS core.
#pragma once

#include <ext2fs/ext2fs.h>

#include <cstdint>
#include <ctime>
#include <string>

namespace ipsan::nas {

struct Ts {
  std::int64_t sec = 0;
  std::uint32_t nsec = 0;
};

inline Ts now_ts() {
  timespec t{};
  clock_gettime(CLOCK_REALTIME, &t);
  return Ts{t.tv_sec, static_cast<std::uint32_t>(t.tv_nsec)};
}

inline const char* err_text(errcode_t e) {
  const char* m = error_message(e);
  return m != nullptr ? m : "unknown error";
}
inline std::string err_string(errcode_t e) { return std::string(err_text(e)); }

// Which inode time: atime, mtime, ctime.
enum class TimeField { kAtime, kMtime, kCtime };

inline bool has_extra_time(ext2_filsys fs, const ext2_inode_large& in, TimeField f) {
  if (EXT2_INODE_SIZE(fs->super) <= EXT2_GOOD_OLD_INODE_SIZE) return false;
  std::size_t end = 0;
  switch (f) {
    case TimeField::kCtime: end = offsetof(ext2_inode_large, i_ctime_extra) + 4; break;
    case TimeField::kMtime: end = offsetof(ext2_inode_large, i_mtime_extra) + 4; break;
    case TimeField::kAtime: end = offsetof(ext2_inode_large, i_atime_extra) + 4; break;
  }
  return static_cast<std::size_t>(EXT2_GOOD_OLD_INODE_SIZE + in.i_extra_isize) >= end;
}

inline void set_time(ext2_filsys fs, ext2_inode_large& in, TimeField f, Ts t) {
  __u32* base = f == TimeField::kAtime ? &in.i_atime
                : f == TimeField::kMtime ? &in.i_mtime : &in.i_ctime;
  __u32* extra = f == TimeField::kAtime ? &in.i_atime_extra
                 : f == TimeField::kMtime ? &in.i_mtime_extra : &in.i_ctime_extra;
  *base = static_cast<__u32>(t.sec);
  if (has_extra_time(fs, in, f)) {
    *extra = static_cast<__u32>(((static_cast<std::uint64_t>(t.sec) >> 32) & 3) |
                                (static_cast<std::uint64_t>(t.nsec) << 2));
  }
}

inline Ts get_time(ext2_filsys fs, const ext2_inode_large& in, TimeField f) {
  const __u32 base = f == TimeField::kAtime ? in.i_atime
                     : f == TimeField::kMtime ? in.i_mtime : in.i_ctime;
  const __u32 extra = f == TimeField::kAtime ? in.i_atime_extra
                      : f == TimeField::kMtime ? in.i_mtime_extra : in.i_ctime_extra;
  Ts t{static_cast<std::int32_t>(base), 0};
  if (has_extra_time(fs, in, f)) {
    t.sec += static_cast<std::int64_t>(extra & 3) << 32;
    t.nsec = extra >> 2;
    if (t.nsec > 999999999u) t.nsec = 0;
  }
  return t;
}

inline std::uint32_t inode_uid_of(const ext2_inode_large& in) { return inode_uid(in); }
inline std::uint32_t inode_gid_of(const ext2_inode_large& in) { return inode_gid(in); }
inline void set_uid(ext2_inode_large& in, std::uint32_t uid) {
  in.i_uid = static_cast<__u16>(uid);
  ext2fs_set_i_uid_high(in, static_cast<__u16>(uid >> 16));
}
inline void set_gid(ext2_inode_large& in, std::uint32_t gid) {
  in.i_gid = static_cast<__u16>(gid);
  ext2fs_set_i_gid_high(in, static_cast<__u16>(gid >> 16));
}

inline int dirent_type(std::uint32_t mode) {
  switch (mode & LINUX_S_IFMT) {
    case LINUX_S_IFREG: return EXT2_FT_REG_FILE;
    case LINUX_S_IFDIR: return EXT2_FT_DIR;
    case LINUX_S_IFCHR: return EXT2_FT_CHRDEV;
    case LINUX_S_IFBLK: return EXT2_FT_BLKDEV;
    case LINUX_S_IFIFO: return EXT2_FT_FIFO;
    case LINUX_S_IFSOCK: return EXT2_FT_SOCK;
    case LINUX_S_IFLNK: return EXT2_FT_SYMLINK;
    default: return EXT2_FT_UNKNOWN;
  }
}

}  // namespace ipsan::nas

namespace ipsan::nas {

// libext2fs 1.47.0 (Debian 12) refuses to free an extent that ends on the file system's last
// block (punch_extent_blocks checks `start + count >= blocks_count`, fixed upstream to `>`), so a
// file holding that block could never be removed or truncated. Keep the last block out of use by
// listing it in the bad-block inode (a layout e2fsck accepts). Does nothing if a file already
// owns it.
inline errcode_t reserve_last_block(ext2_filsys fs) {
  const blk64_t last = ext2fs_blocks_count(fs->super) - 1;
  if (last > 0xFFFFFFFFull) return 0;
  if (ext2fs_test_block_bitmap2(fs->block_map, last)) {
    ext2_badblocks_list bb = nullptr;
    if (ext2fs_read_bb_inode(fs, &bb) != 0) return 0;
    ext2fs_badblocks_list_free(bb);
    return 0;  // in use (by the bad-block inode, or by a file: nothing we can do)
  }
  ext2_badblocks_list bb = nullptr;
  errcode_t e = ext2fs_read_bb_inode(fs, &bb);
  if (e != 0) return e;
  e = ext2fs_badblocks_list_add(bb, static_cast<blk_t>(last));
  if (e == 0) e = ext2fs_update_bb_inode(fs, bb);
  ext2fs_badblocks_list_free(bb);
  return e;
}

}  // namespace ipsan::nas
