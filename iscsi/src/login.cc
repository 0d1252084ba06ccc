// iSCSI login negotiation, target side (see ipsan/iscsi/login.h).
#include "ipsan/iscsi/login.h"

#include <openssl/evp.h>
#include <sodium.h>

#include <algorithm>
#include <charconv>
#include <sstream>

#include "ipsan/base/crypto.h"

namespace ipsan::iscsi {
namespace {

// RFC 7143 13.1: numbers are decimal or 0x-hex; values here fit 32 bits.
std::optional<std::uint64_t> parse_number(std::string_view v) {
  int base = 10;
  if (v.size() > 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) {
    v.remove_prefix(2);
    base = 16;
  }
  if (v.empty() || v.size() > 16) return std::nullopt;
  std::uint64_t out = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out, base);
  if (ec != std::errc() || p != v.data() + v.size()) return std::nullopt;
  return out;
}

std::optional<bool> parse_bool(std::string_view v) {
  if (v == "Yes") return true;
  if (v == "No") return false;
  return std::nullopt;
}

const char* yes_no(bool b) { return b ? "Yes" : "No"; }

std::vector<std::string_view> split_list(std::string_view v) {
  std::vector<std::string_view> out;
  while (true) {
    const auto comma = v.find(',');
    out.push_back(v.substr(0, comma));
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
  return out;
}

std::string hex_value(ByteSpan b) {
  static const char* digits = "0123456789abcdef";
  std::string out = "0x";
  for (auto x : b) {
    out += digits[x >> 4];
    out += digits[x & 15];
  }
  return out;
}

// A CHAP key's value, only if present once.
const std::string* find_key(const TextPairs& pairs, std::string_view key) {
  for (const auto& [k, v] : pairs) {
    if (k == key) return &v;
  }
  return nullptr;
}

constexpr std::size_t kMaxChapBinary = 1024;  // longest CHAP_C / CHAP_R accepted (bytes)

}  // namespace

Bytes chap_response(ChapAlgorithm alg, std::uint8_t id, std::string_view secret,
                    ByteSpan challenge) {
  const EVP_MD* md = alg == ChapAlgorithm::kSha256 ? EVP_sha256() : EVP_md5();
  Bytes out(static_cast<std::size_t>(EVP_MD_get_size(md)));
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  unsigned len = 0;
  const bool ok = ctx != nullptr && EVP_DigestInit_ex(ctx, md, nullptr) == 1 &&
                  EVP_DigestUpdate(ctx, &id, 1) == 1 &&
                  EVP_DigestUpdate(ctx, secret.data(), secret.size()) == 1 &&
                  EVP_DigestUpdate(ctx, challenge.data(), challenge.size()) == 1 &&
                  EVP_DigestFinal_ex(ctx, out.data(), &len) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok) return {};  // compares unequal to every response
  out.resize(len);
  return out;
}

