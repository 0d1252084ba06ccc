// libFuzzer target: the TOML layout parser (docs/CONFIG.md) and the planner behind it. Any
// text gives a LayoutDesc or an Error, never a crash; a parsed layout survives to_toml -> parse.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "ipsan/virt/layout.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto desc = ipsan::virt::parse_layout_desc(text);
  if (!desc) return 0;
  const std::string once = ipsan::virt::to_toml(*desc);
  auto again = ipsan::virt::parse_layout_desc(once);
  if (!again) std::abort();
  if (ipsan::virt::to_toml(*again) != once) std::abort();
  // Plan against made-up back-end geometry (no back end is opened).
  ipsan::virt::GeometryMap geo;
  for (const auto& b : desc->backends) geo[b.name] = {512, 1u << 20};
  (void)ipsan::virt::plan_layout(*desc, geo);
  return 0;
}
