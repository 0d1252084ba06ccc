#include "ipsan/proto/codec.h"

#include <algorithm>
#include <cstring>
#include <string_view>

namespace ipsan::proto {
namespace {

bool printable(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
}

std::string_view cut(const std::string& s, std::size_t max) {
  return std::string_view(s).substr(0, max);
}

Result<std::string> get_printable(XdrReader& r, std::size_t max) {
  auto s = r.get_string(max);
  if (!s) return fail(Errc::kBadMessage);
  if (!printable(*s)) return fail(Errc::kBadMessage);
  return s;
}

void put_identity(XdrWriter& w, const Identity& id) {
  w.put_string(cut(id.vendor, kMaxVendor));
  w.put_string(cut(id.product, kMaxProduct));
  w.put_string(cut(id.revision, kMaxRevision));
  w.put_string(cut(id.serial, kMaxSerial));
  w.put_opaque_fixed(id.uuid);
  w.put_u32(id.block_size);
  w.put_u64(id.block_count);
  w.put_u32(id.capabilities);
  w.put_u32(id.max_transfer_blocks);
  w.put_u32(id.optimal_transfer_blocks);
}

Result<Identity> get_identity(XdrReader& r) {
  Identity id;
  auto vendor = get_printable(r, kMaxVendor);
  if (!vendor) return fail(vendor.error());
  auto product = get_printable(r, kMaxProduct);
  if (!product) return fail(product.error());
  auto revision = get_printable(r, kMaxRevision);
  if (!revision) return fail(revision.error());
  auto serial = get_printable(r, kMaxSerial);
  if (!serial) return fail(serial.error());
  auto uuid = r.get_opaque_fixed(id.uuid.size());
  if (!uuid) return fail(uuid.error());
  auto bs = r.get_u32();
  auto bc = r.get_u64();
  auto caps = r.get_u32();
  auto maxt = r.get_u32();
  auto optt = r.get_u32();
  if (!bs || !bc || !caps || !maxt || !optt) return fail(Errc::kBadMessage);
  if (!valid_block_size(*bs)) return fail(Errc::kBadMessage);
  id.vendor = std::move(*vendor);
  id.product = std::move(*product);
  id.revision = std::move(*revision);
  id.serial = std::move(*serial);
  std::copy(uuid->begin(), uuid->end(), id.uuid.begin());
  id.block_size = *bs;
  id.block_count = *bc;
  id.capabilities = *caps;
  id.max_transfer_blocks = *maxt;
  id.optimal_transfer_blocks = *optt;
  return id;
}

void put_results(XdrWriter& w, Op op, const Reply& reply) {
  if (op == Op::kNull) return;
  w.put_u32(static_cast<std::uint32_t>(reply.status));
  if (reply.status != Errc::kOk) return;
  switch (op) {
    case Op::kRead: w.put_opaque(reply.data); break;
    case Op::kIdentify: put_identity(w, reply.identity); break;
    case Op::kReady:
    case Op::kCapacity:
      w.put_u32(reply.capacity.block_size);
      w.put_u64(reply.capacity.block_count);
      break;
    default: break;
  }
}

}  // namespace

bool valid_block_size(std::uint32_t block_size) {
  return block_size >= kMinBlockSize && block_size <= kMaxBlockSize &&
         (block_size & (block_size - 1)) == 0;
}

bool valid_geometry(std::uint32_t block_size, std::uint64_t block_count) {
  return valid_block_size(block_size) && block_count <= kMaxBlockCount;
}

bool validate_identity(const Identity& id) {
  return id.vendor.size() <= kMaxVendor && id.product.size() <= kMaxProduct &&
         id.revision.size() <= kMaxRevision && id.serial.size() <= kMaxSerial &&
         printable(id.vendor) && printable(id.product) && printable(id.revision) &&
         printable(id.serial) && valid_block_size(id.block_size);
}

bool is_device_op(Op op) {
  switch (op) {
    case Op::kReady:
    case Op::kIdentify:
    case Op::kCapacity:
    case Op::kRead:
    case Op::kWrite:
    case Op::kFlush:
    case Op::kTrim:
    case Op::kWriteZeroes: return true;
    default: return false;
  }
}

Bytes encode_call(std::uint32_t xid, const SlotCred& cred, const Key256& session_key,
                  const Request& req) {
  RequestView v;
  v.op = req.op;
  v.device_id = req.device_id;
  v.lba = req.lba;
  v.blocks = req.blocks;
  v.flags = req.flags;
  v.data = req.data;
  return encode_call(xid, cred, session_key, v);
}

Bytes encode_call(std::uint32_t xid, const SlotCred& cred, const Key256& session_key,
                  const RequestView& req) {
  XdrWriter w;
  const bool device = is_device_op(req.op);
  const bool with_data = req.op == Op::kWrite;
  w.reserve(kIpsanCallHeaderBytes + (device ? kIoArgsBytes : 0) +
            (with_data ? req.data.size() + 3 : 0));
  const std::size_t mac_at =
      detail::put_call_header_ipsan(w, xid, static_cast<std::uint32_t>(req.op), cred);
  if (device) {
    w.put_u32(req.device_id);
    w.put_u64(req.lba);
    w.put_u32(req.blocks);
    w.put_u32(req.flags);
    w.put_opaque(with_data ? req.data : ByteSpan());
  }
  Bytes out = w.release();
  detail::seal(out, mac_at, session_key, kDirCall, cred);
  return out;
}

Bytes encode_null_call(std::uint32_t xid) {
  XdrWriter w;
  w.reserve(40);
  detail::put_call_header_none(w, xid, static_cast<std::uint32_t>(Op::kNull));
  return w.release();
}

Bytes encode_logout_call(std::uint32_t xid, const SlotCred& cred, const Key256& session_key) {
  Request req;
  req.op = Op::kLogout;
  return encode_call(xid, cred, session_key, req);
}

Bytes encode_slot_fence_call(std::uint32_t xid, const SlotCred& cred, const Key256& session_key) {
  Request req;
  req.op = Op::kSlotFence;
  return encode_call(xid, cred, session_key, req);
}

Bytes encode_end_session_call(std::uint32_t xid, const SlotCred& cred, const Key256& session_key,
                              std::uint64_t old_session_id) {
  XdrWriter w;
  w.reserve(kIpsanCallHeaderBytes + 8);
  const std::size_t mac_at =
      detail::put_call_header_ipsan(w, xid, static_cast<std::uint32_t>(Op::kEndSession), cred);
  w.put_u64(old_session_id);
  Bytes out = w.release();
  detail::seal(out, mac_at, session_key, kDirCall, cred);
  return out;
}

Result<std::uint64_t> decode_end_session_args(ByteSpan args) {
  XdrReader r(args);
  auto sid = r.get_u64();
  if (!sid || !r.expect_end()) return fail(Errc::kBadMessage);
  return *sid;
}

Result<RequestView> decode_request(Op op, ByteSpan args) {
  XdrReader r(args);
  RequestView v;
  v.op = op;
  if (op == Op::kEndSession) return fail(Errc::kInvalidArgument);  // decode_end_session_args
  if (op == Op::kNull || op == Op::kLogout || op == Op::kSlotFence) {
    if (!r.expect_end()) return fail(Errc::kBadMessage);
    return v;
  }
  if (op == Op::kLoginBegin || op == Op::kLoginFinish) return fail(Errc::kInvalidArgument);
  if (!is_device_op(op)) return fail(Errc::kBadMessage);
  auto dev = r.get_u32();
  auto lba = r.get_u64();
  auto blocks = r.get_u32();
  auto flags = r.get_u32();
  if (!dev || !lba || !blocks || !flags) return fail(Errc::kBadMessage);
  auto data = r.get_opaque(op == Op::kWrite ? kMaxIoBytes : 0);
  if (!data) return fail(data.error());
  if (!r.expect_end()) return fail(Errc::kBadMessage);
  v.device_id = *dev;
  v.lba = *lba;
  v.blocks = *blocks;
  v.flags = *flags;
  v.data = *data;
  return v;
}

Request to_request(const RequestView& view) {
  Request req;
  req.op = view.op;
  req.device_id = view.device_id;
  req.lba = view.lba;
  req.blocks = view.blocks;
  req.flags = view.flags;
  req.data.assign(view.data.begin(), view.data.end());
  return req;
}

Bytes encode_reply(std::uint32_t xid, const SlotCred& cred, const Key256& session_key, Op op,
                   const Reply& reply) {
  XdrWriter w;
  w.reserve(kIpsanReplyHeaderBytes + 128 + (op == Op::kRead ? reply.data.size() + 8 : 0));
  const std::size_t mac_at = detail::put_reply_header_ipsan(w, xid, AcceptStat::kSuccess);
  put_results(w, op, reply);
  Bytes out = w.release();
  detail::seal(out, mac_at, session_key, kDirReply, cred);
  return out;
}

Bytes encode_unauthenticated_reply(std::uint32_t xid, Op op, const Reply& reply) {
  XdrWriter w;
  w.reserve(32 + 128 + (op == Op::kRead ? reply.data.size() + 8 : 0));
  detail::put_reply_header_none(w, xid, AcceptStat::kSuccess);
  put_results(w, op, reply);
  return w.release();
}

Result<Reply> decode_results(Op op, ByteSpan results) {
  XdrReader r(results);
  Reply reply;
  if (op == Op::kNull) {
    if (!r.expect_end()) return fail(Errc::kBadMessage);
    return reply;
  }
  if (op == Op::kLoginBegin) {
    auto res = decode_login_begin_res(results);
    if (!res) return fail(res.error());
    reply.status = res->status;
    return reply;
  }
  if (op == Op::kLoginFinish) {
    auto res = decode_login_finish_res(results);
    if (!res) return fail(res.error());
    reply.status = res->status;
    return reply;
  }
  if (op != Op::kLogout && op != Op::kSlotFence && op != Op::kEndSession && !is_device_op(op))
    return fail(Errc::kBadMessage);
  auto status = r.get_u32();
  if (!status || *status > kErrcMax) return fail(Errc::kBadMessage);
  reply.status = static_cast<Errc>(*status);
  if (reply.status == Errc::kOk) {
    switch (op) {
      case Op::kRead: {
        auto data = r.get_opaque(kMaxIoBytes);
        if (!data) return fail(data.error());
        reply.data.assign(data->begin(), data->end());
        break;
      }
      case Op::kIdentify: {
        auto id = get_identity(r);
        if (!id) return fail(id.error());
        reply.identity = std::move(*id);
        break;
      }
      case Op::kReady:
      case Op::kCapacity: {
        auto bs = r.get_u32();
        auto bc = r.get_u64();
        if (!bs || !bc || !valid_block_size(*bs)) return fail(Errc::kBadMessage);
        reply.capacity.block_size = *bs;
        reply.capacity.block_count = *bc;
        break;
      }
      default: break;
    }
  }
  if (!r.expect_end()) return fail(Errc::kBadMessage);
  return reply;
}

Result<Reply> decode_results(Op op, ByteSpan results, Bytes& message) {
  const std::uint8_t* const begin = message.data();
  const bool inside = !results.empty() && results.data() >= begin &&
                      results.data() + results.size() <= begin + message.size();
  if (op != Op::kRead || !inside) return decode_results(op, results);
  // The READ results are status, then data<>: decode the head only, then take the bytes over.
  XdrReader r(results);
  auto status = r.get_u32();
  if (!status || *status != static_cast<std::uint32_t>(Errc::kOk)) {
    return decode_results(op, results);
  }
  auto data = r.get_opaque(kMaxIoBytes);
  if (!data || !r.expect_end()) return decode_results(op, results);  // the same error
  Reply reply;
  const std::size_t len = data->size();
  std::memmove(message.data(), data->data(), len);
  message.resize(len);
  reply.data = std::move(message);
  message = Bytes();
  return reply;
}

ReadReplyBuilder::ReadReplyBuilder(std::uint32_t xid, const SlotCred& cred, std::size_t len)
    : cred_(cred), len_(len) {
  w_.reserve(kIpsanReplyHeaderBytes + 4 + xdr_opaque_size(len));
  mac_offset_ = detail::put_reply_header_ipsan(w_, xid, AcceptStat::kSuccess);
  w_.put_u32(static_cast<std::uint32_t>(Errc::kOk));
  w_.put_opaque_space(len, &data_offset_);
}

Bytes ReadReplyBuilder::finish(const Key256& session_key, Tag128* mac) {
  Bytes out = w_.release();
  const Tag128 tag = detail::seal(out, mac_offset_, session_key, kDirReply, cred_);
  if (mac != nullptr) *mac = tag;
  len_ = 0;
  data_offset_ = 0;
  return out;
}

}  // namespace ipsan::proto
