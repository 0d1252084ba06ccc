// Unit tests of the iSCSI PDU codec and text key lists.
#include "ipsan/iscsi/pdu.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace ipsan::iscsi
