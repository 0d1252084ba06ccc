#include "ipsan/server/server.h"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <cstring>
#include <optional>
#include <sstream>

#include "ipsan/base/crypto.h"
#include "ipsan/base/log.h"
#include "ipsan/proto/codec.h"
#include "ipsan/proto/login.h"
#include "ipsan/proto/rpc.h"

namespace ipsan::server {

namespace asio = boost::asio;
using proto::Op;

struct StorageServer::Session {
  std::uint64_t id = 0;
  std::string client;
  Key256 key{};
  std::uint32_t transport_security = 1;  // negotiated at login (0 off, 1 integrity, 2 encrypted)
  SlotTable slots;
  std::vector<Route> reply_to;  // per slot: where the latest copy of the call came from
  std::unordered_map<std::uint32_t, std::uint64_t> seen_generation;  // per device id
  TimePoint last_active;
  std::optional<GrantAccess> grant;  // logged in with a manager grant: what it allows
  Session(std::uint32_t n) : slots(n), reply_to(n) {}
};

struct StorageServer::PendingLogin {
  std::string client;
  proto::LoginNonce client_nonce{};
  TimePoint expires;
};

namespace {

std::string nonce_key(const proto::LoginNonce& n) {
  return std::string(reinterpret_cast<const char*>(n.data()), n.size());
}

const char* security_name(std::uint32_t t) {
  return t == 0 ? "off" : t == 1 ? "integrity" : "encrypted";
}

// A stateless server nonce (WireGuard/QUIC style: no state before the client proves its key):
// u32 issue time (seconds of the steady clock) || 12 bytes of HMAC(login secret, time, client
// name, client nonce). LOGIN_FINISH recomputes it; nothing is stored per LOGIN_BEGIN.
proto::LoginNonce make_server_nonce(const std::array<std::uint8_t, 32>& secret,
                                    std::uint32_t issued, std::string_view name,
                                    const proto::LoginNonce& cn) {
  proto::LoginNonce n{};
  store_be32(n.data(), issued);
  const Digest256 d = hmac_sha256(
      secret, {as_bytes("ipsan-login-nonce-v1"), ByteSpan(n.data(), 4), as_bytes(name), cn});
  std::memcpy(n.data() + 4, d.data(), n.size() - 4);
  return n;
}

std::uint32_t steady_seconds(TimePoint t) {
  return static_cast<std::uint32_t>(
      std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count());
}

proto::Reply status_reply(Errc e) {
  proto::Reply r;
  r.status = e;
  return r;
}

}  // namespace

StorageServer::StorageServer(asio::io_context& io, ServerOptions options, KeyRing keys,
                             std::vector<Export> exports)
    : io_(io), opt_(std::move(options)), keys_(std::move(keys)), reaper_(io) {
  crypto_init();
  random_bytes(login_secret_);
  if (!opt_.clock) throw std::runtime_error("server options: no clock");
  if (opt_.slot_count == 0 || opt_.slot_count > proto::kMaxSlots)
    throw std::runtime_error("slot count must be 1.." + std::to_string(proto::kMaxSlots));
  if (opt_.max_io_bytes == 0 || opt_.max_io_bytes > proto::kMaxIoBytes)
    throw std::runtime_error("max I/O size must be 1.." + std::to_string(proto::kMaxIoBytes));
  epoch_ = opt_.boot_epoch;
  while (epoch_ == 0) epoch_ = static_cast<std::uint32_t>(random_u64());
  for (auto& e : exports) {
    if (!e.backend) throw std::runtime_error("export '" + e.name + "' has no back end");
    if (exports_.count(e.device_id))
      throw std::runtime_error("device id " + std::to_string(e.device_id) + " exported twice");
    proto::Identity id = make_identity(e, opt_.max_io_bytes);
    std::uint32_t dev = e.device_id;
    exports_.emplace(dev, ExportEntry{std::move(e), id});
  }
}

StorageServer::~StorageServer() {
  *alive_ = false;
  for (auto& t : transports_) {
    t->on_message = nullptr;
    t->on_peer_closed = nullptr;
    t->close();
  }
}

proto::Identity StorageServer::make_identity(const Export& e, std::uint32_t max_io_bytes) {
  proto::Identity id;
  auto g = e.backend->geometry();
  auto caps = e.backend->capabilities();
  id.vendor = "IPSAN";
  id.product = e.name.empty() ? "VIRTUAL-DISK" : e.name.substr(0, proto::kMaxProduct);
  id.revision = "0001";
  // A stable identity: same export name, device id and back end give the same UUID and serial.
  std::string basis = e.name + "/" + std::to_string(e.device_id) + "/" + e.backend->describe();
  Digest256 h = hmac_sha256(as_bytes("ipsan-device-uuid-v1"), {as_bytes(basis)});
  std::memcpy(id.uuid.data(), h.data(), id.uuid.size());
  id.uuid[6] =
      static_cast<std::uint8_t>((id.uuid[6] & 0x0F) | 0x50);  // RFC 4122 name-based (v5-style)
  id.uuid[8] = static_cast<std::uint8_t>((id.uuid[8] & 0x3F) | 0x80);
  id.serial = to_hex(ByteSpan(h.data() + 16, 8));
  id.block_size = g.block_size;
  id.block_count = g.block_count;
  std::uint32_t c = 0;
  if (caps.fua) c |= proto::kCapFua;
  if (caps.flush) c |= proto::kCapFlush;
  if (caps.trim) c |= proto::kCapTrim;
  if (caps.write_zeroes) c |= proto::kCapWriteZeroes;
  if (caps.read_only || e.read_only) c |= proto::kCapReadOnly;
  if (caps.rotational) c |= proto::kCapRotational;
  std::uint32_t max_blocks = max_io_bytes / g.block_size;
  // WRITE with kFlagAtomic: offered when the back end applies every write a request may carry
  // all or nothing (backends::Backend::write_atomic).
  if (e.backend->atomic_write_max_blocks() >= max_blocks) c |= proto::kCapAtomicWrite;
  id.capabilities = c;
  if (caps.max_transfer_blocks != 0 && caps.max_transfer_blocks < max_blocks) {
    // The server splits larger requests itself only through the virtualization layer; keep the
    // advertised limit at what one request may carry.
  }
  id.max_transfer_blocks = max_blocks;
  id.optimal_transfer_blocks = std::min<std::uint32_t>(max_blocks, (1u << 20) / g.block_size);
  return id;
}

void StorageServer::attach(std::unique_ptr<proto::ServerTransport> transport) {
  proto::ServerTransport* t = transport.get();
  t->on_message = [this, t](proto::PeerId peer, Bytes m) { on_message(t, peer, std::move(m)); };
  t->on_peer_closed = [](proto::PeerId) {};  // sessions outlive connections
  // A reconnecting client binds its session's key to the new connection in the handshake.
  t->session_lookup =
      [this](std::uint64_t sid) -> std::optional<proto::ServerTransport::SessionLookup> {
    auto it = sessions_.find(sid);
    if (it == sessions_.end()) return std::nullopt;
    return proto::ServerTransport::SessionLookup{it->second->key, it->second->transport_security};
  };
  transports_.push_back(std::move(transport));
}

void StorageServer::start() { arm_reaper(); }

void StorageServer::reap() { reap(now()); }

std::uint16_t StorageServer::port(std::size_t index) const {
  return index < transports_.size() ? transports_[index]->local_port() : 0;
}

void StorageServer::arm_reaper() {
  reaper_.expires_after(opt_.reap_interval);
  auto alive = alive_;
  reaper_.async_wait([this, alive](boost::system::error_code ec) {
    if (ec || !*alive || stopping_) return;
    reap(now());
    arm_reaper();
  });
}

void StorageServer::reap(TimePoint t) {
  for (auto it = pending_logins_.begin(); it != pending_logins_.end();) {
    if (it->second.expires <= t)
      it = pending_logins_.erase(it);
    else
      ++it;
  }
  for (auto it = dying_.begin(); it != dying_.end();) {
    if (!it->second->slots.busy())
      it = dying_.erase(it);
    else
      ++it;
  }
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    auto& s = it->second;
    if (!s->slots.busy() && t - s->last_active > opt_.session_idle_timeout) {
      IPSAN_LOG(LogLevel::kInfo, "server", "session ", s->id, " of '", s->client, "' expired");
      it = sessions_.erase(it);
    } else {
      ++it;
    }
  }
}

