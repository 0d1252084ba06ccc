// server.cc: the NBD server (see ipsan/nbd/server.h). Blocking sockets, a reader and a writer
// thread per connection; the wire format and the option negotiation live in wire.cc.
#include "ipsan/nbd/server.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "ipsan/base/log.h"
#include "stream.h"

namespace ipsan::nbd {

std::uint32_t nbd_error(Errc e, bool is_write) {
  switch (e) {
    case Errc::kOk: return 0;
    case Errc::kWriteProtected: return kEPERM;
    case Errc::kNoSpace: return kENOSPC;
    case Errc::kLbaOutOfRange: return is_write ? kENOSPC : kEINVAL;
    case Errc::kInvalidArgument: return kEINVAL;
    case Errc::kTooLarge: return kEOVERFLOW;
    case Errc::kNotSupported: return kENOTSUP;
    case Errc::kShutdown: return kESHUTDOWN;
    default: return kEIO;
  }
}

Result<void, Error> check_tls_config(const TlsConfig& tls) {
  if (tls.mode == TlsMode::kOff) return {};
  auto t = TlsContext::create(tls);
  if (!t) return make_unexpected(t.error());
  return {};
}

ExportInfo export_info(const ExportConfig& e, const ServerOptions& o) {
  ExportInfo info;
  const auto& id = e.identity;
  const std::uint32_t bs = id.block_size == 0 ? 512 : id.block_size;
  info.name = e.name;
  info.description = e.description;
  info.size = std::uint64_t{bs} * id.block_count;
  const bool ro = e.read_only || (id.capabilities & proto::kCapReadOnly) != 0;
  std::uint16_t f = kTxHasFlags | kTxSendFlush | kTxSendFua | kTxSendCache;
  if (ro) {
    f |= kTxReadOnly;
  } else {
    f |= kTxSendWriteZeroes | kTxSendFastZero;
    if (id.capabilities & proto::kCapTrim) f |= kTxSendTrim;
  }
  if (id.capabilities & proto::kCapRotational) f |= kTxRotational;
  if (o.multi_conn) f |= kTxCanMultiConn;
  info.flags = f;
  info.min_block = std::min<std::uint32_t>(bs, 64u * 1024);
  info.preferred_block = std::max<std::uint32_t>(bs, 4096);
  std::uint32_t max = o.max_request_bytes / bs * bs;
  info.max_block = std::max(max, info.preferred_block);
  return info;
}

namespace {

std::string describe(std::uint32_t err) {
  switch (err) {
    case kEPERM: return "EPERM";
    case kEIO: return "EIO";
    case kENOMEM: return "ENOMEM";
    case kEINVAL: return "EINVAL";
    case kENOSPC: return "ENOSPC";
    case kEOVERFLOW: return "EOVERFLOW";
    case kENOTSUP: return "ENOTSUP";
    case kESHUTDOWN: return "ESHUTDOWN";
    default: return std::to_string(err);
  }
}

void set_timeouts(int fd, int ms) {
  timeval tv{};
  tv.tv_sec = ms / 1000;
  tv.tv_usec = (ms % 1000) * 1000;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

constexpr std::size_t kMaxOptionsPerConnection = 4096;
constexpr std::size_t kMaxInFlightBytes = 256u << 20;

}  // namespace

struct Conn;

struct Server::Impl {
  Impl(client::GenericTarget& t, std::vector<ExportConfig> e, ServerOptions o)
      : target(t), exports(std::move(e)), opt(std::move(o)) {
    ncfg.tls = opt.tls.mode;
    for (const auto& x : exports) ncfg.exports.push_back(export_info(x, opt));
  }

  void accept_loop();
  void reap(bool all);

  client::GenericTarget& target;
  std::vector<ExportConfig> exports;
  ServerOptions opt;
  NegotiatorConfig ncfg;
  std::unique_ptr<TlsContext> tls;
  int tcp_fd = -1;
  int unix_fd = -1;
  int wake[2] = {-1, -1};
  std::uint16_t port = 0;
  std::thread acceptor;
  std::mutex mu;
  std::vector<std::shared_ptr<Conn>> conns;
  std::atomic<bool> stopping{false};
  bool started = false;

