// ipsan/iscsi/login.h: the target side of iSCSI login (RFC 7143 6, 13): stages (security,
// operational, full feature), text key negotiation with the RFC's result functions (minimum,
// maximum, OR, AND, list selection), discovery vs normal sessions, login status codes.
//
// Sans-I/O: LoginNegotiator takes the decoded keys and stage bits of each Login Request and returns
// the keys, stage bits and status of the Login Response; the portal does the PDU framing. A
// response with a non-zero status ends the login (the portal closes the connection after sending
// it). One negotiator per connection; not thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "ipsan/base/result.h"
#include "ipsan/iscsi/wire/pdu.h"

namespace ipsan::iscsi {

// Login status class/detail (RFC 7143 11.13.5), as (class << 8) | detail.
inline constexpr std::uint16_t kLoginSuccess = 0x0000;
inline constexpr std::uint16_t kLoginInitiatorError = 0x0200;
inline constexpr std::uint16_t kLoginAuthFailure = 0x0201;
inline constexpr std::uint16_t kLoginAuthorizationFailure = 0x0202;  // initiator not allowed
inline constexpr std::uint16_t kLoginNotFound = 0x0203;
inline constexpr std::uint16_t kLoginUnsupportedVersion = 0x0205;
inline constexpr std::uint16_t kLoginMissingParameter = 0x0207;
inline constexpr std::uint16_t kLoginSessionTypeUnsupported = 0x0209;
inline constexpr std::uint16_t kLoginSessionDoesNotExist = 0x020A;
inline constexpr std::uint16_t kLoginInvalidDuringLogin = 0x020B;
inline constexpr std::uint16_t kLoginTargetError = 0x0300;
inline constexpr std::uint16_t kLoginServiceUnavailable = 0x0301;
inline constexpr std::uint16_t kLoginOutOfResources = 0x0302;

// Login stages (CSG / NSG).
inline constexpr std::uint8_t kStageSecurity = 0;
inline constexpr std::uint8_t kStageOperational = 1;
inline constexpr std::uint8_t kStageFullFeature = 3;

// What the target offers; each value is the target's side of the negotiation.
struct TargetLimits {
  std::uint32_t max_recv_data_segment_length = 262144;  // declared to the initiator
  std::uint32_t max_burst_length = 1u << 20;
  std::uint32_t first_burst_length = 262144;
  std::uint32_t max_outstanding_r2t = 1;
  bool initial_r2t = false;   // the target accepts unsolicited data
  bool immediate_data = true;
  bool allow_digests = true;  // CRC32C offered for HeaderDigest / DataDigest
  std::uint32_t max_login_data = 65536;  // a login's text across continued PDUs
};

// The operational parameters a session runs with (defaults are RFC 7143's).
struct SessionParams {
  std::string initiator_name;
  std::string initiator_alias;
  std::string target_name;
  bool discovery = false;
  DigestConfig digests;
  std::uint32_t initiator_max_recv_dsl = 8192;  // we send at most this much data per PDU
  std::uint32_t target_max_recv_dsl = 8192;     // the initiator sends at most this much
  std::uint32_t max_burst_length = 262144;
  std::uint32_t first_burst_length = 65536;
  std::uint32_t max_outstanding_r2t = 1;
  bool initial_r2t = true;
  bool immediate_data = true;
  std::uint32_t default_time2wait = 2;
  std::uint32_t default_time2retain = 0;
  std::uint32_t error_recovery_level = 0;
};

// CHAP (RFC 7143 12.1.3; RFC 1994): R = H(I || secret || C). CHAP_A values are IANA's PPP
// authentication algorithm numbers: 5 = MD5 (RFC 7143, the only one libiscsi 1.19 offers),
// 7 = SHA-256 (RFC 7143bis / RFC 9654 adds SHA-256 and others).
enum class ChapAlgorithm : std::uint8_t { kMd5 = 5, kSha256 = 7 };
inline constexpr std::size_t kMinChapSecret = 12;  // RFC 7143 12.1.3 asks for >= 96 bits

// H(id || secret || challenge) with the algorithm's hash.
Bytes chap_response(ChapAlgorithm alg, std::uint8_t id, std::string_view secret,
                    ByteSpan challenge);
// CHAP binary values: "0x" + hex (odd length allowed) or "0b" + base64 (RFC 7143 6.1).
std::optional<Bytes> decode_chap_binary(std::string_view value);

// Who may log in. Shared by every connection of a portal; read-only once the portal runs.
struct LoginSecurity {
  // CHAP_N -> secret of each initiator that may authenticate. Empty: no CHAP (AuthMethod=None).
  // Non-empty: every session, normal and discovery, must authenticate with CHAP.
  std::map<std::string, std::string, std::less<>> chap_initiators;
  // Mutual CHAP: the CHAP_N and secret the target answers an initiator's challenge with
  // (empty name: an initiator asking to authenticate the target is refused).
  std::string chap_target_name;
  std::string chap_target_secret;
  // Offered in this order of preference among what the initiator lists.
  std::vector<ChapAlgorithm> algorithms = {ChapAlgorithm::kSha256, ChapAlgorithm::kMd5};
  // Whether `initiator` may log in to `target` (normal sessions); null: every initiator.
  std::function<bool(std::string_view target, std::string_view initiator)> initiator_allowed;
  bool chap_required() const { return !chap_initiators.empty(); }
};

// Parses a CHAP secrets file: lines `initiator NAME SECRET` and at most one `target NAME SECRET`
// (`#` comments). Secrets are 12..255 characters; a target secret equal to an initiator's is
// refused (RFC 7143 12.1.3). The caller checks the file's mode (ipsan/base/key.h).
Result<LoginSecurity, Error> parse_chap_secrets(std::string_view text, const std::string& origin);

struct LoginStep {
  TextPairs keys;
  bool transit = false;
  std::uint8_t csg = 0;
  std::uint8_t nsg = 0;
  std::uint16_t status = kLoginSuccess;
  std::string reason;  // for logs when status != 0
  bool complete = false;  // transit to full feature phase accepted
};

class LoginNegotiator {
 public:
  // `target_exists(name)`: whether a normal session may name this target.
  // `security` (may be null: no authentication, everyone allowed) must outlive the negotiator.
  LoginNegotiator(TargetLimits limits, std::function<bool(std::string_view)> target_exists,
                  std::uint16_t portal_group_tag = 1, const LoginSecurity* security = nullptr);

