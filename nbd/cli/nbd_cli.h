// nbd_cli.h: `ipsan nbd-export`: an NBD server in front of the SAN/IP driver.
#pragma once

#include <CLI/CLI.hpp>

namespace ipsan::nbd {
void add_cli(CLI::App& app);
}
