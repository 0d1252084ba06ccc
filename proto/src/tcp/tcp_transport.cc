#include "ipsan/proto/tcp_transport.h"

#include <algorithm>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <cstring>
#include <deque>
#include <unordered_map>

#include "ipsan/base/log.h"

namespace ipsan::proto {

namespace asio = boost::asio;
using asio::ip::tcp;

Errc RecordReader::feed(ByteSpan bytes, std::vector<Bytes>& out) {
  std::size_t i = 0;
  while (i < bytes.size()) {
    if (!in_fragment_) {
      while (header_have_ < 4 && i < bytes.size()) header_[header_have_++] = bytes[i++];
      if (header_have_ < 4) break;
      header_have_ = 0;
      std::uint32_t h = load_be32(header_);
      frag_last_ = (h & 0x80000000u) != 0;
      frag_left_ = h & 0x7FFFFFFFu;
      if (record_.size() + frag_left_ > max_message_) return Errc::kTooLarge;
      in_fragment_ = true;
      record_.reserve(record_.size() + frag_left_);
    }
    std::size_t take = std::min<std::size_t>(frag_left_, bytes.size() - i);
    record_.insert(record_.end(), bytes.begin() + static_cast<std::ptrdiff_t>(i),
                   bytes.begin() + static_cast<std::ptrdiff_t>(i + take));
    i += take;
    frag_left_ -= static_cast<std::uint32_t>(take);
    if (frag_left_ == 0) {
      in_fragment_ = false;
      if (frag_last_) {
        out.push_back(std::move(record_));
        record_ = Bytes();
      }
    }
  }
  return Errc::kOk;
}

void append_record(Bytes& out, ByteSpan message, std::size_t max_fragment) {
  if (max_fragment == 0 || max_fragment > 0x7FFFFFFFu) max_fragment = 0x7FFFFFFFu;
  std::size_t off = 0;
  do {
    std::size_t n = std::min(max_fragment, message.size() - off);
    bool last = off + n == message.size();
    std::uint8_t h[4];
    store_be32(h, static_cast<std::uint32_t>(n) | (last ? 0x80000000u : 0u));
    out.insert(out.end(), h, h + 4);
    out.insert(out.end(), message.begin() + static_cast<std::ptrdiff_t>(off),
               message.begin() + static_cast<std::ptrdiff_t>(off + n));
    off += n;
  } while (off < message.size());
}

namespace {

constexpr std::string_view kBindLabel = "ipsan-tcp-bind-v1";
constexpr std::string_view kRecordLabel = "ipsan-tcp-record-v1";
constexpr std::uint32_t kBindMagic = 0x49505342;  // "IPSB"
constexpr std::uint32_t kBindVersion = 1;

Tag128 bind_tag(const Key256& session_key, std::uint64_t session_id, ByteSpan salt) {
  std::array<std::uint8_t, 8> sid;
  store_be64(sid.data(), session_id);
  const Digest256 d = hmac_sha256(session_key, {as_bytes(kBindLabel), sid, salt});
  Tag128 t;
  std::memcpy(t.data(), d.data(), t.size());
  return t;
}

}  // namespace

Bytes encode_tcp_bind(const TcpBindRecord& b, const Key256& session_key) {
  Bytes out(kTcpBindRecordSize);
  store_be32(out.data(), kBindMagic);
  store_be32(out.data() + 4, kBindVersion);
  store_be64(out.data() + 8, b.session_id);
  std::memcpy(out.data() + 16, b.salt.data(), b.salt.size());
  const Tag128 t = bind_tag(session_key, b.session_id, b.salt);
  std::memcpy(out.data() + 48, t.data(), t.size());
  return out;
}

std::optional<TcpBindRecord> parse_tcp_bind(ByteSpan record) {
  // An RPC call from a client has msg_type CALL (0) as its second word; a bind record has 1 there
  // and its own magic as "xid", so the two cannot be confused.
  if (record.size() != kTcpBindRecordSize) return std::nullopt;
  if (load_be32(record.data()) != kBindMagic || load_be32(record.data() + 4) != kBindVersion)
    return std::nullopt;
  TcpBindRecord b;
  b.session_id = load_be64(record.data() + 8);
  std::memcpy(b.salt.data(), record.data() + 16, b.salt.size());
  return b;
}

bool verify_tcp_bind(ByteSpan record, const Key256& session_key) {
  auto b = parse_tcp_bind(record);
  if (!b) return false;
  const Tag128 t = bind_tag(session_key, b->session_id, b->salt);
  return constant_time_equal(t, record.subspan(48, 16));
}

RecordCipher::RecordCipher(const Key256& session_key, const std::array<std::uint8_t, 32>& salt,
                           bool client, bool tx) {
  // The mode is part of the label (only encrypted sessions use record protection).
  const bool c2s = client == tx;
  const Digest256 d = hmac_sha256(
      session_key, {as_bytes(kRecordLabel), salt, as_bytes(c2s ? "c2s" : "s2c")});
  std::memcpy(key_.data(), d.data(), key_.size());
}

void RecordCipher::seal(Bytes& message) {
  Nonce96 n{};
  store_be64(n.data() + 4, counter_++);
  const std::size_t len = message.size();
  message.resize(len + 16);
  const Tag128 t = aead_seal(key_, n, {}, message.data(), len);
  std::memcpy(message.data() + len, t.data(), t.size());
}

bool RecordCipher::open(Bytes& record) {
  if (record.size() < 16) return false;
  Nonce96 n{};
  store_be64(n.data() + 4, counter_);
  const std::size_t len = record.size() - 16;
  Tag128 t;
  std::memcpy(t.data(), record.data() + len, t.size());
  if (!aead_open(key_, n, {}, record.data(), len, record.data(), t)) return false;
  counter_++;
  record.resize(len);
  return true;
}

namespace {

std::atomic<std::uint64_t> g_next_connection{1};

// One TCP connection: reads records, writes a queue of records. Shared by client and server.
class Stream : public std::enable_shared_from_this<Stream> {
 public:
  Stream(tcp::socket socket, const TcpConfig& cfg, bool server_side)
      : socket_(std::move(socket)),
        cfg_(cfg),
        reader_(cfg.max_message + 16),  // + a record tag when protected
        server_side_(server_side) {}

