// nas_cli.h: `ipsan nas mkfs` and `ipsan nas serve`: an NFSv3 server over an ipsan disk.
#pragma once

#include <CLI/CLI.hpp>

namespace ipsan::nas {
void add_cli(CLI::App& app);
}
