// ipsan/nbd/wire.h: the NBD protocol's wire format (NetworkBlockDevice/nbd doc/proto.md) and the
// option negotiation of the fixed newstyle handshake, sans I/O: bytes in, bytes and decisions out.
//
// Pure and allocation-bounded, so it can be fuzzed (fuzz/nbd_fuzz.cc): every decoder takes a span
// and checks lengths before it reads; nothing here knows sockets, TLS or the ipsan client. The
// server (server.h) reads an option header and its payload, hands them to Negotiator::on_option
// and sends what it returns; in transmission it decodes each request with decode_request and
// checks it with validate_request before touching the device.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ipsan/base/bytes.h"

namespace ipsan::nbd {

// ---- magic numbers ----
inline constexpr std::uint64_t kNbdMagic = 0x4e42444d41474943ull;    // "NBDMAGIC"
inline constexpr std::uint64_t kOptMagic = 0x49484156454F5054ull;    // "IHAVEOPT"
inline constexpr std::uint64_t kRepMagic = 0x0003e889045565a9ull;    // option replies
inline constexpr std::uint32_t kRequestMagic = 0x25609513u;
inline constexpr std::uint32_t kSimpleReplyMagic = 0x67446698u;
inline constexpr std::uint32_t kStructuredReplyMagic = 0x668e33efu;

// ---- handshake flags ----
inline constexpr std::uint16_t kFlagFixedNewstyle = 1u << 0;
inline constexpr std::uint16_t kFlagNoZeroes = 1u << 1;
inline constexpr std::uint32_t kClientFixedNewstyle = 1u << 0;
inline constexpr std::uint32_t kClientNoZeroes = 1u << 1;

// ---- transmission flags ----
inline constexpr std::uint16_t kTxHasFlags = 1u << 0;
inline constexpr std::uint16_t kTxReadOnly = 1u << 1;
inline constexpr std::uint16_t kTxSendFlush = 1u << 2;
inline constexpr std::uint16_t kTxSendFua = 1u << 3;
inline constexpr std::uint16_t kTxRotational = 1u << 4;
inline constexpr std::uint16_t kTxSendTrim = 1u << 5;
inline constexpr std::uint16_t kTxSendWriteZeroes = 1u << 6;
inline constexpr std::uint16_t kTxSendDf = 1u << 7;
inline constexpr std::uint16_t kTxCanMultiConn = 1u << 8;
inline constexpr std::uint16_t kTxSendResize = 1u << 9;
inline constexpr std::uint16_t kTxSendCache = 1u << 10;
inline constexpr std::uint16_t kTxSendFastZero = 1u << 11;

// ---- options ----
enum Option : std::uint32_t {
  kOptExportName = 1,
  kOptAbort = 2,
  kOptList = 3,
  kOptPeekExport = 4,
  kOptStartTls = 5,
  kOptInfo = 6,
  kOptGo = 7,
  kOptStructuredReply = 8,
  kOptListMetaContext = 9,
  kOptSetMetaContext = 10,
  kOptExtendedHeaders = 11,
};

// ---- option reply types ----
inline constexpr std::uint32_t kRepAck = 1;
inline constexpr std::uint32_t kRepServer = 2;
inline constexpr std::uint32_t kRepInfo = 3;
inline constexpr std::uint32_t kRepMetaContext = 4;
inline constexpr std::uint32_t kRepErrUnsup = 0x80000001u;
inline constexpr std::uint32_t kRepErrPolicy = 0x80000002u;
inline constexpr std::uint32_t kRepErrInvalid = 0x80000003u;
inline constexpr std::uint32_t kRepErrPlatform = 0x80000004u;
inline constexpr std::uint32_t kRepErrTlsReqd = 0x80000005u;
inline constexpr std::uint32_t kRepErrUnknown = 0x80000006u;
inline constexpr std::uint32_t kRepErrShutdown = 0x80000007u;
inline constexpr std::uint32_t kRepErrBlockSizeReqd = 0x80000008u;
inline constexpr std::uint32_t kRepErrTooBig = 0x80000009u;

// ---- info types (NBD_OPT_INFO / NBD_OPT_GO) ----
inline constexpr std::uint16_t kInfoExport = 0;
inline constexpr std::uint16_t kInfoName = 1;
inline constexpr std::uint16_t kInfoDescription = 2;
inline constexpr std::uint16_t kInfoBlockSize = 3;

// ---- commands ----
enum Command : std::uint16_t {
  kCmdRead = 0,
  kCmdWrite = 1,
  kCmdDisc = 2,
  kCmdFlush = 3,
  kCmdTrim = 4,
  kCmdCache = 5,
  kCmdWriteZeroes = 6,
  kCmdBlockStatus = 7,
  kCmdResize = 8,
};
inline constexpr std::uint16_t kCmdFlagFua = 1u << 0;
inline constexpr std::uint16_t kCmdFlagNoHole = 1u << 1;
inline constexpr std::uint16_t kCmdFlagDf = 1u << 2;
inline constexpr std::uint16_t kCmdFlagReqOne = 1u << 3;
inline constexpr std::uint16_t kCmdFlagFastZero = 1u << 4;
inline constexpr std::uint16_t kCmdFlagPayloadLen = 1u << 5;

// ---- structured replies ----
inline constexpr std::uint16_t kReplyFlagDone = 1u << 0;
inline constexpr std::uint16_t kReplyTypeNone = 0;
inline constexpr std::uint16_t kReplyTypeOffsetData = 1;
inline constexpr std::uint16_t kReplyTypeOffsetHole = 2;
inline constexpr std::uint16_t kReplyTypeBlockStatus = 5;
inline constexpr std::uint16_t kReplyTypeError = 0x8001;
inline constexpr std::uint16_t kReplyTypeErrorOffset = 0x8002;

// base:allocation flags
inline constexpr std::uint32_t kStateHole = 1u << 0;
inline constexpr std::uint32_t kStateZero = 1u << 1;

// ---- error values (the spec's errno numbers) ----
inline constexpr std::uint32_t kEPERM = 1;
inline constexpr std::uint32_t kEIO = 5;
inline constexpr std::uint32_t kENOMEM = 12;
inline constexpr std::uint32_t kEINVAL = 22;
inline constexpr std::uint32_t kENOSPC = 28;
inline constexpr std::uint32_t kEOVERFLOW = 75;
inline constexpr std::uint32_t kENOTSUP = 95;
inline constexpr std::uint32_t kESHUTDOWN = 108;

inline constexpr std::size_t kGreetingSize = 18;      // NBDMAGIC, IHAVEOPT, u16 flags
inline constexpr std::size_t kOptionHeaderSize = 16;  // IHAVEOPT, u32 option, u32 length
inline constexpr std::size_t kRequestSize = 28;
inline constexpr std::size_t kSimpleReplySize = 16;
inline constexpr std::size_t kChunkHeaderSize = 20;
inline constexpr std::uint32_t kMaxOptionLength = 64u * 1024;  // larger options: connection closed
inline constexpr std::size_t kMaxString = 4096;                // spec: strings MUST be <= 4096

const char* option_name(std::uint32_t option) noexcept;
const char* command_name(std::uint16_t type) noexcept;

// ---- handshake ----
Bytes encode_greeting(std::uint16_t handshake_flags);

struct OptionHeader {
  std::uint32_t option = 0;
  std::uint32_t length = 0;
};
// kOptionHeaderSize bytes; nullopt when the magic is wrong.
std::optional<OptionHeader> decode_option_header(ByteSpan b);
Bytes encode_option_reply(std::uint32_t option, std::uint32_t type, ByteSpan data = {});
Bytes encode_option_error(std::uint32_t option, std::uint32_t type, std::string_view message);

// NBD_OPT_INFO / NBD_OPT_GO payload.
struct InfoRequest {
  std::string name;
  std::vector<std::uint16_t> infos;
};
std::optional<InfoRequest> decode_info_request(ByteSpan payload);
Bytes encode_info_request(const InfoRequest& r);

// NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT payload.
struct MetaContextRequest {
  std::string export_name;
  std::vector<std::string> queries;
};
std::optional<MetaContextRequest> decode_meta_context_request(ByteSpan payload);
Bytes encode_meta_context_request(const MetaContextRequest& r);

// ---- transmission ----
struct Request {
  std::uint16_t flags = 0;
  std::uint16_t type = 0;
  std::uint64_t cookie = 0;
  std::uint64_t offset = 0;
  std::uint32_t length = 0;
};
// kRequestSize bytes; nullopt when the magic is wrong (the stream cannot be trusted).
std::optional<Request> decode_request(ByteSpan b);
Bytes encode_request(const Request& r);

void put_simple_reply(std::uint8_t* out16, std::uint32_t error, std::uint64_t cookie);
void put_chunk_header(std::uint8_t* out20, std::uint16_t flags, std::uint16_t type,
                      std::uint64_t cookie, std::uint32_t length);
Bytes encode_simple_reply(std::uint32_t error, std::uint64_t cookie);
// NBD_REPLY_TYPE_ERROR chunk with the DONE flag.
Bytes encode_error_chunk(std::uint64_t cookie, std::uint32_t error, std::string_view message);
struct Extent {
  std::uint32_t length = 0;
  std::uint32_t flags = 0;
};
// NBD_REPLY_TYPE_BLOCK_STATUS chunk with the DONE flag.
Bytes encode_block_status_chunk(std::uint64_t cookie, std::uint32_t context_id,
                                const std::vector<Extent>& extents);

// ---- negotiation ----
enum class TlsMode { kOff, kOn, kRequire };

// One export as the client sees it.
struct ExportInfo {
  std::string name;
  std::string description;
  std::uint64_t size = 0;
  std::uint16_t flags = 0;  // transmission flags without kTxSendDf (added when structured)
  std::uint32_t min_block = 512;
  std::uint32_t preferred_block = 4096;
  std::uint32_t max_block = 32u << 20;
};

struct NegotiatorConfig {
  std::vector<ExportInfo> exports;  // name "" selects exports[0] (the default export)
  TlsMode tls = TlsMode::kOff;      // kOn/kRequire need a TLS context in the server
  bool shutting_down = false;
};

inline constexpr std::uint32_t kBaseAllocationId = 1;  // our metadata context id
inline constexpr std::string_view kBaseAllocation = "base:allocation";

enum class NegotiationAction {
  kContinue,         // send reply, read the next option
  kStartTls,         // send reply, then run the TLS handshake, then call tls_started()
  kTransmission,     // send reply, enter transmission with selected()
  kClose,            // send reply (may be empty), close the connection
};

struct NegotiationStep {
  Bytes reply;
  NegotiationAction action = NegotiationAction::kContinue;
};

class Negotiator {
 public:
  explicit Negotiator(const NegotiatorConfig& config) : cfg_(config) {}