void StorageServer::send(const Route& r, Bytes reply) {
  if (r.transport) r.transport->send(r.peer, std::move(reply));
}

void StorageServer::on_message(proto::ServerTransport* t, proto::PeerId peer, Bytes message) {
  Route route{t, peer};
  stats_.calls++;
  if (stopping_) {
    stats_.dropped++;
    return;
  }
  auto msg = std::make_shared<Bytes>(std::move(message));
  auto parsed = proto::parse_call(*msg);
  if (!parsed) {
    const proto::RpcReject& rej = parsed.error();
    if (rej.kind == proto::RejectKind::kDrop) {
      stats_.dropped++;
      IPSAN_LOG(LogLevel::kDebug, "server", "dropped unparsable message from ", t->peer_name(peer));
      return;
    }
    if (rej.kind == proto::RejectKind::kAuthError)
      stats_.auth_failures++;
    else
      stats_.rejected++;
    send(route, proto::encode_reject(rej));
    return;
  }
  const proto::ParsedCall& call = *parsed;
  switch (call.op) {
    case Op::kNull:
      send(route,
           proto::encode_unauthenticated_reply(call.xid, Op::kNull, status_reply(Errc::kOk)));
      return;
    case Op::kLoginBegin: handle_login_begin(route, call.xid, call.args); return;
    case Op::kLoginFinish: handle_login_finish(route, call.xid, call.args); return;
    default: handle_session_call(route, std::move(msg), &call); return;
  }
}

