#pragma once
#include <CLI/CLI.hpp>

namespace ipsan::server {
// `ipsan stats`: a running server's live metrics as JSON, through its admin socket.
void add_stats_cli(CLI::App& app);
}  // namespace ipsan::server
