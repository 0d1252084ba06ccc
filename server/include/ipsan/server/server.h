// ipsan/server/server.h: the storage server (patent FIG. 4 storage server 240, FIG. 6).
//
// Receives ONC-RPC calls over reliable UDP and/or TCP, authenticates them (LOGIN challenge-response,
// then a MAC on every call bound to session, slot and sequence), enforces exactly-once execution
// per slot (slots.h), answers READY / IDENTIFY / CAPACITY without touching a device (step 635), and
// maps READ / WRITE / FLUSH / TRIM / WRITE_ZEROES onto the exported back end (steps 640-670), which
// may be a virtual disk that splits one request into several back-end commands.
//
// Threading: a StorageServer lives on one io_context thread; every public method must be called on
// it. Back-end completions (which may arrive on worker threads) are posted back to that thread.
//
// Time: the server never reads a clock itself; it asks ServerOptions::clock (steady_now() in
// production, a VirtualClock in tests), so login nonce age, session expiry, reaping and I/O
// latency are exact under test. The reaper runs every ServerOptions::reap_interval on an Asio
// timer and can be run by hand (reap()).
#pragma once

#include <utility>  // before Asio

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "ipsan/backends/backend.h"
#include "ipsan/base/clock.h"
#include "ipsan/proto/codec.h"
#include "ipsan/proto/generic.h"
#include "ipsan/proto/transport.h"
#include "ipsan/server/grant_login.h"
#include "ipsan/server/keyring.h"
#include "ipsan/server/slots.h"

namespace ipsan::server {

inline constexpr std::uint16_t kDefaultPort = 5260;

struct Export {
  std::uint32_t device_id = 0;
  std::string name;
  backends::BackendPtr backend;
  bool read_only = false;
  std::vector<std::string> allowed_clients;  // empty: every authenticated client
};

struct ServerOptions {
  std::uint32_t slot_count = 64;       // per session: the client's maximum queue depth
  std::uint32_t max_io_bytes = 8u << 20;  // largest READ/WRITE payload accepted
  std::uint32_t max_sessions = 1024;
  // Sessions one client name may hold at once: one key holder cannot take every session. A login
  // over the limit is answered BUSY (after expired sessions are reaped).
  std::uint32_t max_sessions_per_client = 64;
  std::uint32_t max_pending_logins = 4096;
  Duration login_timeout = std::chrono::seconds(30);
  Duration session_idle_timeout = std::chrono::minutes(10);
  std::uint32_t boot_epoch = 0;  // 0: random (a restart is visible to clients)
  // Weakest transport security accepted at login: 0 off, 1 integrity, 2 encrypted
  // (`ipsan server --transport-security`, docs/PROTOCOL.md "Login").
  std::uint32_t transport_security = 1;
  // Manager grants (docs/MANAGER.md): set, a client may log in with a grant signed by the
  // manager instead of a key-ring key; null, grants are refused (standalone server).
  GrantLogin grants;
  // Where the server reads the time (session expiry, login nonce age, reaping, I/O latency).
  // Tests pass a VirtualClock's now(); nothing in the server calls steady_now() directly.
  std::function<TimePoint()> clock = [] { return steady_now(); };
  // How often the reaper drops expired sessions and used login nonces (on the io thread).
  Duration reap_interval = std::chrono::seconds(1);
};

struct ServerStats {
  std::uint64_t calls = 0;
  std::uint64_t executed = 0;
  std::uint64_t replayed = 0;          // retransmissions answered from the slot cache
  std::uint64_t misordered = 0;        // stale/duplicate calls refused (never executed)
  std::uint64_t rejected = 0;          // RPC-level rejections (garbage, unknown proc, ...)
  std::uint64_t auth_failures = 0;     // bad login proof, bad MAC, unknown session
  std::uint64_t dropped = 0;           // unparsable messages (no reply possible)
  std::uint64_t logins = 0;
  std::uint64_t bytes_read = 0;
  std::uint64_t bytes_written = 0;
  std::uint64_t device_errors = 0;
  std::uint64_t fences = 0;            // SLOT_FENCE calls executed
  std::uint64_t sessions_ended = 0;    // sessions ended by END_SESSION from a newer session
  std::uint64_t reexecute_refused = 0; // READ copies refused after their one re-execution
  std::uint64_t logins_refused_per_client = 0;  // over max_sessions_per_client
  std::uint64_t sessions = 0;          // live sessions now
};

// One device request's outcome, for live metrics (set_io_observer).
struct IoEvent {
  std::uint32_t device_id = 0;
  proto::Op op = proto::Op::kNull;
  std::uint64_t bytes = 0;  // READ/WRITE payload; blocks x block size for TRIM/WRITE_ZEROES
  Duration latency{};       // admission to completion (back end included)
  Errc status = Errc::kOk;
};

// A live session and the connection its latest call came on.
struct SessionInfo {
  std::uint64_t id = 0;
  std::string client;
  std::size_t transport = 0;  // index of the attached transport
  proto::PeerId peer = 0;
  bool has_route = false;
};

class StorageServer {
 public:
  StorageServer(boost::asio::io_context& io, ServerOptions options, KeyRing keys,
                std::vector<Export> exports);
  ~StorageServer();
  StorageServer(const StorageServer&) = delete;
  StorageServer& operator=(const StorageServer&) = delete;

