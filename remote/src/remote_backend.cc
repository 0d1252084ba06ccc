// RemoteBackend (ipsan/remote/remote_backend.h): a Backend over client::Runtime.
#include <utility>  // before Asio

#include "ipsan/remote/remote_backend.h"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "ipsan/base/log.h"
#include "ipsan/base/units.h"

namespace ipsan::remote {

namespace asio = boost::asio;
using backends::Completion;

struct RemoteBackend::Op {
  Completion done;
  std::span<std::uint8_t> read_into;  // READ: the caller's whole buffer
  std::size_t outstanding = 0;
  Errc first = Errc::kOk;
  TimePoint deadline{};
  bool finished = false;
};

// Lives on the runtime's io thread (every member but the atomics is touched only there).
struct RemoteBackend::State {
  explicit State(asio::io_context& io) : sweep(io) {}
  asio::steady_timer sweep;
  bool sweeping = false;
  bool closed = false;
  std::unordered_map<std::uint64_t, std::shared_ptr<Op>> live;
  std::uint64_t next_id = 1;
  Duration op_timeout{};
  std::atomic<std::uint64_t> deadline_failures{0};
  std::atomic<bool> accepting{true};

  void finish(std::uint64_t id, const std::shared_ptr<Op>& op, Errc e) {
    if (op->finished) return;
    op->finished = true;
    live.erase(id);
    auto done = std::move(op->done);
    op->done = nullptr;
    done(e);
  }

