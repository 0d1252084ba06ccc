// libFuzzer target: ipsan-capture import (`ipsan replay --pcap`, docs/CAPTURE.md): a pcap image
// through the capture reader and the reliable-UDP / TCP extraction of ipsan RPC messages.
// Memory must follow the captured bytes, not the lengths the capture claims.
#include <cstddef>
#include <cstdint>

#include "ipsan/netem/pcap.h"
#include "ipsan/replay/ipsan_capture.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto cap = ipsan::netem::read_capture_bytes({data, size});
  if (!cap) return 0;
  ipsan::replay::ExtractOptions o;
  (void)ipsan::replay::extract_ipsan(*cap, o);
  o.port = 5260;
  (void)ipsan::replay::extract_ipsan(*cap, o);
  return 0;
}
