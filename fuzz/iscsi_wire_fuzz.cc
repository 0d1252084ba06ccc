// libFuzzer target: the iSCSI wire codec alone (ipsan/iscsi/wire/pdu.h, library ipsan_iscsi_wire),
// as both of its users drive it: the portal (one PDU at a time, strict text keys) and the capture
// import (PDUs cut one after another from a byte stream, lenient text keys).
//
// Input layout: byte 0 = flags (bit 0: header digest, bit 1: data digest), then a byte stream of
// PDUs as they would arrive on a TCP connection. Invariants checked (a violation aborts):
//   - cut_pdu only moves forward, never past the end, and stops for good on a framing error;
//   - a PDU it cuts parses alone (parse_pdu) to the same PDU and re-encodes to the same bytes
//     (canonical padding aside: the re-encoding parses back to the same PDU);
//   - the strict text parser's result, when it accepts, is what the lenient parser returns and
//     survives encode/parse; the lenient parser never keeps more than kMaxLenientPairs pairs;
//   - decode_lun and opcode_name/known_opcode agree for the BHS seen.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "ipsan/iscsi/wire/pdu.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ipsan;
  using namespace ipsan::iscsi;
  if (size < 1) return 0;
  const DigestConfig digests{(data[0] & 1) != 0, (data[0] & 2) != 0};
  const ByteSpan stream(data + 1, size - 1);
  constexpr std::size_t kMaxData = 65536;
  std::size_t pos = 0;
  while (pos < stream.size()) {
    const std::size_t before = pos;
    Pdu pdu;
    auto r = cut_pdu(stream, pos, digests, kMaxData, pdu);
    if (pos < before || pos > stream.size()) std::abort();
    if (!r && r.error() != PduError::kDataDigest) {
      if (pos != before) std::abort();
      break;
    }
    if (pos == before) std::abort();  // progress on every PDU it hands out
    if (!r) continue;                 // data digest mismatch: dropped, framing intact
    auto alone = parse_pdu(stream.subspan(before, pos - before), digests, kMaxData);
    if (!alone || alone->bhs != pdu.bhs || alone->ahs != pdu.ahs || alone->data != pdu.data) {
      std::abort();
    }
    const Bytes again = encode_pdu(pdu, digests);
    auto back = parse_pdu(again, digests, kMaxData);
    if (!back || back->ahs != pdu.ahs || back->data != pdu.data) std::abort();
    (void)known_opcode(pdu.bhs[0]);
    if (known_opcode(pdu.bhs[0]) != (std::string_view(opcode_name(pdu.bhs[0])) != "unknown opcode")) {
      std::abort();
    }
    if (auto lun = decode_lun(pdu.lun_field()); lun && *lun > 0x3FFF) std::abort();
    const TextPairs lenient = parse_text_lenient(pdu.data);
    if (lenient.size() > kMaxLenientPairs) std::abort();
    if (auto strict = parse_text(pdu.data)) {
      if (strict->size() <= kMaxLenientPairs && *strict != lenient) std::abort();
      auto round = parse_text(encode_text(*strict));
      if (!round || *round != *strict) std::abort();
    }
  }
  return 0;
}
