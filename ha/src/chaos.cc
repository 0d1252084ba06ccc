// The chaos harness: parties as child processes, netem proxies and the write workload on one
// io_context thread, the schedule on the calling thread. See chaos.h.
#include "ipsan/ha/chaos.h"

#include <utility>  // before Asio

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <iomanip>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <sstream>
#include <thread>
#include <vector>

#include "ipsan/base/crypto.h"
#include "ipsan/base/rng.h"
#include "ipsan/client/connect.h"
#include "ipsan/client/san_client.h"
#include "ipsan/netem/impairment.h"
#include "ipsan/netem/udp_proxy.h"

namespace ipsan::ha {
namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr auto kStartTimeout = std::chrono::seconds(15);
constexpr auto kStopTimeout = std::chrono::seconds(5);
constexpr auto kPoll = std::chrono::milliseconds(10);

// ---------------------------------------------------------------------------------------------
// Parties: `ipsan server` child processes.

struct Party {
  PartySpec spec;
  pid_t pid = -1;
  bool stopped = false;  // SIGSTOP'd
  std::uint16_t port = 0;
  fs::path image, port_file, log_file;
};

std::optional<std::uint16_t> read_udp_port(const fs::path& p) {
  std::ifstream f(p);
  std::string word;
  while (f >> word) {
    if (word.rfind("udp=", 0) == 0) {
      const int v = std::atoi(word.c_str() + 4);
      if (v > 0 && v < 65536) return static_cast<std::uint16_t>(v);
    }
  }
  return std::nullopt;
}

class Parties {
 public:
  Parties(std::string binary, fs::path dir, fs::path key_file)
      : binary_(std::move(binary)), dir_(std::move(dir)), key_file_(std::move(key_file)) {}
  ~Parties() { stop_all(); }

  void add(const PartySpec& spec) {
    Party p;
    p.spec = spec;
    p.image = dir_ / (spec.name + ".img");
    p.port_file = dir_ / (spec.name + ".port");
    p.log_file = dir_ / (spec.name + ".log");
    parties_.push_back(std::move(p));
  }
  Party* find(const std::string& name) {
    for (auto& p : parties_)
      if (p.spec.name == name) return &p;
    return nullptr;
  }
  std::vector<Party>& all() { return parties_; }

  // Starts the party (its first start picks a free port; later starts reuse it) and waits until
  // it listens.
  Result<void, Error> start(Party& p) {
    if (p.pid > 0) return {};
    std::error_code ec;
    fs::remove(p.port_file, ec);
    std::vector<std::string> args = {
        binary_,
        "--log-level",
        "info",
        "server",
        "-l",
        "127.0.0.1",
        "-p",
        std::to_string(p.port),
        "-t",
        "udp",
        "-d",
        p.spec.backend == "ram"
            ? "ram:" + std::to_string(p.spec.size) + ",bs=4096"
            : "file:" + p.image.string() + ",size=" + std::to_string(p.spec.size) + ",bs=4096",
        "--client-key",
        "chaos=file:" + key_file_.string(),
        "--port-file",
        p.port_file.string()};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int out = ::open(p.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (out < 0) return fail("cannot open " + p.log_file.string());
    const pid_t pid = ::fork();
    if (pid < 0) {
      ::close(out);
      return fail("fork failed");
    }
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the harness
      ::dup2(out, 1);
      ::dup2(out, 2);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(out);
    p.pid = pid;
    p.stopped = false;
    const auto deadline = Clock::now() + kStartTimeout;
    while (Clock::now() < deadline) {
      if (auto port = read_udp_port(p.port_file)) {
        p.port = *port;
        return {};
      }
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        p.pid = -1;
        return fail("party " + p.spec.name + " exited at start (see " + p.log_file.string() + ")");
      }
      std::this_thread::sleep_for(kPoll);  // polling a child's start, bounded by kStartTimeout
    }
    signal_and_reap(p, SIGKILL);
    return fail("party " + p.spec.name + " did not listen within 15 s (see " + p.log_file.string() +
                ")");
  }

