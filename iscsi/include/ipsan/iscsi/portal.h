// ipsan/iscsi/portal.h: an iSCSI target portal (RFC 7143) in front of the client's SCSI driver:
// initiator -> iSCSI over TCP -> scsi::Bus (LogicalUnits) -> GenericTarget (SanClient) -> server.
//
// Each PortalTarget names one iSCSI target (an IQN) and the Bus target id whose LUNs it exposes.
// The portal speaks login (with key negotiation and CRC32C digests), discovery (SendTargets),
// SCSI Command / Response, Data-In, Data-Out and R2T, NOP-In/Out, task management (ABORT TASK,
// ABORT TASK SET, CLEAR TASK SET, LUN RESET, TARGET WARM/COLD RESET), Text and Logout, for many
// sessions at once (one connection per session: MaxConnections=1, ErrorRecoveryLevel=0).
// Anything malformed gets a Reject PDU or, when the stream cannot be trusted any more, a clean
// close of that one connection; other sessions go on.
//
// The I_T nexus of a session is "<InitiatorName>,i,0x<ISID>" (SPC-4 iSCSI initiator port name);
// it is passed to the logical units with every command (reservations, unit attentions) and a
// session's end is reported to them as nexus loss.
//
// Threading: everything runs on the given io_context (run it on one thread). The Bus is called on
// that thread; its completions may arrive on any thread and are posted back. The Bus must outlive
// the Portal and every command in flight.
#pragma once

#include <utility>  // before Asio

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ipsan/base/result.h"
#include "ipsan/client/scsi/bus.h"
#include "ipsan/iscsi/login.h"

namespace ipsan::iscsi {

struct PortalTarget {
  std::string name;              // e.g. iqn.2026-11.org.ipsan:disk0
  std::uint32_t bus_target = 0;  // Bus target id whose LUNs this target exposes
  // InitiatorNames that may log in to this target (and see it in SendTargets); empty: any.
  std::vector<std::string> allowed_initiators = {};
};

struct PortalOptions {
  std::string address = "127.0.0.1";
  std::uint16_t port = 3260;  // 0 picks a free port (see Portal::port())
  TargetLimits limits;
  std::uint32_t cmdsn_window = 64;      // MaxCmdSN - ExpCmdSN + 1
  // Connections at once. When full, a new connection evicts the oldest one that has not
  // completed its login (so idle unauthenticated sockets cannot lock initiators out); with every
  // connection logged in, up to 16 more are answered "out of resources" (0x0302) and closed.
  std::size_t max_connections = 256;
  std::uint32_t max_task_bytes = 64u << 20;  // largest EDTL accepted for a data-out command
  // CHAP secrets (empty: no authentication). Targets' allowed_initiators apply either way.
  LoginSecurity security;
  // A connection must complete its login within this (0: no limit).
  std::chrono::milliseconds login_timeout{15000};
  // A logged-in connection silent this long is pinged (NOP-In); silent for another such period
  // with no task in flight, it is closed (0: never).
  std::chrono::milliseconds idle_timeout{120000};
};

struct PortalStats {
  std::uint64_t connections = 0;
  std::uint64_t logins = 0;
  std::uint64_t login_failures = 0;
  std::uint64_t commands = 0;
  std::uint64_t rejects = 0;
  std::uint64_t resets = 0;  // connections closed because of a protocol violation
  std::uint64_t auth_failures = 0;   // logins refused by CHAP or the initiator allow-list
  std::uint64_t timeouts = 0;        // connections closed by the login or idle timeout
  std::uint64_t evicted = 0;         // unfinished logins closed to make room
  std::uint64_t refused = 0;         // connections refused over the cap
};

class Portal {
 public:
  Portal(boost::asio::io_context& io, client::scsi::Bus& bus, std::vector<PortalTarget> targets,
         PortalOptions options);
  ~Portal();
  Portal(const Portal&) = delete;
  Portal& operator=(const Portal&) = delete;

  // Binds and listens; an error names the address.
  Result<void, Error> start();
  std::uint16_t port() const;
  // Stops accepting and closes every connection (commands in flight complete into nothing).
  void stop();
  PortalStats stats() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// "iqn.2026-11.org.ipsan:" + name.
std::string default_iqn(std::string_view name);

}  // namespace ipsan::iscsi
