// bench_cli.h: the `ipsan bench` subcommand (load generator on the client library; see
// docs/BENCH.md). On failure it prints a message on stderr and throws CLI::RuntimeError(code).
#pragma once

#include <CLI/CLI.hpp>

namespace ipsan::bench {

void add_cli(CLI::App& app);

}  // namespace ipsan::bench
