// libFuzzer target: arbitrary datagrams into the rudp engine, both roles.
//
// Input: byte 0 = flags, then records [u16 big-endian length][datagram]. A client Connection and
// a Listener first complete a real handshake in memory (fixed connection id and epoch), then
// every record is fed to the client's on_datagram and to the Listener's on_datagram, with the
// engines polled (transmit, messages, timers) in between on a virtual clock.
// flags bit 0: patch each datagram's connection id, epoch and CRC32C so the fuzzer gets past the
// envelope into the frame parser and the state machines. bit 1: advance the clock 1 ms per record.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "ipsan/base/bytes.h"
#include "ipsan/base/clock.h"
#include "ipsan/base/crc32c.h"
#include "ipsan/proto/rudp/connection.h"
#include "ipsan/proto/rudp/listener.h"

namespace {

using namespace ipsan;
using namespace ipsan::proto::rudp;

constexpr std::uint64_t kConnId = 0x0123456789abcdefull;
constexpr std::uint32_t kEpoch = 0x1badb002;

void drain(Connection& client, Listener& server, VirtualClock& clock, int rounds) {
  std::vector<std::uint8_t> buf(65536);
  std::array<std::uint8_t, 64> reset{};
  for (int r = 0; r < rounds; ++r) {
    const TimePoint now = clock.now();
    for (std::size_t n; (n = client.poll_transmit(buf, now)) > 0;) {
      // RETRY (cookie) and RESET answers go back to the client, as on a real path.
      const auto routed = server.on_datagram(ByteSpan(buf.data(), n), now, reset);
      if (routed.reset_size) client.on_datagram(ByteSpan(reset.data(), routed.reset_size), now);
    }
    while (auto t = server.poll_transmit(buf, now)) {
      client.on_datagram(ByteSpan(buf.data(), t->second), now);
    }
    while (client.poll_message()) {
    }
    while (server.poll_message()) {
    }
    while (server.poll_closed()) {
    }
    clock.advance(std::chrono::microseconds(300));
    client.on_timer(clock.now());
    server.on_timer(clock.now());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::uint8_t flags = data[0];
  Config cfg;
  cfg.max_message_bytes = 1 << 20;
  cfg.recv_window_bytes = 2 << 20;
  VirtualClock clock;
  Connection client = Connection::make_client(kConnId, cfg, clock.now());
  Listener server(kEpoch, cfg);
  drain(client, server, clock, 3);
  if (flags & 4) {
    // Protected connection (integrity, or encrypted with bit 3): the fuzzed records then meet
    // the tag check and the unprotected-after-switch rules.
    Key256 k{};
    k[0] = 1;
    const bool enc = (flags & 8) != 0;
    server.protect(kConnId, k, enc ? Protection::kEncrypted : Protection::kIntegrity, clock.now());
    client.protect(derive_packet_keys(k, kConnId, true, enc), true, clock.now());
  }
  client.send(Bytes(3000, 0x5a), clock.now());  // something in flight to acknowledge / lose
  drain(client, server, clock, 1);

  std::array<std::uint8_t, 64> reset{};
  std::size_t pos = 1;
  while (pos + 2 <= size) {
    std::size_t len = load_be16(data + pos);
    pos += 2;
    if (len > size - pos) len = size - pos;
    std::vector<std::uint8_t> d(data + pos, data + pos + len);
    pos += len;
    if ((flags & 1) && d.size() >= kPacketOverhead) {
      store_be64(d.data() + 4, kConnId);
      if (d[1] != static_cast<std::uint8_t>(PacketType::kHello)) store_be32(d.data() + 12, kEpoch);
      const std::size_t n = d.size() - kCrcSize;
      store_be32(d.data() + n, crc32c(ByteSpan(d.data(), n)));
    }
    if (flags & 2) clock.advance(std::chrono::milliseconds(1));
    client.on_datagram(d, clock.now());
    server.on_datagram(d, clock.now(), reset);
    drain(client, server, clock, 1);
  }
  drain(client, server, clock, 5);
  return 0;
}
