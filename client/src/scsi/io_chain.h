// client/src/scsi/io_chain.h (private): runs generic requests one after another and splits
// transfers into requests of at most Identity::max_transfer_blocks. Shared by the SCSI and ATA
// front ends so that equivalent commands produce identical requests.
//
// Threading: a chain may complete on any thread; it never recurses when the GenericTarget
// completes inline (a trampoline keeps the stack flat however many chunks there are).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>

#include "ipsan/base/bytes.h"
#include "ipsan/base/errc.h"
#include "ipsan/client/generic_target.h"

namespace ipsan::client::detail {

struct Chain {
  GenericTarget* target = nullptr;
  std::size_t count = 0;
  std::function<proto::Request(std::size_t)> make;
  std::function<Errc(std::size_t, proto::Reply&)> on_reply;  // optional; non-kOk stops the chain
  std::function<void(Errc)> done;

  std::size_t index = 0;
  Errc result = Errc::kOk;
  std::atomic<int> phase{0};  // 0 idle, 1 issuing, 2 completed while issuing
};

inline void run_chain(std::shared_ptr<Chain> c) {
  for (;;) {
    if (c->result != Errc::kOk || c->index >= c->count) {
      auto done = std::move(c->done);
      if (done) done(c->result);
      return;
    }
    proto::Request request = c->make(c->index);
    c->phase.store(1);
    c->target->execute(std::move(request), [c](proto::Reply reply) {
      Errc e = reply.status;
      if (e == Errc::kOk && c->on_reply) e = c->on_reply(c->index, reply);
      c->result = e;
      ++c->index;
      if (c->phase.exchange(2) == 1) return;  // the issuing loop continues
      run_chain(c);
    });
    if (c->phase.exchange(0) == 2) continue;
    return;
  }
}

// Number of blocks per request for a device with `max_transfer_blocks` (0 = no limit).
inline std::uint32_t chunk_blocks(std::uint32_t max_transfer_blocks) {
  return max_transfer_blocks == 0 ? 0xFFFFFFFFu : max_transfer_blocks;
}

// READ of [lba, lba+blocks) in chunks; `done` gets the status and the data.
inline void read_blocks(GenericTarget& target, std::uint32_t device_id, std::uint64_t lba,
                        std::uint64_t blocks, std::uint32_t block_size,
                        std::uint32_t max_transfer_blocks, std::function<void(Errc, Bytes)> done) {
  const std::uint64_t per = chunk_blocks(max_transfer_blocks);
  auto c = std::make_shared<Chain>();
  auto buffer = std::make_shared<Bytes>(static_cast<std::size_t>(blocks * block_size));
  c->target = &target;
  c->count = static_cast<std::size_t>((blocks + per - 1) / per);
  c->make = [=](std::size_t i) {
    proto::Request r;
    r.op = proto::Op::kRead;
    r.device_id = device_id;
    r.lba = lba + i * per;
    r.blocks = static_cast<std::uint32_t>(std::min<std::uint64_t>(per, blocks - i * per));
    return r;
  };
  c->on_reply = [=](std::size_t i, proto::Reply& reply) {
    const std::uint64_t n = std::min<std::uint64_t>(per, blocks - i * per);
    if (reply.data.size() != n * block_size) return Errc::kBadMessage;
    std::copy(reply.data.begin(), reply.data.end(),
              buffer->begin() + static_cast<std::ptrdiff_t>(i * per * block_size));
    return Errc::kOk;
  };
  c->done = [buffer, done = std::move(done)](Errc e) {
    if (e != Errc::kOk) buffer->clear();
    done(e, std::move(*buffer));
  };
  run_chain(std::move(c));
}

// WRITE of [lba, lba+blocks) from data (blocks * block_size bytes) in chunks.
inline void write_blocks(GenericTarget& target, std::uint32_t device_id, std::uint64_t lba,
                         std::uint64_t blocks, std::uint32_t block_size,
                         std::uint32_t max_transfer_blocks, std::uint32_t flags,
                         std::shared_ptr<const Bytes> data, std::function<void(Errc)> done) {
  const std::uint64_t per = chunk_blocks(max_transfer_blocks);
  auto c = std::make_shared<Chain>();
  c->target = &target;
  c->count = static_cast<std::size_t>((blocks + per - 1) / per);
  c->make = [=](std::size_t i) {
    proto::Request r;
    r.op = proto::Op::kWrite;
    r.device_id = device_id;
    r.lba = lba + i * per;
    r.blocks = static_cast<std::uint32_t>(std::min<std::uint64_t>(per, blocks - i * per));
    r.flags = flags;
    const auto first = data->begin() + static_cast<std::ptrdiff_t>(i * per * block_size);
    r.data.assign(first, first + static_cast<std::ptrdiff_t>(std::uint64_t{r.blocks} * block_size));
    return r;
  };
  c->done = std::move(done);
  run_chain(std::move(c));
}

// One request without data (READY, FLUSH, TRIM, WRITE_ZEROES, CAPACITY, IDENTIFY).
inline void simple_request(GenericTarget& target, proto::Request request,
                           std::function<void(proto::Reply)> done) {
  target.execute(std::move(request), std::move(done));
}

}  // namespace ipsan::client::detail
