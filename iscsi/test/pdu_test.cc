// Unit tests of the iSCSI PDU codec and text key lists.
#include "ipsan/iscsi/wire/pdu.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "ipsan/base/crc32c.h"

namespace ipsan::iscsi {
namespace {

Pdu sample() {
  Pdu p;
  p.set_opcode(Opcode::kScsiCommand, true);
  p.bhs[1] = 0xA0;
  p.set_u32(16, 0x11223344);
  p.set_u32(20, 512);
  p.data = {1, 2, 3, 4, 5};  // padded to 8 on the wire
  return p;
}

TEST(Pdu, RoundTripWithPaddingAndBothDigests) {
  for (bool hd : {false, true}) {
    for (bool dd : {false, true}) {
      DigestConfig d{hd, dd};
      Bytes wire = encode_pdu(sample(), d);
      EXPECT_EQ(wire.size(), 48u + (hd ? 4 : 0) + 8 + (dd ? 4 : 0));
      EXPECT_EQ(wire[7], 5);  // DataSegmentLength without padding
      auto p = parse_pdu(wire, d, 8192);
      ASSERT_TRUE(p) << to_string(p.error());
      EXPECT_EQ(p->opcode(), Opcode::kScsiCommand);
      EXPECT_TRUE(p->immediate());
      EXPECT_EQ(p->itt(), 0x11223344u);
      EXPECT_EQ(p->data, (Bytes{1, 2, 3, 4, 5}));
    }
  }
}

TEST(Pdu, HeaderDigestIsLittleEndianCrc32cOfTheHeader) {
  Bytes wire = encode_pdu(sample(), {true, false});
  const std::uint32_t crc = crc32c(ByteSpan(wire.data(), 48));
  EXPECT_EQ(wire[48], crc & 0xFF);
  EXPECT_EQ(wire[51], crc >> 24);
}

TEST(Pdu, CorruptionIsDetected) {
  Bytes wire = encode_pdu(sample(), {true, true});
  Bytes bad_header = wire;
  bad_header[20] ^= 1;
  EXPECT_EQ(parse_pdu(bad_header, {true, true}, 8192).error(), PduError::kHeaderDigest);
  Bytes bad_data = wire;
  bad_data[53] ^= 1;
  EXPECT_EQ(parse_pdu(bad_data, {true, true}, 8192).error(), PduError::kDataDigest);
}

TEST(Pdu, HostileLengthsAreRefusedBeforeAllocation) {
  Bytes wire = encode_pdu(sample(), {});
  wire[5] = 0xFF;  // 16 MiB data segment
  EXPECT_EQ(parse_pdu(wire, {}, 8192).error(), PduError::kDataTooLong);
  Bytes shortw = encode_pdu(sample(), {});
  shortw.pop_back();
  EXPECT_EQ(parse_pdu(shortw, {}, 8192).error(), PduError::kTruncated);
  EXPECT_EQ(parse_pdu(Bytes(10, 0), {}, 8192).error(), PduError::kTruncated);
  Pdu ahs = sample();
  ahs.ahs = {0x00, 0x40, 0x01, 0x00};  // AHS claims 64 bytes, has 1
  EXPECT_EQ(parse_pdu(encode_pdu(ahs, {}), {}, 8192).error(), PduError::kBadAhs);
}

TEST(Text, ParsesAndEncodesPairs) {
  TextPairs in = {{"InitiatorName", "iqn.x"}, {"HeaderDigest", "None,CRC32C"}, {"Empty", ""}};
  auto out = parse_text(encode_text(in));
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, in);
  Bytes padded = encode_text(in);
  padded.push_back(0);
  padded.push_back(0);
  EXPECT_TRUE(parse_text(padded));
}

TEST(Text, RejectsMalformedPairs) {
  auto bytes = [](std::string s) { return Bytes(s.begin(), s.end()); };
  EXPECT_FALSE(parse_text(bytes(std::string("NoEquals\0", 9))));
  EXPECT_FALSE(parse_text(bytes(std::string("=v\0", 3))));
  EXPECT_FALSE(parse_text(bytes(std::string(64, 'k') + "=v")));
  EXPECT_FALSE(parse_text(bytes("k=" + std::string(8193, 'v'))));
  EXPECT_FALSE(parse_text(bytes(std::string("a=1\0\0b=2\0", 9))));
  EXPECT_FALSE(parse_text(bytes(std::string("a=\x01\0", 4))));
}

TEST(Text, LenientParsingKeepsTheGoodPairsOfCapturedBytes) {
  auto bytes = [](std::string s) { return Bytes(s.begin(), s.end()); };
  const TextPairs want = {{"HeaderDigest", "CRC32C"}, {"DataDigest", "None"}};
  auto nuls = [&](std::string s) {
    std::replace(s.begin(), s.end(), '|', '\0');
    return bytes(s);
  };
  EXPECT_EQ(parse_text_lenient(nuls("HeaderDigest=CRC32C|NoEquals|=v|a=\x01|DataDigest=None||")),
            want);
  // A captured list cannot make memory grow beyond kMaxLenientPairs pairs.
  std::string many;
  for (int i = 0; i < 3000; ++i) many += "k=v" + std::string(1, '\0');
  EXPECT_EQ(parse_text_lenient(bytes(many)).size(), kMaxLenientPairs);
  // Whatever the strict parser accepts, the lenient one gives the same.
  TextPairs in = {{"InitiatorName", "iqn.x"}, {"Empty", ""}};
  EXPECT_EQ(parse_text_lenient(encode_text(in)), in);
}

TEST(Stream, CutsPdusOneAfterAnotherAndReportsWhereTheStreamEnds) {
  const DigestConfig digests{true, true};
  Pdu a = sample();
  Pdu b = sample();
  b.data = {1, 2, 3, 4, 5};
  b.set_opcode(Opcode::kDataOut);
  Bytes stream = encode_pdu(a, digests);
  const Bytes second = encode_pdu(b, digests);
  stream.insert(stream.end(), second.begin(), second.end());
  std::size_t pos = 0;
  Pdu out;
  ASSERT_TRUE(cut_pdu(stream, pos, digests, 8192, out));
  EXPECT_EQ(out.itt(), a.itt());
  EXPECT_EQ(out.data, a.data);
  EXPECT_EQ(pos, stream.size() - second.size());
  ASSERT_TRUE(cut_pdu(stream, pos, digests, 8192, out));
  EXPECT_EQ(out.data, b.data);
  EXPECT_EQ(pos, stream.size());
  EXPECT_EQ(cut_pdu(stream, pos, digests, 8192, out).error(), PduError::kTruncated);
  // Cut short anywhere: kTruncated, and the position stays where the PDU begins.
  for (std::size_t n = 0; n < second.size(); ++n) {
    Bytes cut(stream.begin(), stream.end() - static_cast<std::ptrdiff_t>(second.size() - n));
    std::size_t p = stream.size() - second.size();
    EXPECT_EQ(cut_pdu(cut, p, digests, 8192, out).error(), PduError::kTruncated) << n;
    EXPECT_EQ(p, stream.size() - second.size());
  }
  // A bad data digest: the PDU is dropped but the framing holds (the position moves on).
  Bytes bad = stream;
  bad.back() ^= 0x80;
  pos = stream.size() - second.size();
  EXPECT_EQ(cut_pdu(bad, pos, digests, 8192, out).error(), PduError::kDataDigest);
  EXPECT_EQ(pos, stream.size());
  // A bad header digest: the stream cannot be trusted, the position stays.
  Bytes bad_header = stream;
  bad_header[stream.size() - second.size() + 20] ^= 1;
  pos = stream.size() - second.size();
  EXPECT_EQ(cut_pdu(bad_header, pos, digests, 8192, out).error(), PduError::kHeaderDigest);
  EXPECT_EQ(pos, stream.size() - second.size());
  pos = stream.size() + 5;  // a position past the end is no crash
  EXPECT_EQ(cut_pdu(stream, pos, digests, 8192, out).error(), PduError::kTruncated);
}

TEST(Wire, OpcodesAndLunField) {
  EXPECT_TRUE(known_opcode(0x43));  // immediate Login Request
  EXPECT_TRUE(known_opcode(0x3F));
  EXPECT_FALSE(known_opcode(0x07));
  EXPECT_STREQ(opcode_name(0x21), "SCSI Response");
  EXPECT_EQ(decode_lun(0), 0u);
  EXPECT_EQ(decode_lun(0x0005000000000000ull), 5u);   // peripheral, bus 0
  EXPECT_EQ(decode_lun(0x4105000000000000ull), 261u);  // flat
  EXPECT_FALSE(decode_lun(0x0105000000000000ull));     // peripheral with a bus number
  EXPECT_FALSE(decode_lun(0x8000000000000000ull));     // logical unit addressing
  EXPECT_FALSE(decode_lun(0x0001000100000000ull));     // second level
}

}  // namespace
}  // namespace ipsan::iscsi
