// libFuzzer target: the trace parser (docs/TRACES.md). Any input must give a Trace or an Error,
// never a crash; a parsed trace must survive format -> parse unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "ipsan/client/trace/trace.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ipsan::client::trace;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto trace = parse_trace(text, "fuzz.trace");
  if (!trace) {
    if (trace.error().message.rfind("fuzz.trace:", 0) != 0) std::abort();  // names file:line
    return 0;
  }
  const std::string once = format_trace(*trace);
  auto again = parse_trace(once, "formatted.trace");
  if (!again) std::abort();
  if (format_trace(*again) != once) std::abort();
  return 0;
}
