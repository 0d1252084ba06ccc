// libFuzzer target: arbitrary bytes as a pcap/pcapng file through netem::read_pcap().
// read_pcap() takes a path (libpcap opens the file itself), so each input is written to one
// per-process temporary file first.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "ipsan/netem/pcap.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = "/tmp/ipsan_pcap_fuzz_" + std::to_string(::getpid()) + ".pcap";
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return 0;
  if (size > 0) std::fwrite(data, 1, size, f);
  std::fclose(f);
  auto records = ipsan::netem::read_pcap(path);
  if (records) {
    for (const auto& r : *records) {
      // Touch every field so sanitizers see any bad read.
      volatile std::size_t sink = r.payload.size() + r.payload_len + r.src.port + r.dst.port;
      (void)sink;
      (void)r.src.to_string();
    }
  }
  return 0;
}
