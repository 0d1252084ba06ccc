// The load generator (see loadgen.h).
#include "ipsan/bench/loadgen.h"

#include <sys/resource.h>
#include <unistd.h>

#include <utility>  // before Asio

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <vector>

#include "ipsan/base/rng.h"
#include "ipsan/client/san_client.h"

namespace ipsan::bench {

namespace asio = boost::asio;

bool parse_pattern(std::string_view text, Pattern& out) {
  static constexpr std::pair<std::string_view, Pattern> kNames[] = {
      {"read", Pattern::kRead},           {"write", Pattern::kWrite},
      {"rw", Pattern::kReadWrite},        {"readwrite", Pattern::kReadWrite},
      {"randread", Pattern::kRandRead},   {"randwrite", Pattern::kRandWrite},
      {"randrw", Pattern::kRandReadWrite}};
  for (const auto& [name, p] : kNames) {
    if (text == name) {
      out = p;
      return true;
    }
  }
  return false;
}

const char* pattern_name(Pattern p) {
  switch (p) {
    case Pattern::kRead: return "read";
    case Pattern::kWrite: return "write";
    case Pattern::kReadWrite: return "rw";
    case Pattern::kRandRead: return "randread";
    case Pattern::kRandWrite: return "randwrite";
    case Pattern::kRandReadWrite: return "randrw";
  }
  return "unknown";
}

std::optional<std::uint64_t> parse_proc_stat_ticks(std::string_view stat) {
  // "pid (comm) state ppid ..." - comm may hold spaces and parentheses: start after the last ')'.
  auto close = stat.rfind(')');
  if (close == std::string_view::npos) return std::nullopt;
  std::istringstream in{std::string(stat.substr(close + 1))};
  // Fields after comm: 3 state, 4 ppid, ... 14 utime, 15 stime (1-based, proc(5)).
  std::string field;
  std::uint64_t utime = 0, stime = 0;
  for (int i = 3; i <= 15; ++i) {
    if (!(in >> field)) return std::nullopt;
    if (i == 14 || i == 15) {
      if (field.empty() || field.find_first_not_of("0123456789") != std::string::npos ||
          field.size() > 19)
        return std::nullopt;
      (i == 14 ? utime : stime) = std::stoull(field);
    }
  }
  return utime + stime;
}

std::optional<double> process_cpu_seconds(int pid) {
  if (pid <= 0) return std::nullopt;
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  if (!f) return std::nullopt;
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto ticks = parse_proc_stat_ticks(text);
  if (!ticks) return std::nullopt;
  const long hz = sysconf(_SC_CLK_TCK);
  return static_cast<double>(*ticks) / static_cast<double>(hz > 0 ? hz : 100);
}

namespace {

double thread_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  auto sec = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6;
  };
  return sec(ru.ru_utime) + sec(ru.ru_stime);
}

class Runner {
 public:
  Runner(const LoadOptions& o, const std::function<void(const Progress&)>& progress)
      : opt_(o), progress_(progress), progress_timer_(io_), deadline_timer_(io_) {}