  std::function<void(Bytes)> on_message;
  std::function<void(Errc)> on_closed;

  tcp::socket& socket() { return socket_; }
  bool open() const { return open_; }
  TransportStats stats;
  std::chrono::steady_clock::time_point last_active() const { return last_active_; }
  std::size_t queued_bytes() const { return queued_bytes_; }
  // Server side: the bytes queued on all connections together (shared by the server's streams).
  void share_queue_total(std::shared_ptr<std::size_t> total) { total_queued_ = std::move(total); }
  // Server side: finds a reconnecting client's session from its bind record.
  std::function<std::optional<ServerTransport::SessionLookup>(std::uint64_t)> session_lookup;

  // Client: the session is bound; with record protection, the bind record goes out (clear, ahead
  // of everything sent later) and every record after it is sealed.
  void start_protection(std::uint64_t session_id, const Key256& key) {
    if (server_side_ || protection_ != Prot::kClear || closed_) return;
    TcpBindRecord b;
    b.session_id = session_id;
    random_bytes(b.salt);
    queue_record(encode_tcp_bind(b, key));
    tx_.emplace(key, b.salt, /*client=*/true, /*tx=*/true);
    rx_.emplace(key, b.salt, /*client=*/true, /*tx=*/false);
    protection_ = Prot::kOn;
  }
  // Server: a session of this connection is encrypted; its bind record must come next (the
  // client sends it once the login reply verified). Replies wait for it.
  void expect_bind(const Key256& key) {
    if (!server_side_ || protection_ != Prot::kClear) return;
    await_key_ = key;
    protection_ = Prot::kAwaitBind;
  }
  bool protected_stream() const { return protection_ == Prot::kOn; }

