// server_cli.h: `ipsan server`: run a storage server until SIGINT/SIGTERM.
#pragma once

#include <CLI/CLI.hpp>

namespace ipsan::server {
void add_cli(CLI::App& app);
}
