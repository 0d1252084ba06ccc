// ipsan/proto/tcp_transport.h: ONC-RPC over TCP with record marking (RFC 5531 section 11), the
// second transport. Each message is one record: fragments of at most kMaxFragment bytes, each
// preceded by a 4-byte big-endian header (bit 31 = last fragment, bits 0-30 = fragment length).
// A peer that announces a record larger than max_message is disconnected (bounded memory).
//
// Capture: TcpConfig::tap (`ipsan server --capture`) sees each connection above the socket layer:
// established, every byte range read or handed to the kernel, closed. netem::TcpStreamRecorder
// turns that into TCP segments in a pcap file.
//
// Record protection (`--transport-security encrypted`, docs/SECURITY.md "TCP"): after login the
// client sends one clear *bind record* (magic, session id, a fresh 32-byte salt, a tag under the
// session key); from then on every record in both directions is ChaCha20-Poly1305 ciphertext plus
// a 16-byte tag, under directional keys derived from the session key, the salt and the mode, with
// a per-direction record counter as nonce (TCP delivers in order, so nothing travels but the tag).
// A fresh salt per connection means a reconnect never reuses a (key, nonce) pair. The server binds
// a reconnecting client through ServerTransport::session_lookup; a record that fails its tag, or a
// clear record where ciphertext is due, closes the connection. Integrity-only sessions keep the
// per-call RPC MACs (TCP's own checksum and ordering do the rest).
//
// Threading: everything runs on the io_context passed in; see transport.h.
#pragma once

#include <utility>  // before Asio (GCC 12 + Asio 1.74 awaitable header)

#include <boost/asio/io_context.hpp>
#include <array>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

#include "ipsan/proto/transport.h"

namespace ipsan::proto {

// One event of a TCP connection, for captures (TcpConfig::tap).
struct TcpTapEvent {
  enum class Kind {
    kOpened,    // connection established (accepted or connected)
    kReceived,  // `data` was read from the socket
    kSent,      // `data` (one whole record) is being written: reported as the write starts
    kClosed,    // the connection ended; `by_peer`: the peer closed or reset it first
  };
  Kind kind = Kind::kOpened;
  std::uint64_t connection = 0;  // unique in the process (client and server transports alike)
  bool server_side = false;      // accepted by a server transport (the peer is the client)
  boost::asio::ip::tcp::endpoint local;
  boost::asio::ip::tcp::endpoint remote;
  ByteSpan data;         // kReceived, kSent
  bool by_peer = false;  // kClosed
};

struct TcpConfig {
  std::size_t max_message = 9u << 20;   // 8 MiB of data plus RPC headers
  std::size_t max_fragment = 1u << 20;  // fragment size we send
  // Client: the session's transport security (0 off, 1 integrity, 2 encrypted; login.h). At 2,
  // bind_session() starts record protection. Servers learn it per session from bind_session().
  std::uint32_t protection = 1;
  // Server limits. At max_connections, a new connection is admitted by closing the one that has
  // been silent longest (an idle flood cannot lock out a client that is talking); a connection
  // silent for idle_timeout is closed (0: never); a peer whose unsent replies exceed
  // max_queued_bytes (it does not read) is disconnected, and while all connections together exceed
  // max_total_queued_bytes the one with the largest queue is. When accept() fails for lack of
  // descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) accepting pauses for accept_backoff
  // instead of spinning. Sessions outlive connections, so a closed client just reconnects.
  std::size_t max_connections = 1024;
  std::chrono::milliseconds idle_timeout = std::chrono::minutes(5);
  std::size_t max_queued_bytes = 256u << 20;
  std::size_t max_total_queued_bytes = 1u << 30;
  std::chrono::milliseconds accept_backoff = std::chrono::milliseconds(100);
  // Capture hook: called on the io thread for every event of every connection (kOpened first,
  // then kReceived / kSent in the order they happen, kClosed last). Must not call back into the
  // transport.
  std::function<void(const TcpTapEvent&)> tap;
};

// Connects asynchronously; messages sent before the connection is up are queued.
std::unique_ptr<ClientTransport> make_tcp_client(boost::asio::io_context& io,
                                                 const boost::asio::ip::tcp::endpoint& server,
                                                 const TcpConfig& config = {});

// Binds and listens immediately (throws boost::system::system_error on failure: start-up only).
std::unique_ptr<ServerTransport> make_tcp_server(boost::asio::io_context& io,
                                                 const boost::asio::ip::tcp::endpoint& bind,
                                                 const TcpConfig& config = {});

// Record-marking codec, exposed for tests and fuzzing. Feed bytes in; complete records come out.
class RecordReader {
 public:
  explicit RecordReader(std::size_t max_message) : max_message_(max_message) {}
  // Consumes bytes; returns kOk, or kTooLarge when a record would exceed max_message (the stream
  // is then unusable). Complete records are appended to `out`.
  Errc feed(ByteSpan bytes, std::vector<Bytes>& out);

 private:
  std::size_t max_message_;
  std::uint8_t header_[4]{};
  std::size_t header_have_ = 0;
  std::uint32_t frag_left_ = 0;
  bool frag_last_ = false;
  bool in_fragment_ = false;
  Bytes record_;
};

// Appends the record-marking headers + message to `out` (fragments of max_fragment bytes).
void append_record(Bytes& out, ByteSpan message, std::size_t max_fragment);

// Record protection, exposed for tests and fuzzing (see the header comment).
inline constexpr std::size_t kTcpBindRecordSize = 64;
struct TcpBindRecord {
  std::uint64_t session_id = 0;
  std::array<std::uint8_t, 32> salt{};
};
// The clear bind record: "IPSB" | version 1 (u32) | session id (u64) | salt (32) | tag (16), the
// tag = HMAC-SHA-256(session key, label | session id | salt) truncated to 16 bytes.
Bytes encode_tcp_bind(const TcpBindRecord& b, const Key256& session_key);
// Is this record a bind record (by its shape, before any key is known)? Then parse it.
std::optional<TcpBindRecord> parse_tcp_bind(ByteSpan record);
bool verify_tcp_bind(ByteSpan record, const Key256& session_key);

// One direction of a protected stream.
class RecordCipher {
 public:
  RecordCipher(const Key256& session_key, const std::array<std::uint8_t, 32>& salt, bool client,
               bool tx);
  // Encrypts `message` and appends the tag (message grows by 16 bytes).
  void seal(Bytes& message);
  // Verifies and decrypts in place (record shrinks by 16 bytes); false on any mismatch.
  bool open(Bytes& record);

 private:
  Key256 key_{};
  std::uint64_t counter_ = 0;
};

}  // namespace ipsan::proto