  void start() {
    boost::system::error_code ec;
    socket_.set_option(tcp::no_delay(true), ec);
    open_ = true;
    last_active_ = std::chrono::steady_clock::now();
    if (cfg_.tap) {
      tap_.connection = g_next_connection.fetch_add(1, std::memory_order_relaxed);
      tap_.server_side = server_side_;
      tap_.local = socket_.local_endpoint(ec);
      tap_.remote = socket_.remote_endpoint(ec);
      tapped_ = true;
      tap(TcpTapEvent::Kind::kOpened, {});
    }
    read_more();
    if (!queue_.empty()) write_more();
  }

  Errc send(Bytes message) {
    if (closed_) return Errc::kConnectionLost;
    if (message.size() > cfg_.max_message) return Errc::kTooLarge;
    if (protection_ == Prot::kAwaitBind) {
      // No keys yet: hold the reply until the client's bind record arrives (bounded like the queue).
      held_bytes_ += message.size();
      if (held_bytes_ > cfg_.max_queued_bytes) {
        stats.send_queue_overflows++;
        close(Errc::kBusy);
        return Errc::kConnectionLost;
      }
      held_.push_back(std::move(message));
      return Errc::kOk;
    }
    if (protection_ == Prot::kOn) tx_->seal(message);
    return queue_record(std::move(message));
  }

  Errc queue_record(Bytes message) {
    Bytes framed;
    framed.reserve(message.size() + 4 + 4 * (message.size() / cfg_.max_fragment));
    append_record(framed, message, cfg_.max_fragment);
    if (server_side_ && queued_bytes_ + framed.size() > cfg_.max_queued_bytes) {
      // The peer does not read its replies: do not let them pile up without bound.
      IPSAN_LOG(LogLevel::kWarn, "tcp", "peer lets over ", cfg_.max_queued_bytes,
                " bytes of replies pile up unread; closing");
      stats.send_queue_overflows++;
      close(Errc::kBusy);
      return Errc::kConnectionLost;
    }
    stats.messages_sent++;
    stats.bytes_sent += framed.size();
    account(static_cast<std::ptrdiff_t>(framed.size()));
    queue_.push_back(std::move(framed));
    if (open_ && !writing_) write_more();
    return Errc::kOk;
  }

  // `by_peer`: the peer closed or reset the connection (for captures).
  void close(Errc why, bool by_peer = false) {
    if (closed_) return;
    closed_ = true;
    open_ = false;
    if (tapped_) {
      tap_.by_peer = by_peer;
      tap(TcpTapEvent::Kind::kClosed, {});
      tapped_ = false;
    }
    boost::system::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
    queue_.clear();
    account(-static_cast<std::ptrdiff_t>(queued_bytes_));
    if (on_closed) {
      auto cb = std::move(on_closed);
      on_closed = nullptr;
      cb(why);
    }
  }

 private:
  void read_more() {
    auto self = shared_from_this();
    socket_.async_read_some(
        asio::buffer(buf_), [this, self](boost::system::error_code ec, std::size_t n) {
          if (closed_) return;
          if (ec) {
            close(Errc::kConnectionLost, true);
            return;
          }
          stats.bytes_received += n;
          last_active_ = std::chrono::steady_clock::now();
          if (tapped_) tap(TcpTapEvent::Kind::kReceived, ByteSpan(buf_.data(), n));
          std::vector<Bytes> records;
          Errc e = reader_.feed(ByteSpan(buf_.data(), n), records);
          for (auto& r : records) {
            if (!unprotect(r)) return;
            if (r.empty() && protection_ == Prot::kOn && bound_now_) {
              bound_now_ = false;  // the bind record itself: nothing to deliver
              continue;
            }
            stats.messages_received++;
            if (on_message) on_message(std::move(r));
            if (closed_) return;
          }
          if (e != Errc::kOk) {
            IPSAN_LOG(LogLevel::kWarn, "tcp", "peer sent a record over the size limit; closing");
            stats.dropped_malformed++;
            close(e);
            return;
          }
          read_more();
        });
  }

