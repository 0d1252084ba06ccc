// wire_test.cc: the NBD codec and option negotiation, without sockets.
#include <gtest/gtest.h>

#include "ipsan/nbd/wire.h"

namespace ipsan::nbd {
namespace {

NegotiatorConfig config(TlsMode tls = TlsMode::kOff) {
  NegotiatorConfig c;
  ExportInfo a;
  a.name = "a";
  a.description = "first";
  a.size = 1 << 20;
  a.flags = kTxHasFlags | kTxSendFlush;
  ExportInfo b = a;
  b.name = "b";
  b.flags |= kTxReadOnly;
  c.exports = {a, b};
  c.tls = tls;
  return c;
}

// Splits concatenated option replies into (type, data) pairs.
std::vector<std::pair<std::uint32_t, Bytes>> replies(const Bytes& b) {
  std::vector<std::pair<std::uint32_t, Bytes>> out;
  std::size_t p = 0;
  while (p + 20 <= b.size()) {
    EXPECT_EQ(load_be64(b.data() + p), kRepMagic);
    const std::uint32_t type = load_be32(b.data() + p + 12);
    const std::uint32_t len = load_be32(b.data() + p + 16);
    out.emplace_back(type, Bytes(b.begin() + p + 20, b.begin() + p + 20 + len));
    p += 20 + len;
  }
  EXPECT_EQ(p, b.size());
  return out;
}

TEST(NbdWire, GreetingAndHeaders) {
  Bytes g = encode_greeting(kFlagFixedNewstyle | kFlagNoZeroes);
  ASSERT_EQ(g.size(), kGreetingSize);
  EXPECT_EQ(load_be64(g.data()), kNbdMagic);
  EXPECT_EQ(load_be16(g.data() + 16), 3);
  Bytes h(16);
  store_be64(h.data(), kOptMagic);
  store_be32(h.data() + 8, kOptGo);
  store_be32(h.data() + 12, 7);
  auto oh = decode_option_header(h);
  ASSERT_TRUE(oh);
  EXPECT_EQ(oh->option, kOptGo);
  EXPECT_EQ(oh->length, 7u);
  h[0] ^= 1;
  EXPECT_FALSE(decode_option_header(h));
  EXPECT_FALSE(decode_option_header(ByteSpan(h.data(), 15)));
}

TEST(NbdWire, RequestRoundTrip) {
  Request r{kCmdFlagFua, kCmdWrite, 0x1122334455667788ull, 4096, 512};
  Bytes b = encode_request(r);
  ASSERT_EQ(b.size(), kRequestSize);
  auto d = decode_request(b);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->flags, r.flags);
  EXPECT_EQ(d->type, r.type);
  EXPECT_EQ(d->cookie, r.cookie);
  EXPECT_EQ(d->offset, r.offset);
  EXPECT_EQ(d->length, r.length);
  b[3] ^= 0xff;
  EXPECT_FALSE(decode_request(b));
}

TEST(NbdWire, InfoAndMetaRequestsRejectTruncation) {
  InfoRequest q{"disk", {kInfoBlockSize, kInfoName}};
  Bytes b = encode_info_request(q);
  auto d = decode_info_request(b);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->name, "disk");
  EXPECT_EQ(d->infos.size(), 2u);
  for (std::size_t n = 0; n < b.size(); ++n) EXPECT_FALSE(decode_info_request(ByteSpan(b.data(), n)));
  b.push_back(0);
  EXPECT_FALSE(decode_info_request(b));
  MetaContextRequest m{"disk", {"base:allocation", "x-foo:bar"}};
  Bytes mb = encode_meta_context_request(m);
  auto md = decode_meta_context_request(mb);
  ASSERT_TRUE(md);
  EXPECT_EQ(md->queries, m.queries);
  for (std::size_t n = 0; n < mb.size(); ++n)
    EXPECT_FALSE(decode_meta_context_request(ByteSpan(mb.data(), n)));
  Bytes huge(8);
  store_be32(huge.data() + 4, 0xFFFFFFFFu);  // name "", 4 billion queries in 0 bytes
  EXPECT_FALSE(decode_meta_context_request(huge));
}

