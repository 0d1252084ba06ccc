// ipsan/client/generic_target.h: what the client's front ends (SCSI, ATA, iSCSI portal) talk to.
//
// A GenericTarget executes generic storage requests (proto/generic.h) on one server: the SAN/IP
// driver (client/client.h) implements it over the network; tests use an in-memory fake.
// Threading: execute() and the completion follow the implementation's rules; SanClient calls the
// completion on its io_context thread.
#pragma once

#include <functional>

#include "ipsan/proto/generic.h"

namespace ipsan::client {

class GenericTarget {
 public:
  virtual ~GenericTarget() = default;
  virtual void execute(proto::Request request, std::function<void(proto::Reply)> done) = 0;
};

}  // namespace ipsan::client