  void write_more() {
    if (queue_.empty() || closed_) {
      writing_ = false;
      return;
    }
    writing_ = true;
    // Gather several queued records into one write.
    batch_.clear();
    batch_.swap(queue_);
    std::vector<asio::const_buffer> bufs;
    bufs.reserve(batch_.size());
    std::size_t batch_bytes = 0;
    for (auto& b : batch_) {
      bufs.emplace_back(asio::buffer(b));
      batch_bytes += b.size();
    }
    // Tapped as the write starts: asio hands the data to the kernel at once when it can, so the
    // capture keeps the order in which the peer sees requests and replies.
    if (tapped_) {
      for (auto& b : batch_) tap(TcpTapEvent::Kind::kSent, b);
    }
    auto self = shared_from_this();
    asio::async_write(socket_, bufs, [this, self, batch_bytes](boost::system::error_code ec,
                                                                std::size_t) {
      if (closed_) return;  // close() released everything still queued
      if (ec) {
        close(Errc::kConnectionLost, true);
        return;
      }
      account(-static_cast<std::ptrdiff_t>(batch_bytes));
      write_more();
    });
  }

  // Applies record protection to one received record: decrypts it, or handles a bind record
  // (then `record` is cleared and bound_now_ set). False: the connection was closed.
  bool unprotect(Bytes& record) {
    auto refuse = [&](const char* why) {
      IPSAN_LOG(LogLevel::kWarn, "tcp", why, "; closing");
      stats.dropped_malformed++;
      close(Errc::kAuthFailed);
      return false;
    };
    if (protection_ == Prot::kOn) {
      if (!rx_->open(record)) return refuse("record failed its tag (tampered, or not this key)");
      return true;
    }
    if (!server_side_) return true;  // before the bind: login replies
    auto bind = parse_tcp_bind(record);
    if (!bind) {
      if (protection_ == Prot::kAwaitBind) {
        return refuse("clear record where the encrypted session's bind record was due");
      }
      return true;
    }
    Key256 key = await_key_;
    if (protection_ != Prot::kAwaitBind) {
      std::optional<ServerTransport::SessionLookup> s;
      if (session_lookup) s = session_lookup(bind->session_id);
      if (!s) return refuse("bind record for an unknown session");
      if (s->protection != 2) return refuse("bind record for a session that is not encrypted");
      key = s->key;
    }
    if (!verify_tcp_bind(record, key)) return refuse("bind record failed its tag");
    tx_.emplace(key, bind->salt, /*client=*/false, /*tx=*/true);
    rx_.emplace(key, bind->salt, /*client=*/false, /*tx=*/false);
    protection_ = Prot::kOn;
    await_key_ = {};
    record.clear();
    bound_now_ = true;
    auto held = std::move(held_);
    held_.clear();
    held_bytes_ = 0;
    for (auto& m : held) {
      tx_->seal(m);
      if (queue_record(std::move(m)) != Errc::kOk) return false;
    }
    return !closed_;
  }

  void account(std::ptrdiff_t delta) {
    queued_bytes_ = static_cast<std::size_t>(static_cast<std::ptrdiff_t>(queued_bytes_) + delta);
    if (total_queued_)
      *total_queued_ =
          static_cast<std::size_t>(static_cast<std::ptrdiff_t>(*total_queued_) + delta);
  }

  void tap(TcpTapEvent::Kind kind, ByteSpan data) {
    tap_.kind = kind;
    tap_.data = data;
    cfg_.tap(tap_);
    tap_.data = {};
  }

