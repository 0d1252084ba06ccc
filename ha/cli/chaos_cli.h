// The `ipsan chaos` subcommands (run a fault schedule, generate one).
#pragma once

#include <CLI/CLI.hpp>

namespace ipsan::ha {
void add_cli(CLI::App& app);
}  // namespace ipsan::ha
