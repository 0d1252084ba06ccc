// connect_flags.h: the command-line flags that say how to reach a server, shared by
// `ipsan client`, `ipsan iscsi-portal`, `ipsan replay` and `ipsan bench` (client::ConnectArgs;
// resolve_connect_args checks every value, so a bad one exits 2 with the flag named).
#pragma once

#include <CLI/CLI.hpp>

#include "ipsan/client/connect.h"

namespace ipsan::client {

// Adds -s/--server, -t/--transport, -n/--name, --key-file (and -k/--key, which is refused),
// --timeout, --connect-timeout, --transport-security and (unless `slots` is false: a command with
// its own queue depth) --slots.
inline void add_connect_flags(CLI::App* cmd, ConnectArgs& a, bool slots = true) {
  cmd->add_option("-s,--server", a.server, "ipsan server HOST:PORT")->capture_default_str();
  cmd->add_option("-t,--transport", a.transport, "udp (reliable UDP) or tcp")
      ->capture_default_str();
  cmd->add_option("-n,--name", a.name, "Client name the server knows the key for")
      ->capture_default_str();
  cmd->add_option("-k,--key", a.key,
                  "Refused: keys never go on the command line (ps shows them); use --key-file "
                  "or IPSAN_KEY");
  cmd->add_option("--key-file", a.key_file,
                  "File (mode 0600) whose first line is the key: 64 hex digits or a passphrase "
                  "of 12+ characters; without it, the IPSAN_KEY environment variable");
  cmd->add_option("--timeout", a.timeout, "Request timeout, e.g. 30s")->capture_default_str();
  cmd->add_option("--connect-timeout", a.connect_timeout,
                  "Give up when no login completed within this (no server answering over udp; "
                  "over tcp a refused connection is reported at once)")
      ->capture_default_str();
  cmd->add_option("--transport-security", a.transport_security,
                  "Packet protection asked for at login: off, integrity (every reliable-UDP "
                  "packet MAC'd; TCP: RPC MACs) or encrypted (AEAD, UDP packets or TCP records)")
      ->capture_default_str();
  cmd->add_option("--identity", a.identity,
                  "Log in with storage-manager grants: this client's Ed25519 private key file "
                  "(`ipsan key gen`; docs/MANAGER.md), instead of --key-file");
  cmd->add_option("--manager", a.manager,
                  "With --identity: the manager HOST:PORT to fetch and renew grants from");
  cmd->add_option("--manager-key", a.manager_key,
                  "With --manager: the manager's public key (64 hex digits or a file)");
  cmd->add_option("--grant", a.grant_file,
                  "With --identity and no --manager: a grant file (hex), re-read at every login");
  if (slots) {
    cmd->add_option("--slots", a.slots, "Maximum requests in flight")->capture_default_str();
  }
}

}  // namespace ipsan::client
