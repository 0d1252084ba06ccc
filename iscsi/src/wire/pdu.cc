// iSCSI wire codec: PDUs, digests, text key lists, LUN field (see ipsan/iscsi/wire/pdu.h).
#include "ipsan/iscsi/wire/pdu.h"

#include <cstring>
#include <string_view>

#include "ipsan/base/crc32c.h"

namespace ipsan::iscsi {
namespace {

tl::unexpected<PduError> perr(PduError e) { return tl::unexpected<PduError>(e); }

std::size_t pad4(std::size_t n) { return (n + 3) & ~std::size_t{3}; }

std::uint32_t load_le32(const std::uint8_t* p) {
  return std::uint32_t{p[0]} | (std::uint32_t{p[1]} << 8) | (std::uint32_t{p[2]} << 16) |
         (std::uint32_t{p[3]} << 24);
}

void append_le32(Bytes& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

}  // namespace

const char* to_string(PduError e) {
  switch (e) {
    case PduError::kTruncated: return "truncated PDU";
    case PduError::kDataTooLong: return "data segment longer than MaxRecvDataSegmentLength";
    case PduError::kHeaderDigest: return "header digest mismatch";
    case PduError::kDataDigest: return "data digest mismatch";
    case PduError::kBadAhs: return "malformed AHS";
  }
  return "?";
}

Result<PduExtent, PduError> pdu_extent(const std::uint8_t* bhs, const DigestConfig& digests,
                                       std::size_t max_data) {
  PduExtent e;
  e.ahs = std::size_t{bhs[4]} * 4;
  e.data = (std::size_t{bhs[5]} << 16) | (std::size_t{bhs[6]} << 8) | bhs[7];
  if (e.data > max_data) return perr(PduError::kDataTooLong);
  e.rest = e.ahs + (digests.header ? 4 : 0) + pad4(e.data) +
           (digests.data && e.data > 0 ? 4 : 0);
  return e;
}

Result<void, PduError> parse_pdu(const std::uint8_t* bhs, ByteSpan rest,
                                 const DigestConfig& digests, std::size_t max_data, Pdu& out) {
  auto ext = pdu_extent(bhs, digests, max_data);
  if (!ext) return perr(ext.error());
  if (rest.size() < ext->rest) return perr(PduError::kTruncated);
  std::memcpy(out.bhs.data(), bhs, kBhsSize);
  const std::uint8_t* p = rest.data();
  out.ahs.assign(p, p + ext->ahs);
  // Each AHS: 2-byte length (of its specific part), type, then the part, padded to 4.
  for (std::size_t at = 0; at < out.ahs.size();) {
    if (out.ahs.size() - at < 4) return perr(PduError::kBadAhs);
    const std::size_t len = load_be16(&out.ahs[at]);
    const std::size_t total = pad4(3 + len);
    if (total > out.ahs.size() - at) return perr(PduError::kBadAhs);
    at += total;
  }
  p += ext->ahs;
  if (digests.header) {
    std::uint32_t crc = crc32c_extend(0, bhs, kBhsSize);
    crc = crc32c_extend(crc, out.ahs.data(), out.ahs.size());
    if (crc != load_le32(p)) return perr(PduError::kHeaderDigest);
    p += 4;
  }
  out.data.assign(p, p + ext->data);
  if (digests.data && ext->data > 0) {
    const std::uint32_t crc = crc32c_extend(0, p, pad4(ext->data));
    if (crc != load_le32(p + pad4(ext->data))) return perr(PduError::kDataDigest);
  }
  return {};
}

Result<Pdu, PduError> parse_pdu(ByteSpan wire, const DigestConfig& digests, std::size_t max_data) {
  if (wire.size() < kBhsSize) return perr(PduError::kTruncated);
  Pdu pdu;
  auto ext = pdu_extent(wire.data(), digests, max_data);
  if (!ext) return perr(ext.error());
  if (wire.size() != kBhsSize + ext->rest) return perr(PduError::kTruncated);
  auto r = parse_pdu(wire.data(), wire.subspan(kBhsSize), digests, max_data, pdu);
  if (!r) return perr(r.error());
  return pdu;
}

Result<void, PduError> cut_pdu(ByteSpan stream, std::size_t& pos, const DigestConfig& digests,
                               std::size_t max_data, Pdu& out) {
  if (pos > stream.size() || stream.size() - pos < kBhsSize) return perr(PduError::kTruncated);
  const std::uint8_t* bhs = stream.data() + pos;
  auto ext = pdu_extent(bhs, digests, max_data);
  if (!ext) return perr(ext.error());
  const ByteSpan rest = stream.subspan(pos + kBhsSize);
  if (rest.size() < ext->rest) return perr(PduError::kTruncated);
  auto r = parse_pdu(bhs, rest, digests, max_data, out);
  if (r || r.error() == PduError::kDataDigest) pos += kBhsSize + ext->rest;
  return r;
}

Bytes encode_pdu(const Pdu& pdu, const DigestConfig& digests) {
  Bytes out;
  const std::size_t ahs = pad4(pdu.ahs.size());
  out.reserve(kBhsSize + ahs + 8 + pad4(pdu.data.size()));
  out.insert(out.end(), pdu.bhs.begin(), pdu.bhs.end());
  out[4] = static_cast<std::uint8_t>(ahs / 4);
  out[5] = static_cast<std::uint8_t>(pdu.data.size() >> 16);
  out[6] = static_cast<std::uint8_t>(pdu.data.size() >> 8);
  out[7] = static_cast<std::uint8_t>(pdu.data.size());
  out.insert(out.end(), pdu.ahs.begin(), pdu.ahs.end());
  out.resize(kBhsSize + ahs, 0);
  if (digests.header) append_le32(out, crc32c_extend(0, out.data(), out.size()));
  if (!pdu.data.empty()) {
    const std::size_t at = out.size();
    out.insert(out.end(), pdu.data.begin(), pdu.data.end());
    out.resize(at + pad4(pdu.data.size()), 0);
    if (digests.data) append_le32(out, crc32c_extend(0, out.data() + at, out.size() - at));
  }
  return out;
}

namespace {

// One "key=value" pair (without its NUL) checked against RFC 7143 6.1's rules; nullptr when it
// passes, else why not.
const char* pair_problem(std::string_view pair) {
  for (char ch : pair) {
    if (static_cast<unsigned char>(ch) < 0x20 || static_cast<unsigned char>(ch) > 0x7E) {
      return "non-printable byte in text data";
    }
  }
  const auto eq = pair.find('=');
  if (eq == std::string_view::npos) return "text pair without '='";
  if (eq == 0 || eq > 63) return "text key empty or longer than 63 bytes";
  if (pair.size() - eq - 1 > 8192) return "text value longer than 8192 bytes";
  return nullptr;
}

// Calls `each(pair)` for every NUL-terminated pair; stops when it returns false. Returns false
// when an empty pair stands before the end (only padding NULs may close the list).
template <class Each>
bool split_text(ByteSpan data, Each&& each) {
  std::size_t at = 0;
  while (at < data.size()) {
    std::size_t end = at;
    while (end < data.size() && data[end] != 0) ++end;
    if (end == at) {  // padding NULs or an empty pair: only allowed at the end
      while (at < data.size() && data[at] == 0) ++at;
      return at == data.size();
    }
    if (!each(std::string_view(reinterpret_cast<const char*>(data.data() + at), end - at))) {
      return true;
    }
    at = end + 1;
  }
  return true;
}

std::pair<std::string, std::string> split_pair(std::string_view pair) {
  const auto eq = pair.find('=');
  return {std::string(pair.substr(0, eq)), std::string(pair.substr(eq + 1))};
}

}  // namespace

Result<TextPairs, Error> parse_text(ByteSpan data) {
  TextPairs out;
  std::string problem;
  const bool tail_ok = split_text(data, [&](std::string_view pair) {
    if (const char* p = pair_problem(pair)) {
      problem = p;
      if (pair.find('=') == std::string_view::npos) {
        problem += ": " + std::string(pair.substr(0, 64));
      }
      return false;
    }
    out.push_back(split_pair(pair));
    return true;
  });
  if (!problem.empty()) return fail(problem);
  if (!tail_ok) return fail("empty key=value pair in text data");
  return out;
}

TextPairs parse_text_lenient(ByteSpan data) {
  TextPairs out;
  (void)split_text(data, [&](std::string_view pair) {
    if (pair_problem(pair) == nullptr) out.push_back(split_pair(pair));
    return out.size() < kMaxLenientPairs;
  });
  return out;
}

Bytes encode_text(const TextPairs& pairs) {
  Bytes out;
  for (const auto& [k, v] : pairs) {
    out.insert(out.end(), k.begin(), k.end());
    out.push_back('=');
    out.insert(out.end(), v.begin(), v.end());
    out.push_back(0);
  }
  return out;
}

const char* opcode_name(std::uint8_t opcode) {
  switch (opcode & 0x3F) {
    case 0x00: return "NOP-Out";
    case 0x01: return "SCSI Command";
    case 0x02: return "Task Management Request";
    case 0x03: return "Login Request";
    case 0x04: return "Text Request";
    case 0x05: return "SCSI Data-Out";
    case 0x06: return "Logout Request";
    case 0x10: return "SNACK Request";
    case 0x20: return "NOP-In";
    case 0x21: return "SCSI Response";
    case 0x22: return "Task Management Response";
    case 0x23: return "Login Response";
    case 0x24: return "Text Response";
    case 0x25: return "SCSI Data-In";
    case 0x26: return "Logout Response";
    case 0x31: return "R2T";
    case 0x32: return "Asynchronous Message";
    case 0x3F: return "Reject";
    default: return "unknown opcode";
  }
}

bool known_opcode(std::uint8_t opcode) {
  return std::string_view(opcode_name(opcode & 0x3F)) != "unknown opcode";
}

std::optional<std::uint32_t> decode_lun(std::uint64_t field) {
  if ((field & 0x0000FFFFFFFFFFFFull) != 0) return std::nullopt;  // multi-level LUNs
  const std::uint8_t b0 = static_cast<std::uint8_t>(field >> 56);
  const std::uint8_t b1 = static_cast<std::uint8_t>(field >> 48);
  switch (b0 >> 6) {
    case 0:
      if (b0 != 0) return std::nullopt;  // bus identifier
      return b1;
    case 1: return (std::uint32_t{b0 & 0x3Fu} << 8) | b1;
    default: return std::nullopt;
  }
}

}  // namespace ipsan::iscsi