void StorageServer::handle_login_begin(const Route& r, std::uint32_t xid, ByteSpan args) {
  auto a = proto::decode_login_begin_args(args);
  if (!a) {
    stats_.rejected++;
    send(r, proto::encode_reject(xid, proto::RpcReject{proto::RejectKind::kGarbageArgs, xid, {}}));
    return;
  }
  proto::LoginBeginRes res;
  if (a->transport_security < opt_.transport_security) {
    // The weaker side is refused with a clear error on both sides.
    IPSAN_LOG(LogLevel::kWarn, "server", "login of '", a->client_name, "' from ",
              r.transport->peer_name(r.peer), " refused: it offers transport security '",
              security_name(a->transport_security), "', this server requires at least '",
              security_name(opt_.transport_security), "'");
    res.status = Errc::kNotSupported;
    send(r, proto::encode_login_begin_reply(xid, res));
    return;
  }
  // Unknown clients get a challenge too, so a prober cannot tell which names exist; the proof at
  // LOGIN_FINISH fails for them. Stateless: a LOGIN_BEGIN flood fills nothing.
  res.server_nonce =
      make_server_nonce(login_secret_, steady_seconds(now()), a->client_name, a->client_nonce);
  res.boot_epoch = epoch_;
  send(r, proto::encode_login_begin_reply(xid, res));
}

void StorageServer::handle_login_finish(const Route& r, std::uint32_t xid, ByteSpan args) {
  auto a = proto::decode_login_finish_args(args);
  if (!a) {
    stats_.rejected++;
    send(r, proto::encode_reject(xid, proto::RpcReject{proto::RejectKind::kGarbageArgs, xid, {}}));
    return;
  }
  proto::LoginFinishRes res;
  // With a manager grant the login key comes from the grant (grant_login.cc), not the key ring.
  std::optional<GrantAccess> grant;
  std::optional<Key256> key;
  if (a->grant.empty()) {
    key = keys_.find(a->client_name);
  } else {
    grant = check_login_grant(opt_.grants, a->grant, a->client_name, r.transport->peer_name(r.peer));
    if (grant) key = grant->login_key;
  }
  // The server nonce must be one this server issued for this name and client nonce, not older
  // than the login timeout, and not used by a successful login yet (replay). Nothing here can
  // remove another client's state: a failed attempt changes nothing.
  const TimePoint t_now = now();
  const std::uint32_t issued = load_be32(a->server_nonce.data());
  const std::uint32_t now_s = steady_seconds(t_now);
  const auto timeout_s = static_cast<std::uint32_t>(
      std::chrono::duration_cast<std::chrono::seconds>(opt_.login_timeout).count());
  const proto::LoginNonce expect_sn =
      make_server_nonce(login_secret_, issued, a->client_name, a->client_nonce);
  bool ok = key.has_value() && issued <= now_s && now_s - issued <= timeout_s &&
            constant_time_equal(expect_sn, a->server_nonce) &&
            pending_logins_.count(nonce_key(a->server_nonce)) == 0;
  if (ok) {
    Digest256 expect =
        proto::login_client_proof(*key, a->client_name, a->client_nonce, a->server_nonce);
    ok = constant_time_equal(expect, a->proof);
  }
  if (ok) {
    // Remember the used nonce until it expires (only proven logins get here, so this is
    // bounded by the rate of genuine logins; reaped with the login timeout).
    if (pending_logins_.size() >= opt_.max_pending_logins) reap(t_now);
    if (pending_logins_.size() >= opt_.max_pending_logins) {
      res.status = Errc::kBusy;
      send(r, proto::encode_login_finish_reply(xid, res));
      return;
    }
    pending_logins_[nonce_key(a->server_nonce)] = PendingLogin{
        a->client_name, a->client_nonce, t_now + opt_.login_timeout + std::chrono::seconds(2)};
  }
  if (!ok) {
    stats_.auth_failures++;
    IPSAN_LOG(LogLevel::kWarn, "server", "login failed for client '", a->client_name, "' from ",
              r.transport->peer_name(r.peer));
    res.status = Errc::kAuthFailed;
    send(r, proto::encode_login_finish_reply(xid, res));
    return;
  }
  auto sessions_of_client = [&] {
    return static_cast<std::size_t>(
        std::count_if(sessions_.begin(), sessions_.end(),
                      [&](const auto& e) { return e.second->client == a->client_name; }));
  };
  if (sessions_.size() >= opt_.max_sessions || sessions_of_client() >= opt_.max_sessions_per_client)
    reap(t_now);
  if (sessions_.size() >= opt_.max_sessions) {
    IPSAN_LOG(LogLevel::kWarn, "server", "login of '", a->client_name,
              "' refused: ", sessions_.size(), " sessions (server limit ", opt_.max_sessions, ")");
    res.status = Errc::kBusy;
    send(r, proto::encode_login_finish_reply(xid, res));
    return;
  }
  if (const std::size_t n = sessions_of_client(); n >= opt_.max_sessions_per_client) {
    stats_.logins_refused_per_client++;
    IPSAN_LOG(LogLevel::kWarn, "server", "login of '", a->client_name, "' refused: it has ", n,
              " sessions (per-client limit ", opt_.max_sessions_per_client, ")");
    res.status = Errc::kBusy;
    send(r, proto::encode_login_finish_reply(xid, res));
    return;
  }
  std::uint64_t sid = 0;
  while (sid == 0 || sessions_.count(sid)) sid = random_u64();
  auto s = std::make_shared<Session>(opt_.slot_count);
  s->id = sid;
  s->client = a->client_name;
  s->grant = grant;
  s->key = proto::derive_session_key(*key, a->client_name, a->client_nonce, a->server_nonce, sid);
  // The offer was checked at LOGIN_BEGIN; the finish does not repeat it, so take the stronger
  // of the server's minimum and what this connection's client asked for there (the transport
  // keeps it per connection; docs/PROTOCOL.md).
  s->transport_security = std::max(opt_.transport_security, a->transport_security);
  s->last_active = t_now;
  for (const auto& [dev, e] : exports_) s->seen_generation[dev] = e.generation;
  sessions_.emplace(sid, s);
  stats_.logins++;
  res.session_id = sid;
  res.boot_epoch = epoch_;
  res.slot_count = opt_.slot_count;
  res.max_request_bytes = opt_.max_io_bytes + 4096;
  res.server_proof =
      proto::login_server_proof(*key, a->client_name, a->client_nonce, a->server_nonce, sid);
  IPSAN_LOG(LogLevel::kInfo, "server", "client '", s->client, "' logged in, session ", sid,
            ", transport security ", security_name(s->transport_security));
  send(r, proto::encode_login_finish_reply(xid, res));
  // From now on this connection's packets are protected with keys derived from the session key
  // (the client switches when this reply verifies; docs/RUDP.md "Packet protection").
  r.transport->bind_session(r.peer, s->key, s->transport_security);
}

