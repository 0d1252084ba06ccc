// libFuzzer target: the TCP record-marking reader (RFC 5531 11) fed the input in chunks whose
// sizes come from the input itself. Records out must re-encode to the bytes consumed, never
// exceed the limit, and kTooLarge must end the stream.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "ipsan/proto/tcp_transport.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  constexpr std::size_t kMax = 1u << 16;
  ipsan::proto::RecordReader reader(kMax);
  std::vector<ipsan::Bytes> out;
  const std::size_t chunk = 1 + data[0] % 64;
  std::size_t total_in = 0;
  for (std::size_t i = 1; i < size; i += chunk) {
    const std::size_t n = std::min(chunk, size - i);
    total_in += n;
    if (reader.feed({data + i, n}, out) != ipsan::Errc::kOk) break;
  }
  std::size_t payload = 0;
  for (const auto& r : out) {
    if (r.size() > kMax) std::abort();
    payload += r.size();
  }
  if (payload > total_in) std::abort();
  // A record written by append_record reads back as itself.
  if (!out.empty()) {
    ipsan::Bytes enc;
    ipsan::proto::append_record(enc, out.front(), 1 + data[0] % 7);
    ipsan::proto::RecordReader again(kMax);
    std::vector<ipsan::Bytes> back;
    if (again.feed(enc, back) != ipsan::Errc::kOk || back.size() != 1 || back[0] != out.front())
      std::abort();
  }
  return 0;
}
