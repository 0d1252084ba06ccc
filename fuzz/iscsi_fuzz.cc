// libFuzzer target: iSCSI capture import (replay/iscsi.h) on hostile input.
// Input byte 0 selects the mode, bytes 1..2 (big-endian) split the rest into the initiator and
// the target stream:
//   mode & 3 == 0: the streams as they are (login and all come from the input);
//   mode & 3 == 1: a canned login without digests is put in front of both streams;
//   mode & 3 == 2: a canned login negotiating CRC32C header and data digests;
//   mode & 3 == 3: the whole input after byte 0 is a pcap/pcapng file (read_capture_bytes).
// Every imported command is then turned into a trace line and the trace parsed back.
#include <cstddef>
#include <cstdint>
#include <string>

#include "ipsan/client/trace/trace.h"
#include "ipsan/replay/capture.h"
#include "ipsan/replay/iscsi.h"

namespace {

using ipsan::Bytes;

void append_login(Bytes& ini, Bytes& tgt, const std::string& keys) {
  Bytes data(keys.begin(), keys.end());
  for (auto& c : data) {
    if (c == '|') c = 0;
  }
  auto pdu = [&](Bytes& out, std::uint8_t opcode) {
    std::uint8_t bhs[48] = {};
    bhs[0] = opcode;
    bhs[1] = 0x87;  // T, CSG=1, NSG=3
    bhs[7] = static_cast<std::uint8_t>(data.size());
    out.insert(out.end(), bhs, bhs + 48);
    out.insert(out.end(), data.begin(), data.end());
    while (out.size() % 4 != 0) out.push_back(0);
  };
  pdu(ini, 0x43);
  pdu(tgt, 0x23);
}

void consume(const ipsan::replay::iscsi::IscsiCapture& cap) {
  const auto trace = ipsan::replay::iscsi::to_trace(cap, "fuzz", false);
  const std::string text = ipsan::client::trace::format_trace(trace);
  auto back = ipsan::client::trace::parse_trace(text, "fuzz");
  (void)back;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  const std::uint8_t mode = data[0] & 3;
  if (mode == 3) {
    auto cap = ipsan::replay::read_capture_bytes(ipsan::ByteSpan(data + 1, size - 1));
    if (cap) consume(ipsan::replay::iscsi::import_iscsi(*cap, {}));
    return 0;
  }
  std::size_t split = (std::size_t{data[1]} << 8) | data[2];
  const std::uint8_t* rest = data + 3;
  const std::size_t n = size - 3;
  if (split > n) split = n;
  Bytes ini, tgt;
  if (mode == 1) append_login(ini, tgt, "HeaderDigest=None|DataDigest=None|");
  if (mode == 2) append_login(ini, tgt, "HeaderDigest=CRC32C|DataDigest=CRC32C|");
  ini.insert(ini.end(), rest, rest + split);
  tgt.insert(tgt.end(), rest + split, rest + n);
  consume(ipsan::replay::iscsi::import_iscsi_streams(ini, tgt));
  return 0;
}
