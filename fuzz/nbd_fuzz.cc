// libFuzzer target: the NBD wire codec and the fixed-newstyle option negotiation (nbd/wire.h).
//
// Input layout: byte 0 = flags (bits 0-1: TLS mode off/on/require; bit 2: act as if TLS was
// started after STARTTLS), bytes 1-4 = the client's handshake flags, then records of
// [u32 option][u16 length][payload] fed to the Negotiator until it enters transmission or closes;
// whatever follows is cut into 28-byte requests, decoded and validated. Invariants: option
// replies are well-formed (magic, lengths add up), encode(decode(x)) == x for requests, info and
// meta-context payloads.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "ipsan/nbd/wire.h"

namespace {

void check_replies(const ipsan::Bytes& b) {
  std::size_t p = 0;
  while (p < b.size()) {
    if (b.size() - p < 20 || ipsan::load_be64(b.data() + p) != ipsan::nbd::kRepMagic) std::abort();
    p += 20 + ipsan::load_be32(b.data() + p + 16);
    if (p > b.size()) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ipsan;
  using namespace ipsan::nbd;
  if (size < 5) return 0;
  NegotiatorConfig cfg;
  cfg.tls = static_cast<TlsMode>(data[0] % 3);
  ExportInfo a;
  a.name = "disk";
  a.size = 1u << 20;
  a.flags = kTxHasFlags | kTxSendFlush | kTxSendFua | kTxSendWriteZeroes | kTxSendFastZero;
  ExportInfo b = a;
  b.name = "ro";
  b.flags |= kTxReadOnly;
  cfg.exports = {a, b};
  Negotiator n(cfg);
  if (!n.on_client_flags(load_be32(data + 1))) return 0;
  std::size_t p = 5;
  bool transmission = false;
  while (p + 6 <= size && !transmission) {
    const std::uint32_t opt = load_be32(data + p);
    std::size_t len = load_be16(data + p + 4);
    p += 6;
    if (len > size - p) len = size - p;
    ByteSpan payload(data + p, len);
    p += len;
    if (auto q = decode_info_request(payload)) {
      Bytes again = encode_info_request(*q);
      if (again.size() != payload.size() || !std::equal(again.begin(), again.end(), payload.begin()))
        std::abort();
    }
    if (auto m = decode_meta_context_request(payload)) {
      Bytes again = encode_meta_context_request(*m);
      if (again.size() != payload.size() || !std::equal(again.begin(), again.end(), payload.begin()))
        std::abort();
    }
    NegotiationStep step = n.on_option(opt, payload);
    if (opt != kOptExportName) check_replies(step.reply);
    switch (step.action) {
      case NegotiationAction::kContinue: break;
      case NegotiationAction::kStartTls:
        if (data[0] & 4) n.tls_started();
        break;
      case NegotiationAction::kTransmission: transmission = true; break;
      case NegotiationAction::kClose: return 0;
    }
  }
  if (!transmission || n.selected() == nullptr) return 0;
  while (p + kRequestSize <= size) {
    ByteSpan raw(data + p, kRequestSize);
    p += kRequestSize;
    auto r = decode_request(raw);
    if (!r) continue;
    Bytes again = encode_request(*r);
    if (!std::equal(again.begin(), again.end(), raw.begin())) std::abort();
    const std::uint32_t err =
        validate_request(*r, *n.selected(), n.structured_replies(), n.base_allocation());
    if (err == 0 && r->type != kCmdDisc && r->type != kCmdFlush &&
        (r->offset > n.selected()->size || r->length > n.selected()->size - r->offset))
      std::abort();  // a validated request never reaches past the end
  }
  return 0;
}
