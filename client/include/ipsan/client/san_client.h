// ipsan/client/san_client.h: the SAN/IP driver (patent FIG. 4 driver 445a, FIG. 5 steps 555-570).
//
// Logs in to one storage server (challenge-response with the client's key, mutual: the server
// proves it knows the key too), then sends generic storage requests as MAC'd ONC-RPC calls over a
// message transport (reliable UDP or TCP), with up to slot_count requests in flight. It owns the
// recovery rules that make every write execute exactly once:
//  - each request holds a session slot and sequence number until its reply arrives;
//  - if the transport breaks, a new one is made and unanswered requests are re-sent with the SAME
//    slot and sequence, so the server answers a request it already ran from its reply cache;
//  - if the server restarted (new boot epoch, or it no longer knows the session), the client logs
//    in again and re-drives the unanswered requests in a new session;
//  - a request unanswered after request_timeout is fenced before it is reported: the client sends
//    SLOT_FENCE on its slot (the next seq) and reports Errc::kTimeout only once the server has
//    answered it (MAC'd), after which no copy of the request can ever execute. If the fence is not
//    answered within fence_timeout, the whole session is given up: the client logs in again and,
//    before sending anything else, ends the old session with END_SESSION from the new one; only
//    then are the requests whose fate hung on the old session reported (kTimeout) or re-driven.
//    While the server cannot be reached, such requests stay pending (close() fails them with
//    kShutdown: fate unknown). docs/PROTOCOL.md "Sessions, slots and sequence numbers".
// Threading: one io_context thread; construct, call and destroy the client on it. Completions run on
// it too. Implements GenericTarget, so SCSI/ATA front ends sit directly on top.
#pragma once

#include <utility>  // before Asio

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "ipsan/base/clock.h"
#include "ipsan/base/crypto.h"
#include "ipsan/client/generic_target.h"
#include "ipsan/proto/login.h"
#include "ipsan/proto/rpc.h"
#include "ipsan/proto/transport.h"

namespace ipsan::client {

// A storage-manager grant and the login key derived from it (ipsan/auth/grant.h,
// docs/MANAGER.md); the client runtime renews grants before they expire.
struct LoginGrant {
  Bytes grant;
  Key256 key{};
};

struct ClientOptions {
  std::string client_name = "default";
  Key256 key{};
  std::uint32_t max_slots = 64;  // queue depth cap (the server's slot count also limits it)
  Duration request_timeout = std::chrono::seconds(30);
  Duration login_timeout = std::chrono::seconds(10);
  Duration reconnect_min = std::chrono::milliseconds(10);
  Duration reconnect_max = std::chrono::seconds(1);
  // SLOT_FENCE / END_SESSION: how long a fence may take before the session is given up, and how
  // often an unanswered fence or END_SESSION is sent again.
  Duration fence_timeout = std::chrono::seconds(10);
  Duration fence_retry = std::chrono::milliseconds(500);
  // Transport security offered at login: 0 off, 1 integrity, 2 encrypted (the rudp transport's
  // Config::protection must match; connect.cc sets both from --transport-security).
  std::uint32_t transport_security = 1;
  // The clock every deadline (login, request, fence, END_SESSION retry) is measured on; empty:
  // steady_now(). Tests pass a VirtualClock's now() so that expiry is exact and never sleeps. The
  // io_context timer that looks at the deadlines fires every tick_interval of real time.
  std::function<TimePoint()> clock;
  Duration tick_interval = std::chrono::milliseconds(50);
  // A first connection the peer refuses outright (TCP: connection refused; no listener there)
  // fails connect() at once instead of retrying until the caller's connect timeout. Only before
  // the first login: later, a refused reconnect is a server restarting, and the client retries.
  bool fail_fast_when_refused = true;
  // Set: every login presents the grant this returns (fetched anew at each login, so a renewed
  // grant is used after the server ends a session whose grant expired); nullopt fails the login
  // (no valid grant). Unset: `key` (the server's key ring).
  std::function<std::optional<LoginGrant>()> grant_source;
};

struct ClientStats {
  std::uint64_t requests = 0;
  std::uint64_t completed = 0;
  std::uint64_t failed = 0;
  std::uint64_t timeouts = 0;
  std::uint64_t resent = 0;        // calls re-sent after a transport change (same slot/seq)
  std::uint64_t redriven = 0;      // calls re-driven in a new session after a server restart
  std::uint64_t logins = 0;
  std::uint64_t reconnects = 0;
  std::uint64_t bad_replies = 0;   // unparsable, unknown xid, or failed MAC (dropped)
  std::uint64_t bytes_read = 0;
  std::uint64_t bytes_written = 0;
  std::uint64_t fences = 0;          // SLOT_FENCE sent for a timed-out request
  std::uint64_t fences_failed = 0;   // fences unanswered in time: session given up
  std::uint64_t sessions_ended = 0;  // old sessions ended with END_SESSION before going on
};

using TransportFactory = std::function<std::unique_ptr<proto::ClientTransport>()>;

class SanClient final : public GenericTarget {
 public:
  SanClient(boost::asio::io_context& io, TransportFactory make_transport, ClientOptions options);
  ~SanClient() override;
  SanClient(const SanClient&) = delete;
  SanClient& operator=(const SanClient&) = delete;

