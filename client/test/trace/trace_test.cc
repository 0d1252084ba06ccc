#include "ipsan/client/trace/trace.h"

#include <gtest/gtest.h>

#include <sstream>

#include "ipsan/base/pattern.h"
#include "ipsan/client/memory_target.h"
#include "ipsan/client/trace/runner.h"

namespace ipsan::client::trace {
namespace {

constexpr const char* kSample = R"(# ipsan-trace v1
# a comment line

scsi lun=0 cdb=000000000000 status=check sense=6/29/00   # power on
scsi lun=0:0 cdb=2a00_00000010_00_0002_00 out=pattern:seed=7 status=good
scsi lun=0 cdb=28000000001000000200 in=pattern:seed=7 len=1024
scsi lun=0 cdb=120000002400 edtl=100 resid=64 len=36
scsi lun=0 cdb=28200000000000000100 status=check sense=5/24/00 sks=cf0001
ata lun=0 cmd=0x25 count=2 lba=16 in=pattern:seed=7
ata lun=0 cmd=0xe5 count-out=255 status=0x40
fault lun=0 op=read errc=medium-error
scsi lun=0 cdb=28000000000000000100 sense=3/11/00
)";

TEST(TraceParse, ParsesEveryLineKind) {
  auto t = parse_trace(kSample, "sample.trace");
  ASSERT_TRUE(t) << t.error().message;
  ASSERT_EQ(t->commands.size(), 9u);
  const Command& c0 = t->commands[0];
  EXPECT_EQ(c0.line, 4);
  EXPECT_EQ(c0.comment, "power on");
  EXPECT_EQ(*c0.expect.sense, (std::array<std::uint8_t, 3>{6, 0x29, 0}));
  const Command& c1 = t->commands[1];
  EXPECT_EQ(c1.cdb.size(), 10u);
  EXPECT_EQ(c1.out.kind, DataOut::Kind::kPattern);
  EXPECT_TRUE(c1.out.more.empty());
  EXPECT_EQ(c1.out.pattern.seed, 7u);
  EXPECT_EQ(t->commands[3].edtl, 100u);
  EXPECT_EQ(t->commands[3].expect.resid, 64);
  EXPECT_EQ(t->commands[5].kind, Command::Kind::kAta);
  EXPECT_EQ(t->commands[5].ata_command, 0x25);
  EXPECT_EQ(t->commands[5].lba, 16u);
  EXPECT_EQ(t->commands[7].kind, Command::Kind::kFault);
  EXPECT_EQ(t->commands[7].fault.at("errc"), "medium-error");
}

TEST(TraceParse, FormatParseRoundTrip) {
  auto t = parse_trace(kSample, "sample.trace");
  ASSERT_TRUE(t);
  const std::string text = format_trace(*t);
  auto again = parse_trace(text, "formatted");
  ASSERT_TRUE(again) << again.error().message << "\n" << text;
  EXPECT_EQ(format_trace(*again), text);
  EXPECT_EQ(again->commands.size(), t->commands.size());
}

TEST(TraceParse, EveryBadInputClassGetsAClearError) {
  struct Case {
    const char* text;
    const char* message;  // substring of the error
  };
  const Case cases[] = {
      {"", "t.trace:1: "},
      {"scsi cdb=00\n", "t.trace:1: first line must be"},
      {"# ipsan-trace v2\n", "unsupported trace version"},
      {"# ipsan-trace v1\nnvme cdb=00\n", "t.trace:2: unknown line kind 'nvme'"},
      {"# ipsan-trace v1\nscsi cdb=0g0000000000\n", "t.trace:2: cdb: bad hex"},
      {"# ipsan-trace v1\nscsi cdb=0000000\n", "cdb: bad hex"},
      {"# ipsan-trace v1\n\nscsi cdb=28000000\n", "t.trace:3: cdb: opcode 0x28 (group 1) needs 10"},
      {"# ipsan-trace v1\nscsi cdb=88000000000000000000\n", "needs 16 bytes, got 10"},
      {"# ipsan-trace v1\nscsi cdb=6000000000000000\n", "group 3"},
      {"# ipsan-trace v1\nscsi cdb=000000000000 colour=red\n", "unknown key 'colour'"},
      {"# ipsan-trace v1\nscsi cdb=000000000000 status=good status=good\n", "duplicate key"},
      {"# ipsan-trace v1\nscsi lun=0\n", "scsi line without cdb="},
      {"# ipsan-trace v1\nata lun=0\n", "ata line without cmd="},
      {"# ipsan-trace v1\nscsi cdb=000000000000 sense=5/24\n", "sense: expected KEY/ASC/ASCQ"},
      {"# ipsan-trace v1\nscsi cdb=000000000000 sense=15/24/00\n", "sense: expected"},
      {"# ipsan-trace v1\nscsi cdb=000000000000 status=maybe\n", "bad SCSI status"},
      {"# ipsan-trace v1\nscsi cdb=000000000000 lun=1:2:3\n", "bad lun"},
      {"# ipsan-trace v1\nscsi cdb=000000000000 lun=99999\n", "bad lun"},
      {"# ipsan-trace v1\nscsi cdb=000000000000 out=abc\n", "out: bad hex"},
      {"# ipsan-trace v1\nscsi cdb=000000000000 out=pattern:lba=1\n", "pattern needs seed"},
      {"# ipsan-trace v1\nscsi cdb=000000000000 out=pattern:seed=x\n", "bad number"},
      {"# ipsan-trace v1\nscsi cdb=000000000000 out=pattern:seed=1,size=2\n",
       "unknown pattern key"},
      {"# ipsan-trace v1\nscsi cdb=000000000000 out=zeros:0\n", "bad zeros length"},
      {"# ipsan-trace v1\nscsi cdb=000000000000 in=crc32c:123456789\n", "bad crc32c"},
      {"# ipsan-trace v1\nscsi cdb=000000000000 sks=cf00\n", "sks: expected 3 bytes"},
      {"# ipsan-trace v1\nscsi cdb=000000000000 resid=-x\n", "resid: bad value"},
      {"# ipsan-trace v1\nscsi cdb=000000000000 edtl=99999999999\n", "bad value"},
      {"# ipsan-trace v1\nscsi cdb=000000000000 garbage\n", "expected key=value"},
      {"# ipsan-trace v1\nscsi cdb=000000000000 in=\n", "empty value"},
      {"# ipsan-trace v1\nata cmd=0x100\n", "bad value '0x100' for cmd"},
      {"# ipsan-trace v1\nata cmd=0x25 lba=0x1000000000000\n", "for lba"},
      {"# ipsan-trace v1\nata cmd=0x25 cdb=00\n", "unknown key 'cdb' for a ata line"},
      {"# ipsan-trace v1\nfault lun=0\n", "fault line without settings"},
      {"# ipsan-trace v1\nscsi cdb=000000000000 \x01\n", "non-printable"},
  };
  for (const Case& c : cases) {
    auto t = parse_trace(c.text, "t.trace");
    ASSERT_FALSE(t) << c.text;
    EXPECT_NE(t.error().message.find(c.message), std::string::npos)
        << "input: " << c.text << "\nerror: " << t.error().message;
  }
}

TEST(TraceParse, LoadTraceReportsMissingFile) {
  auto t = load_trace("/nonexistent/dir/x.trace");
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().message.find("cannot open"), std::string::npos);
}