  // Serves calls arriving on `transport` (UDP, TCP, or an in-memory one in tests). A UDP
  // transport should be created with boot_epoch() so clients can detect restarts.
  void attach(std::unique_ptr<proto::ServerTransport> transport);
  // Starts the session reaper.
  void start();
  // Drops expired sessions, used login nonces past their lifetime and ended sessions whose calls
  // have finished, as of ServerOptions::clock (the reaper timer calls it; so may tests).
  void reap();
  // Replaces the exported devices (online layout change). A device that keeps its id keeps its
  // identity (UUID, serial); if its capacity changed, every session gets one CAPACITY_CHANGED
  // status on its next READY or data request for it (SCSI: unit attention 2Ah/09h), and
  // IDENTIFY/CAPACITY report the new size. Requests in flight finish on the old objects.
  void update_exports(std::vector<Export> exports);
  std::vector<Export> exports() const;
  // Stops accepting, waits for requests in flight, flushes every back end, closes transports,
  // then calls `done` (on the io thread).
  void stop(std::function<void()> done);

  // Local port of the index-th attached transport (0 if none).
  std::uint16_t port(std::size_t index) const;
  std::uint32_t boot_epoch() const { return epoch_; }
  ServerStats stats() const;
  std::string stats_line() const;  // one human-readable line
  proto::TransportStats transport_stats() const;
  // Live metrics (docs/METRICS.md): called on the io thread once per device request that reached
  // a device (READ, WRITE, FLUSH, TRIM, WRITE_ZEROES, and refusals such as out-of-range).
  void set_io_observer(std::function<void(const IoEvent&)> observer) {
    io_observer_ = std::move(observer);
  }
  std::vector<SessionInfo> sessions() const;
  std::size_t transport_count() const { return transports_.size(); }
  const proto::ServerTransport& transport(std::size_t index) const { return *transports_[index]; }

  // Identity reported for an export (also used by tests).
  static proto::Identity make_identity(const Export& e, std::uint32_t max_io_bytes);

 private:
  struct Route {
    proto::ServerTransport* transport = nullptr;
    proto::PeerId peer = 0;
  };
  struct Session;
  struct PendingLogin;
  struct Call;  // one admitted session call: session, xid, (slot, seq), op, re-execution or not
  struct ExportEntry {
    Export exp;
    proto::Identity identity;
    std::uint64_t generation = 0;  // bumped when the capacity changes
  };

