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
  // The error never repeats the key text itself (long inputs only: short ones may match words).
  if (!form && size >= 16 && form.error().message.find(text) != std::string::npos) std::abort();
  return 0;
}