  tcp::socket socket_;
  TcpConfig cfg_;
  RecordReader reader_;
  bool server_side_ = false;
  bool tapped_ = false;  // kOpened was reported (and kClosed not yet)
  TcpTapEvent tap_;
  std::array<std::uint8_t, 256 * 1024> buf_{};
  std::deque<Bytes> queue_;
  std::deque<Bytes> batch_;
  bool open_ = false;
  bool writing_ = false;
  bool closed_ = false;
  std::chrono::steady_clock::time_point last_active_{};
  std::size_t queued_bytes_ = 0;  // framed bytes queued or being written
  std::shared_ptr<std::size_t> total_queued_;
  // Record protection (header comment).
  enum class Prot { kClear, kAwaitBind, kOn };
  Prot protection_ = Prot::kClear;
  std::optional<RecordCipher> tx_;
  std::optional<RecordCipher> rx_;
  Key256 await_key_{};
  std::vector<Bytes> held_;  // replies sent while awaiting the bind record
  std::size_t held_bytes_ = 0;
  bool bound_now_ = false;
};

class TcpClient final : public ClientTransport {
 public:
  TcpClient(asio::io_context& io, const tcp::endpoint& server, const TcpConfig& cfg)
      : server_(server),
        protection_(cfg.protection),
        stream_(std::make_shared<Stream>(tcp::socket(io), cfg, false)) {
    stream_->on_message = [this](Bytes m) {
      if (on_message) on_message(std::move(m));
    };
    stream_->on_closed = [this](Errc e) {
      if (on_closed) on_closed(e);
    };
    auto s = stream_;
    auto failure = failure_;
    s->socket().async_connect(server_, [s, failure, server = server_](boost::system::error_code ec) {
      if (ec) {
        failure->refused = ec == asio::error::connection_refused;
        failure->text = ec.message() + " (tcp " + server.address().to_string() + ":" +
                        std::to_string(server.port()) + ")";
        s->close(Errc::kConnectionLost);
        return;
      }
      s->start();
    });
  }
  ~TcpClient() override {
    stream_->on_closed = nullptr;
    stream_->on_message = nullptr;
    stream_->close(Errc::kShutdown);
  }
  Errc send(Bytes message) override { return stream_->send(std::move(message)); }
  void close() override {
    stream_->on_closed = nullptr;
    stream_->close(Errc::kShutdown);
  }
  bool is_open() const override { return stream_->open(); }
  std::uint32_t peer_epoch() const override { return 0; }
  void bind_session(std::uint64_t session_id, const Key256& session_key) override {
    if (protection_ == 2) stream_->start_protection(session_id, session_key);
  }
  TransportStats stats() const override { return stream_->stats; }
  std::string describe() const override {
    return "tcp " + server_.address().to_string() + ":" + std::to_string(server_.port());
  }
  std::string failure() const override { return failure_->text; }
  bool refused() const override { return failure_->refused; }

 private:
  struct Failure {
    std::string text;
    bool refused = false;
  };
  tcp::endpoint server_;
  std::uint32_t protection_ = 1;
  std::shared_ptr<Failure> failure_ = std::make_shared<Failure>();
  std::shared_ptr<Stream> stream_;
};

class TcpServer final : public ServerTransport {
 public:
  TcpServer(asio::io_context& io, const tcp::endpoint& bind, const TcpConfig& cfg)
      : acceptor_(io), cfg_(cfg), backoff_timer_(io), idle_timer_(io) {
    if (cfg_.max_connections == 0) cfg_.max_connections = 1;
    acceptor_.open(bind.protocol());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    acceptor_.bind(bind);
    acceptor_.listen();
    accept_more();
    arm_idle_sweep();
  }
  ~TcpServer() override { close(); }

