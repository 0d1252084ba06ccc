// `ipsan replay --pcap`: a small capture whose reliable-UDP fragments claim huge messages must not
// make the reader allocate what was claimed (a 7.4 KB file once reached 524 MB RSS). Memory
// follows the bytes really captured, and the incomplete messages are reported, not fatal.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ipsan/netem/pcap.h"
#include "ipsan/proto/rudp/wire.h"
#include "ipsan/replay/capture.h"
#include "ipsan/replay/ipsan_capture.h"
#include "pcap_builder.h"

namespace ipsan::replay {
namespace {

using testing::addr;
using testing::Frame;

// One DATA datagram carrying the last 16 bytes of a message that claims `total` bytes.
Bytes fragment(std::uint64_t message_id, std::uint32_t total) {
  Bytes d(proto::rudp::kPacketOverhead + proto::rudp::kMessageFrameHeader + 16);
  proto::rudp::Header h;
  h.type = proto::rudp::PacketType::kData;
  h.conn_id = 7;
  h.packet_number = message_id;
  proto::rudp::PacketWriter w(d, h);
  const Bytes payload(16, 0xAB);
  w.put_message(message_id, total, total - 16, payload);
  d.resize(w.finish());
  return d;
}

// A capture of `n` such datagrams, as a pcap file image (~100 bytes per record).
Bytes hostile_capture(int n, std::uint32_t total) {
  std::vector<Frame> frames;
  for (int i = 0; i < n; ++i) {
    const Bytes dgram = fragment(static_cast<std::uint64_t>(i + 1), total);
    frames.push_back({testing::udp_packet(addr(0x7f000001, 40000), addr(0x7f000001, 5260), dgram),
                      0, static_cast<std::uint64_t>(i) * 1000});
  }
  return testing::pcap_file(101, frames);  // LINKTYPE_RAW
}

// Peak RSS (KiB) of a child process that reads and extracts the capture.
long child_peak_kib(const Bytes& image, std::size_t* incomplete) {
  int fds[2];
  if (::pipe(fds) != 0) return -1;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    auto cap = netem::read_capture_bytes(image);
    std::size_t n = 0;
    if (cap) {
      const IpsanCapture out = extract_ipsan(*cap, ExtractOptions{});
      n = out.skipped.total();
    }
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    long report[2] = {ru.ru_maxrss, static_cast<long>(n)};
    (void)!::write(fds[1], report, sizeof report);
    ::_exit(cap ? 0 : 3);
  }
  ::close(fds[1]);
  long report[2] = {-1, 0};
  const auto got = ::read(fds[0], report, sizeof report);
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (got != static_cast<ssize_t>(sizeof report) || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return -1;
  *incomplete = static_cast<std::size_t>(report[1]);
  return report[0];
}

TEST(PcapMemory, ClaimedMessageLengthsAllocateNothing) {
  // 80 datagrams (< 10 KB of capture), each claiming a message of almost 9 MiB (the largest
  // allowed): 700 MiB claimed in all.
  const Bytes image = hostile_capture(80, (9u << 20) - 1);
  ASSERT_LT(image.size(), 12000u);
  std::size_t skipped = 0;
  const long peak = child_peak_kib(image, &skipped);
  ASSERT_GT(peak, 0) << "the reader child failed";
  std::printf("capture %zu bytes, child peak RSS %ld KiB\n", image.size(), peak);
  // The test process itself is a few tens of MiB; the claims would be hundreds.
  EXPECT_LT(peak, 96 * 1024) << "memory followed the claimed lengths";
  // Every claimed message is reported as incomplete.
  EXPECT_EQ(skipped, 80u);

  // And in process: the reasons say what happened.
  auto cap = netem::read_capture_bytes(image);
  ASSERT_TRUE(cap) << cap.error().message;
  const IpsanCapture out = extract_ipsan(*cap, ExtractOptions{});
  EXPECT_TRUE(out.calls.empty());
  EXPECT_NE(out.skipped.to_string().find("incomplete fragmented message"), std::string::npos)
      << out.skipped.to_string();
}

// A message assembled from out-of-order fragments is still complete and correct.
TEST(PcapMemory, OutOfOrderFragmentsStillAssemble) {
  CaptureFile cap;
  const std::uint32_t total = 48;
  for (std::uint32_t off : {32u, 0u, 16u, 16u}) {  // last first, and one retransmission
    Bytes d(proto::rudp::kPacketOverhead + proto::rudp::kMessageFrameHeader + 16);
    proto::rudp::Header h;
    h.type = proto::rudp::PacketType::kData;
    h.conn_id = 9;
    proto::rudp::PacketWriter w(d, h);
    Bytes payload(16);
    for (std::size_t i = 0; i < 16; ++i) payload[i] = static_cast<std::uint8_t>(off + i);
    w.put_message(1, total, off, payload);
    d.resize(w.finish());
    netem::Packet p;
    p.number = cap.packets.size() + 1;
    p.protocol = 17;
    p.src = addr(0x7f000001, 40000);
    p.dst = addr(0x7f000001, 5260);
    p.payload = d;
    p.payload_len = static_cast<std::uint32_t>(d.size());
    cap.packets.push_back(std::move(p));
  }
  const IpsanCapture out = extract_ipsan(cap, ExtractOptions{});
  EXPECT_EQ(out.datagrams, 4u);
  // 48 bytes 0..47 are not an RPC message: counted as such, not as an incomplete message.
  EXPECT_EQ(out.skipped.to_string().find("incomplete fragmented message"), std::string::npos)
      << out.skipped.to_string();
}

}  // namespace
}  // namespace ipsan::replay