// One admitted session call. `msg` owns the bytes the decoded arguments point into (a WRITE's
// data), so it lives until the back end is done with them.
struct StorageServer::Call {
  std::shared_ptr<Session> s;
  std::uint32_t xid = 0;
  std::uint32_t slot = 0;
  std::uint64_t seq = 0;
  Op op = Op::kNull;
  std::shared_ptr<Bytes> msg;
  // A retransmitted READ whose data reply was not cached: it may only be answered with a
  // byte-identical copy of its first reply (docs/PROTOCOL.md "One MAC'd reply per (slot, seq)").
  bool reexecute = false;
  proto::SlotCred cred() const { return proto::SlotCred{s->id, slot, seq}; }
};

void StorageServer::handle_session_call(const Route& r, std::shared_ptr<Bytes> msg,
                                        const void* parsed_call) {
  const auto& call = *static_cast<const proto::ParsedCall*>(parsed_call);
  std::shared_ptr<Session> s = authenticate(r, parsed_call);
  if (!s) return;
  bool reexecute = false;
  if (!admit_to_slot(r, *s, parsed_call, reexecute)) return;
  Call c{std::move(s), call.xid, call.cred.slot, call.cred.seq, call.op, std::move(msg), reexecute};
  switch (call.op) {
    case Op::kLogout: return logout(c);
    case Op::kSlotFence: return slot_fence(c);
    case Op::kEndSession: return end_session(c, call.args);
    default: break;
  }
  if (!proto::is_device_op(call.op)) {
    // parse_call only admits known procedures; anything else here is a bug, answer cleanly.
    finish(c.s, c.slot, c.seq,
           proto::encode_reply(c.xid, c.cred(), c.s->key, c.op, status_reply(Errc::kNotSupported)),
           true);
    return;
  }
  execute(std::move(c), call.args);
}

std::shared_ptr<StorageServer::Session> StorageServer::authenticate(const Route& r,
                                                                    const void* parsed_call) {
  const auto& call = *static_cast<const proto::ParsedCall*>(parsed_call);
  auto deny = [&](proto::AuthStat why) {
    stats_.auth_failures++;
    send(r, proto::encode_reject(call.xid,
                                 proto::RpcReject{proto::RejectKind::kAuthError, call.xid, why}));
    return nullptr;
  };
  if (call.flavor != proto::kAuthIpsan) return deny(proto::AuthStat::kTooWeak);
  auto it = sessions_.find(call.cred.session_id);
  if (it == sessions_.end()) return deny(proto::AuthStat::kRejectedCred);
  std::shared_ptr<Session> s = it->second;
  const TimePoint t = now();
  if (!s->slots.busy() && t - s->last_active > opt_.session_idle_timeout) {
    // Expired, the reaper just has not run yet: the session is gone from this instant.
    IPSAN_LOG(LogLevel::kInfo, "server", "session ", s->id, " of '", s->client, "' expired");
    sessions_.erase(it);
    return deny(proto::AuthStat::kRejectedCred);
  }
  if (!proto::verify_call(call, s->key)) return deny(proto::AuthStat::kBadVerf);
  if (s->grant && !grant_still_valid(opt_.grants, *s->grant)) {
    // Expired or revoked: the session ends; the client logs in again with a renewed grant, or
    // is refused (docs/MANAGER.md "Revocation").
    IPSAN_LOG(LogLevel::kWarn, "server", "session ", s->id, " of '", s->client, "': grant ",
              s->grant->serial, " expired or revoked; session ended");
    sessions_.erase(s->id);
    return deny(proto::AuthStat::kRejectedCred);
  }
  s->last_active = t;
  r.transport->bind_session(r.peer, s->key, s->transport_security);  // no-op once bound
  return s;
}