  struct {
    std::atomic<std::uint64_t> connections{0}, handshakes{0}, handshake_failures{0},
        tls_handshakes{0}, requests{0}, request_errors{0}, bytes_read{0}, bytes_written{0},
        protocol_errors{0};
  } st;
};

// Runs `count` generic requests, at most `window` at once; `make(i)` builds piece i, `on_piece`
// takes a successful reply (and may turn it into an error); `finish` runs once, with the first
// error or kOk. A piece that fails with kCapacityChanged (the device was resized on the server)
// is sent once more.
struct Pieces : std::enable_shared_from_this<Pieces> {
  client::GenericTarget* target = nullptr;
  std::size_t count = 0;
  std::size_t window = 1;
  std::function<proto::Request(std::size_t)> make;
  std::function<Errc(std::size_t, proto::Reply&)> on_piece;
  std::function<void(Errc)> finish;

  std::mutex mu;
  std::size_t next = 0;
  std::size_t outstanding = 0;
  Errc error = Errc::kOk;
  bool finished = false;

  void pump() {
    for (;;) {
      std::size_t i = 0;
      {
        std::lock_guard lk(mu);
        if (error != Errc::kOk || next >= count || outstanding >= window) break;
        i = next++;
        outstanding++;
      }
      issue(i, false);
    }
    bool fin = false;
    Errc e = Errc::kOk;
    {
      std::lock_guard lk(mu);
      if (!finished && outstanding == 0 && (next >= count || error != Errc::kOk)) {
        finished = true;
        fin = true;
        e = error;
      }
    }
    if (fin) finish(e);
  }

  void issue(std::size_t i, bool retry) {
    auto self = shared_from_this();
    target->execute(make(i), [self, i, retry](proto::Reply r) {
      if (r.status == Errc::kCapacityChanged && !retry) {
        self->issue(i, true);
        return;
      }
      Errc e = r.status;
      if (e == Errc::kOk && self->on_piece) e = self->on_piece(i, r);
      {
        std::lock_guard lk(self->mu);
        self->outstanding--;
        if (e != Errc::kOk && self->error == Errc::kOk) self->error = e;
      }
      self->pump();
    });
  }
};

struct Conn : std::enable_shared_from_this<Conn> {
  Conn(Server::Impl& s, int f, bool is_tcp) : srv(s), fd(f), tcp(is_tcp), ncfg(s.ncfg) {}
  ~Conn() {
    if (fd >= 0) ::close(fd);
  }

  void run();
  bool handshake();
  void transmission();
  void writer_loop();
  void enqueue(Bytes reply, std::size_t bytes, bool error);
  void reply_error(const Request& r, std::uint32_t err, const std::string& msg);
  void dispatch(const Request& r, Bytes payload);
  void shutdown_read() { ::shutdown(fd, SHUT_RD); }

  Server::Impl& srv;
  int fd;
  bool tcp;
  NegotiatorConfig ncfg;  // a copy: shutting_down is set per connection
  std::unique_ptr<Stream> stream;
  std::thread reader;
  std::thread writer;
  std::atomic<bool> finished{false};

  const ExportConfig* exp = nullptr;
  const ExportInfo* info = nullptr;
  bool structured = false;
  bool base_allocation = false;

