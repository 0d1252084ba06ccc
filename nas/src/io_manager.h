// io_manager.h (private): a libext2fs io_manager whose channels read and write a BlockDevice.
//
// ext2fs_open2 / ext2fs_initialize take a name and an io_manager; register_device() returns the
// name under which the device can be opened. Byte ranges that do not cover whole device blocks
// (a 1 KiB superblock on a 4 KiB-block disk) are read-modify-written. Writes go straight through
// to the device (no cache); flush() reaches BlockDevice::flush.
#pragma once

#include <ext2fs/ext2fs.h>

#include <string>

#include "ipsan/nas/block_device.h"

namespace ipsan::nas {

io_manager block_device_io_manager();
// Registers `dev` (which must outlive its channels) and returns its channel name.
std::string register_device(BlockDevice* dev);
void unregister_device(const std::string& name);

}  // namespace ipsan::nas
