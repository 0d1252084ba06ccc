#include "ipsan/auth/identity.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "ipsan/base/crypto.h"
#include "ipsan/base/key.h"

namespace ipsan::auth {
namespace {
constexpr std::string_view kPrivateTag = "ipsan-ed25519-v1";

bool is_hex64(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  return true;
}
}  // namespace

Identity identity_from_seed(const std::array<std::uint8_t, 32>& seed) {
  crypto_init();
  Identity id;
  crypto_sign_seed_keypair(id.public_key.data(), id.secret_key.data(), seed.data());
  return id;
}

Identity generate_identity() {
  std::array<std::uint8_t, 32> seed{};
  random_bytes(seed);
  Identity id = identity_from_seed(seed);
  sodium_memzero(seed.data(), seed.size());
  return id;
}

Result<Identity, Error> parse_identity_text(std::string_view text) {
  std::istringstream in{std::string(text)};
  std::string tag, hex, extra;
  if (!(in >> tag >> hex) || tag != kPrivateTag)
    return fail("not an ipsan private key (expected '" + std::string(kPrivateTag) +
                " <64 hex digits>'; create one with `ipsan key gen`)");
  if (in >> extra) return fail("private key file has extra text after the key");
  if (!is_hex64(hex)) return fail("private key must be 64 hex digits after the tag");
  Bytes raw;
  if (!from_hex(hex, raw) || raw.size() != 32) return fail("private key must be 64 hex digits");
  std::array<std::uint8_t, 32> seed{};
  std::memcpy(seed.data(), raw.data(), 32);
  Identity id = identity_from_seed(seed);
  sodium_memzero(seed.data(), seed.size());
  sodium_memzero(raw.data(), raw.size());
  return id;
}

Result<void, Error> write_identity_file(const std::filesystem::path& path, const Identity& id,
                                        bool overwrite) {
  const int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (overwrite ? O_TRUNC : O_EXCL);
  const int fd = ::open(path.c_str(), flags, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return fail(path.string() + " exists; refusing to overwrite a key");
    return fail("cannot create " + path.string() + ": " + std::strerror(errno));
  }
  if (::fchmod(fd, 0600) != 0) {
    ::close(fd);
    return fail("cannot chmod " + path.string());
  }
  std::string text = std::string(kPrivateTag) + " " + to_hex(ByteSpan(id.secret_key.data(), 32)) +
                     "\n";
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                  ::fsync(fd) == 0;
  sodium_memzero(text.data(), text.size());
  ::close(fd);
  if (!ok) return fail("cannot write " + path.string());
  return {};
}

Result<Identity, Error> read_identity_file(const std::filesystem::path& path) {
  if (auto m = check_key_file_mode(path); !m) return make_unexpected(m.error());
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail("cannot open private key file " + path.string());
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.size() > 4096) return fail(path.string() + ": not an ipsan private key (too long)");
  auto id = parse_identity_text(text);
  sodium_memzero(text.data(), text.size());
  if (!id) return fail(path.string() + ": " + id.error().message);
  return id;
}

std::string public_key_hex(const PublicKey& pk) { return to_hex(ByteSpan(pk.data(), pk.size())); }

Result<PublicKey, Error> parse_public_key(std::string_view text) {
  if (!is_hex64(text)) return fail("a public key is 64 hex digits (`ipsan key gen` prints it)");
  Bytes raw;
  from_hex(text, raw);
  PublicKey pk{};
  std::memcpy(pk.data(), raw.data(), 32);
  return pk;
}

Result<PublicKey, Error> load_public_key(std::string_view text_or_path) {
  if (is_hex64(text_or_path)) return parse_public_key(text_or_path);
  const std::filesystem::path p{std::string(text_or_path)};
  std::ifstream in(p, std::ios::binary);
  if (!in) return fail("'" + std::string(text_or_path) +
                       "' is neither 64 hex digits nor a readable public key file");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.size() > 4096) return fail(p.string() + ": not a key file");
  std::istringstream words(text);
  std::string first;
  words >> first;
  if (first == kPrivateTag) {
    auto id = read_identity_file(p);
    if (!id) return make_unexpected(id.error());
    return id->public_key;
  }
  auto pk = parse_public_key(first);
  if (!pk) return fail(p.string() + ": " + pk.error().message);
  return pk;
}

Signature sign(const Identity& id, ByteSpan message) {
  Signature s{};
  crypto_sign_detached(s.data(), nullptr, message.data(), message.size(), id.secret_key.data());
  return s;
}

bool verify_signature(const PublicKey& pk, ByteSpan message, const Signature& sig) {
  return crypto_sign_verify_detached(sig.data(), message.data(), message.size(), pk.data()) == 0;
}

Result<std::array<std::uint8_t, 32>, Error> shared_secret(const Identity& self,
                                                          const PublicKey& peer) {
  std::array<std::uint8_t, 32> my_x{}, peer_x{}, out{};
  if (crypto_sign_ed25519_pk_to_curve25519(peer_x.data(), peer.data()) != 0)
    return fail("peer public key is not a valid Ed25519 point");
  crypto_sign_ed25519_sk_to_curve25519(my_x.data(), self.secret_key.data());
  const int rc = crypto_scalarmult(out.data(), my_x.data(), peer_x.data());
  sodium_memzero(my_x.data(), my_x.size());
  if (rc != 0) return fail("peer public key has low order");
  return out;
}

}  // namespace ipsan::auth