TEST(NbdNegotiator, ListInfoGo) {
  auto c = config();
  Negotiator n(c);
  EXPECT_FALSE(n.on_client_flags(0x80));
  ASSERT_TRUE(n.on_client_flags(kClientFixedNewstyle | kClientNoZeroes));
  auto list = n.on_option(kOptList, {});
  auto r = replies(list.reply);
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].first, kRepServer);
  EXPECT_EQ(r[2].first, kRepAck);
  EXPECT_EQ(replies(n.on_option(kOptList, Bytes{1}).reply)[0].first, kRepErrInvalid);

  auto unknown = n.on_option(kOptGo, encode_info_request({"nope", {}}));
  EXPECT_EQ(replies(unknown.reply)[0].first, kRepErrUnknown);
  EXPECT_EQ(unknown.action, NegotiationAction::kContinue);
  auto bad = n.on_option(kOptInfo, Bytes{0, 0});
  EXPECT_EQ(replies(bad.reply)[0].first, kRepErrInvalid);

  auto info = n.on_option(kOptInfo, encode_info_request({"b", {kInfoName, kInfoDescription}}));
  auto ir = replies(info.reply);
  ASSERT_EQ(ir.size(), 5u);  // export, block size, name, description, ack
  EXPECT_EQ(load_be16(ir[0].second.data()), kInfoExport);
  EXPECT_EQ(load_be64(ir[0].second.data() + 2), 1u << 20);
  EXPECT_TRUE(load_be16(ir[0].second.data() + 10) & kTxReadOnly);
  EXPECT_EQ(load_be16(ir[1].second.data()), kInfoBlockSize);
  EXPECT_EQ(info.action, NegotiationAction::kContinue);

  EXPECT_EQ(replies(n.on_option(kOptStructuredReply, {}).reply)[0].first, kRepAck);
  auto go = n.on_option(kOptGo, encode_info_request({"", {}}));
  EXPECT_EQ(go.action, NegotiationAction::kTransmission);
  ASSERT_NE(n.selected(), nullptr);
  EXPECT_EQ(n.selected()->name, "a");  // "" is the default export
  EXPECT_TRUE(n.transmission_flags(*n.selected()) & kTxSendDf);
}

TEST(NbdNegotiator, MetaContexts) {
  auto c = config();
  Negotiator n(c);
  ASSERT_TRUE(n.on_client_flags(kClientFixedNewstyle));
  auto early = n.on_option(kOptSetMetaContext, encode_meta_context_request({"a", {"base:allocation"}}));
  EXPECT_EQ(replies(early.reply)[0].first, kRepErrInvalid);  // needs structured replies
  n.on_option(kOptStructuredReply, {});
  auto list = replies(n.on_option(kOptListMetaContext, encode_meta_context_request({"a", {}})).reply);
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].first, kRepMetaContext);
  auto none = replies(n.on_option(kOptSetMetaContext,
                                  encode_meta_context_request({"a", {"qemu:dirty-bitmap:x"}}))
                          .reply);
  ASSERT_EQ(none.size(), 1u);
  EXPECT_EQ(none[0].first, kRepAck);
  auto set = replies(
      n.on_option(kOptSetMetaContext, encode_meta_context_request({"a", {"base:allocation"}})).reply);
  ASSERT_EQ(set.size(), 2u);
  EXPECT_EQ(load_be32(set[0].second.data()), kBaseAllocationId);
  // GO to another export: the context does not apply there.
  n.on_option(kOptGo, encode_info_request({"b", {}}));
  EXPECT_FALSE(n.base_allocation());
  Negotiator m(c);
  m.on_client_flags(1);
  m.on_option(kOptStructuredReply, {});
  m.on_option(kOptSetMetaContext, encode_meta_context_request({"a", {"base:allocation"}}));
  m.on_option(kOptGo, encode_info_request({"a", {}}));
  EXPECT_TRUE(m.base_allocation());
}

