#include "ipsan/server/admin.h"

#include <sys/stat.h>

#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <cstdio>
#include <fstream>

#include "ipsan/backends/spec.h"
#include "ipsan/base/log.h"
#include "ipsan/base/units.h"
#include "ipsan/metrics/encode.h"
#include "ipsan/virt/layout_edit.h"

namespace ipsan::server {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;
using nlohmann::json;

// ------------------------------------------------------------------------- AdminEndpoint ----

namespace {

class AdminConnection : public std::enable_shared_from_this<AdminConnection> {
 public:
  AdminConnection(local::socket s, AdminEndpoint::Handler& h, std::shared_ptr<bool> alive)
      : socket_(std::move(s)), handler_(h), alive_(std::move(alive)) {}
  void start() { read(); }

 private:
  void read() {
    auto self = shared_from_this();
    asio::async_read_until(socket_, buf_, '\n', [this, self](boost::system::error_code ec, std::size_t n) {
      if (ec || !*alive_) return;
      std::string line(asio::buffers_begin(buf_.data()),
                       asio::buffers_begin(buf_.data()) + static_cast<std::ptrdiff_t>(n));
      buf_.consume(n);
      json reply;
      json req = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (req.is_discarded() || !req.is_object()) {
        reply = json{{"ok", false}, {"error", "request is not a JSON object"}};
      } else {
        reply = handler_(req);
      }
      out_ = reply.dump() + "\n";
      asio::async_write(socket_, asio::buffer(out_), [this, self](boost::system::error_code e2, std::size_t) {
        if (!e2) read();
      });
    });
  }
  local::socket socket_;
  AdminEndpoint::Handler& handler_;
  std::shared_ptr<bool> alive_;
  asio::streambuf buf_{1 << 20};  // bounded: a longer line is an error
  std::string out_;
};

}  // namespace

AdminEndpoint::AdminEndpoint(asio::io_context& io, std::filesystem::path path, Handler handler)
    : acceptor_(io), path_(std::move(path)), handler_(std::move(handler)) {
  std::error_code fec;
  const auto st = std::filesystem::symlink_status(path_, fec);
  if (!fec && st.type() != std::filesystem::file_type::not_found &&
      st.type() != std::filesystem::file_type::socket) {
    // Never delete what is not a socket (a mistyped path could name a layout or an image).
    throw std::runtime_error("admin socket path " + path_.string() +
                             " exists and is not a socket: refused (remove it or pick another path)");
  }
  if (!fec && st.type() == std::filesystem::file_type::socket) {
    // A socket left by a dead server is replaced; a live one is refused.
    local::socket probe(io);
    boost::system::error_code ec;
    probe.connect(local::endpoint(path_.string()), ec);
    if (!ec) throw std::runtime_error("admin socket " + path_.string() + " is in use by a running server");
    std::filesystem::remove(path_, fec);
  }
  mode_t old = ::umask(0077);
  boost::system::error_code ec;
  acceptor_.open(local(), ec);
  if (!ec) acceptor_.bind(local::endpoint(path_.string()), ec);
  if (!ec) acceptor_.listen(16, ec);
  ::umask(old);
  if (ec) throw std::runtime_error("cannot create admin socket " + path_.string() + ": " + ec.message());
  accept_more();
}

AdminEndpoint::~AdminEndpoint() {
  *alive_ = false;
  boost::system::error_code ec;
  acceptor_.close(ec);
  std::error_code fec;
  // Only our socket: if something replaced it meanwhile, leave it alone.
  if (std::filesystem::symlink_status(path_, fec).type() == std::filesystem::file_type::socket) {
    std::filesystem::remove(path_, fec);
  }
}

void AdminEndpoint::accept_more() {
  auto alive = alive_;
  acceptor_.async_accept([this, alive](boost::system::error_code ec, local::socket s) {
    if (ec || !*alive) return;
    std::make_shared<AdminConnection>(std::move(s), handler_, alive)->start();
    accept_more();
  });
}

Result<json, Error> admin_call(const std::filesystem::path& socket, const json& request,
                               Duration timeout) {
  asio::io_context io;
  local::socket s(io);
  boost::system::error_code ec;
  s.connect(local::endpoint(socket.string()), ec);
  if (ec) return fail("cannot reach the server's admin socket " + socket.string() + ": " + ec.message());
  std::string out = request.dump() + "\n";
  asio::streambuf buf(1 << 20);
  std::optional<json> reply;
  std::string err;
  asio::async_write(s, asio::buffer(out), [&](boost::system::error_code e, std::size_t) {
    if (e) {
      err = e.message();
      return;
    }
    asio::async_read_until(s, buf, '\n', [&](boost::system::error_code e2, std::size_t n) {
      if (e2) {
        err = e2.message();
        return;
      }
      std::string line(asio::buffers_begin(buf.data()),
                       asio::buffers_begin(buf.data()) + static_cast<std::ptrdiff_t>(n));
      json j = json::parse(line, nullptr, false);
      if (j.is_discarded()) err = "server sent malformed JSON";
      else reply = std::move(j);
    });
  });
  io.run_for(timeout);
  if (reply) return *reply;
  return fail("admin request failed: " + (err.empty() ? std::string("no answer in time") : err));
}

json stats_reply(const metrics::Registry& registry) {
  try {
    return json{{"ok", true}, {"metrics", metrics::encode_json(registry.snapshot())}};
  } catch (const std::exception& e) {
    return json{{"ok", false}, {"error", std::string("stats: ") + e.what()}};
  }
}

// ------------------------------------------------------------------------- LayoutManager ----

std::vector<Export> to_server_exports(const virt::Layout& layout) {
  std::vector<Export> out;
  for (const auto& e : layout.exports) {
    Export x;
    x.device_id = e.device_id;
    x.name = e.name;
    x.backend = e.backend;
    x.read_only = e.read_only;
    bool any = std::find(e.allowed_clients.begin(), e.allowed_clients.end(), "*") != e.allowed_clients.end();
    if (!any) x.allowed_clients = e.allowed_clients;
    out.push_back(std::move(x));
  }
  return out;
}

Result<std::unique_ptr<LayoutManager>, Error> LayoutManager::load(const std::filesystem::path& config) {
  auto layout = virt::load_layout(config);
  if (!layout) return make_unexpected(layout.error());
  std::unique_ptr<LayoutManager> m(new LayoutManager());
  m->path_ = config;
  m->layout_ = std::move(*layout);
  if (auto j = m->start_jobs(); !j) return make_unexpected(j.error());
  return m;
}

std::vector<Export> LayoutManager::exports() const { return to_server_exports(layout_); }

void LayoutManager::set_trace(virt::TraceHook hook) {
  trace_ = std::move(hook);
  layout_.set_trace(trace_);
}

namespace {

// "20G", "1048576" or 1048576 -> bytes; "2048s" -> 2048 blocks.
Result<virt::Amount, Error> amount_from(const json& j, const char* what) {
  if (j.is_number_unsigned()) return virt::Amount{j.get<std::uint64_t>(), false};
  if (!j.is_string()) return fail(std::string(what) + ": expected a size like \"20G\" or \"2048s\"");
  std::string t = j.get<std::string>();
  if (!t.empty() && (t.back() == 's' || t.back() == 'S')) {
    auto n = parse_size(t.substr(0, t.size() - 1));
    if (!n) return fail(std::string(what) + ": " + n.error().message);
    return virt::Amount{*n, true};
  }
  auto n = parse_size(t);
  if (!n) return fail(std::string(what) + ": " + n.error().message);
  return virt::Amount{*n, false};
}

Result<virt::ExtentDesc, Error> extent_from(const json& j) {
  if (!j.is_object() || !j.contains("device") || !j["device"].is_string())
    return fail("extent needs {\"device\": NAME, \"start\": SIZE, \"size\": SIZE}");
  virt::ExtentDesc e;
  e.device = j["device"].get<std::string>();
  if (j.contains("start")) {
    auto a = amount_from(j["start"], "extent start");
    if (!a) return make_unexpected(a.error());
    e.start = *a;
  }
  auto a = amount_from(j.value("size", json()), "extent size");
  if (!a) return make_unexpected(a.error());
  e.size = *a;
  return e;
}

// A device id: an unsigned JSON integer that fits 32 bits (4294967296 must not become 0).
Result<std::uint32_t, Error> device_id_from(const json& req, const char* op) {
  auto it = req.find("device_id");
  if (it == req.end()) return fail(std::string(op) + " needs a device_id");
  if (!it->is_number_unsigned() ||
      it->get<std::uint64_t>() > 0xFFFFFFFFull) {
    return fail("device_id must be an integer from 0 to 4294967295, got " + it->dump());
  }
  return static_cast<std::uint32_t>(it->get<std::uint64_t>());
}

// An optional boolean member (absent: `dflt`).
Result<bool, Error> bool_from(const json& req, const char* key, bool dflt) {
  auto it = req.find(key);
  if (it == req.end()) return dflt;
  if (!it->is_boolean()) return fail(std::string(key) + " must be true or false, got " + it->dump());
  return it->get<bool>();
}

// An optional array of strings (absent: empty, `present` false).
Result<std::vector<std::string>, Error> strings_from(const json& j, const char* key) {
  std::vector<std::string> out;
  auto it = j.find(key);
  if (it == j.end()) return out;
  if (!it->is_array()) return fail(std::string(key) + " must be an array of strings");
  for (const auto& v : *it) {
    if (!v.is_string()) return fail(std::string(key) + " must be an array of strings");
    out.push_back(v.get<std::string>());
  }
  return out;
}

std::string str(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

json LayoutManager::show() const {
  json disks = json::array();
  for (const auto& [name, d] : layout_.disks) {
    auto g = d->geometry();
    auto c = d->counters();
    disks.push_back({{"name", name}, {"blocks", g.block_count}, {"block_size", g.block_size},
                     {"requests", c.requests}, {"backend_commands", c.backend_commands},
                     {"split_requests", c.split_requests}, {"failed_requests", c.failed_requests}});
  }
  json exports = json::array();
  for (const auto& e : layout_.exports) {
    auto g = e.backend->geometry();
    exports.push_back({{"device_id", e.device_id}, {"disk", e.name}, {"read_only", e.read_only},
                       {"blocks", g.block_count}, {"block_size", g.block_size}});
  }
  json out{{"ok", true}, {"disks", disks}, {"exports", exports}, {"toml", virt::to_toml(layout_.desc)}};
  if (!layout_.pools.empty()) out["pools"] = thin_pools_json(layout_);
  return out;
}

Result<void, Error> LayoutManager::commit(virt::LayoutDesc next, StorageServer& server,
                                          const virt::GeometryMap* geometry) {
  auto keep = virt::check_no_data_loss(layout_.desc, next,
                                       geometry ? *geometry : layout_.backend_geometry());
  if (!keep) return make_unexpected(keep.error());
  auto built = virt::build_layout(next, layout_.base_dir, &layout_);
  if (!built) return make_unexpected(built.error());
  // Persist before serving: a restart must serve exactly what clients were told.
  if (auto saved = virt::save_layout_file(path_, built->desc); !saved)
    return make_unexpected(saved.error());
  layout_ = std::move(*built);
  if (trace_) layout_.set_trace(trace_);
  watch_mirrors();
  server.update_exports(to_server_exports(layout_));
  return {};
}

json LayoutManager::handle(const json& req, StorageServer& server) {
  auto error = [](const std::string& m) { return json{{"ok", false}, {"error", m}}; };
  std::string op = str(req, "op");
  try {
    const virt::GeometryMap geo = layout_.backend_geometry();
    Result<virt::LayoutDesc, Error> next = fail("unknown op '" + op + "' (show, create, grow, remove, export, unexport)");
    if (op == "show") return show();
    if (is_thin_op(op)) {
      if (auto native = handle_native_snapshots(req, server)) return *native;
      return handle_thin(req);
    }
    if (is_managed_op(op)) return handle_managed(req, server);
    if (is_mirror_op(op)) return handle_mirror(req, server);
    if (op == "create") {
      const json& d = req.value("disk", json::object());
      virt::DiskDesc disk;
      disk.name = str(d, "name");
      std::string type = str(d, "type");
      if (type == "extents" || type.empty()) disk.type = virt::DiskType::kExtents;
      else if (type == "concat") disk.type = virt::DiskType::kConcat;
      else if (type == "stripe") disk.type = virt::DiskType::kStripe;
      else return error("disk type must be extents, concat or stripe");
      if (!d.is_object()) return error("disk must be an object");
      auto members = strings_from(d, "members");
      if (!members) return error(members.error().message);
      disk.members = std::move(*members);
      if (d.contains("chunk")) {
        auto c = amount_from(d["chunk"], "chunk");
        if (!c) return error(c.error().message);
        disk.chunk = *c;
      }
      if (d.contains("extents") && !d["extents"].is_array()) return error("extents must be an array");
      if (d.contains("extents"))
        for (const auto& e : d["extents"]) {
          auto x = extent_from(e);
          if (!x) return error(x.error().message);
          disk.extents.push_back(*x);
        }
      next = virt::add_disk(layout_.desc, disk, geo);
    } else if (op == "grow") {
      auto x = extent_from(req.value("extent", json()));
      if (!x) return error(x.error().message);
      next = virt::append_extent(layout_.desc, str(req, "disk"), *x, geo);
    } else if (op == "remove") {
      next = virt::remove_disk(layout_.desc, str(req, "disk"), geo);
    } else if (op == "export") {
      virt::ExportDesc e;
      auto id = device_id_from(req, "export");
      if (!id) return error(id.error().message);
      e.device_id = *id;
      e.disk = str(req, "disk");
      auto ro = bool_from(req, "read_only", false);
      if (!ro) return error(ro.error().message);
      e.read_only = *ro;
      if (req.contains("clients")) {
        auto clients = strings_from(req, "clients");
        if (!clients) return error(clients.error().message);
        e.clients = std::move(*clients);
      }
      next = virt::add_export(layout_.desc, e, geo);
    } else if (op == "unexport") {
      auto id = device_id_from(req, "unexport");
      if (!id) return error(id.error().message);
      next = virt::remove_export(layout_.desc, *id);
    }
    if (!next) return error(next.error().message);
    auto r = commit(std::move(*next), server);
    if (!r) return error(r.error().message);
    IPSAN_LOG(LogLevel::kInfo, "admin", "applied '", op, "'");
    json out = show();
    out["applied"] = op;
    return out;
  } catch (const std::exception& e) {
    return error(std::string("bad request: ") + e.what());
  }
}

}  // namespace ipsan::server
