// io_manager.h (private): a libext2fs io_manager whose channels read and write a BlockDevice.
//
// ext2fs_open2 / ext2fs_initialize take a name and an io_manager; register_device() returns the
// name under which the device can be opened. Byte ranges that do not cover whole device blocks
// (a 1 KiB superblock on a 4 KiB-block disk) are read-modify-written.
//
// Each channel has a write-back block cache: writes only reach the device on write_back() (all
// dirty blocks in LBA order, one request per contiguous run of up to 4 MiB with 4 KiB blocks) or
// on io_channel_flush (write_back + BlockDevice::flush; every durable NAS sync and the close of
// the file system). Dirty blocks are never evicted in the middle of a libext2fs operation: the
// NAS writes back between requests once dirty_bytes() passes its limit, after writing its
// in-memory metadata (bitmaps, superblock) into the cache, so the disk goes from one
// request-boundary state to the next. Small reads (<= 16 blocks) are kept as clean blocks.
#pragma once

#include <ext2fs/ext2fs.h>

#include <string>

#include "ipsan/nas/block_device.h"

namespace ipsan::nas {

io_manager block_device_io_manager();
// Registers `dev` (which must outlive its channels) and returns its channel name.
std::string register_device(BlockDevice* dev);
void unregister_device(const std::string& name);

// Writes every dirty cached block of `c` to its device (no device flush).
errcode_t write_back(io_channel c);
// Bytes of dirty blocks cached by `c`.
std::size_t dirty_bytes(io_channel c);

}  // namespace ipsan::nas
