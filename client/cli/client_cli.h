// client_cli.h: `ipsan client ...` subcommands (identify, capacity, read, write, flush, trim,
// verify) over the SAN/IP driver.
#pragma once

#include <CLI/CLI.hpp>

namespace ipsan::client {
void add_cli(CLI::App& app);
}
