// stats_cli.cc: `ipsan stats`: asks a running server (its --admin-socket) for its live metrics and
// prints them as JSON: the same numbers its --metrics endpoint serves (docs/METRICS.md).
#include "stats_cli.h"

#include <cstdio>
#include <memory>

#include "ipsan/server/admin.h"

namespace ipsan::server {

void add_stats_cli(CLI::App& app) {
  struct Args {
    std::string socket;
    bool compact = false;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "stats", "Print a running server's live metrics as JSON (through its --admin-socket)");
  cmd->add_option("-a,--admin-socket", a->socket, "The server's --admin-socket")->required();
  cmd->add_flag("--compact", a->compact, "One line of JSON instead of indented");
  cmd->callback([a] {
    auto r = admin_call(a->socket, nlohmann::json{{"op", "stats"}}, std::chrono::seconds(10));
    if (!r) {
      std::fprintf(stderr, "ipsan stats: %s\n", r.error().message.c_str());
      throw CLI::RuntimeError(1);
    }
    if (!r->value("ok", false) || !r->contains("metrics")) {
      std::fprintf(stderr, "ipsan stats: %s\n",
                   r->value("error", std::string("the server refused the request")).c_str());
      throw CLI::RuntimeError(1);
    }
    std::printf("%s\n", (*r)["metrics"].dump(a->compact ? -1 : 2).c_str());
  });
}

}  // namespace ipsan::server
