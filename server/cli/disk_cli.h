// disk_cli.h: `ipsan disk ...`: online layout changes on a running server through its admin socket.
#pragma once

#include <CLI/CLI.hpp>

namespace ipsan::server {
void add_disk_cli(CLI::App& app);
}