  void arm(const std::shared_ptr<State>& self) {
    if (sweeping || closed || live.empty()) return;
    sweeping = true;
    sweep.expires_after(std::min<Duration>(op_timeout / 4, std::chrono::milliseconds(100)));
    std::weak_ptr<State> weak = self;
    sweep.async_wait([weak](boost::system::error_code ec) {
      auto s = weak.lock();
      if (!s) return;
      s->sweeping = false;
      if (ec || s->closed) return;
      const TimePoint now = steady_now();
      std::vector<std::pair<std::uint64_t, std::shared_ptr<Op>>> expired;
      for (const auto& [id, op] : s->live)
        if (op->deadline <= now) expired.emplace_back(id, op);
      for (auto& [id, op] : expired) {
        s->deadline_failures++;
        s->finish(id, op, Errc::kIoError);
      }
      s->arm(s);
    });
  }
};

namespace {

// What the caller of a Backend can act on: the device's own answers pass through; everything
// that says "the remote could not be asked" is an I/O error.
Errc map_status(Errc e) {
  switch (e) {
    case Errc::kOk:
    case Errc::kLbaOutOfRange:
    case Errc::kInvalidArgument:
    case Errc::kIoError:
    case Errc::kMediumError:
    case Errc::kWriteProtected:
    case Errc::kNotSupported:
    case Errc::kNoSpace:
    case Errc::kNotReady:
    case Errc::kBusy:
    case Errc::kMiscompare:
      return e;
    default:
      return Errc::kIoError;
  }
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// One request per `per` blocks of [lba, lba + blocks).
std::vector<proto::Request> chunks(proto::Op op, std::uint32_t device, std::uint64_t lba,
                                   std::uint64_t blocks, std::uint64_t per, std::uint32_t flags) {
  std::vector<proto::Request> reqs;
  for (std::uint64_t at = 0; at < blocks; at += per) {
    proto::Request r;
    r.op = op;
    r.device_id = device;
    r.lba = lba + at;
    r.blocks = static_cast<std::uint32_t>(std::min(per, blocks - at));
    r.flags = flags;
    reqs.push_back(std::move(r));
  }
  return reqs;
}

constexpr std::uint64_t kMaxChunkBytes = 8u << 20;
constexpr std::uint64_t kMaxRangeBlocks = 1u << 30;  // per TRIM / WRITE_ZEROES request

}  // namespace

Result<RemoteOptions, Error> parse_remote_spec(const backends::BackendSpec& spec) {
  auto bad = [&](const std::string& why) {
    return fail(Errc::kInvalidArgument, "'" + spec.text + "': " + why);
  };
  const std::string& t = spec.target;
  if (t.rfind("//", 0) != 0) {
    return bad("expected ipsan://HOST[:PORT]/DEVICE[?client=NAME&key-file=PATH...]");
  }
  const auto slash = t.find('/', 2);
  if (slash == std::string::npos) return bad("no device: ipsan://HOST[:PORT]/DEVICE");
  const std::string hostport = t.substr(2, slash - 2);
  std::string rest = t.substr(slash + 1);
  std::string query;
  if (auto q = rest.find('?'); q != std::string::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  if (rest.empty() || rest.find_first_not_of("0123456789") != std::string::npos)
    return bad("device must be a number, got '" + rest + "'");
  if (rest.size() > 10 || std::stoull(rest) > 0xFFFFFFFFull)
    return bad("device " + rest + " out of range");
  const std::uint64_t dev = std::stoull(rest);
  auto hp = parse_host_port(hostport, "", 5260);
  if (!hp || hp->host.empty()) {
    return bad("bad HOST[:PORT] '" + hostport + "'" + (hp ? "" : ": " + hp.error().message));
  }

  std::vector<std::pair<std::string, std::string>> opts = spec.options;
  if (!query.empty()) {
    for (std::size_t at = 0; at <= query.size();) {
      const auto amp = std::min(query.find('&', at), query.size());
      const std::string item = query.substr(at, amp - at);
      at = amp + 1;
      if (item.empty()) return bad("empty option in '?" + query + "'");
      const auto eq = item.find('=');
      std::string name = lower(item.substr(0, eq));
      std::string value = eq == std::string::npos ? "" : item.substr(eq + 1);
      if (eq != std::string::npos && value.empty()) return bad("option '" + name + "=' without a value");
      opts.emplace_back(std::move(name), std::move(value));
    }
  }
  static const char* const kAllowed[] = {"client",  "key-file",        "transport",
                                         "security", "timeout",        "fence-timeout",
                                         "connect-timeout", "slots",   "ro"};
  client::ConnectArgs a;
  a.server = hp->host.find(':') != std::string::npos ? "[" + hp->host + "]:" + std::to_string(hp->port)
                                                     : hp->host + ":" + std::to_string(hp->port);
  std::string fence = "10s";
  bool ro = false;
  std::vector<std::string> seen;
  for (const auto& [name, value] : opts) {
    if (std::find(std::begin(kAllowed), std::end(kAllowed), name) == std::end(kAllowed)) {
      return bad("unknown option '" + name +
                 "' (client, key-file, transport, security, timeout, fence-timeout, "
                 "connect-timeout, slots, ro)");
    }
    if (std::find(seen.begin(), seen.end(), name) != seen.end())
      return bad("option '" + name + "' given twice");
    seen.push_back(name);
    if (name == "ro") {
      if (!value.empty()) return bad("option 'ro' takes no value");
      ro = true;
      continue;
    }
    if (value.empty()) return bad("option '" + name + "' needs a value");
    if (name == "client") a.name = value;
    if (name == "key-file") a.key_file = value;
    if (name == "transport") a.transport = value;
    if (name == "security") a.transport_security = value;
    if (name == "timeout") a.timeout = value;
    if (name == "connect-timeout") a.connect_timeout = value;
    if (name == "fence-timeout") fence = value;
    if (name == "slots") {
      auto n = parse_size(value);
      if (!n || *n < 1 || *n > 4096) return bad("slots=" + value + " (must be 1..4096)");
      a.slots = static_cast<std::uint32_t>(*n);
    }
  }
  auto ft = parse_duration(fence);
  if (!ft || *ft <= Duration::zero()) return bad("fence-timeout=" + fence + " (a positive duration)");
  // The flag names in resolve_connect_args' messages (--timeout, ...) are those of the spec's
  // options with the same meaning.
  auto ro_opts = client::runtime_options(a, /*key_required=*/true);
  if (!ro_opts) return bad(ro_opts.error().message);
  RemoteOptions o;
  o.runtime = std::move(*ro_opts);
  o.runtime.client.fence_timeout = *ft;
  o.device_id = static_cast<std::uint32_t>(dev);
  o.read_only = ro;
  o.label = "ipsan://" + a.server + "/" + rest;
  return o;
}

Result<std::shared_ptr<RemoteBackend>, Error> RemoteBackend::open(RemoteOptions options) {
  std::shared_ptr<RemoteBackend> b(new RemoteBackend());
  b->options_ = std::move(options);
  const std::string& label = b->options_.label;
  auto rt = client::Runtime::start(b->options_.runtime);
  if (!rt) return fail(rt.error().code, label + ": " + rt.error().message);
  b->runtime_ = std::move(*rt);
  b->state_ = std::make_shared<State>(b->runtime_->io());
  const auto& co = b->options_.runtime.client;
  b->state_->op_timeout = co.request_timeout + co.fence_timeout + std::chrono::seconds(1);

  proto::Request id;
  id.op = proto::Op::kIdentify;
  id.device_id = b->options_.device_id;
  auto r = b->runtime_->call(std::move(id));
  if (r.status != Errc::kOk) {
    return fail(r.status, label + ": IDENTIFY of device " + std::to_string(b->options_.device_id) +
                              ": " + std::string(to_string(r.status)));
  }
  const proto::Identity& d = r.identity;
  if (d.block_size < 512 || d.block_size > (1u << 20) || (d.block_size & (d.block_size - 1)) != 0 ||
      d.block_count == 0) {
    return fail(Errc::kBadMessage, label + ": the remote device reports an unusable geometry (" +
                                       std::to_string(d.block_size) + "-byte blocks, " +
                                       std::to_string(d.block_count) + " blocks)");
  }
  b->geometry_.block_size = d.block_size;
  b->geometry_.block_count = d.block_count;
  const std::uint32_t cap_chunk = static_cast<std::uint32_t>(kMaxChunkBytes / d.block_size);
  b->chunk_blocks_ =
      d.max_transfer_blocks == 0 ? cap_chunk : std::min(d.max_transfer_blocks, cap_chunk);
  auto& c = b->caps_;
  c.read_only = b->options_.read_only || (d.capabilities & proto::kCapReadOnly) != 0;
  c.fua = (d.capabilities & proto::kCapFua) != 0;
  c.flush = (d.capabilities & proto::kCapFlush) != 0;
  c.trim = (d.capabilities & proto::kCapTrim) != 0;
  c.write_zeroes = (d.capabilities & proto::kCapWriteZeroes) != 0;
  c.rotational = (d.capabilities & proto::kCapRotational) != 0;
  c.max_transfer_blocks = 0;  // larger transfers are split here
  b->atomic_max_ = (d.capabilities & proto::kCapAtomicWrite) != 0 && !c.read_only
                       ? b->chunk_blocks_
                       : 0;
  IPSAN_LOG(LogLevel::kInfo, "remote", label, ": ", format_bytes(b->geometry_.size_bytes()),
            " in ", d.block_size, "-byte blocks via ", b->runtime_->describe());
  return b;
}

RemoteBackend::~RemoteBackend() {
  if (!runtime_) return;
  state_->accepting = false;
  // Fail what is still in flight (kShutdown from the client), then drop the timer on its thread.
  runtime_->stop();
  state_->closed = true;
  state_.reset();  // the io thread has stopped: nothing else touches it
  runtime_.reset();
}

std::string RemoteBackend::describe() const {
  return options_.label + " (" + (options_.runtime.transport.kind == proto::TransportKind::kTcp
                                      ? "tcp"
                                      : "udp") +
         ", client " + options_.runtime.client.client_name + ")";
}

std::uint64_t RemoteBackend::deadline_failures() const { return state_->deadline_failures; }

void RemoteBackend::submit(std::vector<proto::Request> requests, const std::uint8_t* write_src,
                           std::span<std::uint8_t> read_into, Completion done) {
  if (!state_->accepting) {
    done(Errc::kShutdown);
    return;
  }
  asio::post(runtime_->io(), [this, st = state_, requests = std::move(requests), write_src,
                              read_into, done = std::move(done)]() mutable {
    if (st->closed) {
      done(Errc::kShutdown);
      return;
    }
    auto op = std::make_shared<Op>();
    op->done = std::move(done);
    op->read_into = read_into;
    op->outstanding = requests.size();
    op->deadline = steady_now() + st->op_timeout;
    const std::uint64_t id = st->next_id++;
    st->live.emplace(id, op);
    st->arm(st);
    if (requests.empty()) {
      st->finish(id, op, Errc::kOk);
      return;
    }
    const std::uint64_t first_lba = requests.front().lba;
    for (auto& req : requests) {
      const std::size_t offset =
          static_cast<std::size_t>((req.lba - first_lba) * geometry_.block_size);
      issue(st, op, id, std::move(req), write_src ? write_src + offset : nullptr, offset, false);
    }
  });
}

void RemoteBackend::issue(const std::shared_ptr<State>& st, const std::shared_ptr<Op>& op,
                          std::uint64_t id, proto::Request head, const std::uint8_t* src,
                          std::size_t offset, bool retried) {
  // `head` carries no data: a WRITE's payload is copied from the caller's buffer (valid until
  // the operation completes) each time the request is sent.
  proto::Request r = head;
  if (src) r.data.assign(src, src + std::size_t{r.blocks} * geometry_.block_size);
  runtime_->client().execute(std::move(r), [this, st, op, id, head, src, offset,
                                            retried](proto::Reply reply) {
    if (op->finished) return;  // reported already (deadline): the late answer is dropped
    if (reply.status == Errc::kCapacityChanged && !retried) {
      // The remote was resized online: send the request once more, as an initiator does after
      // the unit attention.
      issue(st, op, id, head, src, offset, true);
      return;
    }
    Errc e = map_status(reply.status);
    if (e == Errc::kOk && head.op == proto::Op::kRead) {
      const std::size_t want = std::size_t{head.blocks} * geometry_.block_size;
      if (reply.data.size() != want || offset + want > op->read_into.size()) {
        e = Errc::kIoError;
      } else {
        std::memcpy(op->read_into.data() + offset, reply.data.data(), want);
      }
    }
    if (e != Errc::kOk && op->first == Errc::kOk) op->first = e;
    if (--op->outstanding == 0) st->finish(id, op, op->first);
  });
}

void RemoteBackend::read(std::uint64_t lba, std::span<std::uint8_t> out, Completion done) {
  const std::uint32_t bs = geometry_.block_size;
  if (out.size() % bs != 0) return done(Errc::kInvalidArgument);
  const std::uint64_t blocks = out.size() / bs;
  if (Errc e = backends::check_range(geometry_, lba, blocks); e != Errc::kOk) return done(e);
  auto reqs = chunks(proto::Op::kRead, options_.device_id, lba, blocks, chunk_blocks_, 0);
  submit(std::move(reqs), nullptr, out, std::move(done));
}

void RemoteBackend::write(std::uint64_t lba, std::span<const std::uint8_t> in, bool fua,
                          Completion done) {
  const std::uint32_t bs = geometry_.block_size;
  if (caps_.read_only) return done(Errc::kWriteProtected);
  if (in.size() % bs != 0) return done(Errc::kInvalidArgument);
  const std::uint64_t blocks = in.size() / bs;
  if (Errc e = backends::check_range(geometry_, lba, blocks); e != Errc::kOk) return done(e);
  auto reqs = chunks(proto::Op::kWrite, options_.device_id, lba, blocks, chunk_blocks_,
                     fua ? proto::kFlagFua : 0);
  submit(std::move(reqs), in.data(), {}, std::move(done));
}

void RemoteBackend::write_atomic(std::uint64_t lba, std::span<const std::uint8_t> in, bool fua,
                                 Completion done) {
  const std::uint32_t bs = geometry_.block_size;
  if (atomic_max_ == 0) return done(Errc::kNotSupported);
  if (in.size() % bs != 0 || in.size() / bs > atomic_max_) return done(Errc::kInvalidArgument);
  const std::uint64_t blocks = in.size() / bs;
  if (Errc e = backends::check_range(geometry_, lba, blocks); e != Errc::kOk) return done(e);
  auto reqs = chunks(proto::Op::kWrite, options_.device_id, lba, blocks, blocks,
                     proto::kFlagAtomic | (fua ? proto::kFlagFua : 0));
  submit(std::move(reqs), in.data(), {}, std::move(done));
}

void RemoteBackend::flush(Completion done) {
  std::vector<proto::Request> reqs(1);
  reqs[0].op = proto::Op::kFlush;
  reqs[0].device_id = options_.device_id;
  submit(std::move(reqs), nullptr, {}, std::move(done));
}

void RemoteBackend::trim(std::uint64_t lba, std::uint64_t blocks, Completion done) {
  if (caps_.read_only) return done(Errc::kWriteProtected);
  if (Errc e = backends::check_range(geometry_, lba, blocks); e != Errc::kOk) return done(e);
  if (!caps_.trim) return done(Errc::kNotSupported);
  auto reqs = chunks(proto::Op::kTrim, options_.device_id, lba, blocks, kMaxRangeBlocks, 0);
  submit(std::move(reqs), nullptr, {}, std::move(done));
}

void RemoteBackend::write_zeroes(std::uint64_t lba, std::uint64_t blocks, bool may_trim,
                                 Completion done) {
  if (caps_.read_only) return done(Errc::kWriteProtected);
  if (Errc e = backends::check_range(geometry_, lba, blocks); e != Errc::kOk) return done(e);
  auto reqs = chunks(proto::Op::kWriteZeroes, options_.device_id, lba, blocks, kMaxRangeBlocks,
                     may_trim ? proto::kFlagMayTrim : 0);
  submit(std::move(reqs), nullptr, {}, std::move(done));
}

void register_remote_backend() {
  backends::register_backend_kind(
      "ipsan", [](const backends::BackendSpec& spec) -> Result<backends::BackendPtr, Error> {
        auto o = parse_remote_spec(spec);
        if (!o) return make_unexpected(o.error());
        auto b = RemoteBackend::open(std::move(*o));
        if (!b) return make_unexpected(b.error());
        return backends::BackendPtr(std::move(*b));
      });
}

}  // namespace ipsan::remote