  Result<LoadResult, Error> run() {
    auto factory = client::make_transport_factory(io_, opt_.transport);
    if (!factory) return fail(factory.error().message);
    if (opt_.sessions == 0 || opt_.queue_depth == 0)
      return fail("sessions and queue depth must be > 0");
    if (opt_.queue_depth > proto::kMaxSlots)
      return fail("queue depth above " + std::to_string(proto::kMaxSlots));

    // Log every session in.
    client::ClientOptions co;
    co.client_name = opt_.client_name;
    co.key = opt_.key;
    co.max_slots = opt_.queue_depth;
    co.request_timeout = opt_.request_timeout;
    co.login_timeout = std::min<Duration>(opt_.request_timeout, std::chrono::seconds(10));
    // --transport-security: the login offer matches the transport's packet protection.
    co.transport_security = static_cast<std::uint32_t>(opt_.transport.rudp.protection);
    sessions_.resize(opt_.sessions);
    std::size_t connected = 0;
    Errc login_error = Errc::kOk;
    for (std::uint32_t i = 0; i < opt_.sessions; ++i) {
      auto& s = sessions_[i];
      s.client = std::make_unique<client::SanClient>(io_, *factory, co);
      s.rng.reseed(opt_.seed * 1000003 + i);
      s.client->connect([&](Errc e) {
        if (e != Errc::kOk && login_error == Errc::kOk) login_error = e;
        ++connected;
      });
    }
    run_until([&] { return connected == sessions_.size(); },
              co.login_timeout + std::chrono::seconds(1));
    if (connected != sessions_.size() || login_error != Errc::kOk) {
      close_all();
      return fail(
          std::string("cannot log in to ") + opt_.transport.host + ":" +
          std::to_string(opt_.transport.port) + ": " +
          std::string(to_string(connected != sessions_.size() ? Errc::kTimeout : login_error)));
    }
    for (auto& s : sessions_) {
      if (s.client->slot_count() < opt_.queue_depth) {
        std::string m = "server grants " + std::to_string(s.client->slot_count()) +
                        " slots per session, below --qd " + std::to_string(opt_.queue_depth);
        close_all();
        return fail(m);
      }
    }

    // Learn the device.
    proto::Request ident;
    ident.op = proto::Op::kIdentify;
    ident.device_id = opt_.device_id;
    std::optional<proto::Reply> id_reply;
    sessions_[0].client->execute(std::move(ident),
                                 [&](proto::Reply r) { id_reply = std::move(r); });
    run_until([&] { return id_reply.has_value(); }, opt_.request_timeout + std::chrono::seconds(1));
    if (!id_reply || id_reply->status != Errc::kOk) {
      close_all();
      return fail("identify device " + std::to_string(opt_.device_id) + ": " +
                  std::string(to_string(id_reply ? id_reply->status : Errc::kTimeout)));
    }
    const auto& id = id_reply->identity;
    if (auto e = plan(id); !e.empty()) {
      close_all();
      return fail(e);
    }

    // Run.
    write_data_.resize(opt_.block_bytes);
    Rng fill(opt_.seed ^ 0x5eed);
    for (auto& b : write_data_) b = static_cast<std::uint8_t>(fill.next());
    if (opt_.server_pid) server_cpu_start_ = process_cpu_seconds(*opt_.server_pid);
    const double cpu0 = thread_cpu_seconds();
    start_ = steady_now();
    if (opt_.runtime.count() > 0) {
      deadline_ = start_ + opt_.runtime;
      deadline_timer_.expires_at(
          std::chrono::steady_clock::time_point(deadline_.time_since_epoch()));
      deadline_timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec) stopping_ = true;
        maybe_done();
      });
    }
    if (opt_.progress_interval.count() > 0 && progress_) arm_progress();
    for (std::size_t i = 0; i < sessions_.size(); ++i)
      for (std::uint32_t q = 0; q < opt_.queue_depth && !stopping_; ++q) issue(i);
    maybe_done();
    // Bounded: the run time, plus one request timeout for the last requests to drain.
    const Duration limit =
        (opt_.runtime.count() > 0 ? opt_.runtime : std::chrono::hours(24 * 365)) +
        opt_.request_timeout + std::chrono::seconds(2);
    run_until([&] { return finished_; }, limit);
    const TimePoint end = last_completion_ > start_ ? last_completion_ : steady_now();
    res_.client_cpu_s = thread_cpu_seconds() - cpu0;
    if (opt_.server_pid && server_cpu_start_) {
      auto now = process_cpu_seconds(*opt_.server_pid);
      if (now) res_.server_cpu_s = *now - *server_cpu_start_;
    }
    res_.seconds = to_seconds(end - start_);
    progress_timer_.cancel();
    deadline_timer_.cancel();
    if (!finished_) {
      res_.errors += in_flight_total_;
      if (res_.first_error.empty()) res_.first_error = "requests still in flight at the time limit";
    }
    for (auto& s : sessions_) {
      res_.retransmissions += s.client->transport_stats().retransmissions;
      res_.resent += s.client->stats().resent;
    }
    close_all();
    return std::move(res_);
  }

 private:
  struct Session {
    std::unique_ptr<client::SanClient> client;
    Rng rng;
    std::uint64_t slice_lo = 0;  // sequential: this session's part of the region (blocks)
    std::uint64_t slice_blocks = 0;
    std::uint64_t cursor = 0;  // sequential: next offset in the slice (blocks)
  };

  template <class Pred>
  void run_until(Pred pred, Duration limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!pred() && std::chrono::steady_clock::now() < deadline) {
      io_.run_for(std::chrono::milliseconds(50));
      if (io_.stopped()) io_.restart();
    }
  }

  // Checks the request size and region against the device; "" when fine.
  std::string plan(const proto::Identity& id) {
    const std::uint64_t bs = id.block_size;
    res_.device_block_size = id.block_size;
    res_.device_blocks = id.block_count;
    if (bs == 0) return "device reports block size 0";
    if (opt_.block_bytes == 0 || opt_.block_bytes % bs != 0)
      return "--bs " + std::to_string(opt_.block_bytes) +
             " is not a multiple of the device block size " + std::to_string(bs);
    io_blocks_ = opt_.block_bytes / bs;
    if (id.max_transfer_blocks != 0 && io_blocks_ > id.max_transfer_blocks)
      return "--bs is above the server's largest transfer (" +
             std::to_string(std::uint64_t{id.max_transfer_blocks} * bs) + " bytes)";
    if (opt_.offset_bytes % bs != 0) return "--offset is not a multiple of the device block size";
    const std::uint64_t dev_bytes = id.block_count * bs;
    if (opt_.offset_bytes >= dev_bytes) return "--offset is past the end of the device";
    std::uint64_t size = opt_.size_bytes ? opt_.size_bytes : dev_bytes - opt_.offset_bytes;
    if (size > dev_bytes - opt_.offset_bytes)
      return "--offset + --size reach past the end of the device";
    region_lo_ = opt_.offset_bytes / bs;
    region_units_ = size / opt_.block_bytes;  // whole requests that fit
    if (region_units_ == 0) return "the region is smaller than one request";
    const std::uint64_t per = region_units_ / sessions_.size();
    for (std::size_t i = 0; i < sessions_.size(); ++i) {
      auto& s = sessions_[i];
      s.slice_blocks = std::max<std::uint64_t>(per, 1) * io_blocks_;
      s.slice_lo = region_lo_ + (per == 0 ? 0 : i * per * io_blocks_);
    }
    return "";
  }

  void issue(std::size_t index) {
    auto& s = sessions_[index];
    bool read = true;
    switch (opt_.pattern) {
      case Pattern::kRead:
      case Pattern::kRandRead: read = true; break;
      case Pattern::kWrite:
      case Pattern::kRandWrite: read = false; break;
      case Pattern::kReadWrite:
      case Pattern::kRandReadWrite: read = s.rng.below(100) < opt_.read_percent; break;
    }
    std::uint64_t lba;
    if (is_random(opt_.pattern)) {
      lba = region_lo_ + s.rng.below(region_units_) * io_blocks_;
    } else {
      lba = s.slice_lo + s.cursor;
      s.cursor += io_blocks_;
      if (s.cursor + io_blocks_ > s.slice_blocks) s.cursor = 0;
    }
    proto::Request req;
    req.op = read ? proto::Op::kRead : proto::Op::kWrite;
    req.device_id = opt_.device_id;
    req.lba = lba;
    req.blocks = static_cast<std::uint32_t>(io_blocks_);
    if (!read) req.data = write_data_;
    ++in_flight_total_;
    ++res_.issued;
    issued_bytes_ += opt_.block_bytes;
    if (opt_.bytes != 0 && issued_bytes_ >= opt_.bytes) stopping_ = true;
    const TimePoint t0 = steady_now();
    s.client->execute(std::move(req), [this, index, read, t0](proto::Reply r) {
      const TimePoint t1 = steady_now();
      last_completion_ = t1;
      --in_flight_total_;
      if (r.status == Errc::kOk) {
        const auto ns = static_cast<std::uint64_t>((t1 - t0).count());
        res_.latency.record(ns);
        if (read) {
          ++res_.reads;
          res_.bytes_read += r.data.size();
          res_.read_latency.record(ns);
        } else {
          ++res_.writes;
          res_.bytes_written += opt_.block_bytes;
          res_.write_latency.record(ns);
        }
      } else {
        if (res_.errors++ == 0)
          res_.first_error =
              std::string(read ? "read: " : "write: ") + std::string(to_string(r.status));
        stopping_ = true;  // a failing server would otherwise be hammered at full rate
      }
      if (!stopping_ && steady_now() >= deadline_ && opt_.runtime.count() > 0) stopping_ = true;
      if (!stopping_) {
        issue(index);
      } else {
        maybe_done();
      }
    });
  }

  void maybe_done() {
    if (stopping_ && in_flight_total_ == 0 && !finished_) {
      finished_ = true;
      io_.stop();
    }
  }

  void arm_progress() {
    progress_timer_.expires_after(opt_.progress_interval);
    progress_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec || finished_) return;
      Progress p;
      const TimePoint now = steady_now();
      p.seconds = to_seconds(now - start_);
      p.ops = res_.ops();
      p.bytes = res_.bytes_read + res_.bytes_written;
      const double dt = to_seconds(now - last_progress_time_);
      if (last_progress_time_ == TimePoint{}) {
        p.iops_now = p.seconds > 0 ? static_cast<double>(p.ops) / p.seconds : 0;
        p.mb_per_s_now = p.seconds > 0 ? static_cast<double>(p.bytes) / p.seconds / 1e6 : 0;
      } else if (dt > 0) {
        p.iops_now = static_cast<double>(p.ops - last_progress_ops_) / dt;
        p.mb_per_s_now = static_cast<double>(p.bytes - last_progress_bytes_) / dt / 1e6;
      }
      last_progress_time_ = now;
      last_progress_ops_ = p.ops;
      last_progress_bytes_ = p.bytes;
      progress_(p);
      arm_progress();
    });
  }

  void close_all() {
    for (auto& s : sessions_)
      if (s.client) s.client->close();
    io_.restart();
    io_.run_for(std::chrono::milliseconds(20));  // let the LOGOUTs leave
    sessions_.clear();
  }

  LoadOptions opt_;
  std::function<void(const Progress&)> progress_;
  asio::io_context io_;
  asio::steady_timer progress_timer_;
  asio::steady_timer deadline_timer_;
  std::vector<Session> sessions_;
  Bytes write_data_;
  std::uint64_t io_blocks_ = 1;
  std::uint64_t region_lo_ = 0;
  std::uint64_t region_units_ = 0;
  std::uint64_t issued_bytes_ = 0;
  std::uint64_t in_flight_total_ = 0;
  bool stopping_ = false;
  bool finished_ = false;
  TimePoint start_{};
  TimePoint deadline_ = TimePoint::max();
  TimePoint last_completion_{};
  TimePoint last_progress_time_{};
  std::uint64_t last_progress_ops_ = 0, last_progress_bytes_ = 0;
  std::optional<double> server_cpu_start_;
  LoadResult res_;
};

}  // namespace

Result<LoadResult, Error> run_load(const LoadOptions& options,
                                   const std::function<void(const Progress&)>& progress) {
  if (!crypto_init()) return fail("cannot initialise libsodium");
  Runner r(options, progress);
  return r.run();
}

}  // namespace ipsan::bench