  // Bumps the export's generation when its back end's live geometry differs from the identity's.
  void note_live_capacity(ExportEntry& ex);
  // Admission: parse, then NULL, login or an authenticated session call.
  void on_message(proto::ServerTransport* t, proto::PeerId peer, Bytes message);
  void handle_login_begin(const Route& r, std::uint32_t xid, ByteSpan args);
  void handle_login_finish(const Route& r, std::uint32_t xid, ByteSpan args);
  void handle_session_call(const Route& r, std::shared_ptr<Bytes> msg, const void* parsed_call);
  // The session a MAC'd call belongs to (expired ones are dropped here), or nullptr after a deny.
  std::shared_ptr<Session> authenticate(const Route& r, const void* parsed_call);
  // Slot admission; false when the call was answered (or left to its running copy).
  bool admit_to_slot(const Route& r, Session& s, const void* parsed_call, bool& reexecute);
  // Session ops (no device): LOGOUT, SLOT_FENCE, END_SESSION.
  void logout(const Call& c);
  void slot_fence(const Call& c);
  void end_session(const Call& c, ByteSpan args);
  // Device ops: decode, export visibility, capacity notice, then status or data.
  void execute(Call c, ByteSpan args);
  const ExportEntry* visible_export(const Session& s, std::uint32_t device_id) const;
  bool capacity_notice(const Call& c, std::uint32_t device_id, const ExportEntry& ex);
  void status_op(const Call& c, const ExportEntry& ex);  // READY/IDENTIFY/CAPACITY (step 635)
  Errc check_data_request(proto::Op op, const proto::RequestView& req, const ExportEntry& ex) const;
  // READ and the writing ops: checked (range, read-only, size), then onto the back end.
  void data_op(Call c, const proto::RequestView& req, const ExportEntry& ex);
  void read_op(Call c, const proto::RequestView& req, const ExportEntry& ex, TimePoint started);
  void write_op(Call c, const proto::RequestView& req, const ExportEntry& ex, TimePoint started);
  // Replies.
  void reply_status(const Call& c, Errc e);
  void reply_spent(const Call& c);  // unauthenticated BUSY: (slot, seq) had its MAC'd reply
  void finish(const std::shared_ptr<Session>& s, std::uint32_t slot, std::uint64_t seq, Bytes reply,
              bool cache);
  void send(const Route& r, Bytes reply);
  // Back-end completion: hop to the io thread, account the request, run `fn`.
  template <class F>
  void complete_on_io(F fn);
  void observe(const Call& c, std::uint32_t device_id, TimePoint started, std::uint64_t bytes,
               Errc e);
  void reap(TimePoint now);
  void arm_reaper();
  void maybe_finish_stop();
  const ExportEntry* find_export(std::uint32_t device_id) const;
  TimePoint now() const { return opt_.clock(); }

  boost::asio::io_context& io_;
  ServerOptions opt_;
  KeyRing keys_;
  std::unordered_map<std::uint32_t, ExportEntry> exports_;
  std::uint32_t epoch_ = 0;
  std::vector<std::unique_ptr<proto::ServerTransport>> transports_;
  std::unordered_map<std::uint64_t, std::shared_ptr<Session>> sessions_;
  // Sessions ended by END_SESSION while calls of theirs were still running: no call is admitted
  // for them; kept until those calls finish so a repeated END_SESSION can tell.
  std::unordered_map<std::uint64_t, std::shared_ptr<Session>> dying_;
  // Server nonces are stateless (MAC'd, docs/PROTOCOL.md "Login"); this map only remembers the
  // nonces of logins that SUCCEEDED, until they expire, so a replayed LOGIN_FINISH cannot open a
  // second session. Key: server nonce bytes.
  std::unordered_map<std::string, PendingLogin> pending_logins_;
  std::array<std::uint8_t, 32> login_secret_{};  // keys the stateless server nonces
  boost::asio::steady_timer reaper_;
  ServerStats stats_;
  std::uint64_t in_flight_ = 0;
  bool stopping_ = false;
  std::function<void()> stop_done_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::function<void(const IoEvent&)> io_observer_;
};

}  // namespace ipsan::server
