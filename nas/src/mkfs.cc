// mkfs.cc: format a BlockDevice with ext4 (extents, no journal) through libext2fs, following what
// mke2fs does for such a file system: tables, zeroed inode tables, root, lost+found, reserved
// inodes and the bad-block inode.
#include <cstring>

#include "fs_util.h"
#include "io_manager.h"
#include "ipsan/base/crypto.h"
#include "ipsan/nas/nas.h"

namespace ipsan::nas {

Result<void, Error> mkfs(BlockDevice& dev, const MkfsOptions& o) {
  if (o.block_size != 1024 && o.block_size != 2048 && o.block_size != 4096) {
    return fail(Errc::kInvalidArgument, "block size must be 1024, 2048 or 4096");
  }
  if (o.inode_ratio < 1024 || o.inode_ratio > (64u << 20)) {
    return fail(Errc::kInvalidArgument, "inode ratio must be 1024 .. 64Mi bytes per inode");
  }
  if (o.label.size() > EXT2_LABEL_LEN) {
    return fail(Errc::kInvalidArgument, "label longer than 16 bytes");
  }
  if (dev.read_only()) return fail(Errc::kWriteProtected, dev.describe() + " is read-only");
  const std::uint64_t size = dev.size_bytes();
  if (size < (4u << 20)) return fail(Errc::kInvalidArgument, "the disk is smaller than 4 MiB");
  const std::uint64_t blocks = size / o.block_size;
  if (blocks > 0xFFFFFFFFull) {
    return fail(Errc::kInvalidArgument, "the disk is larger than 2^32 file-system blocks");
  }

  ext2_super_block param{};
  ext2fs_blocks_count_set(&param, blocks);
  param.s_log_block_size = o.block_size == 1024 ? 0 : o.block_size == 2048 ? 1 : 2;
  param.s_rev_level = EXT2_DYNAMIC_REV;
  param.s_inode_size = 256;
  std::uint64_t inodes = size / o.inode_ratio;
  if (inodes < 64) inodes = 64;
  if (inodes > 0xFFFF0000ull) inodes = 0xFFFF0000ull;
  param.s_inodes_count = static_cast<__u32>(inodes);
  param.s_feature_incompat = EXT2_FEATURE_INCOMPAT_FILETYPE | EXT3_FEATURE_INCOMPAT_EXTENTS;
  param.s_feature_ro_compat = EXT2_FEATURE_RO_COMPAT_SPARSE_SUPER |
                              EXT2_FEATURE_RO_COMPAT_LARGE_FILE | EXT4_FEATURE_RO_COMPAT_HUGE_FILE |
                              EXT4_FEATURE_RO_COMPAT_DIR_NLINK | EXT4_FEATURE_RO_COMPAT_EXTRA_ISIZE;
  param.s_min_extra_isize = 32;
  param.s_want_extra_isize = 32;

  const std::string name = register_device(&dev);
  struct Unreg {
    const std::string& n;
    ~Unreg() { unregister_device(n); }
  } unreg{name};
  ext2_filsys fs = nullptr;
  errcode_t e = ext2fs_initialize(name.c_str(), EXT2_FLAG_64BITS, &param,
                                  block_device_io_manager(), &fs);
  if (e != 0) return fail(Errc::kIoError, "ext2fs_initialize: " + err_string(e));
  auto bail = [&](const char* what, errcode_t err) -> Result<void, Error> {
    ext2fs_free(fs);
    return fail(Errc::kIoError, std::string(what) + ": " + err_string(err));
  };
  random_bytes(std::span<std::uint8_t>(fs->super->s_uuid, sizeof(fs->super->s_uuid)));
  if (o.uuid != std::array<std::uint8_t, 16>{}) {
    std::memcpy(fs->super->s_uuid, o.uuid.data(), sizeof(fs->super->s_uuid));
  }
  fs->super->s_uuid[6] = static_cast<__u8>((fs->super->s_uuid[6] & 0x0F) | 0x40);  // v4
  fs->super->s_uuid[8] = static_cast<__u8>((fs->super->s_uuid[8] & 0x3F) | 0x80);
  std::memcpy(fs->super->s_volume_name, o.label.data(), o.label.size());
  fs->super->s_max_mnt_count = static_cast<__s16>(-1);
  fs->super->s_checkinterval = 0;
  const Ts now = now_ts();
  fs->super->s_mkfs_time = static_cast<__u32>(now.sec);
  fs->super->s_wtime = static_cast<__u32>(now.sec);
  fs->super->s_lastcheck = static_cast<__u32>(now.sec);
  fs->super->s_def_hash_version = EXT2_HASH_HALF_MD4;
  random_bytes(std::span<std::uint8_t>(reinterpret_cast<std::uint8_t*>(fs->super->s_hash_seed),
                                       sizeof(fs->super->s_hash_seed)));

  if ((e = ext2fs_allocate_tables(fs)) != 0) return bail("allocating group tables", e);
  for (dgrp_t g = 0; g < fs->group_desc_count; ++g) {
    e = ext2fs_zero_blocks2(fs, ext2fs_inode_table_loc(fs, g),
                            static_cast<int>(fs->inode_blocks_per_group), nullptr, nullptr);
    if (e != 0) return bail("zeroing inode tables", e);
  }
  if ((e = ext2fs_mkdir(fs, EXT2_ROOT_INO, EXT2_ROOT_INO, nullptr)) != 0) {
    return bail("creating the root directory", e);
  }
  ext2_inode_large root{};
  if ((e = ext2fs_read_inode_full(fs, EXT2_ROOT_INO, reinterpret_cast<ext2_inode*>(&root),
                                  sizeof(root))) != 0) {
    return bail("reading the root directory", e);
  }
  root.i_mode = static_cast<__u16>(LINUX_S_IFDIR | (o.root_mode & 07777));
  set_uid(root, o.root_uid);
  set_gid(root, o.root_gid);
  if ((e = ext2fs_write_inode_full(fs, EXT2_ROOT_INO, reinterpret_cast<ext2_inode*>(&root),
                                   sizeof(root))) != 0) {
    return bail("writing the root directory", e);
  }
  ext2_ino_t lpf = 0;
  if ((e = ext2fs_mkdir(fs, EXT2_ROOT_INO, 0, "lost+found")) != 0) {
    return bail("creating lost+found", e);
  }
  if ((e = ext2fs_lookup(fs, EXT2_ROOT_INO, "lost+found", 10, nullptr, &lpf)) != 0) {
    return bail("looking up lost+found", e);
  }
  ext2_inode_large li{};
  ext2fs_read_inode_full(fs, lpf, reinterpret_cast<ext2_inode*>(&li), sizeof(li));
  li.i_mode = LINUX_S_IFDIR | 0700;
  ext2fs_write_inode_full(fs, lpf, reinterpret_cast<ext2_inode*>(&li), sizeof(li));
  for (ext2_ino_t i = EXT2_ROOT_INO + 1; i < EXT2_FIRST_INODE(fs->super); ++i) {
    ext2fs_inode_alloc_stats2(fs, i, +1, 0);
  }
  ext2fs_mark_ib_dirty(fs);
  ext2fs_mark_inode_bitmap2(fs->inode_map, EXT2_BAD_INO);
  ext2fs_inode_alloc_stats2(fs, EXT2_BAD_INO, +1, 0);
  if ((e = ext2fs_update_bb_inode(fs, nullptr)) != 0) return bail("bad-block inode", e);
  if ((e = reserve_last_block(fs)) != 0) return bail("reserving the last block", e);
  ext2fs_mark_super_dirty(fs);
  if ((e = ext2fs_close_free(&fs)) != 0) {
    return fail(Errc::kIoError, "writing the file system: " + err_string(e));
  }
  if (Errc f = dev.flush(); f != Errc::kOk) {
    return fail(f, "flushing " + dev.describe() + ": " + std::string(to_string(f)));
  }
  return {};
}

}  // namespace ipsan::nas
