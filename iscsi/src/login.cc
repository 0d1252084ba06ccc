// iSCSI login negotiation, target side (see ipsan/iscsi/login.h).
#include "ipsan/iscsi/login.h"

#include <algorithm>
#include <charconv>

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

}  // namespace

LoginNegotiator::LoginNegotiator(TargetLimits limits,
                                 std::function<bool(std::string_view)> target_exists,
                                 std::uint16_t portal_group_tag)
    : limits_(limits), target_exists_(std::move(target_exists)), tpgt_(portal_group_tag) {
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
      params_.target_name = *target;
    }
    if (!params_.discovery) step.keys.emplace_back("TargetPortalGroupTag", std::to_string(tpgt_));
  }
  stage_ = csg;
  for (const auto& [k, v] : *pairs) {
    if (std::find(seen_.begin(), seen_.end(), k) != seen_.end()) {
      return failure(kLoginInitiatorError, "key " + k + " negotiated twice");
    }
    if (k != "InitiatorName" && k != "SessionType" && k != "TargetName") seen_.push_back(k);
    negotiate(k, v, step);
    if (step.status != kLoginSuccess) return step;
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
      if (m == "None") {
        out.emplace_back(key, "None");
        return;
      }
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
