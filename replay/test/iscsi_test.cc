// Tests of the iSCSI import: the committed tgt capture, the same traffic re-segmented (PDUs
// straddling segments, several PDUs per segment, duplicates, reordering), missing segments,
// negotiated header/data digests, R2T + Data-Out, sense data, and hostile streams.
#include <gtest/gtest.h>

#include <fstream>
#include <random>

#include "ipsan/base/crc32c.h"
#include "ipsan/client/trace/trace.h"
#include "ipsan/replay/capture.h"
#include "ipsan/replay/iscsi.h"
#include "ipsan/replay/tcp_stream.h"
#include "pcap_builder.h"

namespace ipsan::replay::iscsi {
namespace {

const std::string kSample = std::string(IPSAN_PCAP_DIR) + "/tgt_small.pcap";

std::string summary(const ImportedCommand& c) {
  return to_hex(c.cdb) + " lun=" + std::to_string(c.lun) + " st=" + std::to_string(c.status) +
         " in=" + to_hex(c.data_in) + " out=" + to_hex(c.data_out) + " sense=" + to_hex(c.sense) +
         " resid=" + std::to_string(c.resid) + " skip=" + c.skip;
}

std::vector<std::string> summaries(const IscsiCapture& cap) {
  std::vector<std::string> out;
  for (const auto& c : cap.commands) out.push_back(summary(c));
  return out;
}

TEST(IscsiImport, CommittedTgtCapture) {
  auto cap = read_capture(kSample);
  ASSERT_TRUE(cap) << cap.error().message;
  const IscsiCapture imp = import_iscsi(*cap, ImportOptions{});
  EXPECT_EQ(imp.connections, 5u);
  ASSERT_EQ(imp.commands.size(), 19u) << imp.skipped.to_string();
  for (const auto& c : imp.commands) EXPECT_EQ(c.skip, "") << summary(c);
  // The first command of a new I_T nexus sees tgt's unit attention POWER ON/RESET.
  EXPECT_EQ(imp.commands[0].cdb, Bytes(6, 0));
  EXPECT_EQ(imp.commands[0].status, 2);
  EXPECT_EQ(to_hex(imp.commands[0].sense).substr(0, 4), "7000");
  // The trace form parses back to the same commands.
  const auto trace = to_trace(imp, "sample", false);
  auto back = client::trace::parse_trace(client::trace::format_trace(trace), "sample");
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->commands.size(), 19u);
  // With an explicit port only that port is looked at.
  ImportOptions wrong;
  wrong.port = 1;
  EXPECT_EQ(import_iscsi(*cap, wrong).commands.size(), 0u);
}

// tgt configured with HeaderDigest=CRC32C (tgtadm -n HeaderDigest -v CRC32C) and libiscsi asking
// for it (URL ?header_digest=crc32c): real digests, checked on every PDU.
TEST(IscsiImport, CommittedCaptureWithRealHeaderDigests) {
  auto cap = read_capture(std::string(IPSAN_PCAP_DIR) + "/tgt_header_digest.pcap");
  ASSERT_TRUE(cap) << cap.error().message;
  const IscsiCapture imp = import_iscsi(*cap, ImportOptions{});
  EXPECT_EQ(imp.connections, 2u);
  EXPECT_EQ(imp.commands.size(), 7u);
  EXPECT_EQ(imp.skipped.total(), 0u) << imp.skipped.to_string();
  for (const auto& c : imp.commands) EXPECT_EQ(c.skip, "");
}

// Rebuilds a capture from reassembled streams with new segment boundaries.
CaptureFile resegment(const CaptureFile& in, std::mt19937& rng, bool duplicate, bool swap) {
  CaptureFile out;
  auto conns = reassemble_tcp(in.packets, [](const Packet&) { return true; });
  std::size_t number = 0;
  for (const auto& c : conns) {
    for (const TcpDirection* d : {&c.client, &c.server}) {
      Packet syn;
      syn.protocol = kProtoTcp;
      syn.src = d->from;
      syn.dst = d->to;
      syn.seq = 1000;
      syn.flags = kTcpSyn | (d == &c.server ? kTcpAck : 0);
      syn.timestamp = d->time_at(0);
      syn.number = ++number;
      out.packets.push_back(syn);
      std::vector<Packet> segs;
      for (std::size_t off = 0; off < d->data.size();) {
        const std::size_t n = std::min<std::size_t>(1 + rng() % 97, d->data.size() - off);
        Packet p = syn;
        p.flags = kTcpAck;
        p.seq = static_cast<std::uint32_t>(1001 + off);
        p.payload.assign(d->data.begin() + static_cast<std::ptrdiff_t>(off),
                         d->data.begin() + static_cast<std::ptrdiff_t>(off + n));
        p.payload_len = static_cast<std::uint32_t>(n);
        p.timestamp = d->time_at(off);
        segs.push_back(p);
        if (duplicate && rng() % 5 == 0) segs.push_back(p);
        off += n;
      }
      if (swap) {
        for (std::size_t i = 1; i + 1 < segs.size(); i += 3) std::swap(segs[i], segs[i + 1]);
      }
      for (auto& p : segs) {
        p.number = ++number;
        out.packets.push_back(std::move(p));
      }
    }
  }
  return out;
}

TEST(IscsiImport, ResegmentedDuplicatedReorderedStreamsGiveTheSameCommands) {
  auto cap = read_capture(kSample);
  ASSERT_TRUE(cap);
  const auto want = summaries(import_iscsi(*cap, ImportOptions{}));
  std::mt19937 rng(11);
  for (int round = 0; round < 4; ++round) {
    const CaptureFile re = resegment(*cap, rng, round & 1, round & 2);
    const IscsiCapture imp = import_iscsi(re, ImportOptions{});
    EXPECT_EQ(summaries(imp), want) << "round " << round;
    // Duplicated segments are counted with their reason.
    const auto it = imp.skipped.reasons.find("retransmitted TCP segment (duplicate data ignored)");
    EXPECT_EQ(it != imp.skipped.reasons.end(), (round & 1) != 0) << imp.skipped.to_string();
  }
}

TEST(IscsiImport, MissingSegmentsAndTruncationAreSkippedWithAReason) {
  auto cap = read_capture(kSample);
  ASSERT_TRUE(cap);
  const auto want = summaries(import_iscsi(*cap, ImportOptions{}));
  for (std::size_t drop = 0; drop < cap->packets.size(); ++drop) {
    CaptureFile c = *cap;
    if (c.packets[drop].payload.empty()) continue;
    c.packets.erase(c.packets.begin() + static_cast<std::ptrdiff_t>(drop));
    const IscsiCapture imp = import_iscsi(c, ImportOptions{});
    EXPECT_LE(imp.commands.size(), want.size());
    // Either the loss is reported, or nothing that matters was lost: never silently wrong.
    std::size_t unusable = imp.skipped.total();
    for (const auto& cmd : imp.commands) unusable += cmd.skip.empty() ? 0 : 1;
    if (unusable == 0) {
      EXPECT_EQ(summaries(imp), want) << "dropped packet " << drop;
    }
  }
  // The capture file cut anywhere: never a crash.
  std::ifstream f(kSample, std::ios::binary);
  const Bytes file((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  for (std::size_t n = 0; n < file.size(); n += 37) {
    auto c = read_capture_bytes(ByteSpan(file).first(n));
    if (!c) continue;
    (void)import_iscsi(*c, ImportOptions{});
  }
}

// ---- synthetic PDUs ----

struct PduSpec {
  std::uint8_t opcode = 0;
  std::uint8_t flags = 0;
  std::uint32_t itt = 0;
  Bytes data;
  std::array<std::uint8_t, 48> bhs{};  // other fields, opcode/flags/lengths/ITT overwritten
};

using wire::Opcode;
using Digests = wire::DigestConfig;

// Built by the wire codec the portal sends with.
void append_pdu(Bytes& stream, PduSpec s, const Digests& d) {
  wire::Pdu p;
  p.bhs = s.bhs;
  p.bhs[0] = s.opcode;
  p.bhs[1] = s.flags;
  store_be32(&p.bhs[16], s.itt);
  p.data = s.data;
  const Bytes wire_bytes = wire::encode_pdu(p, d);
  stream.insert(stream.end(), wire_bytes.begin(), wire_bytes.end());
}

constexpr std::uint8_t op(Opcode o) { return static_cast<std::uint8_t>(o); }

Bytes keys(const std::string& text) {
  Bytes b(text.begin(), text.end());
  for (auto& c : b) {
    if (c == '|') c = 0;
  }
  return b;
}

void login(Bytes& ini, Bytes& tgt, const std::string& kv) {
  PduSpec req;
  req.opcode = 0x43;
  req.flags = 0x87;  // T, CSG=1, NSG=3
  req.data = keys(kv);
  append_pdu(ini, req, {});
  PduSpec rsp;
  rsp.opcode = op(Opcode::kLoginResponse);
  rsp.flags = 0x87;
  rsp.data = keys(kv);
  append_pdu(tgt, rsp, {});
}

TEST(IscsiImport, DigestsR2tDataOutAndSense) {
  for (bool digests : {false, true}) {
    const Digests d{digests, digests};
    Bytes ini, tgt;
    login(
        ini, tgt,
        digests ? "HeaderDigest=CRC32C|DataDigest=CRC32C|" : "HeaderDigest=None|DataDigest=None|");
    // READ CAPACITY(10) on LUN 1, answered by Data-In with status.
    PduSpec rc;
    rc.opcode = op(Opcode::kScsiCommand);
    rc.flags = 0xC0;  // F, R
    rc.itt = 0x11;
    rc.bhs[9] = 1;
    store_be32(&rc.bhs[20], 8);
    rc.bhs[32] = 0x25;
    append_pdu(ini, rc, d);
    // WRITE(10) of 1 block on LUN 1 via R2T + Data-Out, answered with CHECK CONDITION + sense.
    PduSpec wr;
    wr.opcode = op(Opcode::kScsiCommand);
    wr.flags = 0xA0;  // F, W
    wr.itt = 0x12;
    wr.bhs[9] = 1;
    store_be32(&wr.bhs[20], 512);
    wr.bhs[32] = 0x2A;
    wr.bhs[40] = 1;  // transfer length 1 (CDB byte 8)
    append_pdu(ini, wr, d);
    PduSpec out;
    out.opcode = op(Opcode::kDataOut);
    out.flags = 0x80;
    out.itt = 0x12;
    out.data = Bytes(512, 0xAB);
    append_pdu(ini, out, d);

    PduSpec r2t;
    r2t.opcode = op(Opcode::kR2t);
    r2t.flags = 0x80;
    r2t.itt = 0x12;
    append_pdu(tgt, r2t, d);
    PduSpec din;
    din.opcode = op(Opcode::kDataIn);
    din.flags = 0x81;  // F, S
    din.itt = 0x11;
    din.data = {0, 0, 0x0f, 0xff, 0, 0, 2, 0};
    append_pdu(tgt, din, d);
    PduSpec resp;
    resp.opcode = op(Opcode::kScsiResponse);
    resp.flags = 0x80;
    resp.itt = 0x12;
    resp.bhs[3] = 2;  // CHECK CONDITION
    resp.data = {0, 18, 0x70, 0, 0x07, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x27, 0, 0, 0, 0, 0};
    append_pdu(tgt, resp, d);

    const IscsiCapture imp = import_iscsi_streams(ini, tgt);
    ASSERT_EQ(imp.commands.size(), 2u) << imp.skipped.to_string();
    EXPECT_EQ(imp.skipped.total(), 0u) << imp.skipped.to_string();
    const auto& a = imp.commands[0];
    EXPECT_EQ(a.lun, 1u);
    EXPECT_EQ(a.cdb.size(), 10u);
    EXPECT_EQ(a.data_in, Bytes({0, 0, 0x0f, 0xff, 0, 0, 2, 0}));
    const auto& b = imp.commands[1];
    EXPECT_EQ(b.data_out, Bytes(512, 0xAB));
    EXPECT_EQ(b.status, 2);
    const auto line = to_trace_command(b, false);
    ASSERT_TRUE(line.expect.sense);
    EXPECT_EQ((*line.expect.sense)[0], 7);
    EXPECT_EQ((*line.expect.sense)[1], 0x27);

    // A corrupted header digest ends the stream with a reason.
    if (digests) {
      Bytes bad = ini;
      bad[48 + 4 + keys("HeaderDigest=CRC32C|DataDigest=CRC32C|").size() + 20] ^= 1;
      const IscsiCapture broken = import_iscsi_streams(bad, tgt);
      EXPECT_GT(broken.skipped.total(), 0u);
      // A corrupted data digest (the Data-Out's, the initiator stream's last bytes) drops that
      // PDU only, with a counted reason; the stream goes on.
      Bytes bad_data = ini;
      bad_data.back() ^= 1;
      const IscsiCapture dropped = import_iscsi_streams(bad_data, tgt);
      EXPECT_EQ(dropped.skipped.reasons.count("PDU with a data digest mismatch (dropped)"), 1u)
          << dropped.skipped.to_string();
      ASSERT_EQ(dropped.commands.size(), 2u);
      EXPECT_TRUE(dropped.commands[1].data_out.empty());
    }
  }
}

TEST(IscsiImport, HostileStreamsNeverCrash) {
  std::mt19937 rng(5);
  Bytes ini0, tgt0;
  login(ini0, tgt0, "HeaderDigest=None|");
  for (int round = 0; round < 2000; ++round) {
    Bytes ini = ini0, tgt = tgt0;
    const std::size_t n = rng() % 400;
    for (std::size_t i = 0; i < n; ++i) {
      ini.push_back(static_cast<std::uint8_t>(rng()));
      tgt.push_back(static_cast<std::uint8_t>(rng()));
    }
    // Sometimes well-formed headers with random fields.
    if (round % 3 == 0 && ini.size() >= ini0.size() + 48) {
      ini[ini0.size()] = op(Opcode::kScsiCommand);
      ini[ini0.size() + 4] = 0;
      ini[ini0.size() + 5] = 0;
    }
    const IscsiCapture imp = import_iscsi_streams(ini, tgt);
    for (const auto& c : imp.commands) EXPECT_LE(c.data_in.size(), kMaxCommandBytes);
  }
}

}  // namespace
}  // namespace ipsan::replay::iscsi