  // kill -9 (or another signal) and reap.
  void signal_and_reap(Party& p, int sig) {
    if (p.pid <= 0) return;
    if (p.stopped && sig != SIGKILL) ::kill(p.pid, SIGCONT);
    ::kill(p.pid, sig);
    const auto deadline = Clock::now() + kStopTimeout;
    int status = 0;
    while (::waitpid(p.pid, &status, WNOHANG) == 0) {
      if (Clock::now() > deadline) {
        ::kill(p.pid, SIGKILL);
        ::waitpid(p.pid, &status, 0);
        break;
      }
      std::this_thread::sleep_for(kPoll);
    }
    p.pid = -1;
    p.stopped = false;
  }

  // Reaps parties that exited on their own; returns their names.
  std::vector<std::string> reap_unexpected() {
    std::vector<std::string> gone;
    for (auto& p : parties_) {
      int status = 0;
      if (p.pid > 0 && ::waitpid(p.pid, &status, WNOHANG) == p.pid) {
        gone.push_back(p.spec.name);
        p.pid = -1;
      }
    }
    return gone;
  }

  void stop_all() {
    for (auto& p : parties_) signal_and_reap(p, SIGTERM);
  }

 private:
  std::string binary_;
  fs::path dir_;
  fs::path key_file_;
  std::vector<Party> parties_;
};

// ---------------------------------------------------------------------------------------------
// Links: a netem proxy in front of each party; state changed by the schedule.

struct LinkState {
  bool partitioned = false;
  double loss = 0.0;
  Duration delay{};
  netem::ImpairmentConfig config() const {
    netem::ImpairmentConfig c;
    c.loss = loss;
    c.delay = delay;
    // Down from the engine's epoch on, for good: i.e. down now, until the state changes again.
    if (partitioned) c.partitions.push_back({Duration::zero(), std::chrono::hours(24 * 365), {}});
    return c;
  }
};

struct Link {
  std::string name;
  std::unique_ptr<netem::UdpProxy> proxy;
  LinkState state;
};

// ---------------------------------------------------------------------------------------------
// The write workload (io thread only).

class Workload {
 public:
  Workload(client::SanClient& c, std::uint64_t seed, const WorkloadSpec& w)
      : client_(c), ledger_(seed), rng_(derive_seed(seed, 100)), spec_(w) {}

  void start() {
    running_ = true;
    last_ack_ = Clock::now();
    pump();
  }
  void stop() { running_ = false; }
  std::uint32_t in_flight() const { return in_flight_; }
  WriteLedger& ledger() { return ledger_; }
  Duration longest_pause() const { return longest_pause_; }
  // Acknowledgement times, ascending (one io thread).
  const std::vector<Clock::time_point>& ack_times() const { return ack_times_; }

 private:
  static std::uint64_t derive_seed(std::uint64_t s, std::uint64_t stream) {
    return netem::derive_seed(s, stream);
  }
  void pump() {
    while (running_ && in_flight_ < spec_.queue_depth) {
      std::uint64_t b = rng_.below(spec_.blocks);
      for (std::uint64_t i = 0; ledger_.busy(b) && i < spec_.blocks; ++i)
        b = (b + 1) % spec_.blocks;
      if (ledger_.busy(b)) return;
      const std::uint64_t id = ledger_.issue(b);
      proto::Request r;
      r.op = proto::Op::kWrite;
      r.device_id = 0;
      r.lba = b;
      r.blocks = 1;
      r.data = ledger_.pattern(b, id);
      ++in_flight_;
      client_.execute(std::move(r), [this, b, id](proto::Reply reply) {
        --in_flight_;
        if (reply.status == Errc::kOk) {
          ledger_.acknowledged(b, id);
          const auto now = Clock::now();
          if (running_) longest_pause_ = std::max<Duration>(longest_pause_, now - last_ack_);
          last_ack_ = now;
          ack_times_.push_back(now);
        } else {
          ledger_.unknown(b, id);
        }
        pump();
      });
    }
  }

