// ipsan/proto/xdr.h: XDR (RFC 4506) encoding and decoding over byte buffers.
//
// XdrWriter appends big-endian 4-byte-aligned items to a Bytes it owns; XdrReader decodes a
// ByteSpan it does not own and treats it as hostile: every length is checked against the bytes
// remaining and a caller-given maximum before anything is allocated or viewed, padding bytes must
// be zero, and errors are returned (Errc::kBadMessage, or kTooLarge for a length above the caller's
// maximum), never thrown. Views returned by the reader (get_opaque, get_opaque_fixed) point into
// the input.
//
// Threading: plain values; one object per thread, no shared state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "ipsan/base/bytes.h"
#include "ipsan/base/crypto.h"  // as_bytes
#include "ipsan/base/result.h"

namespace ipsan::proto {

// Bytes needed to pad `len` up to a multiple of 4.
constexpr std::size_t xdr_pad(std::size_t len) { return (4 - (len & 3)) & 3; }
// Encoded size of a variable-length opaque / string of `len` bytes (length word + data + padding).
constexpr std::size_t xdr_opaque_size(std::size_t len) { return 4 + len + xdr_pad(len); }

class XdrWriter {
 public:
  XdrWriter() = default;
  // Continues appending after the bytes already in `initial`.
  explicit XdrWriter(Bytes initial) : out_(std::move(initial)) {}

  void reserve(std::size_t total_bytes) { out_.reserve(total_bytes); }
  std::size_t size() const { return out_.size(); }

  void put_u32(std::uint32_t v);
  void put_i32(std::int32_t v) { put_u32(static_cast<std::uint32_t>(v)); }
  void put_u64(std::uint64_t v);
  void put_bool(bool v) { put_u32(v ? 1 : 0); }
  // Fixed-length opaque: the bytes then zero padding to a multiple of 4 (no length word).
  void put_opaque_fixed(ByteSpan data);
  // Variable-length opaque: 4-byte length, the bytes, zero padding.
  void put_opaque(ByteSpan data);
  void put_string(std::string_view s);

  // Writes the length word and zeroed space for `len` bytes (plus padding) and returns the data
  // area for the caller to fill in place (e.g. a READ reply filled straight from the back end).
  // The span points into this writer's buffer: it is invalidated by any later put_*, reserve() or
  // release() that makes the buffer grow. Either append nothing more (put the space last, as the
  // READ reply does), reserve() the final size first, or re-derive it with span(offset, len) using
  // the offset this call returns through `offset_out`.
  MutableByteSpan put_opaque_space(std::size_t len, std::size_t* offset_out = nullptr);

  // A view of already-written bytes [offset, offset+len); caller guarantees the range exists.
  MutableByteSpan span(std::size_t offset, std::size_t len) {
    return MutableByteSpan(out_).subspan(offset, len);
  }
  const Bytes& bytes() const { return out_; }
  Bytes release() { return std::move(out_); }

 private:
  Bytes out_;
};

class XdrReader {
 public:
  explicit XdrReader(ByteSpan in) : in_(in) {}
  // The reader keeps a view: refuse temporaries that would dangle.
  explicit XdrReader(Bytes&&) = delete;

  Result<std::uint32_t> get_u32();
  Result<std::int32_t> get_i32();
  Result<std::uint64_t> get_u64();
  // Only 0 and 1 are valid booleans (RFC 4506 section 4.4).
  Result<bool> get_bool();
  // Fixed-length opaque of exactly `len` bytes plus zero padding; returns a view into the input.
  Result<ByteSpan> get_opaque_fixed(std::size_t len);
  // Variable-length opaque; its length must be <= max_len (else kTooLarge). View into the input.
  Result<ByteSpan> get_opaque(std::size_t max_len);
  // Variable-length string (<= max_len bytes); NUL bytes are rejected.
  Result<std::string> get_string(std::size_t max_len);

  std::size_t remaining() const { return in_.size() - pos_; }
  std::size_t offset() const { return pos_; }
  // The undecoded rest of the input (e.g. RPC call arguments after the header).
  ByteSpan rest() const { return in_.subspan(pos_); }
  // Fails with kBadMessage if any bytes are left (trailing garbage).
  Result<void> expect_end() const;

 private:
  Result<void> check_padding(std::size_t len);

  ByteSpan in_;
  std::size_t pos_ = 0;
};

}  // namespace ipsan::proto
