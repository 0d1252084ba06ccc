// ipsan/netem/config.h: text forms of impairment settings (command line, profiles) and the named
// profiles. Every parser treats its input as untrusted and returns a message naming the problem.
//
// Option grammar (the same words as `ipsan netem --NAME VALUE`; docs/NETEM.md has the full table):
//   loss 1%          burst p,r[,h,k]       delay 10ms          jitter 2ms[,normal][,reorder]
//   reorder 10%               duplicate 1%             corrupt 0.1%[,BITS] rate 100mbit
//   queue 1000                mtu 1500[,truncate]      partition 2s+500ms[/10s][,...]
// A spec string is a space-separated list of NAME=VALUE, e.g. "delay=10ms jitter=1ms,normal".
//
// Threading: pure functions and immutable tables; thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ipsan/base/clock.h"
#include "ipsan/base/result.h"
#include "ipsan/netem/impairment.h"

namespace ipsan::netem {

// "10ms", "1.5s", "250us", "100ns", "2m" (minutes), or "0". A unit is required for non-zero values.
Result<Duration, Error> parse_duration(std::string_view text);
// "1%", "0.1%" (the % sign is required, except for "0"); must lie in [0 %, 100 %].
Result<double, Error> parse_probability(std::string_view text);
// Bits per second: "100mbit", "1gbit", "64kbit", "1000" (bit/s); tc's byte units "kbps", "mbps",
// "gbps" mean bytes per second. "0" = unlimited.
Result<std::uint64_t, Error> parse_rate(std::string_view text);
// "2s+500ms" or "2s+500ms/10s" (repeat every 10 s); several separated by ','; "none" = empty.
Result<std::vector<Partition>, Error> parse_partitions(std::string_view text);

// Sets one option (name without dashes, e.g. "loss") from its text value.
Result<void, Error> apply_option(ImpairmentConfig& config, std::string_view name,
                                 std::string_view value);
// The option names apply_option() accepts, in documentation order.
std::span<const std::string_view> option_names();
// Parses a space-separated "NAME=VALUE ..." spec on top of `base`.
Result<ImpairmentConfig, Error> parse_spec(std::string_view spec, ImpairmentConfig base = {});
// A human-readable one-line summary, e.g. "delay=10ms loss=1%" ("none" when unimpaired).
std::string describe(const ImpairmentConfig& config);
std::string format_duration(Duration d);

struct Profile {
  std::string_view name;
  std::string_view description;
  std::string_view spec;  // parse_spec() input; applies to each direction
};
// All named profiles (lan, wan-20ms, wan-50ms, lossy-0.1pct, lossy-1pct, lossy-5pct, bursty,
// reorder, duplicate, corrupt, nasty, partition).
std::span<const Profile> profiles();
std::vector<std::string_view> profile_names();
// The per-direction config of a named profile; an error lists the known names.
Result<ImpairmentConfig, Error> profile_by_name(std::string_view name);

}  // namespace ipsan::netem
