// Client keys: 64 hex digits or an Argon2id-stretched passphrase (see ipsan/base/key.h).
#include "ipsan/base/key.h"

#include <sodium.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <fstream>

#include "ipsan/base/bytes.h"

namespace ipsan {
namespace {

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

constexpr std::string_view kSaltLabel = "ipsan-key-salt-v1";

}  // namespace

const char* key_form_name(KeyForm form) noexcept {
  return form == KeyForm::kHex ? "64 hex digits" : "passphrase (Argon2id)";
}

Result<Key256, Error> derive_passphrase_key(std::string_view passphrase,
                                            std::string_view client_name) {
  if (!crypto_init()) return fail("libsodium failed to start");
  std::uint8_t hash[crypto_generichash_BYTES];
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, sizeof hash);
  crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(kSaltLabel.data()),
                            kSaltLabel.size());
  const unsigned char zero = 0;
  crypto_generichash_update(&st, &zero, 1);
  crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(client_name.data()),
                            client_name.size());
  crypto_generichash_final(&st, hash, sizeof hash);
  static_assert(crypto_pwhash_SALTBYTES <= sizeof hash);
  Key256 out{};
  if (crypto_pwhash(out.data(), out.size(), passphrase.data(), passphrase.size(), hash,
                    crypto_pwhash_OPSLIMIT_INTERACTIVE, crypto_pwhash_MEMLIMIT_INTERACTIVE,
                    crypto_pwhash_ALG_ARGON2ID13) != 0) {
    return fail("Argon2id key derivation failed (out of memory?)");
  }
  return out;
}

Result<KeyForm, Error> classify_key_text(std::string_view text) {
  if (text.empty()) return fail("the key is empty");
  std::size_t hex = 0;
  for (char c : text) hex += is_hex(c) ? 1 : 0;
  if (text.size() == 64 && hex == 64) return KeyForm::kHex;
  if (text.size() >= 56 && text.size() <= 72 && text.size() - hex <= 4) {
    if (text.size() != 64) {
      return fail("the key looks like a hex key but has " + std::to_string(text.size()) +
                  " characters, not 64 (refused rather than used as a passphrase)");
    }
    std::string where;
    for (std::size_t i = 0; i < text.size(); ++i) {
      if (!is_hex(text[i])) where += (where.empty() ? "" : ", ") + std::to_string(i + 1);
    }
    return fail("the key looks like a hex key but character(s) " + where +
                " are not hex digits (refused rather than used as a passphrase)");
  }
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7F) {
      return fail("a passphrase may not contain whitespace or control characters");
    }
    if (c == '#') return fail("a passphrase may not contain '#' (it starts a key-file comment)");
  }
  if (text.size() < kMinPassphraseLength) {
    return fail("a passphrase needs at least " + std::to_string(kMinPassphraseLength) +
                " characters (got " + std::to_string(text.size()) +
                "); or give 64 hex digits, e.g. from `od -An -tx1 -N32 /dev/urandom | tr -d ' \\n'`");
  }
  if (text.size() > kMaxPassphraseLength) {
    return fail("a passphrase may have at most " + std::to_string(kMaxPassphraseLength) +
                " characters");
  }
  return KeyForm::kPassphrase;
}

Result<ParsedKey, Error> parse_key_text(std::string_view text, std::string_view client_name) {
  auto form = classify_key_text(text);
  if (!form) return make_unexpected(form.error());
  ParsedKey out;
  out.form = *form;
  if (*form == KeyForm::kHex) {
    Bytes raw;
    if (!from_hex(text, raw) || raw.size() != 32) return fail("bad hex key");
    std::memcpy(out.key.data(), raw.data(), 32);
    return out;
  }
  auto k = derive_passphrase_key(text, client_name);
  if (!k) return make_unexpected(k.error());
  out.key = *k;
  return out;
}

Result<void, Error> check_key_file_mode(const std::filesystem::path& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) {
    return fail("cannot read key file " + path.string() + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) return fail("key file " + path.string() + " is not a regular file");
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return fail("key file " + path.string() + " is accessible by group or others (mode " + mode +
                "); refused: run `chmod 600 " + path.string() + "`");
  }
  return {};
}

Result<ParsedKey, Error> read_client_key_file(const std::filesystem::path& path,
                                              std::string_view client_name) {
  if (auto m = check_key_file_mode(path); !m) return make_unexpected(m.error());
  std::ifstream f(path);
  std::string line;
  if (!f || !std::getline(f, line)) return fail("cannot read key file " + path.string());
  std::string_view t(line);
  while (!t.empty() && (t.back() == '\r' || t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
  while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
  auto k = parse_key_text(t, client_name);
  if (!k) return fail("key file " + path.string() + ": " + k.error().message);
  return k;
}

}  // namespace ipsan