bool StorageServer::admit_to_slot(const Route& r, Session& s, const void* parsed_call,
                                  bool& reexecute) {
  const auto& call = *static_cast<const proto::ParsedCall*>(parsed_call);
  const std::uint32_t xid = call.xid;
  const std::uint32_t slot = call.cred.slot;
  const std::uint64_t seq = call.cred.seq;
  const SlotVerdict verdict =
      call.op == Op::kSlotFence ? s.slots.admit_fence(slot, seq) : s.slots.admit(slot, seq);
  switch (verdict) {
    case SlotVerdict::kBadSlot:
      stats_.rejected++;
      send(r,
           proto::encode_unauthenticated_reply(xid, call.op, status_reply(Errc::kInvalidArgument)));
      return false;
    case SlotVerdict::kMisordered:
      stats_.misordered++;
      // Unauthenticated: this (slot, seq) had, or will have, its own MAC'd reply, and a
      // Poly1305 nonce must never MAC two different messages (docs/PROTOCOL.md).
      send(r,
           proto::encode_unauthenticated_reply(xid, call.op, status_reply(Errc::kSeqMisordered)));
      return false;
    case SlotVerdict::kInProgress:
      s.reply_to[slot] = r;  // answer the newest copy's sender when it completes
      return false;
    case SlotVerdict::kReplayCached:
      stats_.replayed++;
      send(r, s.slots.cached_reply(slot));
      return false;
    case SlotVerdict::kReexecuteSpent:
      // The one re-execution this (slot, seq) may have was used: a copy re-sent again and again
      // (a replay by anyone on the path) costs no more reads and no more reply bytes. The hint
      // tells a genuine client to read again on its next seq.
      stats_.replayed++;
      stats_.reexecute_refused++;
      send(r, proto::encode_unauthenticated_reply(xid, call.op, status_reply(Errc::kBusy)));
      return false;
    case SlotVerdict::kReexecute:
      stats_.replayed++;
      reexecute = true;
      s.reply_to[slot] = r;
      return true;
    case SlotVerdict::kExecute: s.reply_to[slot] = r; return true;
  }
  return false;
}

void StorageServer::logout(const Call& c) {
  Bytes reply =
      proto::encode_reply(c.xid, c.cred(), c.s->key, Op::kLogout, status_reply(Errc::kOk));
  const Route to = c.s->reply_to[c.slot];
  c.s->slots.complete(c.slot, c.seq, {});
  sessions_.erase(c.s->id);
  send(to, std::move(reply));
}

void StorageServer::slot_fence(const Call& c) {
  // Admitted: the slot is now past every seq below this one, and idle (admit_fence waits for a
  // running request), so nothing older on this slot can execute after this reply.
  stats_.fences++;
  finish(c.s, c.slot, c.seq,
         proto::encode_reply(c.xid, c.cred(), c.s->key, Op::kSlotFence, status_reply(Errc::kOk)),
         true);
}

void StorageServer::end_session(const Call& c, ByteSpan args) {
  const std::shared_ptr<Session>& s = c.s;
  auto old_id = proto::decode_end_session_args(args);
  if (!old_id) {
    stats_.rejected++;
    finish(s, c.slot, c.seq,
           proto::encode_accept_error(c.xid, c.cred(), s->key, proto::AcceptStat::kGarbageArgs),
           true);
    return;
  }
  Errc status = Errc::kOk;
  if (*old_id == s->id) {
    status = Errc::kInvalidArgument;  // use LOGOUT to end this session
  } else {
    std::shared_ptr<Session> old;
    if (auto it = sessions_.find(*old_id); it != sessions_.end()) {
      old = it->second;
    } else if (auto d = dying_.find(*old_id); d != dying_.end()) {
      old = d->second;
    }
    // Another client's session is not ours to end; for this client it does not exist, which is
    // what OK says ("no session of yours with that id runs anything any more").
    if (old && old->client == s->client) {
      sessions_.erase(old->id);  // no call of it is admitted any more
      if (old->slots.busy()) {
        // Calls of the old session are still running on back ends: the client must not be told
        // "gone" before they finish (one of them could land after a newer write). BUSY: ask again.
        dying_[old->id] = old;
        status = Errc::kBusy;
      } else {
        dying_.erase(old->id);
        stats_.sessions_ended++;
        IPSAN_LOG(LogLevel::kInfo, "server", "session ", old->id, " of '", old->client,
                  "' ended by session ", s->id);
      }
    }
  }
  finish(s, c.slot, c.seq,
         proto::encode_reply(c.xid, c.cred(), s->key, Op::kEndSession, status_reply(status)), true);
}

const StorageServer::ExportEntry* StorageServer::find_export(std::uint32_t device_id) const {
  auto it = exports_.find(device_id);
  return it == exports_.end() ? nullptr : &it->second;
}

void StorageServer::finish(const std::shared_ptr<Session>& s, std::uint32_t slot, std::uint64_t seq,
                           Bytes reply, bool cache) {
  Route r = s->reply_to[slot];
  // A cached copy is kept for retransmissions (small: never READ data).
  s->slots.complete(slot, seq, cache ? reply : Bytes{});
  send(r, std::move(reply));
}

void StorageServer::reply_spent(const Call& c) {
  // A re-execution may send nothing but a byte-identical copy of the first reply, since that
  // (slot, seq) already had its one MAC'd reply (docs/PROTOCOL.md "One MAC'd reply per (slot,
  // seq)"). Every other outcome (the device was removed, resized, the range no longer fits, an
  // I/O error, changed data) is answered with an unauthenticated BUSY and consumes nothing, so
  // the client re-issues the READ on its next seq and gets the news (e.g. CAPACITY_CHANGED)
  // there, MAC'd.
  c.s->slots.complete(c.slot, c.seq, {});
  send(c.s->reply_to[c.slot],
       proto::encode_unauthenticated_reply(c.xid, c.op, status_reply(Errc::kBusy)));
}

