// replay_cli.h: `ipsan replay` (SCSI traces, ipsan captures and iSCSI captures against a real
// server) and `ipsan trace import` (iSCSI capture -> SCSI trace). See docs/CAPTURE.md.
#pragma once

#include <CLI/CLI.hpp>

namespace ipsan::replay {

void add_cli(CLI::App& app);

}  // namespace ipsan::replay
