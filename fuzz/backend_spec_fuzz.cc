// libFuzzer target: back-end specs ("ram:256M", "file:/x,size=1G,bs=4096", docs/CONFIG.md) and
// sizes. Parsing only: nothing is opened.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "ipsan/backends/spec.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)ipsan::backends::parse_backend_spec(text);
  auto n = ipsan::backends::parse_size(text);
  if (n) {
    // A formatted size parses back to the same number.
    auto back = ipsan::backends::parse_size(ipsan::backends::format_size(*n));
    if (!back || *back != *n) std::abort();
  }
  return 0;
}
