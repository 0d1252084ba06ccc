#pragma once
#include <CLI/CLI.hpp>

namespace ipsan::manager {
// `ipsan manager serve|server|client|disk|audit|grant` (docs/MANAGER.md).
void add_cli(CLI::App& app);
}  // namespace ipsan::manager