class RunnerTest : public ::testing::Test {
 public:
  void SetUp() override {
    target_.add_device(1, MemoryTarget::default_identity(4096, 512, 8));
    bus_.add_server("mem", target_);
    ASSERT_TRUE(bus_.map({0, 0, "mem", 1}));
    ASSERT_EQ(bus_.attach_all_and_wait(1000), Errc::kOk);
    options_.fault_hook = [this](const Command& c) -> Result<void, Error> {
      MemoryTarget::Fault f;
      if (c.fault.count("op") && c.fault.at("op") == "read") f.op = proto::Op::kRead;
      f.error = Errc::kMediumError;
      target_.inject(f);
      return {};
    };
  }
  MemoryTarget target_;
  scsi::Bus bus_;
  ReplayOptions options_;
};

TEST_F(RunnerTest, SampleTraceMatches) {
  auto t = parse_trace(kSample, "sample.trace");
  ASSERT_TRUE(t);
  auto report = run_traces({*t}, bus_, options_);
  std::ostringstream os;
  print_report(os, report, true);
  EXPECT_TRUE(report.ok()) << os.str();
  EXPECT_EQ(report.matched, 9u) << os.str();
  EXPECT_NE(os.str().find("9 matched, 0 mismatched"), std::string::npos);
}

TEST_F(RunnerTest, MismatchesCarryADiff) {
  auto t = parse_trace(
      "# ipsan-trace v1\n"
      "scsi cdb=000000000000 status=good\n"
      "scsi cdb=2a000000000000000100 out=pattern:seed=1\n"
      "scsi cdb=28000000000000000100 in=pattern:seed=2\n"
      "scsi cdb=120000000500 in=0000061200\n"
      "scsi cdb=120000000500 in=crc32c:00000000\n"
      "scsi cdb=28200000000000000100 sense=5/24/00 sks=cf0002\n"
      "scsi cdb=120000002400 edtl=100 resid=63\n"
      "fault op=read\n",
      "bad.trace");
  ASSERT_TRUE(t) << t.error().message;
  ReplayOptions no_faults;
  auto report = run_traces({*t}, bus_, no_faults);
  ASSERT_EQ(report.lines.size(), 8u);
  EXPECT_EQ(report.mismatched, 6u);
  EXPECT_EQ(report.skipped, 1u);
  EXPECT_FALSE(report.ok());
  EXPECT_NE(report.lines[0].detail.find("status: expected GOOD, got CHECK CONDITION sense 6/29/00"),
            std::string::npos)
      << report.lines[0].detail;
  EXPECT_NE(report.lines[2].detail.find("does not hold pattern"), std::string::npos);
  EXPECT_NE(report.lines[3].detail.find("data-in byte 4: expected 00, got 5b"), std::string::npos)
      << report.lines[3].detail;
  EXPECT_NE(report.lines[4].detail.find("crc32c"), std::string::npos);
  EXPECT_NE(report.lines[5].detail.find("sense-key specific: expected cf0002, got cf0001"),
            std::string::npos)
      << report.lines[5].detail;
  EXPECT_NE(report.lines[6].detail.find("residual: expected 63, got 64"), std::string::npos);
  std::ostringstream os;
  print_report(os, report, false);
  EXPECT_NE(os.str().find("bad.trace:2: MISMATCH"), std::string::npos) << os.str();
}

