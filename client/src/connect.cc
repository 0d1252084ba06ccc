#include "ipsan/client/connect.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>

#include "ipsan/proto/login.h"
#include "ipsan/proto/rudp/udp_transport.h"

#include "ipsan/base/units.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>

namespace ipsan::client {

namespace asio = boost::asio;

Result<ParsedKey, Error> load_client_key(const std::string& key_file,
                                         std::string_view client_name) {
  if (!key_file.empty()) return read_client_key_file(key_file, client_name);
  const char* env = std::getenv("IPSAN_KEY");
  if (env == nullptr || *env == '\0') return fail("no key: pass --key-file FILE or set IPSAN_KEY");
  auto k = parse_key_text(env, client_name);
  if (!k) return fail("IPSAN_KEY: " + k.error().message);
  return k;
}

bool parse_transport_kind(std::string_view text, proto::TransportKind& out) {
  if (text == "udp")
    out = proto::TransportKind::kUdp;
  else if (text == "tcp")
    out = proto::TransportKind::kTcp;
  else
    return false;
  return true;
}

Result<ConnectSettings, Error> resolve_connect_args(const ConnectArgs& a, bool key_required) {
  ConnectSettings s;
  if (!parse_transport_kind(a.transport, s.transport.kind)) {
    return fail("--transport must be udp or tcp, not '" + a.transport + "'");
  }
  auto hp = parse_host_port(a.server, "127.0.0.1", 5260);
  if (!hp) return fail("--server: " + hp.error().message);
  s.transport.host = hp->host;
  s.transport.port = hp->port;
  if (!proto::valid_client_name(a.name)) return fail("--name must be 1..64 printable characters");
  if (!a.key.empty()) {
    return fail(
        "-k/--key: a key on the command line is visible to every local user (ps, "
        "/proc); use --key-file FILE (mode 0600) or the IPSAN_KEY environment variable");
  }
  if (!a.identity.empty()) {
    if (!a.key_file.empty()) return fail("--identity (manager grants) and --key-file exclude each other");
    key_required = false;
  }
  const char* env = std::getenv("IPSAN_KEY");
  const bool any_key = !a.key_file.empty() || (env != nullptr && *env != '\0');
  if ((any_key && a.identity.empty()) || key_required) {
    auto key = load_client_key(a.key_file, a.name);
    if (!key) return make_unexpected(key.error());
    s.client.key = key->key;
    s.key_form = key->form;
    std::fprintf(stderr, "ipsan: key of client '%s' read as %s from %s\n", a.name.c_str(),
                 key_form_name(key->form), a.key_file.empty() ? "IPSAN_KEY" : a.key_file.c_str());
  }
  auto t = parse_duration(a.timeout);
  if (!t) return fail("--timeout: " + t.error().message);
  if (*t <= Duration::zero()) return fail("--timeout must be positive");
  if (a.slots == 0) return fail("--slots must be at least 1");
  s.client.client_name = a.name;
  auto ct = parse_duration(a.connect_timeout);
  if (!ct) return fail("--connect-timeout: " + ct.error().message);
  if (*ct <= Duration::zero()) return fail("--connect-timeout must be positive");
  s.connect_timeout = *ct;
  s.client.request_timeout = *t;
  s.client.login_timeout = std::min<Duration>(*t, std::chrono::seconds(10));
  s.client.max_slots = a.slots;
  proto::rudp::Protection p{};
  if (!proto::rudp::parse_protection(a.transport_security, p)) {
    return fail("--transport-security must be off, integrity or encrypted, not '" +
                a.transport_security + "'");
  }
  s.transport.rudp.protection = p;
  s.transport.tcp.protection = static_cast<std::uint32_t>(p);
  s.client.transport_security = static_cast<std::uint32_t>(p);
  if (auto g = apply_grant_args(a, s); !g) return make_unexpected(g.error());
  return s;
}

Result<TransportFactory, Error> make_transport_factory(asio::io_context& io,
                                                       const TransportOptions& o) {
  boost::system::error_code ec;
  asio::ip::address addr = asio::ip::make_address(o.host, ec);
  if (ec) {
    asio::ip::tcp::resolver resolver(io);
    auto results = resolver.resolve(o.host, std::to_string(o.port), ec);
    if (ec || results.empty()) return fail("cannot resolve host '" + o.host + "': " + ec.message());
    addr = results.begin()->endpoint().address();
  }
  if (o.port == 0) return fail("no server port given");
  if (o.kind == proto::TransportKind::kTcp) {
    asio::ip::tcp::endpoint ep(addr, o.port);
    auto cfg = o.tcp;
    return TransportFactory([&io, ep, cfg] { return proto::make_tcp_client(io, ep, cfg); });
  }
  asio::ip::udp::endpoint ep(addr, o.port);
  auto cfg = o.rudp;
  return TransportFactory([&io, ep, cfg] { return proto::rudp::make_udp_client(io, ep, cfg); });
}

}  // namespace ipsan::client
