#include "key_cli.h"

#include <cstdio>
#include <memory>

#include "ipsan/auth/identity.h"
#include "ipsan/base/crypto.h"

namespace ipsan::auth {

void add_key_cli(CLI::App& app) {
  auto* key = app.add_subcommand("key", "Ed25519 identities of clients, servers, administrators "
                                        "and the storage manager (docs/MANAGER.md)");
  key->require_subcommand(1);
  struct GenArgs {
    std::string out;
    bool force = false;
  };
  auto g = std::make_shared<GenArgs>();
  auto* gen = key->add_subcommand(
      "gen", "Create a key pair: write the private key (mode 0600) and print the public key");
  gen->add_option("-o,--out", g->out, "Private key file to create")->required();
  gen->add_flag("--force", g->force, "Overwrite an existing file");
  gen->callback([g] {
    crypto_init();
    const Identity id = generate_identity();
    if (auto r = write_identity_file(g->out, id, g->force); !r) {
      std::fprintf(stderr, "ipsan key gen: %s\n", r.error().message.c_str());
      throw CLI::RuntimeError(1);
    }
    std::printf("%s\n", public_key_hex(id.public_key).c_str());
  });
  auto path = std::make_shared<std::string>();
  auto* pub = key->add_subcommand("pub", "Print the public key of a private key file");
  pub->add_option("file", *path, "Private key file")->required();
  pub->callback([path] {
    auto id = read_identity_file(*path);
    if (!id) {
      std::fprintf(stderr, "ipsan key pub: %s\n", id.error().message.c_str());
      throw CLI::RuntimeError(1);
    }
    std::printf("%s\n", public_key_hex(id->public_key).c_str());
  });
}

}  // namespace ipsan::auth