TEST_F(RunnerTest, RecordThenReplayRoundTrip) {
  // Commands without expectations; record mode writes what happened.
  auto t = parse_trace(
      "# ipsan-trace v1\n"
      "scsi cdb=000000000000 status=any-will-do-not\n",
      "x");
  EXPECT_FALSE(t);
  t = parse_trace(
      "# ipsan-trace v1\n"
      "scsi cdb=000000000000 status=check\n"
      "scsi cdb=2a000000002000000400 out=pattern:seed=11\n"
      "scsi cdb=28000000002000000400\n"
      "scsi cdb=28000000002000000100 in=pattern:seed=11\n"
      "scsi cdb=120000002400 edtl=40\n"
      "scsi cdb=28000000ffff00000100\n"
      "scsi cdb=9e100000000000000000000000200000\n"
      "ata cmd=0xec\n"
      "ata cmd=0x25 lba=0x20 count=1\n"
      "ata cmd=0x25 lba=0xffffff count=1\n",
      "rec.trace");
  ASSERT_TRUE(t) << t.error().message;
  ReplayOptions rec = options_;
  rec.record = true;
  auto first = run_traces({*t}, bus_, rec);
  ASSERT_EQ(first.recorded.size(), 1u);
  const std::string text = format_trace(first.recorded[0]);
  EXPECT_NE(text.find("sense=5/21/00"), std::string::npos) << text;
  EXPECT_NE(text.find("in=crc32c:"), std::string::npos) << text;
  EXPECT_NE(text.find("in=pattern:seed=11"), std::string::npos) << text;
  EXPECT_NE(text.find("resid=4"), std::string::npos) << text;
  EXPECT_NE(text.find("error=0x10"), std::string::npos) << text;
  auto replay = parse_trace(text, "recorded.trace");
  ASSERT_TRUE(replay) << replay.error().message << "\n" << text;
  auto second = run_traces({*replay}, bus_, options_);
  std::ostringstream os;
  print_report(os, second, true);
  EXPECT_TRUE(second.ok()) << os.str() << text;
  EXPECT_EQ(second.matched, t->commands.size());
  // The recording is faithful enough to catch a change in the data.
  std::vector<std::uint8_t> block(512, 0x5A);
  target_.inject({proto::Op::kRead, std::nullopt, 0x20, 1, Errc::kMediumError, 1});
  auto third = run_traces({*replay}, bus_, options_);
  EXPECT_FALSE(third.ok());
}