std::optional<Bytes> decode_chap_binary(std::string_view v) {
  if (v.size() < 3 || v[0] != '0') return std::nullopt;
  Bytes out(kMaxChapBinary);
  std::size_t n = 0;
  if (v[1] == 'x' || v[1] == 'X') {
    std::string hex(v.substr(2));
    if (hex.size() % 2 != 0) hex.insert(hex.begin(), '0');
    if (hex.size() / 2 > kMaxChapBinary) return std::nullopt;
    const char* end = nullptr;
    if (sodium_hex2bin(out.data(), out.size(), hex.data(), hex.size(), nullptr, &n, &end) != 0 ||
        end != hex.data() + hex.size()) {
      return std::nullopt;
    }
  } else if (v[1] == 'b' || v[1] == 'B') {
    const std::string_view b64 = v.substr(2);
    if (b64.size() > kMaxChapBinary * 4 / 3 + 4) return std::nullopt;
    const char* end = nullptr;
    if (sodium_base642bin(out.data(), out.size(), b64.data(), b64.size(), nullptr, &n, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        end != b64.data() + b64.size()) {
      return std::nullopt;
    }
  } else {
    return std::nullopt;
  }
  if (n == 0) return std::nullopt;
  out.resize(n);
  return out;
}

Result<LoginSecurity, Error> parse_chap_secrets(std::string_view text, const std::string& origin) {
  LoginSecurity s;
  std::istringstream in{std::string(text)};
  std::string line;
  int lineno = 0;
  bool have_target = false;
  while (std::getline(in, line)) {
    ++lineno;
    const std::string where = origin + ":" + std::to_string(lineno) + ": ";
    if (auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream ls(line);
    std::string role, name, secret, extra;
    if (!(ls >> role)) continue;
    if (!(ls >> name >> secret) || (ls >> extra)) {
      return fail(where + "expected 'initiator NAME SECRET' or 'target NAME SECRET'");
    }
    if (name.size() > 223) return fail(where + "CHAP name longer than 223 characters");
    if (secret.size() < kMinChapSecret || secret.size() > 255) {
      return fail(where + "a CHAP secret needs 12 to 255 characters (RFC 7143 12.1.3)");
    }
    if (role == "initiator") {
      if (!s.chap_initiators.emplace(name, secret).second) {
        return fail(where + "initiator '" + name + "' listed twice");
      }
    } else if (role == "target") {
      if (have_target) return fail(where + "more than one target line");
      have_target = true;
      s.chap_target_name = name;
      s.chap_target_secret = secret;
    } else {
      return fail(where + "unknown role '" + role + "' (initiator or target)");
    }
  }
  if (have_target && s.chap_initiators.empty()) {
    return fail(origin + ": a target secret without any initiator secret");
  }
  for (const auto& [n, sec] : s.chap_initiators) {
    if (have_target && sec == s.chap_target_secret) {
      return fail(origin + ": the target secret is also initiator '" + n +
                  "''s secret (RFC 7143 12.1.3 forbids one secret for both directions)");
    }
  }
  return s;
}

LoginNegotiator::LoginNegotiator(TargetLimits limits,
                                 std::function<bool(std::string_view)> target_exists,
                                 std::uint16_t portal_group_tag, const LoginSecurity* security)
    : limits_(limits),
      target_exists_(std::move(target_exists)),
      tpgt_(portal_group_tag),
      security_(security) {
  params_.target_max_recv_dsl = limits_.max_recv_data_segment_length;
}

LoginStep LoginNegotiator::failure(std::uint16_t status, std::string reason) {
  LoginStep s;
  s.status = status;
  s.reason = std::move(reason);
  s.csg = stage_;
  return s;
}

LoginStep LoginNegotiator::on_request(std::uint8_t csg, std::uint8_t nsg, bool transit, bool cont,
                                      ByteSpan data) {
  if (stage_ == kStageFullFeature) return failure(kLoginInvalidDuringLogin, "login already complete");
  if (csg == 2 || csg > kStageFullFeature || csg == kStageFullFeature) {
    return failure(kLoginInitiatorError, "invalid current stage " + std::to_string(csg));
  }
  if (csg < stage_) return failure(kLoginInitiatorError, "login stage went backwards");
  if (transit && (nsg == 2 || nsg <= csg)) {
    return failure(kLoginInitiatorError, "invalid next stage " + std::to_string(nsg));
  }
  if (cont && transit) return failure(kLoginInitiatorError, "both C and T bits set");
  if (pending_.size() + data.size() > limits_.max_login_data) {
    return failure(kLoginInitiatorError, "login text too long");
  }
  pending_.insert(pending_.end(), data.begin(), data.end());
  if (cont) {  // more text follows: acknowledge with an empty response (RFC 7143 6.6)
    LoginStep s;
    s.csg = csg;
    return s;
  }
  auto pairs = parse_text(pending_);
  pending_.clear();
  if (!pairs) return failure(kLoginInitiatorError, pairs.error().message);

  LoginStep step;
  if (first_) {
    first_ = false;
    std::optional<std::string> type, initiator, target;
    for (const auto& [k, v] : *pairs) {
      if (k == "SessionType") type = v;
      if (k == "InitiatorName") initiator = v;
      if (k == "TargetName") target = v;
    }
    if (!initiator || initiator->empty()) {
      return failure(kLoginMissingParameter, "no InitiatorName in the first login request");
    }
    params_.initiator_name = *initiator;
    if (type && *type != "Normal" && *type != "Discovery") {
      return failure(kLoginSessionTypeUnsupported, "SessionType " + *type);
    }
    params_.discovery = type && *type == "Discovery";
    if (!params_.discovery) {
      if (!target) return failure(kLoginMissingParameter, "no TargetName in a normal session");
      if (!target_exists_(*target)) return failure(kLoginNotFound, "unknown target " + *target);
      if (security_ != nullptr && security_->initiator_allowed &&
          !security_->initiator_allowed(*target, *initiator)) {
        return failure(kLoginAuthorizationFailure,
                       "initiator " + *initiator + " is not allowed to log in to " + *target);
      }
      params_.target_name = *target;
    }
    if (!params_.discovery) step.keys.emplace_back("TargetPortalGroupTag", std::to_string(tpgt_));
  }
  if (chap_required() && csg != kStageSecurity && auth_ != Auth::kDone) {
    return failure(kLoginAuthFailure,
                   "authentication required (the login left or skipped the security stage)");
  }
  stage_ = csg;
  for (const auto& [k, v] : *pairs) {
    if (k.rfind("CHAP_", 0) == 0) {
      if (csg != kStageSecurity || auth_ == Auth::kNone || auth_ == Auth::kDone) {
        return failure(kLoginInitiatorError, "unexpected " + k);
      }
      continue;  // handled together below
    }
    if (std::find(seen_.begin(), seen_.end(), k) != seen_.end()) {
      return failure(kLoginInitiatorError, "key " + k + " negotiated twice");
    }
    if (k != "InitiatorName" && k != "SessionType" && k != "TargetName") seen_.push_back(k);
    negotiate(k, v, step);
    if (step.status != kLoginSuccess) return step;
  }
  if (csg == kStageSecurity && (auth_ == Auth::kChap || auth_ == Auth::kChallenged)) {
    const bool chose_now = find_key(*pairs, "AuthMethod") != nullptr;
    if (!chose_now || find_key(*pairs, "CHAP_A") != nullptr) chap(*pairs, step);
    if (step.status != kLoginSuccess) return step;
  }
  if (csg == kStageSecurity && transit && (auth_ == Auth::kChap || auth_ == Auth::kChallenged)) {
    transit = false;  // CHAP is still running: answer with T=0 (RFC 7143 6.3)
  }
  if (csg == kStageSecurity && transit && chap_required() && auth_ != Auth::kDone) {
    return failure(kLoginAuthFailure, "authentication required before leaving the security stage");
  }
  if (csg == kStageSecurity && !auth_chosen_ && transit) {
    // The initiator moves on without offering AuthMethod: no authentication is configured, so
    // that is fine (RFC 7143 6.3.1 lets the target accept it).
    auth_chosen_ = true;
  }
  if (csg == kStageOperational || transit) {
    if (!declared_ && csg == kStageOperational) {
      declared_ = true;
      step.keys.emplace_back("MaxRecvDataSegmentLength",
                             std::to_string(limits_.max_recv_data_segment_length));
    }
  }
  step.csg = csg;
  if (transit) {
    step.transit = true;
    step.nsg = nsg;
    if (nsg == kStageFullFeature) {
      if (!declared_) {
        declared_ = true;
        step.keys.emplace_back("MaxRecvDataSegmentLength",
                               std::to_string(limits_.max_recv_data_segment_length));
      }
      if (params_.first_burst_length > params_.max_burst_length) {
        params_.first_burst_length = params_.max_burst_length;
      }
      stage_ = kStageFullFeature;
      step.complete = true;
    } else {
      stage_ = nsg;
    }
  }
  return step;
}

void LoginNegotiator::negotiate(const std::string& key, const std::string& value,
                                LoginStep& step) {
  auto& out = step.keys;
  auto reject = [&] { out.emplace_back(key, "Reject"); };
  auto number = [&](std::uint64_t lo, std::uint64_t hi) -> std::optional<std::uint32_t> {
    auto n = parse_number(value);
    if (!n || *n < lo || *n > hi) {
      reject();
      return std::nullopt;
    }
    return static_cast<std::uint32_t>(*n);
  };
  auto boolean = [&]() -> std::optional<bool> {
    auto b = parse_bool(value);
    if (!b) reject();
    return b;
  };
  if (key == "InitiatorName" || key == "SessionType" || key == "TargetName") return;
  if (key == "InitiatorAlias") {
    params_.initiator_alias = value;
    return;
  }
  if (key == "AuthMethod") {
    auth_chosen_ = true;
    for (auto m : split_list(value)) {
      if (chap_required() ? m == "CHAP" : m == "None") {
        out.emplace_back(key, std::string(m));
        if (m == "CHAP") auth_ = Auth::kChap;
        return;
      }
    }
    if (chap_required()) {
      reject();
      step.status = kLoginAuthFailure;
      step.reason = "CHAP is required; the initiator offered AuthMethod=" + value;
      return;
    }
    reject();
    step.status = kLoginAuthFailure;
    step.reason = "no acceptable AuthMethod in " + value;
    return;
  }
  if (key == "HeaderDigest" || key == "DataDigest") {
    for (auto m : split_list(value)) {
      if (m == "None" || (m == "CRC32C" && limits_.allow_digests)) {
        const bool crc = m == "CRC32C";
        (key == "HeaderDigest" ? params_.digests.header : params_.digests.data) = crc;
        out.emplace_back(key, std::string(m));
        return;
      }
    }
    return reject();
  }
  if (key == "MaxRecvDataSegmentLength") {  // declarative: the initiator's receive limit
    if (auto n = parse_number(value); n && *n >= 512 && *n <= 16777215) {
      params_.initiator_max_recv_dsl = static_cast<std::uint32_t>(*n);
    } else {
      reject();
    }
    return;
  }
  if (params_.discovery && (key == "MaxBurstLength" || key == "FirstBurstLength" ||
                            key == "InitialR2T" || key == "ImmediateData" ||
                            key == "MaxOutstandingR2T" || key == "DataPDUInOrder" ||
                            key == "DataSequenceInOrder" || key == "MaxConnections")) {
    out.emplace_back(key, "Irrelevant");
    return;
  }
  if (key == "MaxBurstLength") {
    if (auto n = number(512, 16777215)) {
      params_.max_burst_length = std::min(*n, limits_.max_burst_length);
      out.emplace_back(key, std::to_string(params_.max_burst_length));
    }
    return;
  }
  if (key == "FirstBurstLength") {
    if (auto n = number(512, 16777215)) {
      params_.first_burst_length = std::min(*n, limits_.first_burst_length);
      out.emplace_back(key, std::to_string(params_.first_burst_length));
    }
    return;
  }
  if (key == "MaxOutstandingR2T") {
    if (auto n = number(1, 65535)) {
      params_.max_outstanding_r2t = std::min(*n, limits_.max_outstanding_r2t);
      out.emplace_back(key, std::to_string(params_.max_outstanding_r2t));
    }
    return;
  }
  if (key == "InitialR2T") {  // OR
    if (auto b = boolean()) {
      params_.initial_r2t = *b || limits_.initial_r2t;
      out.emplace_back(key, yes_no(params_.initial_r2t));
    }
    return;
  }
  if (key == "ImmediateData") {  // AND
    if (auto b = boolean()) {
      params_.immediate_data = *b && limits_.immediate_data;
      out.emplace_back(key, yes_no(params_.immediate_data));
    }
    return;
  }
  if (key == "DataPDUInOrder" || key == "DataSequenceInOrder") {  // OR; we need Yes
    if (boolean()) out.emplace_back(key, "Yes");
    return;
  }
  if (key == "MaxConnections") {
    if (number(1, 65535)) out.emplace_back(key, "1");
    return;
  }
  if (key == "ErrorRecoveryLevel") {
    if (number(0, 2)) out.emplace_back(key, "0");
    return;
  }
  if (key == "DefaultTime2Wait") {  // maximum
    if (auto n = number(0, 3600)) {
      params_.default_time2wait = std::max<std::uint32_t>(*n, 2);
      out.emplace_back(key, std::to_string(params_.default_time2wait));
    }
    return;
  }
  if (key == "DefaultTime2Retain") {  // minimum
    if (number(0, 3600)) {
      params_.default_time2retain = 0;
      out.emplace_back(key, "0");
    }
    return;
  }
  if (key == "IFMarker" || key == "OFMarker") {  // AND; markers are not implemented
    if (boolean()) out.emplace_back(key, "No");
    return;
  }
  if (key == "IFMarkInt" || key == "OFMarkInt") {
    out.emplace_back(key, "Irrelevant");
    return;
  }
  out.emplace_back(key, "NotUnderstood");
}

bool LoginNegotiator::chap_required() const {
  return security_ != nullptr && security_->chap_required();
}

void LoginNegotiator::chap(const TextPairs& pairs, LoginStep& step) {
  auto fail_with = [&](std::uint16_t status, std::string why) {
    step.status = status;
    step.reason = std::move(why);
  };
  const std::string* a = find_key(pairs, "CHAP_A");
  const std::string* n = find_key(pairs, "CHAP_N");
  const std::string* r = find_key(pairs, "CHAP_R");
  const std::string* i = find_key(pairs, "CHAP_I");
  const std::string* c = find_key(pairs, "CHAP_C");
  std::size_t chap_keys = 0;
  for (const auto& [k, v] : pairs) chap_keys += k.rfind("CHAP_", 0) == 0 ? 1 : 0;
  if (auth_ == Auth::kChap) {
    // Step 3: the initiator lists its algorithms; step 4: we pick one and challenge.
    if (a == nullptr || chap_keys != 1) {
      return fail_with(kLoginInitiatorError, "expected CHAP_A alone after AuthMethod=CHAP");
    }
    std::optional<ChapAlgorithm> pick;
    for (auto item : split_list(*a)) {
      auto num = parse_number(item);
      if (!num) continue;
      for (auto ours : security_->algorithms) {
        if (*num == static_cast<std::uint8_t>(ours)) {
          pick = ours;
          break;
        }
      }
      if (pick) break;
    }
    if (!pick) {
      step.keys.emplace_back("CHAP_A", "Reject");
      return fail_with(kLoginAuthFailure, "no supported CHAP algorithm in CHAP_A=" + *a);
    }
    chap_alg_ = *pick;
    std::uint8_t idbyte = 0;
    random_bytes({&idbyte, 1});
    chap_id_ = idbyte;
    chap_challenge_.assign(chap_alg_ == ChapAlgorithm::kSha256 ? 32 : 16, 0);
    random_bytes(chap_challenge_);
    step.keys.emplace_back("CHAP_A", std::to_string(static_cast<int>(chap_alg_)));
    step.keys.emplace_back("CHAP_I", std::to_string(chap_id_));
    step.keys.emplace_back("CHAP_C", hex_value(chap_challenge_));
    auth_ = Auth::kChallenged;
    return;
  }
  // Step 5: CHAP_N and CHAP_R (and, for mutual CHAP, CHAP_I and CHAP_C).
  if (n == nullptr || r == nullptr || a != nullptr || (i == nullptr) != (c == nullptr) ||
      chap_keys != (i != nullptr ? 4u : 2u)) {
    return fail_with(kLoginInitiatorError, "expected CHAP_N and CHAP_R (and CHAP_I with CHAP_C)");
  }
  auto response = decode_chap_binary(*r);
  auto it = security_->chap_initiators.find(*n);
  // One answer for an unknown name and a wrong response: no user enumeration.
  bool ok = response.has_value() && it != security_->chap_initiators.end();
  if (ok) {
    const Bytes want = chap_response(chap_alg_, chap_id_, it->second, chap_challenge_);
    ok = !want.empty() && constant_time_equal(want, *response);
  }
  const Bytes sent = std::move(chap_challenge_);
  chap_challenge_.clear();  // one response per challenge
  if (!ok) return fail_with(kLoginAuthFailure, "CHAP authentication of '" + *n + "' failed");
  if (i != nullptr) {
    // Mutual CHAP: the initiator authenticates the target.
    if (security_->chap_target_name.empty()) {
      return fail_with(kLoginAuthFailure, "the initiator asked for mutual CHAP; no target secret is configured");
    }
    auto id = parse_number(*i);
    auto challenge = decode_chap_binary(*c);
    if (!id || *id > 255 || !challenge) {
      return fail_with(kLoginInitiatorError, "malformed CHAP_I or CHAP_C");
    }
    if (*challenge == sent) {  // a reflection of our own challenge (RFC 7143 12.1.3)
      return fail_with(kLoginAuthFailure, "the initiator's CHAP challenge repeats the target's");
    }
    if (challenge->size() < 8) {
      return fail_with(kLoginAuthFailure, "the initiator's CHAP challenge is too short");
    }
    const Bytes reply = chap_response(chap_alg_, static_cast<std::uint8_t>(*id),
                                      security_->chap_target_secret, *challenge);
    if (reply.empty()) return fail_with(kLoginTargetError, "hash failed");
    step.keys.emplace_back("CHAP_N", security_->chap_target_name);
    step.keys.emplace_back("CHAP_R", hex_value(reply));
  }
  auth_ = Auth::kDone;
}

TextPairs send_targets_response(std::string_view request_value,
                                const std::vector<std::string>& target_names,
                                std::string_view portal_address,
                                std::string_view initiator_target) {
  TextPairs out;
  for (const auto& name : target_names) {
    const bool want = request_value == "All" ||
                      (request_value.empty() && name == initiator_target) ||
                      request_value == name;
    if (!want) continue;
    out.emplace_back("TargetName", name);
    out.emplace_back("TargetAddress", std::string(portal_address));
  }
  return out;
}

}  // namespace ipsan::iscsi
