#include "ipsan/proto/login.h"

#include <algorithm>

#include "ipsan/proto/rpc.h"
#include "ipsan/proto/xdr.h"

namespace ipsan::proto {
namespace {

constexpr std::string_view kClientLabel = "ipsan-login-v1 client";
constexpr std::string_view kServerLabel = "ipsan-login-v1 server";
constexpr std::string_view kSessionLabel = "ipsan-session-v1";

using Len4 = std::array<std::uint8_t, 4>;

Len4 be_len(std::size_t n) {
  Len4 out;
  store_be32(out.data(), static_cast<std::uint32_t>(n));
  return out;
}

template <std::size_t N>
Result<std::array<std::uint8_t, N>> get_fixed(XdrReader& r) {
  auto v = r.get_opaque_fixed(N);
  if (!v) return fail(v.error());
  std::array<std::uint8_t, N> out;
  std::copy(v->begin(), v->end(), out.begin());
  return out;
}

Result<std::string> get_name(XdrReader& r) {
  auto s = r.get_string(kMaxClientName);
  if (!s) return fail(s.error());
  if (!valid_client_name(*s)) return fail(Errc::kBadMessage);
  return s;
}

Result<Errc> get_status(XdrReader& r) {
  auto s = r.get_u32();
  if (!s || *s > kErrcMax) return fail(Errc::kBadMessage);
  return static_cast<Errc>(*s);
}

}  // namespace

bool valid_client_name(std::string_view name) {
  return !name.empty() && name.size() <= kMaxClientName &&
         std::all_of(name.begin(), name.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
}

Bytes encode_login_begin_call(std::uint32_t xid, const LoginBeginArgs& args) {
  XdrWriter w;
  w.reserve(40 + xdr_opaque_size(args.client_name.size()) + kLoginNonceBytes);
  detail::put_call_header_none(w, xid, static_cast<std::uint32_t>(Op::kLoginBegin));
  w.put_string(args.client_name);
  w.put_opaque_fixed(args.client_nonce);
  w.put_u32(args.transport_security);
  return w.release();
}

Bytes encode_login_finish_call(std::uint32_t xid, const LoginFinishArgs& args) {
  XdrWriter w;
  w.reserve(40 + xdr_opaque_size(args.client_name.size()) + 2 * kLoginNonceBytes + kProofBytes +
            xdr_opaque_size(args.grant.size()));
  detail::put_call_header_none(w, xid, static_cast<std::uint32_t>(Op::kLoginFinish));
  w.put_string(args.client_name);
  w.put_opaque_fixed(args.client_nonce);
  w.put_opaque_fixed(args.server_nonce);
  w.put_opaque_fixed(args.proof);
  w.put_u32(args.transport_security);
  if (!args.grant.empty()) w.put_opaque(args.grant);
  return w.release();
}

Result<LoginBeginArgs> decode_login_begin_args(ByteSpan bytes) {
  XdrReader r(bytes);
  LoginBeginArgs a;
  auto name = get_name(r);
  if (!name) return fail(name.error());
  auto cn = get_fixed<kLoginNonceBytes>(r);
  if (!cn) return fail(cn.error());
  a.transport_security = 0;
  if (r.remaining() != 0) {
    auto ts = r.get_u32();
    if (!ts || *ts > kTransportSecurityMax || !r.expect_end()) return fail(Errc::kBadMessage);
    a.transport_security = *ts;
  }
  a.client_name = std::move(*name);
  a.client_nonce = *cn;
  return a;
}

Result<LoginFinishArgs> decode_login_finish_args(ByteSpan bytes) {
  XdrReader r(bytes);
  LoginFinishArgs a;
  auto name = get_name(r);
  if (!name) return fail(name.error());
  auto cn = get_fixed<kLoginNonceBytes>(r);
  if (!cn) return fail(cn.error());
  auto sn = get_fixed<kLoginNonceBytes>(r);
  if (!sn) return fail(sn.error());
  auto proof = get_fixed<kProofBytes>(r);
  if (!proof) return fail(proof.error());
  a.transport_security = 0;
  if (r.remaining() != 0) {
    auto ts = r.get_u32();
    if (!ts || *ts > kTransportSecurityMax) return fail(Errc::kBadMessage);
    a.transport_security = *ts;
    if (r.remaining() != 0) {
      auto g = r.get_opaque(kMaxLoginGrantBytes);
      if (!g || g->empty()) return fail(Errc::kBadMessage);
      a.grant.assign(g->begin(), g->end());
    }
    if (!r.expect_end()) return fail(Errc::kBadMessage);
  }
  a.client_name = std::move(*name);
  a.client_nonce = *cn;
  a.server_nonce = *sn;
  a.proof = *proof;
  return a;
}

Bytes encode_login_begin_reply(std::uint32_t xid, const LoginBeginRes& res) {
  XdrWriter w;
  w.reserve(24 + 4 + kLoginNonceBytes + 4);
  detail::put_reply_header_none(w, xid, AcceptStat::kSuccess);
  w.put_u32(static_cast<std::uint32_t>(res.status));
  if (res.status == Errc::kOk) {
    w.put_opaque_fixed(res.server_nonce);
    w.put_u32(res.boot_epoch);
  }
  return w.release();
}

Bytes encode_login_finish_reply(std::uint32_t xid, const LoginFinishRes& res) {
  XdrWriter w;
  w.reserve(24 + 4 + 20 + kProofBytes);
  detail::put_reply_header_none(w, xid, AcceptStat::kSuccess);
  w.put_u32(static_cast<std::uint32_t>(res.status));
  if (res.status == Errc::kOk) {
    w.put_u64(res.session_id);
    w.put_u32(res.boot_epoch);
    w.put_u32(res.slot_count);
    w.put_u32(res.max_request_bytes);
    w.put_opaque_fixed(res.server_proof);
  }
  return w.release();
}

Result<LoginBeginRes> decode_login_begin_res(ByteSpan bytes) {
  XdrReader r(bytes);
  LoginBeginRes res;
  auto st = get_status(r);
  if (!st) return fail(st.error());
  res.status = *st;
  if (res.status == Errc::kOk) {
    auto sn = get_fixed<kLoginNonceBytes>(r);
    if (!sn) return fail(sn.error());
    auto epoch = r.get_u32();
    if (!epoch) return fail(epoch.error());
    res.server_nonce = *sn;
    res.boot_epoch = *epoch;
  }
  if (!r.expect_end()) return fail(Errc::kBadMessage);
  return res;
}

Result<LoginFinishRes> decode_login_finish_res(ByteSpan bytes) {
  XdrReader r(bytes);
  LoginFinishRes res;
  auto st = get_status(r);
  if (!st) return fail(st.error());
  res.status = *st;
  if (res.status == Errc::kOk) {
    auto sid = r.get_u64();
    auto epoch = r.get_u32();
    auto slots = r.get_u32();
    auto maxreq = r.get_u32();
    if (!sid || !epoch || !slots || !maxreq) return fail(Errc::kBadMessage);
    if (*slots == 0 || *slots > kMaxSlots || *maxreq == 0) return fail(Errc::kBadMessage);
    auto proof = get_fixed<kProofBytes>(r);
    if (!proof) return fail(proof.error());
    res.session_id = *sid;
    res.boot_epoch = *epoch;
    res.slot_count = *slots;
    res.max_request_bytes = *maxreq;
    res.server_proof = *proof;
  }
  if (!r.expect_end()) return fail(Errc::kBadMessage);
  return res;
}

Digest256 login_client_proof(const Key256& key, std::string_view name, const LoginNonce& cn,
                             const LoginNonce& sn) {
  const Len4 ll = be_len(kClientLabel.size());
  const Len4 nl = be_len(name.size());
  return hmac_sha256(key, {ll, as_bytes(kClientLabel), nl, as_bytes(name), cn, sn});
}

Digest256 login_server_proof(const Key256& key, std::string_view name, const LoginNonce& cn,
                             const LoginNonce& sn, std::uint64_t session_id) {
  const Len4 ll = be_len(kServerLabel.size());
  const Len4 nl = be_len(name.size());
  std::array<std::uint8_t, 8> sid;
  store_be64(sid.data(), session_id);
  return hmac_sha256(key, {ll, as_bytes(kServerLabel), nl, as_bytes(name), cn, sn, sid});
}

Key256 derive_session_key(const Key256& key, std::string_view name, const LoginNonce& cn,
                          const LoginNonce& sn, std::uint64_t session_id) {
  const Len4 ll = be_len(kSessionLabel.size());
  const Len4 nl = be_len(name.size());
  std::array<std::uint8_t, 8> sid;
  store_be64(sid.data(), session_id);
  const Digest256 d =
      hmac_sha256(key, {ll, as_bytes(kSessionLabel), nl, as_bytes(name), cn, sn, sid});
  Key256 out;
  std::copy(d.begin(), d.end(), out.begin());
  return out;
}

bool proof_equal(const Digest256& a, const Digest256& b) { return constant_time_equal(a, b); }

}  // namespace ipsan::proto
