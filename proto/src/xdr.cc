#include "ipsan/proto/xdr.h"

#include <algorithm>
#include <cstring>

namespace ipsan::proto {

void XdrWriter::put_u32(std::uint32_t v) {
  const std::size_t at = out_.size();
  out_.resize(at + 4);
  store_be32(out_.data() + at, v);
}

void XdrWriter::put_u64(std::uint64_t v) {
  const std::size_t at = out_.size();
  out_.resize(at + 8);
  store_be64(out_.data() + at, v);
}

void XdrWriter::put_opaque_fixed(ByteSpan data) {
  out_.insert(out_.end(), data.begin(), data.end());
  out_.resize(out_.size() + xdr_pad(data.size()), 0);
}

void XdrWriter::put_opaque(ByteSpan data) {
  put_u32(static_cast<std::uint32_t>(data.size()));
  put_opaque_fixed(data);
}

void XdrWriter::put_string(std::string_view s) { put_opaque(ipsan::as_bytes(s)); }

MutableByteSpan XdrWriter::put_opaque_space(std::size_t len, std::size_t* offset_out) {
  put_u32(static_cast<std::uint32_t>(len));
  const std::size_t at = out_.size();
  out_.resize(at + len + xdr_pad(len), 0);
  if (offset_out != nullptr) *offset_out = at;
  return span(at, len);
}

Result<std::uint32_t> XdrReader::get_u32() {
  if (remaining() < 4) return fail(Errc::kBadMessage);
  const std::uint32_t v = load_be32(in_.data() + pos_);
  pos_ += 4;
  return v;
}

Result<std::int32_t> XdrReader::get_i32() {
  auto v = get_u32();
  if (!v) return fail(v.error());
  return static_cast<std::int32_t>(*v);
}

Result<std::uint64_t> XdrReader::get_u64() {
  if (remaining() < 8) return fail(Errc::kBadMessage);
  const std::uint64_t v = load_be64(in_.data() + pos_);
  pos_ += 8;
  return v;
}

Result<bool> XdrReader::get_bool() {
  auto v = get_u32();
  if (!v) return fail(v.error());
  if (*v > 1) return fail(Errc::kBadMessage);
  return *v == 1;
}

Result<void> XdrReader::check_padding(std::size_t len) {
  const std::size_t pad = xdr_pad(len);
  if (remaining() < pad) return fail(Errc::kBadMessage);
  for (std::size_t i = 0; i < pad; ++i) {
    if (in_[pos_ + i] != 0) return fail(Errc::kBadMessage);
  }
  pos_ += pad;
  return {};
}

Result<ByteSpan> XdrReader::get_opaque_fixed(std::size_t len) {
  // len + pad cannot overflow: len <= remaining() is checked first.
  if (len > remaining()) return fail(Errc::kBadMessage);
  const ByteSpan view = in_.subspan(pos_, len);
  const std::size_t start = pos_;
  pos_ += len;
  if (auto p = check_padding(len); !p) {
    pos_ = start;
    return fail(p.error());
  }
  return view;
}

Result<ByteSpan> XdrReader::get_opaque(std::size_t max_len) {
  const std::size_t start = pos_;
  auto len = get_u32();
  if (!len) return fail(len.error());
  if (*len > max_len) {
    pos_ = start;
    return fail(Errc::kTooLarge);
  }
  auto view = get_opaque_fixed(*len);
  if (!view) pos_ = start;
  return view;
}

Result<std::string> XdrReader::get_string(std::size_t max_len) {
  const std::size_t start = pos_;
  auto view = get_opaque(max_len);
  if (!view) return fail(view.error());
  if (std::find(view->begin(), view->end(), std::uint8_t{0}) != view->end()) {
    pos_ = start;
    return fail(Errc::kBadMessage);
  }
  return std::string(reinterpret_cast<const char*>(view->data()), view->size());
}

Result<void> XdrReader::expect_end() const {
  if (remaining() != 0) return fail(Errc::kBadMessage);
  return {};
}

}  // namespace ipsan::proto