  std::uint16_t handshake_flags() const { return kFlagFixedNewstyle | kFlagNoZeroes; }
  // The client's 32-bit flags; false: unacceptable (close without a word, per the spec).
  bool on_client_flags(std::uint32_t flags);
  NegotiationStep on_option(std::uint32_t option, ByteSpan payload);
  // After a successful TLS handshake: the option state starts over.
  void tls_started();

  bool tls_active() const { return tls_active_; }
  bool structured_replies() const { return structured_; }
  bool no_zeroes() const { return no_zeroes_; }
  // Whether base:allocation is selected for the export entered.
  bool base_allocation() const { return meta_allocation_ && meta_export_ok_; }
  // The export entered (valid after kTransmission).
  const ExportInfo* selected() const { return selected_; }
  // Transmission flags the client was given.
  std::uint16_t transmission_flags(const ExportInfo& e) const;

 private:
  const ExportInfo* find(std::string_view name) const;
  NegotiationStep info_or_go(std::uint32_t option, ByteSpan payload);
  NegotiationStep meta_context(std::uint32_t option, ByteSpan payload);

  const NegotiatorConfig& cfg_;
  bool fixed_ = false;
  bool no_zeroes_ = false;
  bool tls_active_ = false;
  bool structured_ = false;
  bool meta_allocation_ = false;
  bool meta_export_ok_ = false;
  std::string meta_export_;
  const ExportInfo* selected_ = nullptr;
};

// Transmission-phase checks that need no device: the NBD error to answer with, or 0.
// `structured`/`base_allocation` are what the client negotiated.
std::uint32_t validate_request(const Request& r, const ExportInfo& e, bool structured,
                               bool base_allocation);

}  // namespace ipsan::nbd
