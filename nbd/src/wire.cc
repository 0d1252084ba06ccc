// wire.cc: NBD wire codec and option negotiation (see ipsan/nbd/wire.h). No I/O.
#include "ipsan/nbd/wire.h"

#include <algorithm>

namespace ipsan::nbd {
namespace {

void put16(Bytes& b, std::uint16_t v) {
  const std::size_t n = b.size();
  b.resize(n + 2);
  store_be16(b.data() + n, v);
}
void put32(Bytes& b, std::uint32_t v) {
  const std::size_t n = b.size();
  b.resize(n + 4);
  store_be32(b.data() + n, v);
}
void put64(Bytes& b, std::uint64_t v) {
  const std::size_t n = b.size();
  b.resize(n + 8);
  store_be64(b.data() + n, v);
}
void put_str(Bytes& b, std::string_view s) { b.insert(b.end(), s.begin(), s.end()); }

// A bounds-checked reader over a payload.
class Reader {
 public:
  explicit Reader(ByteSpan b) : b_(b) {}
  bool u16(std::uint16_t& v) {
    if (left() < 2) return false;
    v = load_be16(b_.data() + pos_);
    pos_ += 2;
    return true;
  }
  bool u32(std::uint32_t& v) {
    if (left() < 4) return false;
    v = load_be32(b_.data() + pos_);
    pos_ += 4;
    return true;
  }
  bool str(std::uint32_t n, std::string& s) {
    if (n > kMaxString || left() < n) return false;
    s.assign(reinterpret_cast<const char*>(b_.data() + pos_), n);
    pos_ += n;
    return s.find('\0') == std::string::npos;
  }
  std::size_t left() const { return b_.size() - pos_; }

