// ipsan/base/key.h: client keys as people write them: exactly 64 hex digits, or a passphrase
// stretched with Argon2id (libsodium crypto_pwhash). One parser for the server's key file, the
// server's --client-key and the client's --key-file / IPSAN_KEY, so both ends derive the same key.
//
// Rules (docs/SECURITY.md, "Keys"):
//  - 64 hex digits (either case): the 32 key bytes.
//  - Text that looks like a hex key but is not one (56..72 characters with at most 4 that are not
//    hex digits, e.g. one typo, one digit missing or one too many) is refused: silently turning a
//    mistyped key into a passphrase would give a different key and a login failure far from the
//    cause.
//  - Anything else is a passphrase of 12..1024 printable characters without whitespace or '#'
//    (the key file's field and comment separators). Key = Argon2id(passphrase, salt) with
//    libsodium's INTERACTIVE limits (2 passes, 64 MiB), salt = the first 16 bytes of
//    BLAKE2b-256("ipsan-key-salt-v1" 0x00 client-name). The salt depends only on the client name,
//    which both ends know before login, so nothing else has to be stored or exchanged; two
//    clients with the same passphrase get different keys, and a precomputed table is per
//    client name. (A random stored salt would need a new key-file field on both ends.)
//  - Key files must not be readable or writable by group or others (mode & 077 == 0), as ssh
//    requires of private keys; the error says which mode was found and how to fix it.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "ipsan/base/crypto.h"
#include "ipsan/base/result.h"

namespace ipsan {

enum class KeyForm { kHex, kPassphrase };

// "64 hex digits" / "passphrase (Argon2id)": for the "key read as ..." line on stderr.
const char* key_form_name(KeyForm form) noexcept;

struct ParsedKey {
  Key256 key{};
  KeyForm form = KeyForm::kHex;
};

inline constexpr std::size_t kMinPassphraseLength = 12;
inline constexpr std::size_t kMaxPassphraseLength = 1024;

// The form `text` would be read as, or why it is refused; no key derivation (cheap).
Result<KeyForm, Error> classify_key_text(std::string_view text);

// Classifies and converts `text` for the client `client_name` (the passphrase salt). The error
// says why a key was refused (never echoes the key itself).
Result<ParsedKey, Error> parse_key_text(std::string_view text, std::string_view client_name);

// The Argon2id derivation alone (no syntax checks); fails only if libsodium cannot allocate.
Result<Key256, Error> derive_passphrase_key(std::string_view passphrase,
                                            std::string_view client_name);

// Refuses a key file that group or others may read or write, or that is not a regular file.
Result<void, Error> check_key_file_mode(const std::filesystem::path& path);

// A client key file: permissions checked, then its first line (trailing CR/LF and surrounding
// spaces removed) parsed with parse_key_text.
Result<ParsedKey, Error> read_client_key_file(const std::filesystem::path& path,
                                              std::string_view client_name);

}  // namespace ipsan
