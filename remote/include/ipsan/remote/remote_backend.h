// ipsan/remote/remote_backend.h: a Backend whose blocks are a device on another ipsan server.
//
// Spec (docs/CONFIG.md "Remote back end"):
//   ipsan://HOST[:PORT]/DEVICE[?OPTION&OPTION...]     (PORT default 5260; options may also
//                                                      follow as ",name=value" like other kinds)
//   client=NAME            client name the remote server knows the key for (default "default")
//   key-file=PATH          file (mode 0600) whose first line is the key; else IPSAN_KEY
//   transport=udp|tcp      reliable UDP (default) or TCP
//   security=off|integrity|encrypted   transport security asked for at login (default integrity)
//   timeout=DURATION       request timeout (default 30s)
//   fence-timeout=DURATION how long the remote may take to confirm a timed-out request is dead
//                          (default 10s)
//   connect-timeout=DURATION  opening gives up when no login completed within this (default 5s)
//   slots=N                requests in flight (default 64)
//   ro                     read only (also when the remote device is)
//
// Opening logs in (one session per back end, client::Runtime) and asks the device's IDENTIFY:
// geometry and capabilities are the remote device's, as of opening. Reads and writes larger than
// the remote's largest transfer are split. While the remote cannot be reached, an operation
// completes with kIoError once timeout + fence-timeout (+1 s) passed: by then the client has
// given up the session, and nothing is sent to the remote before that session is ended there,
// so a write reported failed can never be applied after a later one. The client reconnects and
// logs in again by itself: once the remote is back, operations succeed again.
//
// Threading: as every Backend (any thread); completions run on the runtime's io thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "ipsan/backends/backend.h"
#include "ipsan/backends/spec.h"
#include "ipsan/base/result.h"
#include "ipsan/client/runtime.h"

namespace ipsan::remote {

struct RemoteOptions {
  client::RuntimeOptions runtime;
  std::uint32_t device_id = 0;
  bool read_only = false;
  std::string label;  // "ipsan://HOST:PORT/DEVICE" (no secrets), for describe()
};

// Parses an "ipsan:" spec (backends::parse_backend_spec already split it); the key is read here
// (key-file or IPSAN_KEY). Errors name the spec and the option.
Result<RemoteOptions, Error> parse_remote_spec(const backends::BackendSpec& spec);

class RemoteBackend final : public backends::Backend {
 public:
  // Logs in and identifies the device; the error says what failed (no server, refused, key,
  // unknown device).
  static Result<std::shared_ptr<RemoteBackend>, Error> open(RemoteOptions options);
  ~RemoteBackend() override;

  backends::Geometry geometry() const override { return geometry_; }
  backends::Capabilities capabilities() const override { return caps_; }
  std::string describe() const override;

  void read(std::uint64_t lba, std::span<std::uint8_t> out, backends::Completion done) override;
  void write(std::uint64_t lba, std::span<const std::uint8_t> in, bool fua,
             backends::Completion done) override;
  void flush(backends::Completion done) override;
  void trim(std::uint64_t lba, std::uint64_t blocks, backends::Completion done) override;
  void write_zeroes(std::uint64_t lba, std::uint64_t blocks, bool may_trim,
                    backends::Completion done) override;
  std::uint32_t atomic_write_max_blocks() const override { return atomic_max_; }
  void write_atomic(std::uint64_t lba, std::span<const std::uint8_t> in, bool fua,
                    backends::Completion done) override;

  // The client runtime (statistics, tests).
  client::Runtime& runtime() { return *runtime_; }
  // Operations reported failed by the back end's own deadline (the remote unreachable).
  std::uint64_t deadline_failures() const;

  struct Op;
  struct State;

 private:
  RemoteBackend() = default;
  // Sends one request per chunk (WRITE payloads from `write_src`, READ data into `read_into`);
  // `done` once, with the first error.
  void submit(std::vector<proto::Request> requests, const std::uint8_t* write_src,
              std::span<std::uint8_t> read_into, backends::Completion done);
  void issue(const std::shared_ptr<State>& st, const std::shared_ptr<Op>& op, std::uint64_t id,
             proto::Request head, const std::uint8_t* src, std::size_t offset, bool retried);

  RemoteOptions options_;
  std::unique_ptr<client::Runtime> runtime_;
  std::shared_ptr<State> state_;
  backends::Geometry geometry_;
  backends::Capabilities caps_;
  std::uint32_t chunk_blocks_ = 0;
  std::uint32_t atomic_max_ = 0;
};

// Registers the "ipsan" back-end kind (backends::register_backend_kind). Idempotent.
void register_remote_backend();

}  // namespace ipsan::remote
