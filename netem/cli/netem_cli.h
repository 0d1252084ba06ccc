// netem_cli.h: the `ipsan netem` subcommand (UDP impairment proxy between real processes).
//
// add_cli() registers the subcommand; its callback parses the flags, runs the proxy until SIGINT,
// SIGTERM or --duration, prints counters, and throws CLI::RuntimeError(exit code) on failure after
// printing a message to stderr. docs/NETEM.md documents every flag.
// Threading: call add_cli() once at start-up, from the main thread.
#pragma once

#include <CLI/CLI.hpp>

namespace ipsan::netem {

void add_cli(CLI::App& app);

}  // namespace ipsan::netem
