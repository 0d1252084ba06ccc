#pragma once
#include <CLI/CLI.hpp>

namespace ipsan::auth {
// `ipsan key gen|pub`: Ed25519 identities for the storage manager (docs/MANAGER.md).
void add_key_cli(CLI::App& app);
}  // namespace ipsan::auth