  Errc send(PeerId peer, Bytes message) override {
    auto it = peers_.find(peer);
    if (it == peers_.end()) return Errc::kConnectionLost;
    auto stream = it->second.stream;
    Errc e = stream->send(std::move(message));
    while (*total_queued_ > cfg_.max_total_queued_bytes && !peers_.empty()) {
      // Over the global budget: the connection with the most unsent bytes goes.
      auto worst = std::max_element(peers_.begin(), peers_.end(), [](const auto& a, const auto& b) {
        return a.second.stream->queued_bytes() < b.second.stream->queued_bytes();
      });
      auto s = worst->second.stream;
      if (s->queued_bytes() == 0) break;
      IPSAN_LOG(LogLevel::kWarn, "tcp", worst->second.name, ": replies over the global budget of ",
                cfg_.max_total_queued_bytes, " bytes; closing");
      s->stats.send_queue_overflows++;
      s->close(Errc::kBusy);
      if (s == stream) e = Errc::kConnectionLost;
    }
    return e;
  }
  void close_peer(PeerId peer) override {
    auto it = peers_.find(peer);
    if (it == peers_.end()) return;
    auto s = it->second.stream;
    s->close(Errc::kShutdown);  // on_closed erases it
  }
  void close() override {
    boost::system::error_code ec;
    acceptor_.close(ec);
    backoff_timer_.cancel();
    idle_timer_.cancel();
    auto peers = std::move(peers_);
    peers_.clear();
    for (auto& [id, p] : peers) {
      p.stream->on_closed = nullptr;
      p.stream->on_message = nullptr;
      p.stream->close(Errc::kShutdown);
    }
  }
  std::uint16_t local_port() const override {
    boost::system::error_code ec;
    auto ep = acceptor_.local_endpoint(ec);
    return ec ? 0 : ep.port();
  }
  TransportStats stats() const override {
    TransportStats t = closed_stats_;
    for (auto& [id, p] : peers_) add(t, p.stream->stats);
    t.connections_evicted += limits_.connections_evicted;
    t.connections_idle_closed += limits_.connections_idle_closed;
    t.accept_backoffs += limits_.accept_backoffs;
    return t;
  }
  void for_each_peer(
      const std::function<void(PeerId, const TransportStats&)>& f) const override {
    for (const auto& [id, p] : peers_) f(id, p.stream->stats);
  }
  std::string peer_name(PeerId peer) const override {
    auto it = peers_.find(peer);
    return it == peers_.end() ? "tcp (closed peer)" : it->second.name;
  }
  void bind_session(PeerId peer, const Key256& session_key, std::uint32_t protection) override {
    if (protection < 2) return;  // integrity: the RPC MACs (header comment)
    auto it = peers_.find(peer);
    if (it != peers_.end()) it->second.stream->expect_bind(session_key);
  }

 private:
  struct Peer {
    std::shared_ptr<Stream> stream;
    std::string name;
  };
  static void add(TransportStats& t, const TransportStats& s) {
    t.messages_sent += s.messages_sent;
    t.messages_received += s.messages_received;
    t.bytes_sent += s.bytes_sent;
    t.bytes_received += s.bytes_received;
    t.dropped_malformed += s.dropped_malformed;
    t.send_queue_overflows += s.send_queue_overflows;
  }

  static bool out_of_resources(const boost::system::error_code& ec) {
    return ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space ||
           ec == asio::error::no_memory ||
           ec == boost::system::errc::too_many_files_open_in_system;
  }

  void arm_idle_sweep() {
    if (cfg_.idle_timeout.count() <= 0) return;
    const auto period = std::clamp<std::chrono::milliseconds>(
        cfg_.idle_timeout / 4, std::chrono::milliseconds(10), std::chrono::seconds(5));
    idle_timer_.expires_after(period);
    idle_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
      const auto now = std::chrono::steady_clock::now();
      std::vector<std::shared_ptr<Stream>> idle;
      for (auto& [id, p] : peers_) {
        if (now - p.stream->last_active() > cfg_.idle_timeout) idle.push_back(p.stream);
      }
      for (auto& s : idle) {
        limits_.connections_idle_closed++;
        s->close(Errc::kTimeout);
      }
      arm_idle_sweep();
    });
  }

