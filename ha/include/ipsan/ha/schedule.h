// ipsan/ha/schedule.h: a declarative fault schedule (TOML) for `ipsan chaos run`.
//
// A schedule names the parties (ipsan server processes, each with its own file back end), the
// write workload, and timed events: process faults (kill -9, stop, cont, restart, start) and link
// faults on the netem proxy in front of a party (partition, loss, delay; each for a while or until
// a `heal`). docs/HA.md has the format; parse_schedule() treats the text as untrusted and names the
// line of every problem. format_schedule() prints a schedule that parses back to the same value,
// so a generated (or failing) schedule can be saved and rerun as a file.
//
// Threading: pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ipsan/base/clock.h"
#include "ipsan/base/result.h"

namespace ipsan::ha {

struct PartySpec {
  std::string name;                  // [A-Za-z0-9_]{1,32}; "client" is reserved
  std::uint64_t size = 64ull << 20;  // back end size in bytes
  // "file" (in the run directory: survives kill -9) or "ram" (volatile: a kill loses every
  // write; the negative control that shows the checker catches lost writes).
  std::string backend = "file";
};

struct WorkloadSpec {
  std::string target;             // party the client writes to (default: the first)
  std::uint64_t blocks = 1024;    // distinct 4 KiB blocks written (addresses 0..blocks-1)
  std::uint32_t queue_depth = 4;  // writes in flight (never two on one block)
  Duration request_timeout = std::chrono::seconds(20);
};

enum class Action { kKill, kStop, kCont, kRestart, kStart, kPartition, kLoss, kDelay, kHeal };
std::string_view to_string(Action a);
bool is_link_action(Action a);

struct EventSpec {
  Duration at{};  // from the start of the run
  Action action = Action::kKill;
  std::string target;  // a party name (process actions) or a link name "client-NAME"
  Duration length{};   // link faults: how long (0 = until a heal or the end of the run)
  double loss = 0.0;   // kLoss: probability in [0, 1]
  Duration delay{};    // kDelay: one-way delay added in each direction
};

struct Schedule {
  std::uint64_t seed = 1;                        // default seed (`--seed` overrides it)
  Duration duration = std::chrono::seconds(10);  // fault + workload window
  WorkloadSpec workload;
  std::vector<PartySpec> parties;
  std::vector<EventSpec> events;  // sorted by `at` (stable)
};

// The link in front of party `name` that the client uses.
std::string client_link(std::string_view party);

Result<Schedule, Error> parse_schedule(std::string_view toml_text);
std::string format_schedule(const Schedule& s);
// A random but valid schedule from `seed`: one server party, 8-12 s, 2-5 faults (kill + restart,
// stop + cont, partition, loss, delay of the client link). Same seed, same schedule.
Schedule generate_schedule(std::uint64_t seed);

}  // namespace ipsan::ha
