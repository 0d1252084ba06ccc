#include "ipsan/client/san_client.h"

#include <boost/asio/post.hpp>

#include <algorithm>

#include "ipsan/base/log.h"
#include "ipsan/proto/codec.h"

namespace ipsan::client {

namespace asio = boost::asio;
using proto::Op;

struct SanClient::Call {
  enum class Kind { kUser, kFence, kEndSession };
  Kind kind = Kind::kUser;
  proto::Request req;
  std::function<void(proto::Reply)> done;
  TimePoint deadline;
  std::uint32_t xid = 0;
  int slot = -1;
  std::uint64_t seq = 0;
  std::uint64_t session = 0;  // session the slot/seq belong to
  Bytes wire;                 // encoded call (kept for re-sending on a new transport)
  TimePoint retry_at{};       // fence / END_SESSION: when to send it again
  std::shared_ptr<Call> fenced;  // fence: the timed-out request it closes
  std::uint64_t end_sid = 0;     // END_SESSION: the session it ends
};

std::size_t SanClient::unresolved() const {
  std::size_t n = unresolved_.size();
  for (const auto& [xid, c] : in_flight_)
    if (c->kind == Call::Kind::kFence) ++n;
  return n;
}

bool SanClient::ending(std::uint64_t sid) const {
  return sid != 0 && std::any_of(ending_.begin(), ending_.end(),
                                 [sid](const Ending& e) { return e.sid == sid; });
}

SanClient::SanClient(asio::io_context& io, TransportFactory make_transport, ClientOptions options)
    : io_(io),
      make_transport_(std::move(make_transport)),
      opt_(std::move(options)),
      xid_(static_cast<std::uint32_t>(random_u64())),
      tick_timer_(io),
      reconnect_timer_(io),
      backoff_(opt_.reconnect_min) {
  crypto_init();
  if (opt_.max_slots == 0) opt_.max_slots = 1;
}

SanClient::~SanClient() {
  *alive_ = false;
  if (transport_) {
    transport_->on_message = nullptr;
    transport_->on_closed = nullptr;
    transport_->close();
  }
}

proto::TransportStats SanClient::transport_stats() const {
  proto::TransportStats t = closed_transport_stats_;
  if (transport_) proto::add_counters(t, transport_->stats());
  return t;
}

void SanClient::connect(std::function<void(Errc)> done) {
  if (state_ == State::kReady) {
    if (done) asio::post(io_, [done] { done(Errc::kOk); });
    return;
  }
  if (done) connect_waiters_.push_back(std::move(done));
  if (state_ == State::kIdle || state_ == State::kFailed) {
    backoff_ = opt_.reconnect_min;
    start_transport();
  }
  arm_tick();
}

void SanClient::start_transport() {
  if (transport_) {
    proto::add_counters(closed_transport_stats_, transport_->stats());
    transport_->on_message = nullptr;
    transport_->on_closed = nullptr;
    transport_->close();
    graveyard_.push_back(std::move(transport_));
    auto alive = alive_;
    asio::post(io_, [this, alive] {
      if (*alive) graveyard_.clear();
    });
  }
  state_ = State::kConnecting;
  try {
    transport_ = make_transport_();
  } catch (const std::exception& e) {
    IPSAN_LOG(LogLevel::kWarn, "client", "cannot create transport: ", e.what());
    transport_.reset();
  }
  if (!transport_) {
    last_error_ = Errc::kConnectionLost;
    schedule_reconnect();
    return;
  }
  transport_->on_message = [this](Bytes m) { on_transport_message(std::move(m)); };
  transport_->on_closed = [this](Errc why) { on_transport_closed(why); };
  stats_.reconnects++;
  // A session that survived the transport change is tried again as is; the server tells us with
  // AUTH_REJECTEDCRED (or the new transport's epoch does) if it is gone.
  if (session_id_ != 0 && transport_->peer_epoch() != 0 && transport_->peer_epoch() != epoch_) {
    session_lost();
    return;
  }
  if (session_id_ != 0) {
    state_ = State::kReady;
    // The handshake binds the session's key to the new connection (or reports kStaleSession).
    transport_->bind_session(session_id_, session_key_);
    for (auto& [xid, c] : in_flight_) {
      stats_.resent++;
      if (transport_->send(c->wire) != Errc::kOk) break;
    }
    became_ready();
    return;
  }
  send_login_begin();
}

void SanClient::send_login_begin() {
  state_ = State::kLoggingIn;
  random_bytes(client_nonce_);
  login_key_ = opt_.key;
  login_grant_.clear();
  if (opt_.grant_source) {
    auto g = opt_.grant_source();
    if (!g) {
      IPSAN_LOG(LogLevel::kError, "client", "no valid grant to log in with (expired, revoked, or "
                "the manager could not renew it)");
      return login_failed(Errc::kAuthFailed, true);
    }
    login_key_ = g->key;
    login_grant_ = std::move(g->grant);
  }
  login_xid_ = next_xid();
  login_deadline_ = now() + opt_.login_timeout;
  proto::LoginBeginArgs a{opt_.client_name, client_nonce_, opt_.transport_security};
  transport_->send(proto::encode_login_begin_call(login_xid_, a));
}

void SanClient::on_transport_message(Bytes m) {
  auto parsed = proto::parse_reply(m);
  if (!parsed) {
    stats_.bad_replies++;
    return;
  }
  const proto::ParsedReply& r = *parsed;
  if (state_ == State::kLoggingIn && r.xid == login_xid_) {
    on_login_reply(r, server_nonce_ == proto::LoginNonce{});
    return;
  }
  auto it = in_flight_.find(r.xid);
  if (it == in_flight_.end()) {
    stats_.bad_replies++;  // a late duplicate, or a reply for a call that already timed out
    return;
  }
  std::shared_ptr<Call> c = it->second;
  if (c->kind != Call::Kind::kUser) {
    on_control_reply(c, r);
    return;
  }
  proto::SlotCred cred{c->session, static_cast<std::uint32_t>(c->slot), c->seq};
  if (r.reply_stat == proto::ReplyStat::kDenied) {
    if (r.reject_stat == proto::RejectStat::kAuthError &&
        r.auth_stat == proto::AuthStat::kRejectedCred) {
      if (c->session == session_id_) session_lost();  // server no longer knows the session
      return;
    }
    // Bad MAC / too weak: the call was not executed, but retire the slot to stay safe.
    in_flight_.erase(it);
    if (c->slot >= 0 && c->session == session_id_) slots_[c->slot].retired = true;
    proto::Reply rep;
    rep.status = r.to_errc();
    complete(c, std::move(rep));
    return;
  }
  if (r.verf_flavor == proto::kAuthIpsan) {
    if (!proto::verify_reply(r, session_key_, cred)) {
      stats_.bad_replies++;  // forged or corrupted: ignore, the genuine reply may still come
      IPSAN_LOG(LogLevel::kWarn, "client", "dropped a reply with a bad MAC (xid ", r.xid, ")");
      return;
    }
  } else if (r.success()) {
    // Unauthenticated statuses are hints the server sends when it may not MAC a reply for this
    // (slot, seq) again (docs/PROTOCOL.md). BUSY for a re-executed READ means "read again on the
    // next seq"; anything else is ignored (an attacker could forge it) and the call waits on.
    auto hint = proto::decode_results(c->req.op, r.results);
    if (hint && hint->status == Errc::kBusy && c->req.op == Op::kRead && c->slot >= 0 &&
        c->session == session_id_) {
      in_flight_.erase(it);
      slots_[c->slot].busy = false;
      c->slot = -1;
      waiting_.push_front(c);
      pump();
      return;
    }
    stats_.bad_replies++;
    return;
  }
  in_flight_.erase(it);
  Slot* slot = (c->slot >= 0 && c->session == session_id_) ? &slots_[c->slot] : nullptr;
  proto::Reply rep;
  if (!r.success()) {
    if (slot) slot->retired = true;
    rep.status = r.to_errc();
  } else {
    // READ data is taken over from the message's buffer, not copied (`r` views into `m`: not
    // used after this).
    auto dec = proto::decode_results(c->req.op, r.results, m);
    if (!dec) {
      rep.status = Errc::kBadMessage;
    } else {
      rep = std::move(*dec);
    }
    if (slot) {
      slot->busy = false;
      if (rep.status == Errc::kSeqMisordered) slot->retired = true;
    }
  }
  complete(c, std::move(rep));
  pump();
}

void SanClient::on_login_reply(const proto::ParsedReply& r, bool begin) {
  if (!r.success()) {
    login_failed(r.to_errc(), r.reply_stat == proto::ReplyStat::kDenied);
    return;
  }
  if (begin) {
    auto res = proto::decode_login_begin_res(r.results);
    if (!res) return login_failed(Errc::kBadMessage, false);
    if (res->status == Errc::kNotSupported) {
      IPSAN_LOG(LogLevel::kError, "client", "the server refuses transport security '",
                opt_.transport_security == 0   ? "off"
                : opt_.transport_security == 1 ? "integrity"
                                               : "encrypted",
                "': it requires a stronger one (--transport-security)");
      return login_failed(res->status, true);
    }
    if (res->status != Errc::kOk)
      return login_failed(res->status, res->status == Errc::kAuthFailed);
    server_nonce_ = res->server_nonce;
    proto::LoginFinishArgs a;
    a.client_name = opt_.client_name;
    a.client_nonce = client_nonce_;
    a.server_nonce = server_nonce_;
    a.proof = proto::login_client_proof(login_key_, opt_.client_name, client_nonce_, server_nonce_);
    a.transport_security = opt_.transport_security;
    a.grant = login_grant_;
    login_xid_ = next_xid();
    transport_->send(proto::encode_login_finish_call(login_xid_, a));
    return;
  }
  auto res = proto::decode_login_finish_res(r.results);
  proto::LoginNonce sn = server_nonce_;
  server_nonce_ = {};
  if (!res) return login_failed(Errc::kBadMessage, false);
  if (res->status == Errc::kBusy) {
    IPSAN_LOG(LogLevel::kWarn, "client", "server refused the login: BUSY (this client holds as many "
              "sessions as the server allows it, or the server is full); retrying");
  }
  if (res->status != Errc::kOk) return login_failed(res->status, res->status == Errc::kAuthFailed);
  auto expect =
      proto::login_server_proof(login_key_, opt_.client_name, client_nonce_, sn, res->session_id);
  if (!proto::proof_equal(expect, res->server_proof)) {
    IPSAN_LOG(LogLevel::kError, "client", "server failed to prove it knows our key");
    return login_failed(Errc::kAuthFailed, true);
  }
  session_id_ = res->session_id;
  epoch_ = res->boot_epoch;
  session_key_ =
      proto::derive_session_key(login_key_, opt_.client_name, client_nonce_, sn, session_id_);
  slots_.assign(std::min(res->slot_count, opt_.max_slots), Slot{});
  stats_.logins++;
  // Every later packet of this connection is protected (docs/RUDP.md "Packet protection").
  transport_->bind_session(session_id_, session_key_);
  state_ = State::kReady;
  backoff_ = opt_.reconnect_min;
  IPSAN_LOG(LogLevel::kInfo, "client", "logged in as '", opt_.client_name, "', session ",
            session_id_, ", ", slots_.size(), " slots, server epoch ", epoch_);
  became_ready();
}

void SanClient::login_failed(Errc why, bool fatal) {
  server_nonce_ = {};
  last_error_ = why;
  IPSAN_LOG(LogLevel::kWarn, "client", "login failed: ", to_string(why));
  if (fatal) {
    state_ = State::kFailed;
    fail_all(why);
    return;
  }
  schedule_reconnect();
}

void SanClient::became_ready() {
  auto waiters = std::move(connect_waiters_);
  connect_waiters_.clear();
  for (auto& w : waiters) w(Errc::kOk);
  pump();
}

void SanClient::execute(proto::Request request, std::function<void(proto::Reply)> done) {
  auto c = std::make_shared<Call>();
  c->req = std::move(request);
  c->done = std::move(done);
  c->deadline = now() + opt_.request_timeout;
  stats_.requests++;
  if (state_ == State::kClosed) {
    proto::Reply rep;
    rep.status = Errc::kShutdown;
    complete(c, std::move(rep));
    return;
  }
  waiting_.push_back(std::move(c));
  if (tick_timer_.expiry() <= std::chrono::steady_clock::now()) arm_tick();  // request_timeout
  if (state_ == State::kIdle || state_ == State::kFailed) connect(nullptr);
  pump();
}

void SanClient::pump() {
  if (state_ != State::kReady) return;
  if (!ending_.empty()) {
    // Nothing new goes out before every earlier session is ended on the server: a request of
    // one of them could otherwise still execute after a newer one was acknowledged.
    send_end_sessions();
    return;
  }
  std::size_t free_slots = 0;
  for (auto& s : slots_)
    if (!s.busy && !s.retired) ++free_slots;
  if (free_slots == 0 && !waiting_.empty() && in_flight_.empty()) {
    // Every slot was retired by timeouts: start a fresh session.
    session_lost();
    return;
  }
  std::size_t next = 0;
  while (!waiting_.empty() && free_slots > 0) {
    while (slots_[next].busy || slots_[next].retired) ++next;
    auto c = std::move(waiting_.front());
    waiting_.pop_front();
    Slot& s = slots_[next];
    s.busy = true;
    c->slot = static_cast<int>(next);
    c->seq = ++s.seq;
    c->session = session_id_;
    c->xid = next_xid();
    --free_slots;
    send_call(c);
  }
}

void SanClient::send_call(const std::shared_ptr<Call>& c) {
  proto::SlotCred cred{c->session, static_cast<std::uint32_t>(c->slot), c->seq};
  c->wire = proto::encode_call(c->xid, cred, session_key_, c->req);
  in_flight_[c->xid] = c;
  if (transport_) {
    Errc e = transport_->send(c->wire);
    if (e == Errc::kTooLarge) {
      in_flight_.erase(c->xid);
      slots_[c->slot].busy = false;
      slots_[c->slot].retired = true;  // never sent, but keep the rule simple
      proto::Reply rep;
      rep.status = Errc::kTooLarge;
      complete(c, std::move(rep));
    }
  }
}

void SanClient::complete(const std::shared_ptr<Call>& c, proto::Reply reply) {
  if (reply.status == Errc::kOk) {
    stats_.completed++;
    if (c->req.op == Op::kRead) stats_.bytes_read += reply.data.size();
    if (c->req.op == Op::kWrite) stats_.bytes_written += c->req.data.size();
  } else {
    stats_.failed++;
  }
  if (c->done) {
    auto done = std::move(c->done);
    c->done = nullptr;
    done(std::move(reply));
  }
}

void SanClient::fail_all(Errc why) {
  auto calls = std::move(in_flight_);
  in_flight_.clear();
  auto waiting = std::move(waiting_);
  waiting_.clear();
  for (auto& c : unresolved_) waiting.push_back(std::move(c));
  unresolved_.clear();
  for (auto& [xid, c] : calls) {
    if (c->fenced) waiting.push_back(std::move(c->fenced));
  }
  for (auto& s : slots_)
    if (s.busy) s.retired = true;
  auto waiters = std::move(connect_waiters_);
  connect_waiters_.clear();
  for (auto& w : waiters) w(why);
  for (auto& [xid, c] : calls) {
    if (c->kind != Call::Kind::kUser) continue;
    proto::Reply rep;
    rep.status = why;
    complete(c, std::move(rep));
  }
  for (auto& c : waiting) {
    proto::Reply rep;
    rep.status = why;
    complete(c, std::move(rep));
  }
}

void SanClient::forget_session() {
  // Every unanswered call goes back to the front of the queue, in issue order (deadlines are
  // issue time + a constant), to be re-driven in the next session.
  // The session is given up, but the server may still hold it: it is ended with END_SESSION from
  // the next session before anything is sent there (pump()). Timed-out requests being fenced wait
  // for that; requests still in their time are re-driven after it.
  if (session_id_ != 0 && !ending(session_id_)) ending_.push_back(Ending{session_id_, false, {}});
  for (auto& e : ending_) e.in_flight = false;  // END_SESSION calls of this session die with it
  std::vector<std::shared_ptr<Call>> calls;
  for (auto& [xid, c] : in_flight_) {
    if (c->kind == Call::Kind::kFence) {
      unresolved_.push_back(std::move(c->fenced));
    } else if (c->kind == Call::Kind::kUser) {
      calls.push_back(c);
    }
  }
  std::sort(calls.begin(), calls.end(),
            [](const auto& a, const auto& b) { return a->deadline < b->deadline; });
  in_flight_.clear();
  for (auto it = calls.rbegin(); it != calls.rend(); ++it) {
    (*it)->slot = -1;
    stats_.redriven++;
    waiting_.push_front(*it);
  }
  session_id_ = 0;
  slots_.clear();
}

void SanClient::session_lost() {
  // The server no longer knows our session (it restarted): log in again on this transport.
  IPSAN_LOG(LogLevel::kInfo, "client", "session ", session_id_, " lost; logging in again");
  forget_session();
  if (transport_ && transport_->is_open()) {
    send_login_begin();
  } else {
    start_transport();
  }
}

void SanClient::on_transport_closed(Errc why) {
  last_error_ = why;
  last_failure_ = transport_ ? transport_->failure() : std::string();
  IPSAN_LOG(LogLevel::kInfo, "client", "transport closed: ", to_string(why),
            last_failure_.empty() ? "" : " (", last_failure_, last_failure_.empty() ? "" : ")");
  if (state_ == State::kClosed) return;
  if (opt_.fail_fast_when_refused && transport_ && transport_->refused() && stats_.logins == 0 &&
      session_id_ == 0) {
    // Nobody listens there (and never did for us): say so now rather than after the connect
    // timeout. Requests already queued keep their own deadlines.
    auto waiters = std::move(connect_waiters_);
    connect_waiters_.clear();
    for (auto& w : waiters) w(Errc::kConnectionLost);
  }
  if (why == Errc::kStaleSession && session_id_ != 0) {
    // New server boot epoch: the session is gone. Reconnect first, then log in again.
    forget_session();
  }
  if (state_ == State::kLoggingIn) server_nonce_ = {};
  schedule_reconnect();
}

void SanClient::schedule_reconnect() {
  if (state_ == State::kClosed) return;
  state_ = State::kBackoff;
  reconnect_timer_.expires_after(backoff_);
  backoff_ = std::min(backoff_ * 2, opt_.reconnect_max);
  auto alive = alive_;
  reconnect_timer_.async_wait([this, alive](boost::system::error_code ec) {
    if (ec || !*alive || state_ != State::kBackoff) return;
    if (in_flight_.empty() && waiting_.empty() && connect_waiters_.empty() &&
        unresolved_.empty()) {
      state_ = State::kIdle;  // nothing to do: reconnect lazily on the next request
      return;
    }
    start_transport();
  });
  arm_tick();
}

void SanClient::arm_tick() {
  if (state_ == State::kClosed) return;
  tick_timer_.expires_after(opt_.tick_interval);
  auto alive = alive_;
  tick_timer_.async_wait([this, alive](boost::system::error_code ec) {
    if (ec || !*alive) return;
    tick();
    if (!in_flight_.empty() || !waiting_.empty() || !connect_waiters_.empty() ||
        !unresolved_.empty())
      arm_tick();
  });
}

void SanClient::tick() {
  const TimePoint now = this->now();
  if (state_ == State::kLoggingIn && now > login_deadline_) {
    login_failed(Errc::kTimeout, false);
  }
  std::vector<std::shared_ptr<Call>> expired;   // never sent, or their session is ended: report
  std::vector<std::shared_ptr<Call>> to_fence;  // sent in this session: fence first
  bool fence_failed = false;
  for (auto it = in_flight_.begin(); it != in_flight_.end();) {
    Call& c = *it->second;
    if (c.kind != Call::Kind::kUser) {
      if (c.kind == Call::Kind::kFence && c.deadline <= now) fence_failed = true;
      if (c.retry_at <= now && transport_ && state_ == State::kReady) {
        // Unanswered (the server answers nothing while the fenced request still runs, or a
        // message was lost): send the same bytes again; a repeat gets the cached reply.
        c.retry_at = now + opt_.fence_retry;
        transport_->send(c.wire);
      }
      ++it;
      continue;
    }
    if (c.deadline <= now) {
      to_fence.push_back(it->second);
      it = in_flight_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if ((*it)->deadline <= now) {
      // A re-driven request was sent in a session that is not ended yet: it could still run
      // there, so it waits for END_SESSION like a fenced one.
      if (ending((*it)->session))
        unresolved_.push_back(*it);
      else
        expired.push_back(*it);
      it = waiting_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& c : to_fence) {
    if (c->slot >= 0 && c->session == session_id_ && session_id_ != 0 &&
        static_cast<std::size_t>(c->slot) < slots_.size()) {
      start_fence(c);
    } else if (ending(c->session)) {
      unresolved_.push_back(c);
    } else {
      expired.push_back(c);
    }
  }
  if (!to_fence.empty() && transport_ && state_ == State::kReady) {
    // The transport would go on retransmitting the abandoned calls; replace it (its queue dies
    // with it). The fences and the calls still in time are re-sent on the new one, with their
    // same (slot, seq), so the server runs each at most once.
    start_transport();
  }
  for (auto& c : expired) {
    stats_.timeouts++;
    proto::Reply rep;
    rep.status =
        (state_ == State::kReady || last_error_ == Errc::kOk) ? Errc::kTimeout : last_error_;
    if (rep.status != Errc::kTimeout && rep.status != Errc::kConnectionLost &&
        rep.status != Errc::kAuthFailed)
      rep.status = Errc::kTimeout;
    complete(c, std::move(rep));
  }
  if (fence_failed && session_id_ != 0) {
    stats_.fences_failed++;
    IPSAN_LOG(LogLevel::kWarn, "client", "slot fence unanswered for ",
              std::chrono::duration_cast<std::chrono::milliseconds>(opt_.fence_timeout).count(),
              " ms; giving up session ", session_id_);
    session_lost();
  }
  if (!connect_waiters_.empty() && state_ != State::kReady && state_ != State::kLoggingIn &&
      waiting_.empty() && in_flight_.empty() && now > login_deadline_ + opt_.request_timeout) {
    auto waiters = std::move(connect_waiters_);
    connect_waiters_.clear();
    for (auto& w : waiters) w(last_error_ == Errc::kOk ? Errc::kTimeout : last_error_);
  }
  pump();
}

void SanClient::start_fence(const std::shared_ptr<Call>& c) {
  // The request's fate is unknown: it may be lost, still on its way, or done with its reply lost.
  // SLOT_FENCE on the next seq of its slot makes the server refuse every lower seq from then on;
  // its MAC'd answer is what allows reporting the timeout. The slot stays busy until then.
  Slot& slot = slots_[static_cast<std::size_t>(c->slot)];
  auto f = std::make_shared<Call>();
  f->kind = Call::Kind::kFence;
  f->slot = c->slot;
  f->seq = ++slot.seq;
  f->session = session_id_;
  f->xid = next_xid();
  f->deadline = now() + opt_.fence_timeout;
  f->retry_at = now() + opt_.fence_retry;
  f->fenced = c;
  f->wire = proto::encode_slot_fence_call(
      f->xid, proto::SlotCred{f->session, static_cast<std::uint32_t>(f->slot), f->seq},
      session_key_);
  in_flight_[f->xid] = f;
  stats_.fences++;
  if (transport_ && state_ == State::kReady) transport_->send(f->wire);
}

void SanClient::on_control_reply(const std::shared_ptr<Call>& c, const proto::ParsedReply& r) {
  if (r.reply_stat == proto::ReplyStat::kDenied) {
    if (r.reject_stat == proto::RejectStat::kAuthError &&
        r.auth_stat == proto::AuthStat::kRejectedCred && c->session == session_id_) {
      session_lost();  // the server does not know the session (any more): end it from a new one
    } else {
      stats_.bad_replies++;  // unauthenticated: the fence deadline decides
    }
    return;
  }
  proto::SlotCred cred{c->session, static_cast<std::uint32_t>(c->slot), c->seq};
  if (r.verf_flavor != proto::kAuthIpsan || !proto::verify_reply(r, session_key_, cred)) {
    stats_.bad_replies++;  // only a MAC'd answer counts; keep asking
    return;
  }
  auto dec = proto::decode_results(c->kind == Call::Kind::kFence ? Op::kSlotFence : Op::kEndSession,
                                   r.results);
  const Errc status = (r.success() && dec) ? dec->status : Errc::kBadMessage;
  in_flight_.erase(c->xid);
  Slot* slot = (c->slot >= 0 && c->session == session_id_ &&
                static_cast<std::size_t>(c->slot) < slots_.size())
                   ? &slots_[static_cast<std::size_t>(c->slot)]
                   : nullptr;
  if (slot) slot->busy = false;
  if (c->kind == Call::Kind::kFence) {
    if (status != Errc::kOk) {
      // Not fenced: give the session up (END_SESSION from the next one decides the request).
      if (slot) slot->retired = true;
      unresolved_.push_back(std::move(c->fenced));
      session_lost();
      return;
    }
    // Every copy of the request is now refused by the server: its timeout can be reported.
    stats_.timeouts++;
    proto::Reply rep;
    rep.status = Errc::kTimeout;
    complete(c->fenced, std::move(rep));
    c->fenced.reset();
    pump();
    return;
  }
  // END_SESSION.
  auto e = std::find_if(ending_.begin(), ending_.end(),
                        [&](const Ending& x) { return x.sid == c->end_sid; });
  if (status == Errc::kBusy) {
    // The old session's last calls are still running on the server: ask again shortly.
    if (e != ending_.end()) {
      e->in_flight = false;
      e->next_try = now() + opt_.fence_retry;
    }
    return;
  }
  if (status != Errc::kOk) {
    IPSAN_LOG(LogLevel::kError, "client", "END_SESSION for session ", c->end_sid, " answered ",
              to_string(status));
  }
  resolve_session(c->end_sid);
  pump();
}

void SanClient::resolve_session(std::uint64_t sid) {
  ending_.erase(std::remove_if(ending_.begin(), ending_.end(),
                               [sid](const Ending& x) { return x.sid == sid; }),
                ending_.end());
  stats_.sessions_ended++;
  IPSAN_LOG(LogLevel::kInfo, "client", "old session ", sid, " ended on the server");
  std::vector<std::shared_ptr<Call>> done;
  for (auto it = unresolved_.begin(); it != unresolved_.end();) {
    if ((*it)->session == sid) {
      done.push_back(std::move(*it));
      it = unresolved_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& c : done) {
    stats_.timeouts++;
    proto::Reply rep;
    rep.status = Errc::kTimeout;
    complete(c, std::move(rep));
  }
}

void SanClient::send_end_sessions() {
  if (state_ != State::kReady || session_id_ == 0 || !transport_) return;
  const TimePoint now = this->now();
  std::size_t next = 0;
  for (auto& e : ending_) {
    if (e.in_flight || e.next_try > now) continue;
    while (next < slots_.size() && (slots_[next].busy || slots_[next].retired)) ++next;
    if (next == slots_.size()) return;
    Slot& s = slots_[next];
    auto c = std::make_shared<Call>();
    c->kind = Call::Kind::kEndSession;
    c->end_sid = e.sid;
    c->slot = static_cast<int>(next);
    c->seq = ++s.seq;
    c->session = session_id_;
    c->xid = next_xid();
    c->deadline = TimePoint::max();  // idempotent: asked until answered
    c->retry_at = now + opt_.fence_retry;
    c->wire = proto::encode_end_session_call(
        c->xid, proto::SlotCred{c->session, static_cast<std::uint32_t>(c->slot), c->seq},
        session_key_, e.sid);
    s.busy = true;
    e.in_flight = true;
    in_flight_[c->xid] = c;
    transport_->send(c->wire);
  }
}

void SanClient::close() {
  if (state_ == State::kClosed) return;
  if (state_ == State::kReady && transport_ && session_id_ != 0) {
    // Best-effort LOGOUT on a free slot, so the server can drop the session now.
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      if (!slots_[i].busy && !slots_[i].retired) {
        proto::SlotCred cred{session_id_, static_cast<std::uint32_t>(i), ++slots_[i].seq};
        transport_->send(proto::encode_logout_call(next_xid(), cred, session_key_));
        break;
      }
    }
  }
  state_ = State::kClosed;
  tick_timer_.cancel();
  reconnect_timer_.cancel();
  fail_all(Errc::kShutdown);
}

}  // namespace ipsan::client
