// ipsan/manager/listener.h: the manager's API endpoint: TCP, one signed JSON line per connection
// in each direction (auth/signed_call.h). Requests are handled on a pool of worker threads
// (a disk-create blocks its worker until the server answered); a connection that sends no
// complete line within 10 s, or a line over 1 MiB, is closed.
#pragma once

#include <memory>
#include <string>

#include "ipsan/base/result.h"
#include "ipsan/manager/manager.h"

namespace ipsan::manager {

class Listener {
 public:
  static Result<std::unique_ptr<Listener>, Error> start(Manager& m, const std::string& host,
                                                        std::uint16_t port, unsigned workers = 16);
  virtual ~Listener() = default;
  virtual std::uint16_t port() const = 0;
  // Stops accepting and waits for the workers.
  virtual void stop() = 0;
};

}  // namespace ipsan::manager
