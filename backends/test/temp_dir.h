// Forwarding header (virt/ tests include it): the one TempDir of the tests is
// ipsan/testing/temp_dir.h (test/support).
#pragma once

#include "ipsan/testing/temp_dir.h"

namespace ipsan::backends::testing {
using ::ipsan::testing::TempDir;
}  // namespace ipsan::backends::testing
