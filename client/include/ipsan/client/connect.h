// ipsan/client/connect.h: transport factories for SanClient from an address and a transport kind.
#pragma once

#include <utility>  // before Asio

#include <boost/asio/io_context.hpp>
#include <string>

#include "ipsan/base/key.h"
#include "ipsan/base/result.h"
#include "ipsan/client/san_client.h"
#include "ipsan/proto/rudp/connection.h"
#include "ipsan/proto/tcp_transport.h"

namespace ipsan::client {

struct TransportOptions {
  proto::TransportKind kind = proto::TransportKind::kUdp;
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  proto::rudp::Config rudp;
  proto::TcpConfig tcp;
};

// Resolves the host once (numeric or a name); each call of the factory makes a new connection.
Result<TransportFactory, Error> make_transport_factory(boost::asio::io_context& io,
                                                       const TransportOptions& options);

// The client key from `key_file` (its first line; the file must be mode 0600 or stricter) or,
// without one, the IPSAN_KEY environment variable: 64 hex digits or a passphrase (Argon2id salted
// by `client_name`; ipsan/base/key.h). The error says what was missing or wrong.
Result<ParsedKey, Error> load_client_key(const std::string& key_file, std::string_view client_name);

// "udp" / "tcp" -> kind; false otherwise.
bool parse_transport_kind(std::string_view text, proto::TransportKind& out);

// How to reach a server, as the command lines of `ipsan client`, `ipsan iscsi-portal`,
// `ipsan replay` and `ipsan bench` give it (client/cli/connect_flags.h adds the flags):
// -s HOST:PORT, -t udp|tcp, -n NAME, --key-file F / IPSAN_KEY, --timeout, --slots. `key` holds a
// -k/--key value only so that it can be refused with a clear message (keys never go in argv).
struct ConnectArgs {
  std::string server = "127.0.0.1:5260";
  std::string transport = "udp";
  std::string name = "default";
  std::string key;
  std::string key_file;
  std::string timeout = "30s";
  std::string connect_timeout = "5s";  // how long a command waits for the login to complete
  std::uint32_t slots = 64;
  std::string transport_security = "integrity";  // off | integrity | encrypted
  // Storage-manager grants instead of a key (docs/MANAGER.md): the client's Ed25519 private key
  // file, and either the manager (HOST:PORT, renewals) with its public key, or a grant file.
  std::string identity;
  std::string manager;
  std::string manager_key;
  std::string grant_file;
};
struct ConnectSettings {
  TransportOptions transport;
  ClientOptions client;              // login timeout: the request timeout, at most 10 s
  KeyForm key_form = KeyForm::kHex;  // how the key was read (reported on stderr)
  // A command gives up when no login completed within this (no server there, or it is down),
  // instead of waiting for the request timeout.
  Duration connect_timeout = std::chrono::seconds(5);
};
// Checks and resolves the arguments (port 5260 when HOST has none); the error says which
// argument is wrong and why. With `key_required` false, no key at all (no --key, --key-file or
// IPSAN_KEY) leaves ClientOptions::key zero instead of failing (a caller that supplies its own).
Result<ConnectSettings, Error> resolve_connect_args(const ConnectArgs& args,
                                                    bool key_required = true);
// --identity/--manager/--manager-key/--grant (connect_grant.cc): sets settings.client's
// grant_source (a GrantKeeper fetched once, then renewed in the background) and the client name
// from the grant. Does nothing without --identity.
Result<void, Error> apply_grant_args(const ConnectArgs& args, ConnectSettings& settings);

}  // namespace ipsan::client