  std::mutex mu;
  std::condition_variable cv;
  std::deque<Bytes> out;
  std::size_t in_flight = 0;
  std::size_t in_flight_bytes = 0;
  bool reader_done = false;
  bool broken = false;
};

void Conn::run() {
  if (handshake()) {
    srv.st.handshakes++;
    transmission();
  } else {
    srv.st.handshake_failures++;
  }
  ::shutdown(fd, SHUT_RDWR);
  finished = true;
}

bool Conn::handshake() {
  set_timeouts(fd, srv.opt.handshake_timeout_ms);
  stream = std::make_unique<PlainStream>(fd);
  Negotiator neg(ncfg);
  Bytes greet = encode_greeting(neg.handshake_flags());
  if (!stream->write_all(greet.data(), greet.size())) return false;
  std::uint8_t b4[4];
  if (!stream->read_exact(b4, 4) || !neg.on_client_flags(load_be32(b4))) return false;
  for (std::size_t n = 0; n < kMaxOptionsPerConnection; ++n) {
    std::uint8_t h[kOptionHeaderSize];
    if (!stream->read_exact(h, sizeof h)) return false;
    auto hdr = decode_option_header(ByteSpan(h, sizeof h));
    if (!hdr) {
      IPSAN_LOG(LogLevel::kDebug, "nbd", "bad option magic: closing");
      return false;
    }
    if (hdr->length > kMaxOptionLength) {
      IPSAN_LOG(LogLevel::kDebug, "nbd", "option of ", hdr->length, " bytes: closing");
      return false;
    }
    Bytes payload(hdr->length);
    if (hdr->length > 0 && !stream->read_exact(payload.data(), payload.size())) return false;
    ncfg.shutting_down = srv.stopping.load();
    NegotiationStep step = neg.on_option(hdr->option, payload);
    if (!step.reply.empty() && !stream->write_all(step.reply.data(), step.reply.size()))
      return false;
    switch (step.action) {
      case NegotiationAction::kContinue: break;
      case NegotiationAction::kClose: return false;
      case NegotiationAction::kStartTls: {
        if (!srv.tls) return false;
        std::string why;
        auto s = srv.tls->handshake(fd, srv.opt.handshake_timeout_ms, why);
        if (!s) {
          IPSAN_LOG(LogLevel::kInfo, "nbd", why);
          return false;
        }
        srv.st.tls_handshakes++;
        stream = std::move(s);
        neg.tls_started();
        break;
      }
      case NegotiationAction::kTransmission: {
        info = neg.selected();
        exp = &srv.exports[static_cast<std::size_t>(info - ncfg.exports.data())];
        structured = neg.structured_replies();
        base_allocation = neg.base_allocation();
        set_timeouts(fd, 0);  // an idle client in transmission is fine
        return true;
      }
    }
  }
  return false;
}

void Conn::writer_loop() {
  for (;;) {
    Bytes b;
    {
      std::unique_lock lk(mu);
      cv.wait(lk, [&] { return !out.empty() || (reader_done && in_flight == 0); });
      if (out.empty()) return;
      b = std::move(out.front());
      out.pop_front();
      if (broken) continue;  // the peer is gone: replies are dropped
    }
    if (!stream->write_all(b.data(), b.size())) {
      std::lock_guard lk(mu);
      broken = true;
      ::shutdown(fd, SHUT_RDWR);  // the reader stops too
      cv.notify_all();
    }
  }
}

void Conn::enqueue(Bytes reply, std::size_t bytes, bool error) {
  if (error) srv.st.request_errors++;
  std::lock_guard lk(mu);
  out.push_back(std::move(reply));
  in_flight--;
  in_flight_bytes -= bytes;
  cv.notify_all();
}

void Conn::reply_error(const Request& r, std::uint32_t err, const std::string& msg) {
  // Accounted as one request in flight with no bytes.
  {
    std::lock_guard lk(mu);
    in_flight++;
  }
  const bool chunk = structured && (r.type == kCmdRead || r.type == kCmdBlockStatus);
  enqueue(chunk ? encode_error_chunk(r.cookie, err, msg) : encode_simple_reply(err, r.cookie), 0,
          true);
}

void Conn::transmission() {
  writer = std::thread([this] { writer_loop(); });
  std::uint8_t h[kRequestSize];
  while (stream->read_exact(h, sizeof h)) {
    auto req = decode_request(ByteSpan(h, sizeof h));
    if (!req) {
      srv.st.protocol_errors++;
      IPSAN_LOG(LogLevel::kInfo, "nbd", "bad request magic: closing the connection");
      break;
    }
    srv.st.requests++;
    if (req->type == kCmdDisc) break;
    std::uint32_t err = validate_request(*req, *info, structured, base_allocation);
    Bytes payload;
    if (req->type == kCmdWrite) {
      // The payload follows whatever we answer: read it (or skip it, when oversized).
      if (req->length <= srv.opt.max_request_bytes) {
        payload.resize(req->length);
        if (!stream->read_exact(payload.data(), payload.size())) break;
      } else {
        std::uint8_t sink[65536];
        std::uint64_t left = req->length;
        bool ok = true;
        while (left > 0 && ok) {
          const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(left, sizeof sink));
          ok = stream->read_exact(sink, n);
          left -= n;
        }
        if (!ok) break;
      }
    }
    if (err == 0 && srv.stopping) err = kESHUTDOWN;
    if (err != 0) {
      reply_error(*req, err,
                  std::string(command_name(req->type)) + ": " + describe(err));
      continue;
    }
    const std::size_t bytes =
        (req->type == kCmdRead || req->type == kCmdWrite) ? req->length : 0;
    {
      std::unique_lock lk(mu);
      cv.wait(lk, [&] {
        return broken || (in_flight < srv.opt.max_in_flight &&
                          (in_flight == 0 || in_flight_bytes + bytes <= kMaxInFlightBytes));
      });
      if (broken) break;
      in_flight++;
      in_flight_bytes += bytes;
    }
    dispatch(*req, std::move(payload));
  }
  {
    std::lock_guard lk(mu);
    reader_done = true;
    cv.notify_all();
  }
  writer.join();
}

void Conn::dispatch(const Request& r, Bytes payload) {
  auto self = shared_from_this();
  const std::uint32_t bs = exp->identity.block_size == 0 ? 512 : exp->identity.block_size;
  const std::uint32_t dev = exp->device_id;
  const std::uint32_t caps = exp->identity.capabilities;
  std::uint32_t maxb = exp->identity.max_transfer_blocks;
  if (maxb == 0) maxb = std::max<std::uint32_t>(1, (1u << 20) / bs);
  const std::uint64_t cookie = r.cookie;
  const std::uint16_t type = r.type;
  const bool fua = (r.flags & kCmdFlagFua) != 0;
  auto p = std::make_shared<Pieces>();
  p->target = &srv.target;

  auto fail_reply = [self, r](Errc e, std::size_t bytes) {
    const bool is_write = r.type == kCmdWrite || r.type == kCmdWriteZeroes;
    const std::uint32_t err = nbd_error(e, is_write);
    const bool chunk = self->structured && (r.type == kCmdRead || r.type == kCmdBlockStatus);
    const std::string msg =
        std::string(command_name(r.type)) + ": ipsan " + std::string(to_string(e));
    self->enqueue(chunk ? encode_error_chunk(r.cookie, err, msg)
                        : encode_simple_reply(err, r.cookie),
                  bytes, true);
  };
  auto ok_reply = [self, cookie]() { self->enqueue(encode_simple_reply(0, cookie), 0, false); };

  switch (type) {
    case kCmdRead: {
      const std::uint64_t first = r.offset / bs;
      const std::uint64_t last = (r.offset + r.length + bs - 1) / bs;
      const std::uint64_t nblocks = last - first;
      const std::size_t head = static_cast<std::size_t>(r.offset - first * bs);
      const std::size_t hdr = structured ? kChunkHeaderSize + 8 : kSimpleReplySize;
      auto buf = std::make_shared<Bytes>(hdr + nblocks * bs);
      const std::size_t len = r.length;
      p->count = static_cast<std::size_t>((nblocks + maxb - 1) / maxb);
      p->window = p->count;
      p->make = [=](std::size_t i) {
        proto::Request q;
        q.op = proto::Op::kRead;
        q.device_id = dev;
        q.lba = first + std::uint64_t{i} * maxb;
        q.blocks = static_cast<std::uint32_t>(std::min<std::uint64_t>(maxb, last - q.lba));
        return q;
      };
      p->on_piece = [=](std::size_t i, proto::Reply& rep) {
        const std::uint64_t blocks = std::min<std::uint64_t>(maxb, nblocks - std::uint64_t{i} * maxb);
        if (rep.data.size() != blocks * bs) return Errc::kBadMessage;
        std::memcpy(buf->data() + hdr + std::uint64_t{i} * maxb * bs, rep.data.data(),
                    rep.data.size());
        return Errc::kOk;
      };
      const bool st = structured;
      const std::uint64_t offset = r.offset;
      p->finish = [=, this](Errc e) {
        if (e != Errc::kOk) return fail_reply(e, len);
        if (head != 0) std::memmove(buf->data() + hdr, buf->data() + hdr + head, len);
        buf->resize(hdr + len);
        if (st) {
          put_chunk_header(buf->data(), kReplyFlagDone, kReplyTypeOffsetData, cookie,
                           static_cast<std::uint32_t>(8 + len));
          store_be64(buf->data() + kChunkHeaderSize, offset);
        } else {
          put_simple_reply(buf->data(), 0, cookie);
        }
        srv.st.bytes_read += len;
        self->enqueue(std::move(*buf), len, false);
      };
      break;
    }
    case kCmdWrite: {
      auto data = std::make_shared<Bytes>(std::move(payload));
      const std::uint64_t first = r.offset / bs;
      const std::uint64_t nblocks = r.length / bs;
      const std::size_t len = r.length;
      p->count = static_cast<std::size_t>((nblocks + maxb - 1) / maxb);
      p->window = p->count;
      p->make = [=](std::size_t i) {
        proto::Request q;
        q.op = proto::Op::kWrite;
        q.device_id = dev;
        const std::uint64_t at = std::uint64_t{i} * maxb;
        q.lba = first + at;
        q.blocks = static_cast<std::uint32_t>(std::min<std::uint64_t>(maxb, nblocks - at));
        q.flags = fua ? proto::kFlagFua : 0;
        const auto* src = data->data() + at * bs;
        q.data.assign(src, src + std::uint64_t{q.blocks} * bs);
        return q;
      };
      p->finish = [=, this](Errc e) {
        if (e != Errc::kOk) return fail_reply(e, len);
        srv.st.bytes_written += len;
        self->enqueue(encode_simple_reply(0, cookie), len, false);
      };
      break;
    }
    case kCmdFlush: {
      p->count = 1;
      p->make = [=](std::size_t) {
        proto::Request q;
        q.op = proto::Op::kFlush;
        q.device_id = dev;
        return q;
      };
      p->finish = [=](Errc e) { e == Errc::kOk ? ok_reply() : fail_reply(e, 0); };
      break;
    }
    case kCmdTrim: {
      // Advisory: whole blocks inside the range; nothing when the device cannot discard.
      const std::uint64_t first = (r.offset + bs - 1) / bs;
      const std::uint64_t end = (r.offset + r.length) / bs;
      const std::uint64_t n = ((caps & proto::kCapTrim) && end > first) ? end - first : 0;
      const std::size_t trims = static_cast<std::size_t>((n + (1u << 30) - 1) >> 30);
      p->count = trims + ((fua && trims > 0) ? 1 : 0);
      p->make = [=](std::size_t i) {
        proto::Request q;
        q.device_id = dev;
        if (i == trims) {
          q.op = proto::Op::kFlush;
          return q;
        }
        q.op = proto::Op::kTrim;
        q.lba = first + (std::uint64_t{i} << 30);
        q.blocks = static_cast<std::uint32_t>(std::min<std::uint64_t>(1u << 30, first + n - q.lba));
        return q;
      };
      p->finish = [=](Errc e) { e == Errc::kOk ? ok_reply() : fail_reply(e, 0); };
      break;
    }
    case kCmdWriteZeroes: {
      const bool native = (caps & proto::kCapWriteZeroes) != 0;
      if ((r.flags & kCmdFlagFastZero) && !native) {
        // Zeroing would mean writing zero blocks over the network: not fast.
        srv.st.request_errors++;
        std::lock_guard lk(mu);
        out.push_back(encode_simple_reply(kENOTSUP, cookie));
        in_flight--;
        cv.notify_all();
        return;
      }
      const bool may_trim = (r.flags & kCmdFlagNoHole) == 0;
      const std::uint64_t first = r.offset / bs;
      const std::uint64_t nblocks = r.length / bs;
      const std::uint64_t per = native ? (std::uint64_t{1} << 30) : maxb;
      const std::size_t pieces = static_cast<std::size_t>((nblocks + per - 1) / per);
      p->count = pieces + ((fua && native) ? 1 : 0);
      p->window = native ? 1 : 4;
      p->make = [=](std::size_t i) {
        proto::Request q;
        q.device_id = dev;
        if (i == pieces) {
          q.op = proto::Op::kFlush;
          return q;
        }
        q.lba = first + std::uint64_t{i} * per;
        q.blocks = static_cast<std::uint32_t>(std::min<std::uint64_t>(per, first + nblocks - q.lba));
        if (native) {
          q.op = proto::Op::kWriteZeroes;
          q.flags = may_trim ? proto::kFlagMayTrim : 0;
        } else {
          q.op = proto::Op::kWrite;
          q.flags = fua ? proto::kFlagFua : 0;
          q.data.assign(std::size_t{q.blocks} * bs, 0);
        }
        return q;
      };
      p->finish = [=](Errc e) { e == Errc::kOk ? ok_reply() : fail_reply(e, 0); };
      break;
    }
    case kCmdCache: {
      // Prefetch: the server reads the range (warming its caches); the data is dropped here.
      const std::uint64_t first = r.offset / bs;
      const std::uint64_t last = (r.offset + r.length + bs - 1) / bs;
      p->count = static_cast<std::size_t>((last - first + maxb - 1) / maxb);
      p->window = 4;
      p->make = [=](std::size_t i) {
        proto::Request q;
        q.op = proto::Op::kRead;
        q.device_id = dev;
        q.lba = first + std::uint64_t{i} * maxb;
        q.blocks = static_cast<std::uint32_t>(std::min<std::uint64_t>(maxb, last - q.lba));
        return q;
      };
      p->finish = [=](Errc e) { e == Errc::kOk ? ok_reply() : fail_reply(e, 0); };
      break;
    }
    case kCmdBlockStatus: {
      // The generic request set has no allocation query: everything is reported allocated
      // (flags 0: "allocated, contents not known to be zero"), which is always true.
      std::vector<Extent> ext{{r.length, 0}};
      self->enqueue(encode_block_status_chunk(cookie, kBaseAllocationId, ext), 0, false);
      return;
    }
    default: fail_reply(Errc::kInvalidArgument, 0); return;
  }
  if (p->count == 0) {
    p->finish(Errc::kOk);
    return;
  }
  p->pump();
}

void Server::Impl::reap(bool all) {
  std::vector<std::shared_ptr<Conn>> done;
  {
    std::lock_guard lk(mu);
    for (auto it = conns.begin(); it != conns.end();) {
      if (all || (*it)->finished) {
        done.push_back(*it);
        it = conns.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& c : done)
    if (c->reader.joinable()) c->reader.join();
}

void Server::Impl::accept_loop() {
  for (;;) {
    pollfd fds[3];
    nfds_t n = 0;
    fds[n++] = {wake[0], POLLIN, 0};
    if (tcp_fd >= 0) fds[n++] = {tcp_fd, POLLIN, 0};
    if (unix_fd >= 0) fds[n++] = {unix_fd, POLLIN, 0};
    const int rc = ::poll(fds, n, 1000);
    if (stopping) return;
    reap(false);
    if (rc <= 0) continue;
    for (nfds_t i = 1; i < n; ++i) {
      if ((fds[i].revents & POLLIN) == 0) continue;
      const int fd = ::accept4(fds[i].fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      const bool is_tcp = fds[i].fd == tcp_fd;
      if (is_tcp) {
        int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      }
      std::lock_guard lk(mu);
      if (conns.size() >= opt.max_connections) {
        IPSAN_LOG(LogLevel::kWarn, "nbd", conns.size(), " connections: refusing another");
        ::close(fd);
        continue;
      }
      st.connections++;
      auto c = std::make_shared<Conn>(*this, fd, is_tcp);
      c->reader = std::thread([c] { c->run(); });
      conns.push_back(std::move(c));
    }
  }
}

Server::Server(client::GenericTarget& target, std::vector<ExportConfig> exports,
               ServerOptions options)
    : impl_(std::make_shared<Impl>(target, std::move(exports), std::move(options))) {}

Server::~Server() { stop(); }

Result<void, Error> Server::start() {
  Impl& s = *impl_;
  if (s.exports.empty()) return fail("no exports");
  for (std::size_t i = 0; i < s.exports.size(); ++i) {
    const auto& e = s.exports[i];
    const std::uint32_t bs = e.identity.block_size;
    if (bs < 512 || (bs & (bs - 1)) != 0) return fail("export '" + e.name + "': bad block size");
    if (e.name.size() > kMaxString) return fail("export name too long");
    for (std::size_t j = 0; j < i; ++j)
      if (s.exports[j].name == e.name) return fail("export '" + e.name + "' named twice");
  }
  if (s.opt.tls.mode != TlsMode::kOff) {
    auto t = TlsContext::create(s.opt.tls);
    if (!t) return make_unexpected(t.error());
    s.tls = std::move(*t);
  }
  if (!s.opt.tcp && s.opt.unix_path.empty()) return fail("neither TCP nor a Unix socket to listen on");
  if (s.opt.tcp) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* res = nullptr;
    const std::string port = std::to_string(s.opt.tcp_port);
    if (::getaddrinfo(s.opt.tcp_address.c_str(), port.c_str(), &hints, &res) != 0 || !res)
      return fail("cannot resolve listen address '" + s.opt.tcp_address + "'");
    const int fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || ::bind(fd, res->ai_addr, res->ai_addrlen) != 0 || ::listen(fd, 64) != 0) {
      const std::string why = std::strerror(errno);
      ::freeaddrinfo(res);
      if (fd >= 0) ::close(fd);
      return fail("cannot listen on " + s.opt.tcp_address + ":" + port + ": " + why);
    }
    ::freeaddrinfo(res);
    sockaddr_storage ss{};
    socklen_t sl = sizeof ss;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &sl);
    s.port = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    s.tcp_fd = fd;
  }
  if (!s.opt.unix_path.empty()) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (s.opt.unix_path.size() >= sizeof sa.sun_path) return fail("Unix socket path too long");
    std::memcpy(sa.sun_path, s.opt.unix_path.c_str(), s.opt.unix_path.size() + 1);
    ::unlink(s.opt.unix_path.c_str());
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
        ::listen(fd, 64) != 0) {
      const std::string why = std::strerror(errno);
      if (fd >= 0) ::close(fd);
      return fail("cannot listen on " + s.opt.unix_path + ": " + why);
    }
    s.unix_fd = fd;
  }
  if (::pipe2(s.wake, O_CLOEXEC) != 0) return fail("pipe failed");
  s.started = true;
  auto impl = impl_;
  s.acceptor = std::thread([impl] { impl->accept_loop(); });
  return {};
}