TEST_F(RunnerTest, DataOutNeedsALength) {
  auto t = parse_trace("# ipsan-trace v1\nscsi cdb=150000001000 out=pattern:seed=1\n", "x");
  ASSERT_TRUE(t);
  auto report = run_traces({*t}, bus_, options_);
  EXPECT_EQ(report.errors, 1u);
  EXPECT_NE(report.lines[0].detail.find("needs lba= and blocks="), std::string::npos);
}

}  // namespace
}  // namespace ipsan::client::trace

namespace ipsan::client::trace {
namespace {

TEST(TraceParse, ConcatenatedDataOutAndPrefix) {
  auto t = parse_trace(
      "# ipsan-trace v1\n"
      "scsi cdb=89000000000000000020000000010000 out=pattern:seed=1,lba=32,blocks=1+zeros:512 "
      "in=prefix:00ff\n",
      "x");
  ASSERT_TRUE(t) << t.error().message;
  const DataOut& out = t->commands[0].out;
  EXPECT_EQ(out.kind, DataOut::Kind::kPattern);
  ASSERT_EQ(out.more.size(), 1u);
  EXPECT_EQ(out.more[0].kind, DataOut::Kind::kZeros);
  EXPECT_EQ(out.more[0].zeros, 512u);
  EXPECT_EQ(t->commands[0].expect.data.kind, DataInCheck::Kind::kPrefix);
  EXPECT_NE(format_trace(*t).find("out=pattern:seed=1,lba=32,blocks=1+zeros:512 in=prefix:00ff"),
            std::string::npos);
  EXPECT_FALSE(parse_trace("# ipsan-trace v1\nscsi cdb=000000000000 out=00+\n", "x"));
}

TEST(TraceRun, MemoryTargetFaultHook) {
  MemoryTarget mem;
  mem.add_device(4, MemoryTarget::default_identity(100));
  scsi::Bus bus;
  bus.add_server("m", mem);
  ASSERT_TRUE(bus.map({0, 2, "m", 4}));
  ASSERT_EQ(bus.attach_all_and_wait(1000), Errc::kOk);
  ReplayOptions o;
  o.fault_hook = memory_target_fault_hook(bus, {{"m", &mem}});
  auto t = parse_trace(
      "# ipsan-trace v1\n"
      "scsi lun=2 cdb=000000000000 sense=6/29/00\n"
      "fault lun=2 op=read lba=5 blocks=1 errc=medium-error count=2\n"
      "scsi lun=2 cdb=28000000000000000800 sense=3/11/00\n"
      "scsi lun=2 cdb=28000000000500000100 sense=3/11/00\n"
      "scsi lun=2 cdb=28000000000500000100 status=good\n"
      "fault lun=2 resize=200\n"
      "scsi lun=2 cdb=000000000000 sense=6/2a/09\n"
      "scsi lun=2 cdb=25000000000000000000 in=000000c700000200\n"
      "fault lun=2 op=ready errc=busy count=forever\n"
      "scsi lun=2 cdb=000000000000 status=busy\n"
      "scsi lun=2 cdb=000000000000 status=busy\n"
      "fault lun=2 clear=all\n"
      "scsi lun=2 cdb=000000000000\n",
      "faults.trace");
  ASSERT_TRUE(t) << t.error().message;
  auto report = run_traces({*t}, bus, o);
  std::ostringstream os;
  print_report(os, report, true);
  EXPECT_TRUE(report.ok()) << os.str();
  EXPECT_EQ(report.matched, 13u) << os.str();
  for (const char* bad :
       {"fault lun=2 errc=nope\n", "fault lun=2 op=fly errc=busy\n", "fault lun=3 errc=busy\n",
        "fault lun=2 colour=red\n", "fault lun=2 errc=busy count=0\n", "fault lun=2 resize=x\n"}) {
    auto bt = parse_trace(std::string("# ipsan-trace v1\n") + bad, "b");
    ASSERT_TRUE(bt) << bad;
    auto r = run_traces({*bt}, bus, o);
    EXPECT_EQ(r.errors, 1u) << bad;
  }
}

}  // namespace
}  // namespace ipsan::client::trace
