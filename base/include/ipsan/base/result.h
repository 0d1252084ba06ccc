// ipsan/base/result.h: expected-style results for synchronous code.
//
// GCC 12 / clang 14 with libstdc++ 12 have no std::expected, so ipsan uses tl::expected (Debian's
// libexpected-dev), which has the same shape. Data-path code returns Result<T> (error = Errc);
// configuration and parsing code returns Result<T, Error> with a human-readable message.
#pragma once

#include <string>
#include <utility>

#include <tl/expected.hpp>

#include "ipsan/base/errc.h"

namespace ipsan {

// A failure with a message meant for a person (config, CLI, trace and pcap parsing).
struct Error {
  Errc code = Errc::kInvalidArgument;
  std::string message;
};

template <class T, class E = Errc>
using Result = tl::expected<T, E>;

using tl::make_unexpected;

inline tl::unexpected<Errc> fail(Errc e) { return tl::unexpected<Errc>(e); }
inline tl::unexpected<Error> fail(Errc e, std::string message) {
  return tl::unexpected<Error>(Error{e, std::move(message)});
}
inline tl::unexpected<Error> fail(std::string message) {
  return tl::unexpected<Error>(Error{Errc::kInvalidArgument, std::move(message)});
}

}  // namespace ipsan
