// ipsan/base/units.h: parsing and printing of sizes, durations, rates and percentages for
// command lines and config files. Parsers take untrusted text and never throw.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "ipsan/base/clock.h"
#include "ipsan/base/result.h"

namespace ipsan {

// THE size parser of every command line, back-end spec and config file:
//   size := digits [ K | M | G | T | P ] [ iB | B ]   or   digits B
// binary multiples (1K = 1024), any case, no spaces, no sign, no fraction ("1.5G" is refused:
// write 1536M), exact: a value that does not fit 64 bits is an error, never rounded.
// "4096", "64K", "256M", "1GiB", "2tb", "100B".
Result<std::uint64_t, Error> parse_size(std::string_view text);
// "250us", "10ms", "2s", "1.5s", "5m", "1h"; a bare number is seconds.
Result<Duration, Error> parse_duration(std::string_view text);
// "host:port", "[v6addr]:port", or ":port"/"port" with `default_host`.
struct HostPort {
  std::string host;
  std::uint16_t port = 0;
};
Result<HostPort, Error> parse_host_port(std::string_view text, std::string_view default_host,
                                        std::uint16_t default_port);

std::string format_bytes(std::uint64_t bytes);  // "256 MiB", "1.5 GiB", "512 B"
std::string format_duration(Duration d);        // "12.3 ms"

}  // namespace ipsan