  // One Login Request: its CSG, NSG, T bit, C bit and text data.
  LoginStep on_request(std::uint8_t csg, std::uint8_t nsg, bool transit, bool cont,
                       ByteSpan data);

  const SessionParams& params() const { return params_; }
  bool complete() const { return stage_ == kStageFullFeature; }

 private:
  LoginStep failure(std::uint16_t status, std::string reason);
  void negotiate(const std::string& key, const std::string& value, LoginStep& step);
  bool chap_required() const;
  // The CHAP keys of one security-stage request (RFC 7143 12.1.3 steps 3-6).
  void chap(const TextPairs& pairs, LoginStep& step);

  enum class Auth { kNone, kChap, kChallenged, kDone };

  TargetLimits limits_;
  std::function<bool(std::string_view)> target_exists_;
  std::uint16_t tpgt_;
  SessionParams params_;
  std::uint8_t stage_ = kStageSecurity;
  bool first_ = true;
  bool declared_ = false;  // our MaxRecvDataSegmentLength sent
  bool auth_chosen_ = false;
  const LoginSecurity* security_ = nullptr;
  Auth auth_ = Auth::kNone;
  ChapAlgorithm chap_alg_ = ChapAlgorithm::kMd5;
  std::uint8_t chap_id_ = 0;
  Bytes chap_challenge_;
  Bytes pending_;            // text of continued (C=1) requests
  std::vector<std::string> seen_;  // keys negotiated so far (repeats are an error)
};

// Text Request (discovery): the SendTargets answer for `targets` (name, address "ip:port,tpgt").
TextPairs send_targets_response(std::string_view request_value,
                                const std::vector<std::string>& target_names,
                                std::string_view portal_address, std::string_view initiator_target);

}  // namespace ipsan::iscsi
