// block_device.cc: BlockDevice over a local Backend or a remote GenericTarget (SanClient).
#include "ipsan/nas/block_device.h"

#include <boost/asio/post.hpp>
#include <future>

namespace ipsan::nas {
namespace {

class BackendDevice final : public BlockDevice {
 public:
  explicit BackendDevice(backends::BackendPtr b) : b_(std::move(b)), g_(b_->geometry()) {}
  std::uint32_t block_size() const override { return g_.block_size; }
  std::uint64_t block_count() const override { return g_.block_count; }
  bool read_only() const override { return b_->capabilities().read_only; }
  std::string describe() const override { return b_->describe(); }
  Errc read(std::uint64_t lba, std::span<std::uint8_t> out) override {
    return wait([&](backends::Completion done) { b_->read(lba, out, std::move(done)); });
  }
  Errc write(std::uint64_t lba, std::span<const std::uint8_t> in) override {
    return wait([&](backends::Completion done) { b_->write(lba, in, false, std::move(done)); });
  }
  Errc flush() override {
    return wait([&](backends::Completion done) { b_->flush(std::move(done)); });
  }

 private:
  template <typename F>
  static Errc wait(F&& start) {
    auto p = std::make_shared<std::promise<Errc>>();
    auto f = p->get_future();
    start([p](Errc e) { p->set_value(e); });
    return f.get();
  }
  backends::BackendPtr b_;
  backends::Geometry g_;
};

class RemoteDevice final : public BlockDevice {
 public:
  RemoteDevice(boost::asio::io_context& io, client::GenericTarget& t, std::uint32_t id,
               const proto::Identity& ident)
      : io_(io), t_(t), id_(id), ident_(ident) {
    max_blocks_ = ident.max_transfer_blocks != 0 ? ident.max_transfer_blocks
                                                 : (1u << 20) / ident.block_size;
  }
  std::uint32_t block_size() const override { return ident_.block_size; }
  std::uint64_t block_count() const override { return ident_.block_count; }
  bool read_only() const override { return (ident_.capabilities & proto::kCapReadOnly) != 0; }
  std::string describe() const override { return "remote device " + std::to_string(id_); }
  Errc read(std::uint64_t lba, std::span<std::uint8_t> out) override {
    const std::uint32_t bs = ident_.block_size;
    std::uint64_t blocks = out.size() / bs;
    std::size_t done = 0;
    while (blocks > 0) {
      const auto n = static_cast<std::uint32_t>(std::min<std::uint64_t>(blocks, max_blocks_));
      proto::Request r;
      r.op = proto::Op::kRead;
      r.device_id = id_;
      r.lba = lba;
      r.blocks = n;
      proto::Reply rep = call(std::move(r));
      if (rep.status != Errc::kOk) return rep.status;
      if (rep.data.size() != std::size_t{n} * bs) return Errc::kBadMessage;
      std::copy(rep.data.begin(), rep.data.end(), out.begin() + static_cast<std::ptrdiff_t>(done));
      done += rep.data.size();
      lba += n;
      blocks -= n;
    }
    return Errc::kOk;
  }
  Errc write(std::uint64_t lba, std::span<const std::uint8_t> in) override {
    const std::uint32_t bs = ident_.block_size;
    std::uint64_t blocks = in.size() / bs;
    std::size_t done = 0;
    while (blocks > 0) {
      const auto n = static_cast<std::uint32_t>(std::min<std::uint64_t>(blocks, max_blocks_));
      proto::Request r;
      r.op = proto::Op::kWrite;
      r.device_id = id_;
      r.lba = lba;
      r.blocks = n;
      r.data.assign(in.begin() + static_cast<std::ptrdiff_t>(done),
                    in.begin() + static_cast<std::ptrdiff_t>(done + std::size_t{n} * bs));
      proto::Reply rep = call(std::move(r));
      if (rep.status != Errc::kOk) return rep.status;
      done += std::size_t{n} * bs;
      lba += n;
      blocks -= n;
    }
    return Errc::kOk;
  }
  Errc flush() override {
    proto::Request r;
    r.op = proto::Op::kFlush;
    r.device_id = id_;
    return call(std::move(r)).status;
  }

  static proto::Reply call(boost::asio::io_context& io, client::GenericTarget& t,
                           proto::Request r) {
    auto p = std::make_shared<std::promise<proto::Reply>>();
    auto f = p->get_future();
    boost::asio::post(io, [&t, p, r = std::move(r)]() mutable {
      t.execute(std::move(r), [p](proto::Reply rep) { p->set_value(std::move(rep)); });
    });
    return f.get();
  }

 private:
  proto::Reply call(proto::Request r) { return call(io_, t_, std::move(r)); }
  boost::asio::io_context& io_;
  client::GenericTarget& t_;
  std::uint32_t id_;
  proto::Identity ident_;
  std::uint32_t max_blocks_;
};

}  // namespace

std::unique_ptr<BlockDevice> make_backend_device(backends::BackendPtr backend) {
  return std::make_unique<BackendDevice>(std::move(backend));
}

Result<std::unique_ptr<BlockDevice>, Error> make_remote_device(boost::asio::io_context& io,
                                                               client::GenericTarget& target,
                                                               std::uint32_t device_id) {
  proto::Request r;
  r.op = proto::Op::kIdentify;
  r.device_id = device_id;
  proto::Reply rep = RemoteDevice::call(io, target, std::move(r));
  if (rep.status != Errc::kOk) {
    return tl::unexpected(Error{rep.status, "device " + std::to_string(device_id) + ": " +
                                                std::string(to_string(rep.status))});
  }
  if (rep.identity.block_size == 0 || rep.identity.block_count == 0) {
    return tl::unexpected(
        Error{Errc::kInvalidArgument, "device " + std::to_string(device_id) + " has no blocks"});
  }
  return std::unique_ptr<BlockDevice>(
      std::make_unique<RemoteDevice>(io, target, device_id, rep.identity));
}

}  // namespace ipsan::nas