std::uint16_t Server::port() const { return impl_->port; }

void Server::stop() {
  Impl& s = *impl_;
  if (!s.started) return;
  s.started = false;
  s.stopping = true;
  const char x = 1;
  if (::write(s.wake[1], &x, 1) < 0) { /* the poll timeout wakes it anyway */ }
  if (s.acceptor.joinable()) s.acceptor.join();
  if (s.tcp_fd >= 0) ::close(s.tcp_fd);
  if (s.unix_fd >= 0) {
    ::close(s.unix_fd);
    ::unlink(s.opt.unix_path.c_str());
  }
  s.tcp_fd = s.unix_fd = -1;
  // Grace: clients told ESHUTDOWN disconnect on their own (NBD_CMD_DISC); bounded.
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(s.opt.shutdown_grace_ms);
  for (;;) {
    s.reap(false);
    {
      std::lock_guard lk(s.mu);
      if (s.conns.empty()) break;
    }
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  {
    std::lock_guard lk(s.mu);
    for (auto& c : s.conns) c->shutdown_read();  // requests in flight still get their replies
  }
  s.reap(true);
  ::close(s.wake[0]);
  ::close(s.wake[1]);
  s.wake[0] = s.wake[1] = -1;
}

ServerStats Server::stats() const {
  const auto& a = impl_->st;
  ServerStats o;
  o.connections = a.connections;
  o.handshakes = a.handshakes;
  o.handshake_failures = a.handshake_failures;
  o.tls_handshakes = a.tls_handshakes;
  o.requests = a.requests;
  o.request_errors = a.request_errors;
  o.bytes_read = a.bytes_read;
  o.bytes_written = a.bytes_written;
  o.protocol_errors = a.protocol_errors;
  return o;
}

}  // namespace ipsan::nbd