void StorageServer::reply_status(const Call& c, Errc e) {
  if (c.reexecute) return reply_spent(c);
  if (e != Errc::kOk) stats_.device_errors++;
  finish(c.s, c.slot, c.seq, proto::encode_reply(c.xid, c.cred(), c.s->key, c.op, status_reply(e)),
         true);
}

void StorageServer::execute(Call c, ByteSpan args) {
  if (c.reexecute && c.op != Op::kRead) return reply_spent(c);  // only READ data goes uncached
  auto req = proto::decode_request(c.op, args);
  if (!req) {
    if (c.reexecute) return reply_spent(c);
    stats_.rejected++;
    finish(c.s, c.slot, c.seq,
           proto::encode_accept_error(c.xid, c.cred(), c.s->key, proto::AcceptStat::kGarbageArgs),
           true);
    return;
  }
  if (auto it = exports_.find(req->device_id); it != exports_.end()) note_live_capacity(it->second);
  const ExportEntry* ex = visible_export(*c.s, req->device_id);
  if (ex == nullptr) return reply_status(c, Errc::kUnknownDevice);
  stats_.executed++;
  if (!capacity_notice(c, req->device_id, *ex)) return;
  switch (c.op) {
    case Op::kIdentify:
    case Op::kCapacity:
    case Op::kReady: return status_op(c, *ex);
    default: return data_op(std::move(c), *req, *ex);
  }
}

void StorageServer::data_op(Call c, const proto::RequestView& req, const ExportEntry& ex) {
  // Live metrics: every device request's outcome and latency (set_io_observer).
  const TimePoint started = io_observer_ ? now() : TimePoint{};
  const bool writes = c.op == Op::kWrite || c.op == Op::kTrim || c.op == Op::kWriteZeroes;
  const bool grant_read_only = c.s->grant && c.s->grant->read_only;
  if (Errc e = writes && grant_read_only ? Errc::kWriteProtected
                                          : check_data_request(c.op, req, ex);
      e != Errc::kOk) {
    observe(c, req.device_id, started, 0, e);
    return reply_status(c, e);
  }
  if (c.op == Op::kRead) return read_op(std::move(c), req, ex, started);
  write_op(std::move(c), req, ex, started);
}

const StorageServer::ExportEntry* StorageServer::visible_export(const Session& s,
                                                                std::uint32_t device_id) const {
  const ExportEntry* ex = find_export(device_id);
  if (ex == nullptr) return nullptr;
  // A manager grant names one device: the session sees that one only (docs/MANAGER.md).
  if (s.grant) return s.grant->device_id == device_id ? ex : nullptr;
  const auto& allowed = ex->exp.allowed_clients;
  // Not exported to this client: do not reveal that it exists.
  if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), s.client) == allowed.end())
    return nullptr;
  return ex;
}

// Capacity-changed notice: once per session and device after an online resize. False when the
// call was answered here.
bool StorageServer::capacity_notice(const Call& c, std::uint32_t device_id, const ExportEntry& ex) {
  auto seen = c.s->seen_generation.find(device_id);
  if (c.reexecute) {
    // Do not consume the notice in a reply that cannot carry it.
    if (seen == c.s->seen_generation.end() || seen->second != ex.generation) {
      reply_spent(c);
      return false;
    }
    return true;
  }
  if (seen == c.s->seen_generation.end()) {
    c.s->seen_generation[device_id] = ex.generation;  // exported after this login
    return true;
  }
  if (seen->second == ex.generation) return true;
  seen->second = ex.generation;
  if (c.op == Op::kIdentify || c.op == Op::kCapacity) return true;  // they carry the new size
  reply_status(c, Errc::kCapacityChanged);
  return false;
}

void StorageServer::status_op(const Call& c, const ExportEntry& ex) {
  proto::Reply rep;
  rep.identity = ex.identity;
  const auto g = ex.exp.backend->geometry();  // live geometry: a grown disk reports its new size
  rep.identity.block_count = g.block_count;
  rep.capacity = proto::Capacity{g.block_size, g.block_count};
  if (c.s->grant && c.s->grant->read_only) rep.identity.capabilities |= proto::kCapReadOnly;
  finish(c.s, c.slot, c.seq, proto::encode_reply(c.xid, c.cred(), c.s->key, c.op, rep), true);
}

Errc StorageServer::check_data_request(Op op, const proto::RequestView& req,
                                       const ExportEntry& ex) const {
  const auto g = ex.exp.backend->geometry();
  const bool is_write = op == Op::kWrite || op == Op::kTrim || op == Op::kWriteZeroes;
  if (is_write && (ex.identity.capabilities & proto::kCapReadOnly)) return Errc::kWriteProtected;
  if (op != Op::kFlush && backends::check_range(g, req.lba, req.blocks) != Errc::kOk)
    return Errc::kLbaOutOfRange;
  const std::uint64_t bytes = std::uint64_t{req.blocks} * g.block_size;
  if ((op == Op::kRead || op == Op::kWrite) && bytes > opt_.max_io_bytes) return Errc::kTooLarge;
  if (op == Op::kWrite && req.data.size() != bytes) return Errc::kInvalidArgument;
  return Errc::kOk;
}