TEST(NbdNegotiator, TlsRequireAndAbort) {
  auto c = config(TlsMode::kRequire);
  Negotiator n(c);
  n.on_client_flags(1);
  EXPECT_EQ(replies(n.on_option(kOptList, {}).reply)[0].first, kRepErrTlsReqd);
  EXPECT_EQ(replies(n.on_option(kOptGo, encode_info_request({"a", {}})).reply)[0].first,
            kRepErrTlsReqd);
  EXPECT_EQ(n.on_option(kOptExportName, Bytes{'a'}).action, NegotiationAction::kClose);
  auto st = n.on_option(kOptStartTls, {});
  EXPECT_EQ(st.action, NegotiationAction::kStartTls);
  n.tls_started();
  EXPECT_EQ(replies(n.on_option(kOptStartTls, {}).reply)[0].first, kRepErrInvalid);
  EXPECT_EQ(replies(n.on_option(kOptList, {}).reply).back().first, kRepAck);
  EXPECT_EQ(n.on_option(kOptAbort, {}).action, NegotiationAction::kClose);
  auto off = config();
  Negotiator o(off);
  o.on_client_flags(1);
  EXPECT_EQ(replies(o.on_option(kOptStartTls, {}).reply)[0].first, kRepErrPolicy);
  EXPECT_EQ(replies(o.on_option(12345, {}).reply)[0].first, kRepErrUnsup);
}

TEST(NbdNegotiator, ExportNameOldStyleReply) {
  auto c = config();
  Negotiator n(c);
  n.on_client_flags(kClientFixedNewstyle);  // no NO_ZEROES: 124 zero bytes follow
  auto s = n.on_option(kOptExportName, Bytes{'b'});
  EXPECT_EQ(s.action, NegotiationAction::kTransmission);
  EXPECT_EQ(s.reply.size(), 8u + 2 + 124);
  EXPECT_EQ(n.on_option(kOptExportName, Bytes{'z'}).action, NegotiationAction::kClose);
}

TEST(NbdValidate, Errors) {
  ExportInfo e;
  e.size = 1 << 20;
  e.min_block = 512;
  e.max_block = 1 << 16;
  e.flags = kTxHasFlags;
  auto v = [&](std::uint16_t type, std::uint64_t off, std::uint32_t len, std::uint16_t flags = 0,
               bool st = true, bool ba = true) {
    return validate_request(Request{flags, type, 1, off, len}, e, st, ba);
  };
  EXPECT_EQ(v(kCmdRead, 0, 512), 0u);
  EXPECT_EQ(v(kCmdRead, 1, 3), 0u);  // reads need no alignment
  EXPECT_EQ(v(kCmdRead, (1 << 20) - 512, 1024), kEINVAL);
  EXPECT_EQ(v(kCmdRead, ~0ull, 512), kEINVAL);
  EXPECT_EQ(v(kCmdRead, 0, (1 << 16) + 512), kEOVERFLOW);
  EXPECT_EQ(v(kCmdWrite, (1 << 20), 512), kENOSPC);
  EXPECT_EQ(v(kCmdWrite, 1, 512), kEINVAL);
  EXPECT_EQ(v(kCmdWrite, 0, 512, kCmdFlagNoHole), kEINVAL);
  EXPECT_EQ(v(kCmdWriteZeroes, 0, 1 << 19, kCmdFlagNoHole | kCmdFlagFastZero), 0u);
  EXPECT_EQ(v(kCmdBlockStatus, 0, 512, 0, true, false), kEINVAL);
  EXPECT_EQ(v(kCmdBlockStatus, 0, 512, kCmdFlagReqOne), 0u);
  EXPECT_EQ(v(kCmdRead, 0, 512, kCmdFlagDf, false), kEINVAL);
  EXPECT_EQ(v(kCmdFlush, 0, 0), 0u);
  EXPECT_EQ(v(kCmdFlush, 0, 1), kEINVAL);
  EXPECT_EQ(v(kCmdTrim, 0, 0), kEINVAL);
  EXPECT_EQ(v(99, 0, 0), kEINVAL);
  e.flags |= kTxReadOnly;
  EXPECT_EQ(v(kCmdWrite, 0, 512), kEPERM);
  EXPECT_EQ(v(kCmdTrim, 0, 512), kEPERM);
  EXPECT_EQ(v(kCmdWriteZeroes, 0, 512), kEPERM);
  EXPECT_EQ(v(kCmdRead, 0, 512), 0u);
}

}  // namespace
}  // namespace ipsan::nbd
