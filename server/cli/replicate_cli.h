// `ipsan replicate ...` (incremental replication of thin disks) and `ipsan job ...` (the server's
// job engine), both through a running server's admin socket. docs/MIRROR.md.
#pragma once

#include <CLI/CLI.hpp>

namespace ipsan::server {
void add_replicate_cli(CLI::App& app);
void add_job_cli(CLI::App& app);
}  // namespace ipsan::server