  client::SanClient& client_;
  WriteLedger ledger_;
  Rng rng_;
  WorkloadSpec spec_;
  bool running_ = false;
  std::uint32_t in_flight_ = 0;
  Clock::time_point last_ack_{};
  Duration longest_pause_{};
  std::vector<Clock::time_point> ack_times_;
};

// Runs `f` on the io thread and waits for its result.
template <typename F>
auto on_io(asio::io_context& io, F f) -> decltype(f()) {
  std::packaged_task<decltype(f())()> task(std::move(f));
  auto fut = task.get_future();
  asio::post(io, [&task] { task(); });
  return fut.get();
}

std::string stamp(Clock::time_point t0) {
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  char buf[32];
  std::snprintf(buf, sizeof buf, "[%8.3fs] ", s);
  return buf;
}

std::string fmt_ms(Duration d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0fms", std::chrono::duration<double, std::milli>(d).count());
  return buf;
}

// The timeline: schedule events plus the automatic end of each timed link fault.
enum class OpKind { kEvent, kEndPartition, kEndLoss, kEndDelay };
struct TimedOp {
  Duration at{};
  OpKind kind = OpKind::kEvent;
  EventSpec event;
  std::uint64_t order = 0;
};

std::string make_key_hex() {
  crypto_init();
  std::array<std::uint8_t, 32> k{};
  random_bytes(k);
  std::string hex;
  static constexpr char kHex[] = "0123456789abcdef";
  for (auto b : k) {
    hex += kHex[b >> 4];
    hex += kHex[b & 15];
  }
  return hex;
}

}  // namespace

