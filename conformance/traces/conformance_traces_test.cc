// Runs every conformance/traces/*.trace against the reference layout (docs/TRACES.md):
//   LUN 0 -> device 1: 4096 blocks of 512 bytes, max transfer 8 blocks, FUA/FLUSH/TRIM/WZ
//   LUN 1 -> device 2: 1024 blocks of 512 bytes, read-only
//   LUN 2 -> device 3: 1024 blocks of 4096 bytes, max transfer 4 blocks, FUA/FLUSH only
// Each trace gets fresh devices, so traces are independent of each other and of their order.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <sstream>

#include "ipsan/client/memory_target.h"
#include "ipsan/client/scsi/bus.h"
#include "ipsan/client/trace/runner.h"
#include "ipsan/client/trace/trace.h"

namespace ipsan::client::trace {
namespace {

std::vector<std::string> trace_files() {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(IPSAN_TRACE_DIR)) {
    if (e.path().extension() == ".trace") out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

class ConformanceTrace : public ::testing::TestWithParam<std::string> {};

TEST_P(ConformanceTrace, EveryLineMatches) {
  const std::string path = std::string(IPSAN_TRACE_DIR) + "/" + GetParam();
  auto trace = load_trace(path);
  ASSERT_TRUE(trace) << trace.error().message;
  ASSERT_FALSE(trace->commands.empty());

  MemoryTarget mem;
  mem.add_device(1, MemoryTarget::default_identity(4096, 512, 8));
  auto ro = MemoryTarget::default_identity(1024, 512, 8);
  ro.capabilities |= proto::kCapReadOnly;
  ro.serial = "MEMRO01";
  mem.add_device(2, ro);
  auto big = MemoryTarget::default_identity(1024, 4096, 4);
  big.capabilities = proto::kCapFua | proto::kCapFlush;
  big.serial = "MEM4K01";
  mem.add_device(3, big);
  mem.set_log_data(false);
  scsi::Bus bus;
  bus.add_server("mem", mem);
  ASSERT_TRUE(bus.map({0, 0, "mem", 1}));
  ASSERT_TRUE(bus.map({0, 1, "mem", 2}));
  ASSERT_TRUE(bus.map({0, 2, "mem", 3}));
  ASSERT_EQ(bus.attach_all_and_wait(5000), Errc::kOk);

  ReplayOptions options;
  options.fault_hook = memory_target_fault_hook(bus, {{"mem", &mem}});
  const ReplayReport report = run_traces({*trace}, bus, options);
  std::ostringstream os;
  print_report(os, report, false);
  EXPECT_TRUE(report.ok()) << os.str();
  EXPECT_EQ(report.skipped, 0u) << os.str();
  EXPECT_EQ(report.matched, trace->commands.size()) << os.str();
}

INSTANTIATE_TEST_SUITE_P(Traces, ConformanceTrace, ::testing::ValuesIn(trace_files()),
                         [](const ::testing::TestParamInfo<std::string>& param) {
                           std::string name = param.param.substr(0, param.param.size() - 6);
                           for (char& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace ipsan::client::trace
