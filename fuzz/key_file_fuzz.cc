// libFuzzer target: the server's key file ("NAME KEY" lines, docs/SECURITY.md) and the key
// syntax (64 hex digits / passphrase / almost-hex refused). Argon2id is skipped (derive=false):
// it costs ~0.1 s per passphrase by design; the syntax is what untrusted files exercise.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "ipsan/base/key.h"
#include "ipsan/server/keyring.h"

namespace {

// The fixed wording of classify_key_text's messages (base/src/key.cc), numbers stripped.
constexpr std::string_view kWording[] = {
    "the key is empty",
    "the key looks like a hex key but has ",
    " characters, not 64 (refused rather than used as a passphrase)",
    "the key looks like a hex key but character(s) ",
    " are not hex digits (refused rather than used as a passphrase)",
    "a passphrase may not contain whitespace or control characters",
    "a passphrase may not contain '#' (it starts a key-file comment)",
    "a passphrase needs at least ",
    " characters (got ",
    "); or give 64 hex digits, e.g. from `od -An -tx1 -N32 /dev/urandom | tr -d ' \\n'`",
    "a passphrase may have at most ",
};

std::string digits_to_zero(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= '0' && c <= '9') c = '0';
  }
  return out;
}

// Is `text` (digits normalised) a piece of one message's wording with any numbers in it?
bool in_fixed_wording(std::string_view text) {
  const std::string t = digits_to_zero(text);
  for (std::string_view w : kWording) {
    if (digits_to_zero(w).find(t) != std::string::npos) return true;
  }
  // Spanning a number: the numbers in these messages sit between two pieces of wording.
  for (std::string_view a : kWording) {
    for (std::string_view b : kWording) {
      for (std::string_view num : {"0", "00", "000", "0, 0", "0, 0, 0"}) {
        const std::string joined = digits_to_zero(a) + std::string(num) + digits_to_zero(b);
        if (joined.find(t) != std::string::npos) return true;
      }
    }
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  ipsan::server::KeyRing ring;
  auto r = ipsan::server::parse_key_file_text(text, "fuzz.keys", ring, /*derive=*/false);
  if (!r && r.error().message.rfind("fuzz.keys:", 0) != 0) std::abort();  // names file:line
  auto form = ipsan::classify_key_text(text);
  if (form && *form == ipsan::KeyForm::kHex) {
    auto k = ipsan::parse_key_text(text, "x");  // hex: no derivation, cheap
    if (!k || k->form != ipsan::KeyForm::kHex) std::abort();
  }
  // The error never repeats the key text itself (long inputs only: short ones may match words;
  // and not where the text is a piece of the messages' own wording, with digits normalised).
  if (!form && size >= 16 && form.error().message.find(text) != std::string::npos &&
      !in_fixed_wording(text)) {
    std::abort();
  }
  return 0;
}