void StorageServer::observe(const Call& c, std::uint32_t device_id, TimePoint started,
                            std::uint64_t bytes, Errc e) {
  if (io_observer_) io_observer_(IoEvent{device_id, c.op, bytes, now() - started, e});
}

// Back-end completions may run on a worker thread: hop back to the io thread. Generic, so the
// continuation is posted as it is (no std::function allocated around it).
template <class F>
void StorageServer::complete_on_io(F fn) {
  asio::post(io_, [this, alive = alive_, fn = std::move(fn)]() mutable {
    if (!*alive) return;
    in_flight_--;
    fn();
    maybe_finish_stop();
  });
}

void StorageServer::read_op(Call c, const proto::RequestView& req, const ExportEntry& ex,
                            TimePoint started) {
  const std::uint32_t dev = req.device_id;
  if (req.blocks == 0) {
    observe(c, dev, started, 0, Errc::kOk);
    finish(c.s, c.slot, c.seq, proto::encode_reply(c.xid, c.cred(), c.s->key, c.op, {}),
           true);  // small: cached
    return;
  }
  const std::uint64_t bytes = std::uint64_t{req.blocks} * ex.exp.backend->geometry().block_size;
  // Everything the completion needs in one allocation; the back end reads straight into the
  // reply's data area, and the MAC is computed once, while sealing.
  struct ReadJob {
    ReadJob(Call call, std::size_t len) : builder(call.xid, call.cred(), len), c(std::move(call)) {}
    proto::ReadReplyBuilder builder;
    Call c;
    backends::BackendPtr backend;  // keeps a removed export's back end alive until the end
  };
  auto job = std::make_shared<ReadJob>(std::move(c), static_cast<std::size_t>(bytes));
  // `c` has moved into the job; the completion below uses job->c.
  job->backend = ex.exp.backend;
  in_flight_++;
  const MutableByteSpan into = job->builder.data();
  job->backend->read(req.lba, into, [this, job, dev, started, bytes](Errc e) {
    complete_on_io([this, job, dev, started, bytes, e] {
      const Call& jc = job->c;
      Session& s = *jc.s;
      observe(jc, dev, started, e == Errc::kOk ? bytes : 0, e);
      if (e != Errc::kOk) {
        stats_.device_errors++;
        if (jc.reexecute) return reply_spent(jc);  // nonce spent by the first reply: hint only
        finish(jc.s, jc.slot, jc.seq,
               proto::encode_reply(jc.xid, jc.cred(), s.key, jc.op, status_reply(e)), true);
        return;
      }
      stats_.bytes_read += bytes;
      Tag128 mac{};
      Bytes reply = job->builder.finish(s.key, &mac);  // READ data is not cached, only its MAC
      const Tag128* first = s.slots.reply_mac(jc.slot);
      // Re-executed: the blocks changed since the first reply if the MAC differs; that (slot,
      // seq) nonce is spent, so the client re-reads on its next seq.
      if (jc.reexecute && (first == nullptr || *first != mac)) return reply_spent(jc);
      const Route to = s.reply_to[jc.slot];
      s.slots.complete(jc.slot, jc.seq, {}, &mac);
      send(to, std::move(reply));
    });
  });
}

void StorageServer::write_op(Call c, const proto::RequestView& req, const ExportEntry& ex,
                             TimePoint started) {
  const std::uint32_t dev = req.device_id;
  const std::uint64_t bytes = std::uint64_t{req.blocks} * ex.exp.backend->geometry().block_size;
  auto backend = ex.exp.backend;  // kept alive by the completion until it has run
  in_flight_++;
  // `c.msg` owns the bytes `req.data` points into: the completion keeps it alive.
  auto done = [this, c, backend, dev, started, bytes](Errc e) {
    complete_on_io([this, c, backend, dev, started, bytes, e] {
      observe(c, dev, started, e == Errc::kOk && c.op != Op::kFlush ? bytes : 0, e);
      if (e != Errc::kOk)
        stats_.device_errors++;
      else if (c.op == Op::kWrite)
        stats_.bytes_written += bytes;
      finish(c.s, c.slot, c.seq,
             proto::encode_reply(c.xid, c.cred(), c.s->key, c.op, status_reply(e)), true);
    });
  };
  const bool fua = (req.flags & proto::kFlagFua) != 0;
  switch (c.op) {
    case Op::kWrite:
      if (req.blocks == 0) return done(Errc::kOk);
      if (req.flags & proto::kFlagAtomic) {
        // All or nothing, or not at all: never a plain write in its place.
        if (!(ex.identity.capabilities & proto::kCapAtomicWrite)) return done(Errc::kNotSupported);
        return backend->write_atomic(req.lba, req.data, fua, done);
      }
      return backend->write(req.lba, req.data, fua, done);
    case Op::kFlush: return backend->flush(done);
    case Op::kTrim:
      if (req.blocks == 0) return done(Errc::kOk);
      return backend->trim(req.lba, req.blocks, done);
    case Op::kWriteZeroes:
      if (req.blocks == 0) return done(Errc::kOk);
      return backend->write_zeroes(req.lba, req.blocks, (req.flags & proto::kFlagMayTrim) != 0,
                                   done);
    default: return done(Errc::kNotSupported);
  }
}

