// iscsi_cli.h: `ipsan iscsi-portal`: an iSCSI target portal in front of the SAN/IP driver.
#pragma once

#include <CLI/CLI.hpp>

namespace ipsan::iscsi {
void add_cli(CLI::App& app);
}
