// libFuzzer target: the chaos fault-schedule parser (docs/HA.md). Any text gives a Schedule or an
// Error, never a crash; a parsed schedule survives format_schedule -> parse unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "ipsan/ha/schedule.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto s = ipsan::ha::parse_schedule(text);
  if (!s) return 0;
  const std::string once = ipsan::ha::format_schedule(*s);
  auto again = ipsan::ha::parse_schedule(once);
  if (!again) std::abort();
  if (ipsan::ha::format_schedule(*again) != once) std::abort();
  return 0;
}
