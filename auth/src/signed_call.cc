#include "ipsan/auth/signed_call.h"

#include <utility>  // before Asio

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <cstring>

#include "ipsan/auth/grant.h"
#include "ipsan/base/crypto.h"
#include "ipsan/base/units.h"

namespace ipsan::auth {

namespace asio = boost::asio;
using json = nlohmann::json;

namespace {

Result<Signature, Error> sig_from(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return fail(std::string("missing ") + key);
  Bytes raw;
  if (!from_hex(it->get<std::string>(), raw) || raw.size() != 64)
    return fail(std::string(key) + " is not 128 hex digits");
  Signature s;
  std::memcpy(s.data(), raw.data(), 64);
  return s;
}

}  // namespace

json sign_request(const Identity& caller, json body, std::uint64_t now) {
  std::array<std::uint8_t, 16> n{};
  random_bytes(n);
  body["ts"] = now;
  body["nonce"] = to_hex(ByteSpan(n.data(), n.size()));
  const std::string text = body.dump();
  const Signature s = sign(caller, as_bytes(text));
  return {{"body", text},
          {"key", public_key_hex(caller.public_key)},
          {"sig", to_hex(ByteSpan(s.data(), s.size()))}};
}

Result<OpenedRequest, Error> open_request(const json& env, std::uint64_t now) {
  if (!env.is_object()) return fail("request is not a JSON object");
  auto b = env.find("body");
  auto k = env.find("key");
  if (b == env.end() || !b->is_string() || k == env.end() || !k->is_string())
    return fail("request needs body, key and sig");
  auto pk = parse_public_key(k->get<std::string>());
  if (!pk) return fail("key: " + pk.error().message);
  auto s = sig_from(env, "sig");
  if (!s) return make_unexpected(s.error());
  const std::string& text = b->get_ref<const std::string&>();
  if (!verify_signature(*pk, as_bytes(text), *s)) return fail("bad signature");
  OpenedRequest r;
  r.key = *pk;
  r.body = json::parse(text, nullptr, false);
  if (!r.body.is_object()) return fail("body is not a JSON object");
  auto ts = r.body.find("ts");
  auto nonce = r.body.find("nonce");
  if (ts == r.body.end() || !ts->is_number_unsigned() || nonce == r.body.end() ||
      !nonce->is_string() || nonce->get<std::string>().size() != 32)
    return fail("body needs ts and a 32-hex-digit nonce");
  r.ts = ts->get<std::uint64_t>();
  r.nonce = nonce->get<std::string>();
  const std::uint64_t skew = r.ts > now ? r.ts - now : now - r.ts;
  if (skew > kRequestWindowSeconds)
    return fail("request time is " + std::to_string(skew) + " s away from the manager's clock");
  return r;
}

json sign_response(const Identity& manager, json body, const std::string& nonce) {
  body["re"] = nonce;
  const std::string text = body.dump();
  const Signature s = sign(manager, as_bytes(text));
  return {{"body", text}, {"sig", to_hex(ByteSpan(s.data(), s.size()))}};
}

Result<json, Error> open_response(const json& env, const PublicKey& manager,
                                  const std::string& nonce) {
  if (!env.is_object() || !env.contains("body") || !env["body"].is_string())
    return fail("answer is not a manager envelope");
  auto s = sig_from(env, "sig");
  if (!s) return make_unexpected(s.error());
  const std::string& text = env["body"].get_ref<const std::string&>();
  if (!verify_signature(manager, as_bytes(text), *s))
    return fail("answer is not signed by the manager's key");
  json body = json::parse(text, nullptr, false);
  if (!body.is_object() || body.value("re", std::string()) != nonce)
    return fail("answer is not for this request (replayed?)");
  return body;
}

Result<json, Error> manager_call(const std::string& address, const Identity& caller, json body,
                                 const PublicKey* manager, Duration timeout) {
  auto hp = parse_host_port(address, "127.0.0.1", 5270);
  if (!hp) return fail("manager address: " + hp.error().message);
  const json env = sign_request(caller, std::move(body), system_unix_seconds());
  const std::string nonce = json::parse(env["body"].get<std::string>())["nonce"];
  asio::io_context io;
  asio::ip::tcp::socket sock(io);
  asio::streambuf buf(kMaxLineBytes);
  boost::system::error_code result = asio::error::would_block;
  std::string err_where = "connect";
  asio::ip::tcp::resolver res(io);
  boost::system::error_code ec;
  auto eps = res.resolve(hp->host, std::to_string(hp->port), ec);
  if (ec) return fail("manager " + address + ": " + ec.message());
  const std::string line = env.dump() + "\n";
  asio::async_connect(sock, eps, [&](boost::system::error_code e, const auto&) {
    if (e) {
      result = e;
      return;
    }
    err_where = "send";
    asio::async_write(sock, asio::buffer(line), [&](boost::system::error_code e2, std::size_t) {
      if (e2) {
        result = e2;
        return;
      }
      err_where = "answer";
      asio::async_read_until(sock, buf, '\n', [&](boost::system::error_code e3, std::size_t) {
        result = e3;
      });
    });
  });
  io.run_for(timeout);
  if (result == asio::error::would_block)
    return fail("manager " + address + ": no " + err_where + " within " +
                std::to_string(std::chrono::duration_cast<std::chrono::seconds>(timeout).count()) +
                " s");
  if (result) return fail("manager " + address + ": " + err_where + ": " + result.message());
  std::string text((std::istreambuf_iterator<char>(&buf)), std::istreambuf_iterator<char>());
  json answer = json::parse(text, nullptr, false);
  if (answer.is_discarded()) return fail("manager " + address + ": answer is not JSON");
  json out;
  if (manager) {
    auto b = open_response(answer, *manager, nonce);
    if (!b) return fail("manager " + address + ": " + b.error().message);
    out = std::move(*b);
  } else {
    if (!answer.contains("body") || !answer["body"].is_string())
      return fail("manager " + address + ": answer is not a manager envelope");
    out = json::parse(answer["body"].get<std::string>(), nullptr, false);
    if (!out.is_object()) return fail("manager " + address + ": answer body is not JSON");
  }
  if (!out.value("ok", false)) return fail(out.value("error", std::string("refused")));
  return out;
}

}  // namespace ipsan::auth