Result<ChaosReport, Error> run_chaos(const Schedule& s, const ChaosOptions& opt,
                                     std::ostream& log) {
  ChaosReport report;
  // Run directory and client key.
  fs::path dir;
  std::error_code ec;
  if (opt.run_dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string templ =
        std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/ipsan-chaos-XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr)
      return fail("cannot create a run directory in " + templ);
    dir = templ;
  } else {
    dir = opt.run_dir;
    fs::create_directories(dir, ec);
    if (ec) return fail("cannot create " + dir.string() + ": " + ec.message());
  }
  report.run_dir = dir.string();
  struct Cleanup {
    fs::path dir;
    bool keep;
    ~Cleanup() {
      std::error_code e;
      if (!keep) fs::remove_all(dir, e);
    }
  };
  const fs::path key_file = dir / "client.key";
  {
    const int fd = ::open(key_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return fail("cannot write " + key_file.string());
    const std::string line = make_key_hex() + "\n";
    const bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
    ::close(fd);
    if (!ok) return fail("cannot write " + key_file.string());
  }
  {
    std::ofstream f(dir / "schedule.toml");
    Schedule copy = s;
    copy.seed = opt.seed;
    f << format_schedule(copy);
  }

  std::string binary = opt.ipsan_binary;
  if (binary.empty()) binary = fs::read_symlink("/proc/self/exe", ec).string();
  if (binary.empty()) return fail("cannot find the ipsan program (/proc/self/exe)");

  log << "run directory " << dir.string() << "\n";
  Parties parties(binary, dir, key_file);
  for (const auto& p : s.parties) parties.add(p);
  for (auto& p : parties.all()) {
    if (auto r = parties.start(p); !r) return tl::unexpected(r.error());
    log << "party " << p.spec.name << " pid " << p.pid << " udp port " << p.port << "\n";
  }

  asio::io_context io;
  auto guard = asio::make_work_guard(io);
  std::map<std::string, Link> links;
  std::uint64_t stream = 0;
  for (auto& p : parties.all()) {
    netem::UdpProxyOptions po;
    po.listen = asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), 0);
    po.forward = asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), p.port);
    po.seed = netem::derive_seed(opt.seed, stream++);
    auto proxy = netem::UdpProxy::create(io, po);
    if (!proxy) return fail("netem proxy for " + p.spec.name + ": " + proxy.error().message);
    Link l;
    l.name = client_link(p.spec.name);
    l.proxy = std::move(*proxy);
    log << "link " << l.name << " 127.0.0.1:" << l.proxy->local_endpoint().port() << " -> "
        << p.spec.name << " (netem seed " << po.seed << ")\n";
    links.emplace(l.name, std::move(l));
  }
  Link& target_link = links.at(client_link(s.workload.target));

  client::ConnectArgs ca;
  ca.server = "127.0.0.1:" + std::to_string(target_link.proxy->local_endpoint().port());
  ca.transport = "udp";
  ca.name = "chaos";
  ca.key_file = key_file.string();
  ca.timeout = std::to_string(
                   std::chrono::duration_cast<std::chrono::milliseconds>(s.workload.request_timeout)
                       .count()) +
               "ms";
  ca.slots = std::max<std::uint32_t>(s.workload.queue_depth, 8);
  auto settings = client::resolve_connect_args(ca);
  if (!settings) return fail("client: " + settings.error().message);
  auto factory = client::make_transport_factory(io, settings->transport);
  if (!factory) return fail("client: " + factory.error().message);
  auto san = std::make_unique<client::SanClient>(io, std::move(*factory), settings->client);
  Workload work(*san, opt.seed, s.workload);

  // Declared before the joiner: handlers on the io thread may use them until it is joined.
  std::vector<std::uint64_t> blocks;
  std::function<void(std::size_t)> read_one;
  std::thread io_thread([&io] { io.run(); });
  struct Joiner {
    asio::io_context& io;
    std::thread& t;
    decltype(guard)& g;
    ~Joiner() {
      g.reset();
      io.stop();
      if (t.joinable()) t.join();
    }
  } joiner{io, io_thread, guard};

  // Log in (bounded), then the clock starts.
  {
    std::promise<Errc> connected;
    auto fut = connected.get_future();
    asio::post(io, [&] { san->connect([&connected](Errc e) { connected.set_value(e); }); });
    if (fut.wait_for(std::chrono::seconds(15)) != std::future_status::ready)
      return fail("client: no login within 15 s");
    if (const Errc e = fut.get(); e != Errc::kOk)
      return fail("client: login failed: " + std::string(to_string(e)));
  }
  const auto t0 = Clock::now();
  log << stamp(t0) << "start: seed " << opt.seed << ", workload " << s.workload.blocks
      << " blocks, qd " << s.workload.queue_depth << ", target " << s.workload.target << "\n";
  on_io(io, [&] {
    work.start();
    return 0;
  });

  // The timeline.
  std::vector<TimedOp> ops;
  std::uint64_t order = 0;
  for (const auto& e : s.events) {
    ops.push_back({e.at, OpKind::kEvent, e, order++});
    if (e.length > Duration::zero()) {
      const OpKind end = e.action == Action::kPartition ? OpKind::kEndPartition
                         : e.action == Action::kLoss    ? OpKind::kEndLoss
                                                        : OpKind::kEndDelay;
      if (e.action != Action::kHeal) ops.push_back({e.at + e.length, end, e, order++});
    }
  }
  std::stable_sort(ops.begin(), ops.end(), [](const TimedOp& a, const TimedOp& b) {
    return a.at != b.at ? a.at < b.at : a.order < b.order;
  });

  auto apply_link = [&](Link& l) {
    const auto c = l.state.config();
    on_io(io, [&] {
      l.proxy->set_impairment(c, c);
      return 0;
    });
  };
  auto watch = [&] {
    for (const auto& name : parties.reap_unexpected())
      log << stamp(t0) << "party " << name << " exited on its own\n";
  };
  auto wait_until = [&](Clock::time_point when) {
    while (Clock::now() < when) {
      watch();
      std::this_thread::sleep_for(std::min<Clock::duration>(kPoll, when - Clock::now()));
    }
  };

  // Moments a fault ended (restart, start, cont, end of a partition, heal): the report gives the
  // time from each to the next acknowledged write, i.e. how long the client took to recover.
  std::vector<std::pair<std::string, Clock::time_point>> recoveries;
  for (const auto& op : ops) {
    if (op.at > s.duration) break;
    wait_until(t0 + op.at);
    const EventSpec& e = op.event;
    if (op.kind != OpKind::kEvent) {
      Link& l = links.at(e.target);
      if (op.kind == OpKind::kEndPartition) {
        l.state.partitioned = false;
        recoveries.emplace_back("end partition " + e.target, Clock::now());
      }
      if (op.kind == OpKind::kEndLoss) l.state.loss = 0.0;
      if (op.kind == OpKind::kEndDelay) l.state.delay = Duration::zero();
      apply_link(l);
      log << stamp(t0) << "end " << to_string(e.action) << " " << e.target << "\n";
      continue;
    }
    ++report.events;
    if (is_link_action(e.action)) {
      Link& l = links.at(e.target);
      std::string what;
      switch (e.action) {
        case Action::kPartition: l.state.partitioned = true; break;
        case Action::kLoss:
          l.state.loss = e.loss;
          what = " " + std::to_string(e.loss * 100.0).substr(0, 5) + "%";
          break;
        case Action::kDelay:
          l.state.delay = e.delay;
          what = " " + fmt_ms(e.delay);
          break;
        default:
          l.state = LinkState{};
          recoveries.emplace_back("heal " + e.target, Clock::now());
          break;
      }
      apply_link(l);
      log << stamp(t0) << to_string(e.action) << " " << e.target << what
          << (e.length > Duration::zero() ? " for " + fmt_ms(e.length) : std::string()) << "\n";
      continue;
    }
    Party& p = *parties.find(e.target);
    switch (e.action) {
      case Action::kKill:
        log << stamp(t0) << "kill -9 " << p.spec.name << " pid " << p.pid << "\n";
        parties.signal_and_reap(p, SIGKILL);
        break;
      case Action::kStop:
        log << stamp(t0) << "stop " << p.spec.name << " pid " << p.pid << "\n";
        if (p.pid > 0 && !p.stopped) {
          ::kill(p.pid, SIGSTOP);
          p.stopped = true;
        }
        break;
      case Action::kCont:
        log << stamp(t0) << "cont " << p.spec.name << " pid " << p.pid << "\n";
        if (p.pid > 0 && p.stopped) {
          ::kill(p.pid, SIGCONT);
          p.stopped = false;
          recoveries.emplace_back("cont " + p.spec.name, Clock::now());
        }
        break;
      case Action::kRestart:
      case Action::kStart: {
        log << stamp(t0) << to_string(e.action) << " " << p.spec.name << "\n";
        if (e.action == Action::kRestart && p.pid > 0) {
          log << stamp(t0) << "restart " << p.spec.name << ": SIGTERM pid " << p.pid << "\n";
          parties.signal_and_reap(p, SIGTERM);
        }
        if (p.pid > 0) {
          log << stamp(t0) << "start " << p.spec.name << ": already running\n";
          break;
        }
        if (auto r = parties.start(p); !r) return tl::unexpected(r.error());
        log << stamp(t0) << p.spec.name << " up: pid " << p.pid << " port " << p.port << "\n";
        recoveries.emplace_back(std::string(to_string(e.action)) + " " + p.spec.name, Clock::now());
        break;
      }
      default: break;
    }
  }
  wait_until(t0 + s.duration);

  // End of the window: heal, continue, start; drain; verify.
  log << stamp(t0) << "end of window: heal links, continue and start parties, drain\n";
  on_io(io, [&] {
    work.stop();
    return 0;
  });
  for (auto& [name, l] : links) {
    l.state = LinkState{};
    apply_link(l);
  }
  for (auto& p : parties.all()) {
    if (p.pid > 0 && p.stopped) {
      ::kill(p.pid, SIGCONT);
      p.stopped = false;
      log << stamp(t0) << "cont " << p.spec.name << "\n";
    }
    watch();
    if (p.pid <= 0) {
      if (auto r = parties.start(p); !r) return tl::unexpected(r.error());
      log << stamp(t0) << "start " << p.spec.name << " pid " << p.pid << " port " << p.port << "\n";
    }
  }
  const auto drain_deadline = Clock::now() + s.workload.request_timeout + std::chrono::seconds(15);
  while (on_io(io, [&] { return work.in_flight(); }) != 0) {
    if (Clock::now() > drain_deadline) return fail("writes still in flight after the drain bound");
    wait_until(Clock::now() + std::chrono::milliseconds(50));
  }
  log << stamp(t0) << "drained; reading back\n";

  // Read back every written block (a few attempts each: the network is healed, but a request
  // may still meet a reconnect) and check it.
  WriteLedger::Verdict v;
  blocks = on_io(io, [&] { return work.ledger().written_blocks(); });
  struct ReadState {
    std::mutex m;
    std::condition_variable cv;
    std::size_t next = 0, done = 0;
    std::vector<Bytes> data;
    std::vector<int> attempts;
    std::string error;
  };
  auto rs = std::make_shared<ReadState>();
  rs->data.resize(blocks.size());
  rs->attempts.resize(blocks.size());
  read_one = [&, rs](std::size_t i) {
    proto::Request r;
    r.op = proto::Op::kRead;
    r.lba = blocks[i];
    r.blocks = 1;
    san->execute(std::move(r), [&, rs, i](proto::Reply reply) {
      if (reply.status != Errc::kOk && ++rs->attempts[i] < 5) {
        read_one(i);
        return;
      }
      std::lock_guard lock(rs->m);
      if (reply.status != Errc::kOk) {
        if (rs->error.empty())
          rs->error = "read of block " + std::to_string(blocks[i]) +
                      " failed: " + std::string(to_string(reply.status));
      } else {
        rs->data[i] = std::move(reply.data);
      }
      ++rs->done;
      if (rs->next < blocks.size()) {
        read_one(rs->next++);
      }
      rs->cv.notify_all();
    });
  };
  asio::post(io, [&, rs] {
    std::lock_guard lock(rs->m);
    for (int k = 0; k < 16 && rs->next < blocks.size(); ++k) read_one(rs->next++);
  });
  {
    std::unique_lock lock(rs->m);
    const bool done =
        rs->cv.wait_for(lock, s.workload.request_timeout * 5 + std::chrono::seconds(10),
                        [&] { return rs->done == blocks.size(); });
    if (!done) return fail("read-back did not finish in time");
    if (!rs->error.empty()) return fail(rs->error);
  }
  on_io(io, [&] {
    for (std::size_t i = 0; i < blocks.size(); ++i) work.ledger().check(blocks[i], rs->data[i], v);
    work.ledger().totals(v);
    report.longest_pause = work.longest_pause();
    const auto& acks = work.ack_times();
    for (const auto& [what, when] : recoveries) {
      const auto it = std::upper_bound(acks.begin(), acks.end(), when);
      log << "recovery after " << what << " (at " << std::fixed << std::setprecision(3)
          << std::chrono::duration<double>(when - t0).count() << "s): "
          << (it == acks.end() ? std::string("no acknowledged write after it")
                               : "first acknowledged write " + fmt_ms(*it - when) + " later")
          << "\n";
      if (it != acks.end()) report.recoveries.push_back(*it - when);
    }
    const auto& st = san->stats();
    report.client_logins = st.logins;
    report.client_redriven = st.redriven;
    report.client_resent = st.resent;
    san->close();
    return 0;
  });
  report.verdict = v;
  log << stamp(t0) << "checked " << v.blocks_checked << " blocks: " << v.acknowledged
      << " writes acknowledged, " << v.unknown << " of unknown fate (" << v.unknown_landed
      << " of them landed), " << v.lost << " lost, " << v.corrupt << " corrupt; client logins "
      << report.client_logins << ", re-driven " << report.client_redriven << ", resent "
      << report.client_resent << "; longest pause between acks " << fmt_ms(report.longest_pause)
      << "\n";
  for (const auto& p : v.problems) log << "  " << p << "\n";
  parties.stop_all();
  Cleanup cleanup{dir, opt.keep_dir || opt.run_dir.size() > 0 || !v.ok()};
  return report;
}

}  // namespace ipsan::ha
