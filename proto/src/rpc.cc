#include "ipsan/proto/rpc.h"

#include <algorithm>

namespace ipsan::proto {
namespace {

bool is_known_proc(std::uint32_t p) {
  switch (static_cast<Op>(p)) {
    case Op::kNull:
    case Op::kLoginBegin:
    case Op::kLoginFinish:
    case Op::kLogout:
    case Op::kSlotFence:
    case Op::kEndSession:
    case Op::kReady:
    case Op::kIdentify:
    case Op::kCapacity:
    case Op::kRead:
    case Op::kWrite:
    case Op::kFlush:
    case Op::kTrim:
    case Op::kWriteZeroes: return true;
  }
  return false;
}

tl::unexpected<RpcReject> reject(RejectKind kind, std::uint32_t xid,
                                 AuthStat auth = AuthStat::kOk) {
  return tl::unexpected<RpcReject>(RpcReject{kind, xid, auth});
}

Tag128 compute_mac(ByteSpan before, ByteSpan after, const Key256& key, std::uint8_t direction,
                   const SlotCred& cred) {
  return aead_mac(key, mac_nonce(direction, cred.slot, cred.seq), {before, after});
}

}  // namespace

Nonce192 mac_nonce(std::uint8_t direction, std::uint32_t slot, std::uint64_t seq) {
  Nonce192 n{};
  n[0] = direction;
  store_be64(n.data() + 8, slot);
  store_be64(n.data() + 16, seq);
  return n;
}

Result<ParsedCall, RpcReject> parse_call(ByteSpan msg) {
  XdrReader r(msg);
  auto xid = r.get_u32();
  if (!xid) return reject(RejectKind::kDrop, 0);
  auto mtype = r.get_u32();
  if (!mtype || *mtype != static_cast<std::uint32_t>(MsgType::kCall)) {
    return reject(RejectKind::kDrop, 0);
  }
  auto rpcvers = r.get_u32();
  if (!rpcvers) return reject(RejectKind::kGarbageArgs, *xid);
  if (*rpcvers != kRpcVersion) return reject(RejectKind::kRpcMismatch, *xid);
  auto prog = r.get_u32();
  auto vers = r.get_u32();
  auto proc = r.get_u32();
  if (!prog || !vers || !proc) return reject(RejectKind::kGarbageArgs, *xid);

  auto cred_flavor = r.get_u32();
  if (!cred_flavor) return reject(RejectKind::kAuthError, *xid, AuthStat::kBadCred);
  auto cred_body = r.get_opaque(kMaxAuthBody);
  if (!cred_body) return reject(RejectKind::kAuthError, *xid, AuthStat::kBadCred);
  auto verf_flavor = r.get_u32();
  if (!verf_flavor) return reject(RejectKind::kAuthError, *xid, AuthStat::kBadVerf);
  const std::size_t verf_body_offset = r.offset() + 4;
  auto verf_body = r.get_opaque(kMaxAuthBody);
  if (!verf_body) return reject(RejectKind::kAuthError, *xid, AuthStat::kBadVerf);

  if (*prog != kProgram) return reject(RejectKind::kProgUnavail, *xid);
  if (*vers != kVersion) return reject(RejectKind::kProgMismatch, *xid);
  if (!is_known_proc(*proc)) return reject(RejectKind::kProcUnavail, *xid);

  ParsedCall call;
  call.xid = *xid;
  call.proc = *proc;
  call.op = static_cast<Op>(*proc);
  call.flavor = *cred_flavor;
  const bool login = call.op == Op::kLoginBegin || call.op == Op::kLoginFinish;

  if (*cred_flavor == kAuthNone) {
    if (!cred_body->empty()) return reject(RejectKind::kAuthError, *xid, AuthStat::kBadCred);
    if (*verf_flavor != kAuthNone || !verf_body->empty()) {
      return reject(RejectKind::kAuthError, *xid, AuthStat::kBadVerf);
    }
    if (!login && call.op != Op::kNull) {
      return reject(RejectKind::kAuthError, *xid, AuthStat::kTooWeak);
    }
    call.covered_before = msg.first(r.offset());
    call.covered_after = r.rest();
  } else if (*cred_flavor == kAuthIpsan) {
    if (login) return reject(RejectKind::kAuthError, *xid, AuthStat::kBadCred);
    if (cred_body->size() != kIpsanCredBodyBytes) {
      return reject(RejectKind::kAuthError, *xid, AuthStat::kBadCred);
    }
    if (*verf_flavor != kAuthIpsan || verf_body->size() != kMacBytes) {
      return reject(RejectKind::kAuthError, *xid, AuthStat::kBadVerf);
    }
    const std::uint8_t* c = cred_body->data();
    call.cred.session_id = load_be64(c);
    call.cred.slot = load_be32(c + 8);
    call.cred.seq = load_be64(c + 12);
    std::copy(verf_body->begin(), verf_body->end(), call.mac.begin());
    call.covered_before = msg.first(verf_body_offset);
    call.covered_after = msg.subspan(verf_body_offset + kMacBytes);
  } else {
    return reject(RejectKind::kAuthError, *xid, AuthStat::kBadCred);
  }
  call.args = r.rest();
  return call;
}

bool verify_call(const ParsedCall& call, const Key256& session_key) {
  if (call.flavor != kAuthIpsan) return false;
  const Tag128 want =
      compute_mac(call.covered_before, call.covered_after, session_key, kDirCall, call.cred);
  return constant_time_equal(want, call.mac);
}

Errc ParsedReply::to_errc() const {
  if (reply_stat == ReplyStat::kDenied) {
    if (reject_stat == RejectStat::kRpcMismatch) return Errc::kBadMessage;
    return auth_stat == AuthStat::kRejectedCred ? Errc::kStaleSession : Errc::kAuthFailed;
  }
  switch (accept_stat) {
    case AcceptStat::kSuccess: return Errc::kOk;
    case AcceptStat::kProgUnavail:
    case AcceptStat::kProgMismatch:
    case AcceptStat::kProcUnavail: return Errc::kNotSupported;
    case AcceptStat::kGarbageArgs: return Errc::kBadMessage;
    case AcceptStat::kSystemErr: return Errc::kInternal;
  }
  return Errc::kBadMessage;
}

Result<ParsedReply> parse_reply(ByteSpan msg) {
  XdrReader r(msg);
  ParsedReply rep;
  auto xid = r.get_u32();
  auto mtype = r.get_u32();
  auto rstat = r.get_u32();
  if (!xid || !mtype || !rstat) return fail(Errc::kBadMessage);
  if (*mtype != static_cast<std::uint32_t>(MsgType::kReply)) return fail(Errc::kBadMessage);
  rep.xid = *xid;
  if (*rstat == static_cast<std::uint32_t>(ReplyStat::kDenied)) {
    rep.reply_stat = ReplyStat::kDenied;
    auto rj = r.get_u32();
    if (!rj) return fail(Errc::kBadMessage);
    if (*rj == static_cast<std::uint32_t>(RejectStat::kRpcMismatch)) {
      rep.reject_stat = RejectStat::kRpcMismatch;
      auto lo = r.get_u32();
      auto hi = r.get_u32();
      if (!lo || !hi) return fail(Errc::kBadMessage);
      rep.mismatch_low = *lo;
      rep.mismatch_high = *hi;
    } else if (*rj == static_cast<std::uint32_t>(RejectStat::kAuthError)) {
      rep.reject_stat = RejectStat::kAuthError;
      auto as = r.get_u32();
      if (!as) return fail(Errc::kBadMessage);
      rep.auth_stat = static_cast<AuthStat>(*as);  // any value: unknown ones map to kAuthFailed
    } else {
      return fail(Errc::kBadMessage);
    }
    if (!r.expect_end()) return fail(Errc::kBadMessage);
    return rep;
  }
  if (*rstat != static_cast<std::uint32_t>(ReplyStat::kAccepted)) return fail(Errc::kBadMessage);
  rep.reply_stat = ReplyStat::kAccepted;
  auto vflavor = r.get_u32();
  if (!vflavor) return fail(Errc::kBadMessage);
  const std::size_t body_offset = r.offset() + 4;
  auto vbody = r.get_opaque(kMaxAuthBody);
  if (!vbody) return fail(Errc::kBadMessage);
  rep.verf_flavor = *vflavor;
  if (*vflavor == kAuthIpsan) {
    if (vbody->size() != kMacBytes) return fail(Errc::kBadMessage);
    std::copy(vbody->begin(), vbody->end(), rep.mac.begin());
    rep.covered_before = msg.first(body_offset);
    rep.covered_after = msg.subspan(body_offset + kMacBytes);
  } else if (*vflavor == kAuthNone) {
    if (!vbody->empty()) return fail(Errc::kBadMessage);
  } else {
    return fail(Errc::kBadMessage);
  }
  auto astat = r.get_u32();
  if (!astat || *astat > static_cast<std::uint32_t>(AcceptStat::kSystemErr)) {
    return fail(Errc::kBadMessage);
  }
  rep.accept_stat = static_cast<AcceptStat>(*astat);
  if (rep.accept_stat == AcceptStat::kSuccess) {
    rep.results = r.rest();
    return rep;
  }
  if (rep.accept_stat == AcceptStat::kProgMismatch) {
    auto lo = r.get_u32();
    auto hi = r.get_u32();
    if (!lo || !hi) return fail(Errc::kBadMessage);
    rep.mismatch_low = *lo;
    rep.mismatch_high = *hi;
  }
  if (!r.expect_end()) return fail(Errc::kBadMessage);
  return rep;
}

bool verify_reply(const ParsedReply& reply, const Key256& session_key, const SlotCred& cred) {
  if (reply.reply_stat != ReplyStat::kAccepted || reply.verf_flavor != kAuthIpsan) return false;
  const Tag128 want =
      compute_mac(reply.covered_before, reply.covered_after, session_key, kDirReply, cred);
  return constant_time_equal(want, reply.mac);
}

Bytes encode_reject(const RpcReject& rj) {
  if (rj.kind == RejectKind::kDrop) return {};
  XdrWriter w;
  w.reserve(32);
  auto put_denied = [&](RejectStat rs) {
    w.put_u32(rj.xid);
    w.put_u32(static_cast<std::uint32_t>(MsgType::kReply));
    w.put_u32(static_cast<std::uint32_t>(ReplyStat::kDenied));
    w.put_u32(static_cast<std::uint32_t>(rs));
  };
  switch (rj.kind) {
    case RejectKind::kRpcMismatch:
      put_denied(RejectStat::kRpcMismatch);
      w.put_u32(kRpcVersion);
      w.put_u32(kRpcVersion);
      break;
    case RejectKind::kAuthError:
      put_denied(RejectStat::kAuthError);
      w.put_u32(static_cast<std::uint32_t>(rj.auth_stat));
      break;
    case RejectKind::kProgUnavail:
      detail::put_reply_header_none(w, rj.xid, AcceptStat::kProgUnavail);
      break;
    case RejectKind::kProgMismatch:
      detail::put_reply_header_none(w, rj.xid, AcceptStat::kProgMismatch);
      w.put_u32(kVersion);
      w.put_u32(kVersion);
      break;
    case RejectKind::kProcUnavail:
      detail::put_reply_header_none(w, rj.xid, AcceptStat::kProcUnavail);
      break;
    case RejectKind::kGarbageArgs:
      detail::put_reply_header_none(w, rj.xid, AcceptStat::kGarbageArgs);
      break;
    case RejectKind::kSystemErr:
      detail::put_reply_header_none(w, rj.xid, AcceptStat::kSystemErr);
      break;
    case RejectKind::kDrop: break;
  }
  return w.release();
}

Bytes encode_accept_error(std::uint32_t xid, const SlotCred& cred, const Key256& session_key,
                          AcceptStat stat) {
  XdrWriter w;
  w.reserve(48);
  const std::size_t mac_at = detail::put_reply_header_ipsan(w, xid, stat);
  if (stat == AcceptStat::kProgMismatch) {
    w.put_u32(kVersion);
    w.put_u32(kVersion);
  }
  Bytes out = w.release();
  detail::seal(out, mac_at, session_key, kDirReply, cred);
  return out;
}

namespace detail {

namespace {
void put_call_start(XdrWriter& w, std::uint32_t xid, std::uint32_t proc) {
  w.put_u32(xid);
  w.put_u32(static_cast<std::uint32_t>(MsgType::kCall));
  w.put_u32(kRpcVersion);
  w.put_u32(kProgram);
  w.put_u32(kVersion);
  w.put_u32(proc);
}
}  // namespace

void put_call_header_none(XdrWriter& w, std::uint32_t xid, std::uint32_t proc) {
  put_call_start(w, xid, proc);
  w.put_u32(kAuthNone);
  w.put_u32(0);
  w.put_u32(kAuthNone);
  w.put_u32(0);
}

std::size_t put_call_header_ipsan(XdrWriter& w, std::uint32_t xid, std::uint32_t proc,
                                  const SlotCred& cred) {
  put_call_start(w, xid, proc);
  w.put_u32(kAuthIpsan);
  w.put_u32(kIpsanCredBodyBytes);
  w.put_u64(cred.session_id);
  w.put_u32(cred.slot);
  w.put_u64(cred.seq);
  w.put_u32(kAuthIpsan);
  w.put_u32(kMacBytes);
  const std::size_t mac_at = w.size();
  const Tag128 zero{};
  w.put_opaque_fixed(zero);
  return mac_at;
}

void put_reply_header_none(XdrWriter& w, std::uint32_t xid, AcceptStat stat) {
  w.put_u32(xid);
  w.put_u32(static_cast<std::uint32_t>(MsgType::kReply));
  w.put_u32(static_cast<std::uint32_t>(ReplyStat::kAccepted));
  w.put_u32(kAuthNone);
  w.put_u32(0);
  w.put_u32(static_cast<std::uint32_t>(stat));
}

std::size_t put_reply_header_ipsan(XdrWriter& w, std::uint32_t xid, AcceptStat stat) {
  w.put_u32(xid);
  w.put_u32(static_cast<std::uint32_t>(MsgType::kReply));
  w.put_u32(static_cast<std::uint32_t>(ReplyStat::kAccepted));
  w.put_u32(kAuthIpsan);
  w.put_u32(kMacBytes);
  const std::size_t mac_at = w.size();
  const Tag128 zero{};
  w.put_opaque_fixed(zero);
  w.put_u32(static_cast<std::uint32_t>(stat));
  return mac_at;
}

Tag128 seal(MutableByteSpan msg, std::size_t mac_offset, const Key256& key, std::uint8_t direction,
            const SlotCred& cred) {
  const ByteSpan all(msg.data(), msg.size());
  const Tag128 tag =
      compute_mac(all.first(mac_offset), all.subspan(mac_offset + kMacBytes), key, direction, cred);
  std::copy(tag.begin(), tag.end(), msg.begin() + static_cast<std::ptrdiff_t>(mac_offset));
  return tag;
}

}  // namespace detail
}  // namespace ipsan::proto