 private:
  ByteSpan b_;
  std::size_t pos_ = 0;
};

bool beyond_end(std::uint64_t offset, std::uint32_t length, std::uint64_t size) {
  return offset > size || length > size - offset;
}

}  // namespace

const char* option_name(std::uint32_t option) noexcept {
  switch (option) {
    case kOptExportName: return "NBD_OPT_EXPORT_NAME";
    case kOptAbort: return "NBD_OPT_ABORT";
    case kOptList: return "NBD_OPT_LIST";
    case kOptPeekExport: return "NBD_OPT_PEEK_EXPORT";
    case kOptStartTls: return "NBD_OPT_STARTTLS";
    case kOptInfo: return "NBD_OPT_INFO";
    case kOptGo: return "NBD_OPT_GO";
    case kOptStructuredReply: return "NBD_OPT_STRUCTURED_REPLY";
    case kOptListMetaContext: return "NBD_OPT_LIST_META_CONTEXT";
    case kOptSetMetaContext: return "NBD_OPT_SET_META_CONTEXT";
    case kOptExtendedHeaders: return "NBD_OPT_EXTENDED_HEADERS";
    default: return "unknown";
  }
}

const char* command_name(std::uint16_t type) noexcept {
  switch (type) {
    case kCmdRead: return "NBD_CMD_READ";
    case kCmdWrite: return "NBD_CMD_WRITE";
    case kCmdDisc: return "NBD_CMD_DISC";
    case kCmdFlush: return "NBD_CMD_FLUSH";
    case kCmdTrim: return "NBD_CMD_TRIM";
    case kCmdCache: return "NBD_CMD_CACHE";
    case kCmdWriteZeroes: return "NBD_CMD_WRITE_ZEROES";
    case kCmdBlockStatus: return "NBD_CMD_BLOCK_STATUS";
    case kCmdResize: return "NBD_CMD_RESIZE";
    default: return "unknown";
  }
}

Bytes encode_greeting(std::uint16_t handshake_flags) {
  Bytes b;
  b.reserve(kGreetingSize);
  put64(b, kNbdMagic);
  put64(b, kOptMagic);
  put16(b, handshake_flags);
  return b;
}

std::optional<OptionHeader> decode_option_header(ByteSpan b) {
  if (b.size() < kOptionHeaderSize || load_be64(b.data()) != kOptMagic) return std::nullopt;
  return OptionHeader{load_be32(b.data() + 8), load_be32(b.data() + 12)};
}

Bytes encode_option_reply(std::uint32_t option, std::uint32_t type, ByteSpan data) {
  Bytes b;
  b.reserve(20 + data.size());
  put64(b, kRepMagic);
  put32(b, option);
  put32(b, type);
  put32(b, static_cast<std::uint32_t>(data.size()));
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

Bytes encode_option_error(std::uint32_t option, std::uint32_t type, std::string_view message) {
  const auto m = message.substr(0, kMaxString);
  return encode_option_reply(option, type,
                             ByteSpan(reinterpret_cast<const std::uint8_t*>(m.data()), m.size()));
}

std::optional<InfoRequest> decode_info_request(ByteSpan payload) {
  Reader r(payload);
  InfoRequest out;
  std::uint32_t n = 0;
  std::uint16_t count = 0;
  if (!r.u32(n) || !r.str(n, out.name) || !r.u16(count)) return std::nullopt;
  if (r.left() != std::size_t{count} * 2) return std::nullopt;
  out.infos.resize(count);
  for (auto& i : out.infos) r.u16(i);
  return out;
}

Bytes encode_info_request(const InfoRequest& q) {
  Bytes b;
  put32(b, static_cast<std::uint32_t>(q.name.size()));
  put_str(b, q.name);
  put16(b, static_cast<std::uint16_t>(q.infos.size()));
  for (auto i : q.infos) put16(b, i);
  return b;
}

std::optional<MetaContextRequest> decode_meta_context_request(ByteSpan payload) {
  Reader r(payload);
  MetaContextRequest out;
  std::uint32_t n = 0;
  std::uint32_t count = 0;
  if (!r.u32(n) || !r.str(n, out.export_name) || !r.u32(count)) return std::nullopt;
  if (count > r.left() / 4) return std::nullopt;  // each query needs at least its length
  for (std::uint32_t i = 0; i < count; ++i) {
    std::string q;
    if (!r.u32(n) || !r.str(n, q)) return std::nullopt;
    out.queries.push_back(std::move(q));
  }
  if (r.left() != 0) return std::nullopt;
  return out;
}

Bytes encode_meta_context_request(const MetaContextRequest& q) {
  Bytes b;
  put32(b, static_cast<std::uint32_t>(q.export_name.size()));
  put_str(b, q.export_name);
  put32(b, static_cast<std::uint32_t>(q.queries.size()));
  for (const auto& s : q.queries) {
    put32(b, static_cast<std::uint32_t>(s.size()));
    put_str(b, s);
  }
  return b;
}

std::optional<Request> decode_request(ByteSpan b) {
  if (b.size() < kRequestSize || load_be32(b.data()) != kRequestMagic) return std::nullopt;
  Request r;
  r.flags = load_be16(b.data() + 4);
  r.type = load_be16(b.data() + 6);
  r.cookie = load_be64(b.data() + 8);
  r.offset = load_be64(b.data() + 16);
  r.length = load_be32(b.data() + 24);
  return r;
}

Bytes encode_request(const Request& r) {
  Bytes b;
  put32(b, kRequestMagic);
  put16(b, r.flags);
  put16(b, r.type);
  put64(b, r.cookie);
  put64(b, r.offset);
  put32(b, r.length);
  return b;
}

void put_simple_reply(std::uint8_t* out, std::uint32_t error, std::uint64_t cookie) {
  store_be32(out, kSimpleReplyMagic);
  store_be32(out + 4, error);
  store_be64(out + 8, cookie);
}

void put_chunk_header(std::uint8_t* out, std::uint16_t flags, std::uint16_t type,
                      std::uint64_t cookie, std::uint32_t length) {
  store_be32(out, kStructuredReplyMagic);
  store_be16(out + 4, flags);
  store_be16(out + 6, type);
  store_be64(out + 8, cookie);
  store_be32(out + 16, length);
}

Bytes encode_simple_reply(std::uint32_t error, std::uint64_t cookie) {
  Bytes b(kSimpleReplySize);
  put_simple_reply(b.data(), error, cookie);
  return b;
}

Bytes encode_error_chunk(std::uint64_t cookie, std::uint32_t error, std::string_view message) {
  const auto m = message.substr(0, kMaxString);
  Bytes b(kChunkHeaderSize);
  put_chunk_header(b.data(), kReplyFlagDone, kReplyTypeError, cookie,
                   static_cast<std::uint32_t>(6 + m.size()));
  put32(b, error);
  put16(b, static_cast<std::uint16_t>(m.size()));
  put_str(b, m);
  return b;
}

Bytes encode_block_status_chunk(std::uint64_t cookie, std::uint32_t context_id,
                                const std::vector<Extent>& extents) {
  Bytes b(kChunkHeaderSize);
  put_chunk_header(b.data(), kReplyFlagDone, kReplyTypeBlockStatus, cookie,
                   static_cast<std::uint32_t>(4 + 8 * extents.size()));
  put32(b, context_id);
  for (const auto& e : extents) {
    put32(b, e.length);
    put32(b, e.flags);
  }
  return b;
}

// ---- Negotiator ----

bool Negotiator::on_client_flags(std::uint32_t flags) {
  if ((flags & ~(kClientFixedNewstyle | kClientNoZeroes)) != 0) return false;
  fixed_ = (flags & kClientFixedNewstyle) != 0;
  no_zeroes_ = (flags & kClientNoZeroes) != 0;
  return true;
}

void Negotiator::tls_started() {
  tls_active_ = true;
  structured_ = false;
  meta_allocation_ = false;
  meta_export_ok_ = false;
  meta_export_.clear();
  selected_ = nullptr;
}

const ExportInfo* Negotiator::find(std::string_view name) const {
  if (cfg_.exports.empty()) return nullptr;
  if (name.empty()) return &cfg_.exports.front();
  for (const auto& e : cfg_.exports)
    if (e.name == name) return &e;
  return nullptr;
}

std::uint16_t Negotiator::transmission_flags(const ExportInfo& e) const {
  std::uint16_t f = static_cast<std::uint16_t>(e.flags | kTxHasFlags);
  if (structured_) f |= kTxSendDf;
  return f;
}

NegotiationStep Negotiator::on_option(std::uint32_t option, ByteSpan payload) {
  NegotiationStep step;
  auto error = [&](std::uint32_t type, std::string_view msg) {
    step.reply = encode_option_error(option, type, msg);
    return step;
  };
  if (option == kOptAbort) {
    // The spec: the server SHOULD acknowledge, then close.
    step.reply = encode_option_reply(option, kRepAck);
    step.action = NegotiationAction::kClose;
    return step;
  }
  if (cfg_.shutting_down) {
    if (option == kOptExportName) {
      step.action = NegotiationAction::kClose;  // no way to answer EXPORT_NAME with an error
      return step;
    }
    return error(kRepErrShutdown, "server shutting down");
  }
  if (cfg_.tls == TlsMode::kRequire && !tls_active_ && option != kOptStartTls) {
    if (option == kOptExportName) {
      step.action = NegotiationAction::kClose;
      return step;
    }
    return error(kRepErrTlsReqd, "TLS is required: use NBD_OPT_STARTTLS");
  }
  switch (option) {
    case kOptExportName: {
      std::string name(reinterpret_cast<const char*>(payload.data()), payload.size());
      const ExportInfo* e = payload.size() <= kMaxString ? find(name) : nullptr;
      if (e == nullptr) {
        step.action = NegotiationAction::kClose;  // the spec's answer to an unknown name
        return step;
      }
      Bytes b;
      put64(b, e->size);
      put16(b, transmission_flags(*e));
      if (!no_zeroes_) b.resize(b.size() + 124);
      step.reply = std::move(b);
      selected_ = e;
      meta_export_ok_ = meta_allocation_ && find(meta_export_) == e;
      step.action = NegotiationAction::kTransmission;
      return step;
    }
    case kOptList: {
      if (!payload.empty()) return error(kRepErrInvalid, "NBD_OPT_LIST takes no data");
      for (const auto& e : cfg_.exports) {
        Bytes d;
        put32(d, static_cast<std::uint32_t>(e.name.size()));
        put_str(d, e.name);
        put_str(d, e.description);
        Bytes r = encode_option_reply(option, kRepServer, d);
        step.reply.insert(step.reply.end(), r.begin(), r.end());
      }
      Bytes ack = encode_option_reply(option, kRepAck);
      step.reply.insert(step.reply.end(), ack.begin(), ack.end());
      return step;
    }
    case kOptStartTls:
      if (!payload.empty()) return error(kRepErrInvalid, "NBD_OPT_STARTTLS takes no data");
      if (cfg_.tls == TlsMode::kOff) return error(kRepErrPolicy, "TLS is not configured");
      if (tls_active_) return error(kRepErrInvalid, "TLS is already active");
      step.reply = encode_option_reply(option, kRepAck);
      step.action = NegotiationAction::kStartTls;
      return step;
    case kOptInfo:
    case kOptGo: return info_or_go(option, payload);
    case kOptStructuredReply:
      if (!payload.empty()) return error(kRepErrInvalid, "NBD_OPT_STRUCTURED_REPLY takes no data");
      if (structured_) return error(kRepErrInvalid, "structured replies already negotiated");
      structured_ = true;
      step.reply = encode_option_reply(option, kRepAck);
      return step;
    case kOptListMetaContext:
    case kOptSetMetaContext: return meta_context(option, payload);
    default: return error(kRepErrUnsup, std::string("unsupported option ") + option_name(option));
  }
}

NegotiationStep Negotiator::info_or_go(std::uint32_t option, ByteSpan payload) {
  NegotiationStep step;
  auto q = decode_info_request(payload);
  if (!q) {
    step.reply = encode_option_error(option, kRepErrInvalid, "malformed info request");
    return step;
  }
  const ExportInfo* e = find(q->name);
  if (e == nullptr) {
    step.reply = encode_option_error(option, kRepErrUnknown, "unknown export '" + q->name + "'");
    return step;
  }
  auto append = [&](Bytes d) {
    Bytes r = encode_option_reply(option, kRepInfo, d);
    step.reply.insert(step.reply.end(), r.begin(), r.end());
  };
  {
    Bytes d;
    put16(d, kInfoExport);
    put64(d, e->size);
    put16(d, transmission_flags(*e));
    append(std::move(d));
  }
  {  // always: the constraints hold whether asked for or not
    Bytes d;
    put16(d, kInfoBlockSize);
    put32(d, e->min_block);
    put32(d, e->preferred_block);
    put32(d, e->max_block);
    append(std::move(d));
  }
  bool name_sent = false;
  bool description_sent = false;
  for (auto info : q->infos) {
    if (info == kInfoName && !name_sent) {
      Bytes d;
      put16(d, kInfoName);
      put_str(d, e->name);
      append(std::move(d));
      name_sent = true;
    } else if (info == kInfoDescription && !description_sent && !e->description.empty()) {
      Bytes d;
      put16(d, kInfoDescription);
      put_str(d, e->description);
      append(std::move(d));
      description_sent = true;
    }
  }
  Bytes ack = encode_option_reply(option, kRepAck);
  step.reply.insert(step.reply.end(), ack.begin(), ack.end());
  if (option == kOptGo) {
    selected_ = e;
    meta_export_ok_ = meta_allocation_ && find(meta_export_) == e;
    step.action = NegotiationAction::kTransmission;
  }
  return step;
}

NegotiationStep Negotiator::meta_context(std::uint32_t option, ByteSpan payload) {
  NegotiationStep step;
  if (!structured_) {
    step.reply = encode_option_error(option, kRepErrInvalid,
                                     "negotiate NBD_OPT_STRUCTURED_REPLY first");
    return step;
  }
  auto q = decode_meta_context_request(payload);
  if (!q) {
    step.reply = encode_option_error(option, kRepErrInvalid, "malformed meta context request");
    return step;
  }
  if (find(q->export_name) == nullptr) {
    step.reply =
        encode_option_error(option, kRepErrUnknown, "unknown export '" + q->export_name + "'");
    return step;
  }
  const bool list = option == kOptListMetaContext;
  bool match = list && q->queries.empty();
  for (const auto& s : q->queries) {
    if (s.find(':') == std::string::npos) {
      step.reply = encode_option_error(option, kRepErrInvalid, "query without a namespace");
      return step;
    }
    if (s == kBaseAllocation || (list && s == "base:")) match = true;
  }
  if (!list) {
    meta_allocation_ = match;
    meta_export_ = q->export_name;
  }
  if (match) {
    Bytes d;
    put32(d, list ? 0 : kBaseAllocationId);
    put_str(d, kBaseAllocation);
    step.reply = encode_option_reply(option, kRepMetaContext, d);
  }
  Bytes ack = encode_option_reply(option, kRepAck);
  step.reply.insert(step.reply.end(), ack.begin(), ack.end());
  return step;
}

std::uint32_t validate_request(const Request& r, const ExportInfo& e, bool structured,
                               bool base_allocation) {
  const bool ro = (e.flags & kTxReadOnly) != 0;
  std::uint16_t allowed = kCmdFlagFua;  // existing clients set FUA on anything: accepted
  switch (r.type) {
    case kCmdRead: allowed |= structured ? kCmdFlagDf : 0; break;
    case kCmdWrite: break;
    case kCmdWriteZeroes: allowed |= kCmdFlagNoHole | kCmdFlagFastZero; break;
    case kCmdBlockStatus: allowed |= kCmdFlagReqOne; break;
    case kCmdDisc:
    case kCmdFlush:
    case kCmdTrim:
    case kCmdCache: break;
    default: return kEINVAL;
  }
  if ((r.flags & ~allowed) != 0) return kEINVAL;
  const bool writes =
      r.type == kCmdWrite || r.type == kCmdTrim || r.type == kCmdWriteZeroes;
  if (writes && ro) return kEPERM;
  switch (r.type) {
    case kCmdDisc: return 0;
    case kCmdFlush: return (r.offset != 0 || r.length != 0) ? kEINVAL : 0;
    case kCmdRead:
    case kCmdWrite:
      if (r.length > e.max_block) return kEOVERFLOW;
      break;
    case kCmdBlockStatus:
      if (!structured || !base_allocation) return kEINVAL;
      break;
    default: break;
  }
  if (r.length == 0) return kEINVAL;
  if (beyond_end(r.offset, r.length, e.size)) {
    return (r.type == kCmdWrite || r.type == kCmdWriteZeroes) ? kENOSPC : kEINVAL;
  }
  if ((r.type == kCmdWrite || r.type == kCmdWriteZeroes) &&
      ((r.offset | r.length) & (e.min_block - 1)) != 0) {
    return kEINVAL;
  }
  return 0;
}

}  // namespace ipsan::nbd
