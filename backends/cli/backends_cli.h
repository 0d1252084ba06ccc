// backends/cli/backends_cli.h: the `ipsan probe DEVICE [--json]` subcommand. add_cli() is called
// once at start-up from the ipsan program's main; the callback runs on the main thread.
#pragma once

#include <CLI/CLI.hpp>

namespace ipsan::backends {

// Adds `probe` and registers the "sg" and "ata" back-end kinds (register_hw_backends()), so
// every subcommand of the program can open sg:/dev/sgN and ata:/dev/sgN. On failure the callback
// prints a message to stderr and throws CLI::RuntimeError(1).
void add_cli(CLI::App& app);

}  // namespace ipsan::backends
