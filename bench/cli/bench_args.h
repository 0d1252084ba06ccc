// bench_args.h: the command line of `ipsan bench` as plain values, and its validation into
// LoadOptions. Kept apart from the subcommand so tests can parse arguments without running a load.
// Untrusted input: every error comes back as an Error with a message naming the option.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

#include "ipsan/base/result.h"
#include "ipsan/bench/loadgen.h"
#include "ipsan/client/connect.h"

namespace ipsan::bench {

// The connection flags (-s, -t, -n, -k, --key-file, --timeout) are client::ConnectArgs'.
struct BenchArgs : client::ConnectArgs {
  std::uint32_t device = 0;
  std::string rw = "randread";
  std::uint32_t mix = 70;
  std::string bs = "4K";
  std::uint32_t qd = 1;
  std::uint32_t sessions = 1;
  std::string runtime;  // default 10s unless --bytes is given
  std::string bytes;
  std::string offset = "0";
  std::string size;
  std::uint64_t seed = 1;
  int server_pid = 0;
  bool server_embedded = false;
  std::string embedded_size = "1G";
  bool json = false;
  bool progress = false;
  std::string label;
  std::uint32_t datagram = 0;  // 0: rudp default
};

// Declares the options on `cmd`, storing into `a` (which must outlive `cmd`).
void add_bench_options(CLI::App& cmd, BenchArgs& a);

// Validates and converts. The key is read from --key, --key-file or IPSAN_KEY unless
// `key_optional` (the embedded server supplies its own).
Result<LoadOptions, Error> make_load_options(const BenchArgs& a, bool key_optional = false);

}  // namespace ipsan::bench
