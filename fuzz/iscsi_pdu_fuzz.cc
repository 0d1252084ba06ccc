// libFuzzer target: the iSCSI PDU parser, text key lists and the login negotiation.
//
// Input layout: byte 0 = flags (bit 0: header digest, bit 1: data digest, bit 2: run the bytes
// after the PDU's BHS through the login negotiator as a Login Request of that BHS's stages), then
// one PDU as it would arrive on the wire. Invariants: a parsed PDU re-encodes to bytes that parse
// to the same PDU; nothing allocates beyond the announced (bounded) lengths.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "ipsan/iscsi/login.h"
#include "ipsan/iscsi/wire/pdu.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ipsan;
  using namespace ipsan::iscsi;
  if (size < 1) return 0;
  const std::uint8_t flags = data[0];
  const DigestConfig digests{(flags & 1) != 0, (flags & 2) != 0};
  ByteSpan wire(data + 1, size - 1);
  auto pdu = parse_pdu(wire, digests, 65536);
  if (pdu) {
    Bytes again = encode_pdu(*pdu, digests);
    auto back = parse_pdu(again, digests, 65536);
    if (!back || back->bhs != pdu->bhs || back->data != pdu->data || back->ahs != pdu->ahs) {
      std::abort();
    }
    auto text = parse_text(pdu->data);
    if (text) {
      auto round = parse_text(encode_text(*text));
      if (!round || *round != *text) std::abort();
    }
    if (flags & 4) {
      LoginNegotiator n(TargetLimits{}, [](std::string_view t) { return t == "iqn.fuzz"; });
      const std::uint8_t f = pdu->flags();
      auto step = n.on_request((f >> 2) & 3, f & 3, f & 0x80, f & 0x40, pdu->data);
      (void)encode_text(step.keys);
      if (step.status == kLoginSuccess && !step.complete) {
        (void)n.on_request(1, 3, true, false, pdu->data);
      }
    }
  } else if (wire.size() >= kBhsSize) {
    (void)pdu_extent(wire.data(), digests, 65536);
  }
  return 0;
}
