#include "ipsan/client/san_client.h"

#include <boost/asio/post.hpp>

#include "ipsan/base/log.h"
#include "ipsan/proto/codec.h"

namespace ipsan::client {

namespace asio = boost::asio;
using proto::Op;

struct SanClient::Call {
  proto::Request req;
  std::function<void(proto::Reply)> done;
  TimePoint deadline;
  std::uint32_t xid = 0;
  int slot = -1;
  std::uint64_t seq = 0;
  std::uint64_t session = 0;  // session the slot/seq belong to
  Bytes wire;                 // encoded call (kept for re-sending on a new transport)
};

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
  login_xid_ = next_xid();
  login_deadline_ = steady_now() + opt_.login_timeout;
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
    a.proof = proto::login_client_proof(opt_.key, opt_.client_name, client_nonce_, server_nonce_);
    a.transport_security = opt_.transport_security;
    login_xid_ = next_xid();
    transport_->send(proto::encode_login_finish_call(login_xid_, a));
    return;
  }
  auto res = proto::decode_login_finish_res(r.results);
  proto::LoginNonce sn = server_nonce_;
  server_nonce_ = {};
  if (!res) return login_failed(Errc::kBadMessage, false);
  if (res->status != Errc::kOk) return login_failed(res->status, res->status == Errc::kAuthFailed);
  auto expect =
      proto::login_server_proof(opt_.key, opt_.client_name, client_nonce_, sn, res->session_id);
  if (!proto::proof_equal(expect, res->server_proof)) {
    IPSAN_LOG(LogLevel::kError, "client", "server failed to prove it knows our key");
    return login_failed(Errc::kAuthFailed, true);
  }
  session_id_ = res->session_id;
  epoch_ = res->boot_epoch;
  session_key_ =
      proto::derive_session_key(opt_.key, opt_.client_name, client_nonce_, sn, session_id_);
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
  c->deadline = steady_now() + opt_.request_timeout;
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
  for (auto& s : slots_)
    if (s.busy) s.retired = true;
  auto waiters = std::move(connect_waiters_);
  connect_waiters_.clear();
  for (auto& w : waiters) w(why);
  for (auto& [xid, c] : calls) {
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
  std::vector<std::shared_ptr<Call>> calls;
  for (auto& [xid, c] : in_flight_) calls.push_back(c);
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
  IPSAN_LOG(LogLevel::kInfo, "client", "transport closed: ", to_string(why));
  if (state_ == State::kClosed) return;
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
    if (in_flight_.empty() && waiting_.empty() && connect_waiters_.empty()) {
      state_ = State::kIdle;  // nothing to do: reconnect lazily on the next request
      return;
    }
    start_transport();
  });
  arm_tick();
}

void SanClient::arm_tick() {
  if (state_ == State::kClosed) return;
  tick_timer_.expires_after(std::chrono::milliseconds(50));
  auto alive = alive_;
  tick_timer_.async_wait([this, alive](boost::system::error_code ec) {
    if (ec || !*alive) return;
    tick();
    if (!in_flight_.empty() || !waiting_.empty() || !connect_waiters_.empty()) arm_tick();
  });
}

void SanClient::tick() {
  const TimePoint now = steady_now();
  if (state_ == State::kLoggingIn && now > login_deadline_) {
    login_failed(Errc::kTimeout, false);
  }
  std::vector<std::shared_ptr<Call>> expired;
  for (auto it = in_flight_.begin(); it != in_flight_.end();) {
    if (it->second->deadline <= now) {
      expired.push_back(it->second);
      it = in_flight_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if ((*it)->deadline <= now) {
      expired.push_back(*it);
      it = waiting_.erase(it);
    } else {
      ++it;
    }
  }
  bool abandoned_sent_call = false;
  for (auto& c : expired) {
    if (c->slot >= 0 && c->session == session_id_ &&
        static_cast<std::size_t>(c->slot) < slots_.size()) {
      slots_[c->slot].retired = true;  // fate unknown: this sequence can never be reused
      abandoned_sent_call = true;
    }
  }
  if (abandoned_sent_call && transport_ && state_ == State::kReady) {
    // The transport would go on retransmitting the abandoned calls, and one could then run on the
    // server after newer writes to the same blocks were acknowledged. Replace the transport first:
    // its queued messages die with it, and the calls still waiting are re-sent on the new one with
    // their same (slot, seq), so the server runs each of them at most once.
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
  if (!connect_waiters_.empty() && state_ != State::kReady && state_ != State::kLoggingIn &&
      waiting_.empty() && in_flight_.empty() && now > login_deadline_ + opt_.request_timeout) {
    auto waiters = std::move(connect_waiters_);
    connect_waiters_.clear();
    for (auto& w : waiters) w(last_error_ == Errc::kOk ? Errc::kTimeout : last_error_);
  }
  pump();
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