void StorageServer::note_live_capacity(ExportEntry& ex) {
  // A back end that grows (or shrinks) by itself, e.g. an RBD image resized by `rbd resize` on
  // another host: the same object reports a new geometry. Sessions get CAPACITY_CHANGED as after
  // update_exports().
  const auto g = ex.exp.backend->geometry();
  if (g.block_count == ex.identity.block_count && g.block_size == ex.identity.block_size) return;
  IPSAN_LOG(LogLevel::kInfo, "server", "device ", ex.exp.device_id, " capacity ",
            ex.identity.block_count, " -> ", g.block_count, " blocks (changed by its back end)");
  ex.identity.block_count = g.block_count;
  ex.identity.block_size = g.block_size;
  ex.generation++;
}

void StorageServer::update_exports(std::vector<Export> exports) {
  std::unordered_map<std::uint32_t, ExportEntry> next;
  for (auto& e : exports) {
    if (!e.backend || next.count(e.device_id)) continue;
    ExportEntry entry;
    entry.identity = make_identity(e, opt_.max_io_bytes);
    auto old = exports_.find(e.device_id);
    if (old != exports_.end()) {
      entry.generation = old->second.generation;
      if (old->second.exp.name == e.name) {
        // Same device: same identity, whatever object now implements it.
        entry.identity.uuid = old->second.identity.uuid;
        entry.identity.serial = old->second.identity.serial;
      }
      // What sessions were last told (a back end may have changed size by itself since).
      const backends::Geometry g_old{old->second.identity.block_size,
                                     old->second.identity.block_count};
      auto g_new = e.backend->geometry();
      if (g_old.block_count != g_new.block_count || g_old.block_size != g_new.block_size) {
        entry.generation++;
        IPSAN_LOG(LogLevel::kInfo, "server", "device ", e.device_id, " capacity ",
                  g_old.block_count, " -> ", g_new.block_count, " blocks");
      }
    }
    std::uint32_t dev = e.device_id;
    entry.exp = std::move(e);
    next.emplace(dev, std::move(entry));
  }
  exports_ = std::move(next);
}

std::vector<Export> StorageServer::exports() const {
  std::vector<Export> out;
  for (const auto& [id, e] : exports_) out.push_back(e.exp);
  std::sort(out.begin(), out.end(),
            [](const Export& a, const Export& b) { return a.device_id < b.device_id; });
  return out;
}

void StorageServer::stop(std::function<void()> done) {
  if (stopping_) return;
  stopping_ = true;
  stop_done_ = std::move(done);
  reaper_.cancel();
  maybe_finish_stop();
}

void StorageServer::maybe_finish_stop() {
  if (!stopping_ || in_flight_ != 0 || !stop_done_) return;
  auto done = std::move(stop_done_);
  stop_done_ = nullptr;
  // Flush every back end, then close the transports.
  auto remaining = std::make_shared<std::size_t>(exports_.size());
  auto alive = alive_;
  auto after_flush = [this, alive, remaining, done]() {
    if (--*remaining != 0) return;
    for (auto& t : transports_) t->close();
    IPSAN_LOG(LogLevel::kInfo, "server", "stopped: ", stats_line());
    done();
  };
  if (exports_.empty()) {
    *remaining = 1;
    after_flush();
    return;
  }
  for (auto& [id, e] : exports_) {
    e.exp.backend->flush([this, alive, after_flush, name = e.exp.name](Errc err) {
      asio::post(io_, [alive, after_flush, err, name] {
        if (!*alive) return;
        if (err != Errc::kOk)
          IPSAN_LOG(LogLevel::kError, "server", "flush of '", name, "' failed: ", to_string(err));
        after_flush();
      });
    });
  }
}

ServerStats StorageServer::stats() const {
  ServerStats s = stats_;
  s.sessions = sessions_.size();
  return s;
}

std::vector<SessionInfo> StorageServer::sessions() const {
  std::vector<SessionInfo> out;
  for (const auto& [id, s] : sessions_) {
    SessionInfo i;
    i.id = id;
    i.client = s->client;
    // A connection the session's calls come on: that of its lowest slot that has carried one.
    for (const Route& r : s->reply_to) {
      if (r.transport == nullptr) continue;
      for (std::size_t t = 0; t < transports_.size(); ++t)
        if (transports_[t].get() == r.transport) {
          i.transport = t;
          i.peer = r.peer;
          i.has_route = true;
        }
      if (i.has_route) break;
    }
    out.push_back(std::move(i));
  }
  std::sort(out.begin(), out.end(),
            [](const SessionInfo& a, const SessionInfo& b) { return a.id < b.id; });
  return out;
}

std::string StorageServer::stats_line() const {
  auto s = stats();
  std::ostringstream os;
  os << "calls=" << s.calls << " executed=" << s.executed << " replayed=" << s.replayed
     << " misordered=" << s.misordered << " rejected=" << s.rejected
     << " auth_failures=" << s.auth_failures << " dropped=" << s.dropped << " logins=" << s.logins
     << " sessions=" << s.sessions << " read_bytes=" << s.bytes_read
     << " written_bytes=" << s.bytes_written << " device_errors=" << s.device_errors;
  return os.str();
}

proto::TransportStats StorageServer::transport_stats() const {
  proto::TransportStats t;
  for (auto& tr : transports_) {
    proto::add_concurrent(t, tr->stats());
  }
  return t;
}

}  // namespace ipsan::server