  // Connects and logs in; `done` gets kOk, kAuthFailed (wrong key: final), kTimeout, ...
  void connect(std::function<void(Errc)> done);
  void execute(proto::Request request, std::function<void(proto::Reply)> done) override;
  // Logs out (best effort), fails queued requests with kShutdown, closes the transport.
  void close();

  bool ready() const { return state_ == State::kReady; }
  std::uint32_t slot_count() const { return static_cast<std::uint32_t>(slots_.size()); }
  std::uint32_t boot_epoch() const { return epoch_; }
  std::uint64_t session_id() const { return session_id_; }
  std::size_t in_flight() const { return in_flight_.size(); }
  // Timed-out requests waiting for the server to confirm they can no longer execute.
  std::size_t unresolved() const;
  const ClientStats& stats() const { return stats_; }
  proto::TransportStats transport_stats() const;
  // What the transport said when it last closed, if it knew more than the Errc (e.g. "connection
  // refused (tcp 127.0.0.1:5260)"); empty otherwise.
  const std::string& last_failure() const { return last_failure_; }

 private:
  enum class State { kIdle, kConnecting, kLoggingIn, kReady, kBackoff, kFailed, kClosed };
  struct Call;
  struct Slot {
    std::uint64_t seq = 0;
    bool busy = false;
    bool retired = false;
  };

  void start_transport();
  void on_transport_message(Bytes m);
  void on_transport_closed(Errc why);
  void send_login_begin();
  void on_login_reply(const proto::ParsedReply& r, bool begin);
  void login_failed(Errc why, bool fatal);
  void became_ready();
  void pump();
  void send_call(const std::shared_ptr<Call>& c);
  void complete(const std::shared_ptr<Call>& c, proto::Reply reply);
  void fail_all(Errc why);
  void session_lost();
  void forget_session();
  void start_fence(const std::shared_ptr<Call>& c);
  void on_control_reply(const std::shared_ptr<Call>& c, const proto::ParsedReply& r);
  void send_end_sessions();
  void resolve_session(std::uint64_t sid);
  bool ending(std::uint64_t sid) const;
  void schedule_reconnect();
  void arm_tick();
  void tick();
  std::uint32_t next_xid() { return xid_++; }
  TimePoint now() const { return opt_.clock ? opt_.clock() : steady_now(); }

  boost::asio::io_context& io_;
  TransportFactory make_transport_;
  ClientOptions opt_;
  State state_ = State::kIdle;
  std::unique_ptr<proto::ClientTransport> transport_;
  std::vector<std::unique_ptr<proto::ClientTransport>> graveyard_;  // closed inside callbacks
  std::vector<std::function<void(Errc)>> connect_waiters_;

  // Login state.
  std::uint32_t login_xid_ = 0;
  proto::LoginNonce client_nonce_{};
  proto::LoginNonce server_nonce_{};
  TimePoint login_deadline_{};

  // Session.
  std::uint64_t session_id_ = 0;
  std::uint32_t epoch_ = 0;
  Key256 session_key_{};
  Key256 login_key_{};  // this login's key: options' key, or the grant's
  Bytes login_grant_;
  std::vector<Slot> slots_;
  std::uint32_t xid_;

  std::deque<std::shared_ptr<Call>> waiting_;
  // Sent requests whose deadline passed but whose session could not be fenced: reported once
  // END_SESSION for their session (Call::session) is answered.
  std::vector<std::shared_ptr<Call>> unresolved_;
  struct Ending {
    std::uint64_t sid = 0;
    bool in_flight = false;  // an END_SESSION for it is out
    TimePoint next_try{};
  };
  std::vector<Ending> ending_;  // sessions to end before anything else is sent
  std::unordered_map<std::uint32_t, std::shared_ptr<Call>> in_flight_;  // by xid

  boost::asio::steady_timer tick_timer_;
  boost::asio::steady_timer reconnect_timer_;
  Duration backoff_;
  Errc last_error_ = Errc::kOk;
  std::string last_failure_;
  ClientStats stats_;
  proto::TransportStats closed_transport_stats_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace ipsan::client