  // At the connection cap: close the connection that has been silent longest.
  void make_room() {
    while (peers_.size() >= cfg_.max_connections && !peers_.empty()) {
      auto oldest = std::min_element(peers_.begin(), peers_.end(), [](const auto& a, const auto& b) {
        return a.second.stream->last_active() < b.second.stream->last_active();
      });
      IPSAN_LOG(LogLevel::kDebug, "tcp", "connection cap ", cfg_.max_connections, ": closing ",
                oldest->second.name, " (silent longest)");
      limits_.connections_evicted++;
      auto s = oldest->second.stream;
      s->close(Errc::kBusy);  // on_closed erases it
    }
  }

  void accept_more() {
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket sock) {
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
        if (out_of_resources(ec)) {
          // Out of descriptors (or memory): the pending connection stays in the backlog and
          // accept() would fail again at once. Pause instead of spinning a core.
          if (limits_.accept_backoffs++ == 0 || limits_.accept_backoffs % 100 == 0) {
            IPSAN_LOG(LogLevel::kWarn, "tcp", "accept: ", ec.message(), "; pausing accepts for ",
                      cfg_.accept_backoff.count(), " ms (", limits_.accept_backoffs, " times)");
          }
          backoff_timer_.expires_after(cfg_.accept_backoff);
          backoff_timer_.async_wait([this](boost::system::error_code tec) {
            if (tec == asio::error::operation_aborted || !acceptor_.is_open()) return;
            accept_more();
          });
          return;
        }
        accept_more();
        return;
      }
      make_room();
      PeerId id = next_id_++;
      boost::system::error_code ec2;
      auto rep = sock.remote_endpoint(ec2);
      std::string name =
          "tcp " +
          (ec2 ? std::string("?") : rep.address().to_string() + ":" + std::to_string(rep.port()));
      auto s = std::make_shared<Stream>(std::move(sock), cfg_, true);
      s->share_queue_total(total_queued_);
      s->session_lookup = [this](std::uint64_t sid) -> std::optional<SessionLookup> {
        if (!session_lookup) return std::nullopt;
        return session_lookup(sid);
      };
      s->on_message = [this, id](Bytes m) {
        if (on_message) on_message(id, std::move(m));
      };
      s->on_closed = [this, id](Errc) {
        auto it = peers_.find(id);
        if (it != peers_.end()) {
          add(closed_stats_, it->second.stream->stats);
          // Keep the stream alive until this callback returns.
          auto keep = it->second.stream;
          peers_.erase(it);
          if (on_peer_closed) on_peer_closed(id);
        }
      };
      peers_.emplace(id, Peer{s, std::move(name)});
      s->start();
      accept_more();
    });
  }

  tcp::acceptor acceptor_;
  TcpConfig cfg_;
  asio::steady_timer backoff_timer_;
  asio::steady_timer idle_timer_;
  TransportStats limits_;  // connections_evicted, connections_idle_closed, accept_backoffs
  std::shared_ptr<std::size_t> total_queued_ = std::make_shared<std::size_t>(0);
  std::unordered_map<PeerId, Peer> peers_;
  PeerId next_id_ = 1;
  TransportStats closed_stats_;
};

}  // namespace

std::unique_ptr<ClientTransport> make_tcp_client(asio::io_context& io, const tcp::endpoint& server,
                                                 const TcpConfig& config) {
  return std::make_unique<TcpClient>(io, server, config);
}

std::unique_ptr<ServerTransport> make_tcp_server(asio::io_context& io, const tcp::endpoint& bind,
                                                 const TcpConfig& config) {
  return std::make_unique<TcpServer>(io, bind, config);
}

}  // namespace ipsan::proto
