#include "client_cli.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <future>
#include <iostream>
#include <memory>
#include <optional>

#include <nlohmann/json.hpp>

#include "connect_flags.h"
#include "ipsan/base/crypto.h"
#include "ipsan/base/log.h"
#include "ipsan/base/units.h"
#include "ipsan/client/connect.h"
#include "ipsan/client/runtime.h"
#include "ipsan/base/progress.h"
#include "ipsan/client/verify.h"
#include "ipsan/proto/codec.h"

namespace ipsan::client {
namespace {

struct Common : ConnectArgs {
  std::uint32_t device = 0;
};

[[noreturn]] void die(const std::string& msg, int code = 1) {
  std::fprintf(stderr, "ipsan client: %s\n", msg.c_str());
  throw CLI::RuntimeError(code);
}

// A connected client (client::Runtime) for one command.
struct Session {
  std::unique_ptr<Runtime> rt;

  explicit Session(const Common& c) {
    auto options = runtime_options(c);
    if (!options) die(options.error().message, 2);
    auto r = Runtime::start(std::move(*options));
    if (!r) die(r.error().message);
    rt = std::move(*r);
  }

  // One request; a CAPACITY_CHANGED notice (the device was resized online) is reported on stderr
  // and the request retried once, as a SCSI initiator does after the unit attention.
  proto::Reply call(proto::Request req) {
    proto::Reply r = rt->call(req);
    if (r.status == Errc::kCapacityChanged) {
      std::fprintf(stderr, "ipsan client: device %u capacity changed\n", req.device_id);
      r = rt->call(std::move(req));
    }
    return r;
  }

  proto::Identity identify(std::uint32_t device) {
    proto::Request req;
    req.op = proto::Op::kIdentify;
    req.device_id = device;
    auto r = call(std::move(req));
    if (r.status != Errc::kOk)
      die("identify device " + std::to_string(device) + ": " + std::string(to_string(r.status)));
    return r.identity;
  }
};

void check(Errc e, const char* what) {
  if (e != Errc::kOk) die(std::string(what) + ": " + std::string(to_string(e)));
}

std::string caps_string(std::uint32_t c) {
  std::string s;
  auto add = [&](std::uint32_t bit, const char* n) {
    if (c & bit) s += (s.empty() ? "" : ",") + std::string(n);
  };
  add(proto::kCapFua, "fua");
  add(proto::kCapFlush, "flush");
  add(proto::kCapTrim, "trim");
  add(proto::kCapWriteZeroes, "write-zeroes");
  add(proto::kCapReadOnly, "read-only");
  add(proto::kCapRotational, "rotational");
  return s.empty() ? "-" : s;
}

}  // namespace

void add_cli(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("client", "Talk to an ipsan server: identify, read, write, verify, ...");
  cmd->require_subcommand(1);
  // Flags of `client` (connection, -d/--device) are accepted after the command word too
  // (`ipsan client identify -d 1`), where users type them: the subcommands, which inherit this,
  // pass options they do not know to `client`.
  cmd->fallthrough();
  auto common = std::make_shared<Common>();
  add_connect_flags(cmd, *common);
  cmd->add_option("-d,--device", common->device, "Device id on the server")->capture_default_str();

  auto* ident = cmd->add_subcommand("identify", "Show the device's identity and capabilities");
  ident->callback([common] {
    Session s(*common);
    auto id = s.identify(common->device);
    std::printf("device %u: vendor=%s product=%s revision=%s serial=%s\n", common->device,
                id.vendor.c_str(), id.product.c_str(), id.revision.c_str(), id.serial.c_str());
    std::printf("  uuid=%s block_size=%u blocks=%llu (%s)\n", to_hex(id.uuid).c_str(),
                id.block_size, static_cast<unsigned long long>(id.block_count),
                format_bytes(id.block_count * id.block_size).c_str());
    std::printf("  capabilities=%s max_transfer=%u blocks optimal=%u blocks\n",
                caps_string(id.capabilities).c_str(), id.max_transfer_blocks,
                id.optimal_transfer_blocks);
  });

  auto* cap = cmd->add_subcommand("capacity", "Print block size and block count");
  cap->callback([common] {
    Session s(*common);
    proto::Request req;
    req.op = proto::Op::kCapacity;
    req.device_id = common->device;
    auto r = s.call(std::move(req));
    check(r.status, "capacity");
    std::printf("%u %llu\n", r.capacity.block_size,
                static_cast<unsigned long long>(r.capacity.block_count));
  });

  auto lba = std::make_shared<std::uint64_t>(0);
  auto blocks = std::make_shared<std::uint64_t>(1);
  auto path = std::make_shared<std::string>("-");
  auto fua = std::make_shared<bool>(false);

  auto* rd = cmd->add_subcommand("read", "Read blocks to a file or stdout");
  rd->add_option("--lba", *lba, "First block")->required();
  rd->add_option("--blocks", *blocks, "Number of blocks")->required();
  rd->add_option("-o,--out", *path, "Output file ('-' for stdout)")->capture_default_str();
  rd->callback([common, lba, blocks, path] {
    Session s(*common);
    auto id = s.identify(common->device);
    std::FILE* out = *path == "-" ? stdout : std::fopen(path->c_str(), "wb");
    if (!out) die("cannot open " + *path);
    std::uint64_t per = std::max<std::uint32_t>(1, id.max_transfer_blocks);
    for (std::uint64_t done = 0; done < *blocks;) {
      std::uint32_t n = static_cast<std::uint32_t>(std::min(per, *blocks - done));
      proto::Request req;
      req.op = proto::Op::kRead;
      req.device_id = common->device;
      req.lba = *lba + done;
      req.blocks = n;
      auto r = s.call(std::move(req));
      check(r.status, "read");
      if (std::fwrite(r.data.data(), 1, r.data.size(), out) != r.data.size())
        die("write to output failed");
      done += n;
    }
    if (out != stdout && std::fclose(out) != 0) die("cannot write " + *path);
    std::fprintf(stderr, "read %s at lba %llu\n", format_bytes(*blocks * id.block_size).c_str(),
                 static_cast<unsigned long long>(*lba));
  });

  auto* wr = cmd->add_subcommand("write", "Write blocks from a file or stdin (whole blocks only)");
  wr->add_option("--lba", *lba, "First block")->required();
  wr->add_option("-i,--in", *path, "Input file ('-' for stdin)")->capture_default_str();
  wr->add_flag("--fua", *fua, "Force unit access: durable before the reply");
  wr->callback([common, lba, path, fua] {
    Session s(*common);
    auto id = s.identify(common->device);
    std::FILE* in = *path == "-" ? stdin : std::fopen(path->c_str(), "rb");
    if (!in) die("cannot open " + *path);
    std::uint64_t per = std::max<std::uint32_t>(1, id.max_transfer_blocks);
    std::vector<std::uint8_t> buf(per * id.block_size);
    std::uint64_t at = *lba, total = 0;
    for (;;) {
      std::size_t got = 0;
      while (got < buf.size()) {
        std::size_t n = std::fread(buf.data() + got, 1, buf.size() - got, in);
        if (n == 0) break;
        got += n;
      }
      if (got == 0) break;
      if (got % id.block_size != 0)
        die("input is not a whole number of " + std::to_string(id.block_size) + "-byte blocks");
      proto::Request req;
      req.op = proto::Op::kWrite;
      req.device_id = common->device;
      req.lba = at;
      req.blocks = static_cast<std::uint32_t>(got / id.block_size);
      req.flags = *fua ? proto::kFlagFua : 0;
      req.data.assign(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(got));
      auto r = s.call(std::move(req));
      check(r.status, "write");
      at += req.blocks;
      total += got;
      if (got < buf.size()) break;
    }
    if (in != stdin) std::fclose(in);
    std::fprintf(stderr, "wrote %s at lba %llu\n", format_bytes(total).c_str(),
                 static_cast<unsigned long long>(*lba));
  });

  auto* fl = cmd->add_subcommand("flush", "Make every acknowledged write durable");
  fl->callback([common] {
    Session s(*common);
    proto::Request req;
    req.op = proto::Op::kFlush;
    req.device_id = common->device;
    check(s.call(std::move(req)).status, "flush");
    std::fprintf(stderr, "flushed device %u\n", common->device);
  });

  auto* tr = cmd->add_subcommand("trim", "Discard blocks (they read back as zeroes)");
  tr->add_option("--lba", *lba, "First block")->required();
  tr->add_option("--blocks", *blocks, "Number of blocks")->required();
  tr->callback([common, lba, blocks] {
    Session s(*common);
    if (*blocks > 0xFFFFFFFFull) die("--blocks too large for one request");
    proto::Request req;
    req.op = proto::Op::kTrim;
    req.device_id = common->device;
    req.lba = *lba;
    req.blocks = static_cast<std::uint32_t>(*blocks);
    check(s.call(std::move(req)).status, "trim");
    std::fprintf(stderr, "trimmed %llu blocks at lba %llu\n",
                 static_cast<unsigned long long>(*blocks), static_cast<unsigned long long>(*lba));
  });

  struct VerifyArgs {
    std::string bytes = "64M";
    std::string io_size = "1M";
    std::uint32_t qd = 8;
    std::uint64_t seed = 1;
    std::uint64_t lba = 0;
    bool read_only = false;
    bool write_only = false;
    bool json = false;
    bool progress = false;
  };
  auto va = std::make_shared<VerifyArgs>();
  auto* ver = cmd->add_subcommand(
      "verify", "Write a seeded pattern over a range, read it back, compare, report MB/s");
  ver->add_option("--bytes", va->bytes, "Range to verify, e.g. 256M (or 'all')")
      ->capture_default_str();
  ver->add_option("--io-size", va->io_size, "Bytes per request")->capture_default_str();
  ver->add_option("--qd", va->qd, "Requests in flight")->capture_default_str();
  ver->add_option("--seed", va->seed, "Pattern seed")->capture_default_str();
  ver->add_option("--lba", va->lba, "First block")->capture_default_str();
  ver->add_flag("--read-only", va->read_only,
                "Only read and check (data written earlier with this seed)");
  ver->add_flag("--write-only", va->write_only, "Only write the pattern");
  ver->add_flag("--json", va->json, "Print the result as one JSON object on stdout");
  ver->add_flag("--progress", va->progress,
                "Progress line every second on stderr even without a tty");
  ver->callback([common, va] {
    Session s(*common);
    auto id = s.identify(common->device);
    VerifyOptions vo;
    vo.device_id = common->device;
    vo.block_size = id.block_size;
    vo.lba = va->lba;
    if (vo.lba >= id.block_count) die("--lba is past the end of the device");
    std::uint64_t avail = (id.block_count - vo.lba);
    if (va->bytes == "all") {
      vo.blocks = avail;
    } else {
      auto b = parse_size(va->bytes);
      if (!b) die(b.error().message);
      if (*b % id.block_size)
        die("--bytes must be a multiple of the block size " + std::to_string(id.block_size));
      vo.blocks = *b / id.block_size;
      if (vo.blocks > avail)
        die("--bytes reaches past the end of the device (" + format_bytes(avail * id.block_size) +
            " available)");
    }
    auto io = parse_size(va->io_size);
    if (!io) die(io.error().message);
    if (*io == 0 || *io % id.block_size)
      die("--io-size must be a non-zero multiple of the block size");
    vo.io_blocks = static_cast<std::uint32_t>(
        std::min<std::uint64_t>(*io / id.block_size, id.max_transfer_blocks));
    vo.queue_depth = std::max<std::uint32_t>(1, va->qd);
    vo.seed = va->seed;
    vo.write = !va->read_only;
    vo.read = !va->write_only;
    // One progress line (base/progress.h), updated on the io thread; each phase's end is shown.
    auto progress = std::make_shared<ProgressLine>(ProgressLine::for_stderr(va->progress));
    if (progress->enabled()) {
      vo.on_progress = [progress](bool writing, std::uint64_t done, std::uint64_t total) {
        progress->update(steady_now(),
                         std::string("verify: ") + (writing ? "write " : "read ") +
                             format_bytes(done) + " of " + format_bytes(total),
                         done == total);
      };
    }
    std::promise<VerifyResult> verified;
    auto result_future = verified.get_future();
    s.rt->run_on_io([&] {
      run_verify(s.rt->client(), vo, [&](VerifyResult r) { verified.set_value(std::move(r)); });
    });
    std::optional<VerifyResult> result = result_future.get();
    progress->finish();
    const auto ts = s.rt->transport_stats();
    const auto cs = s.rt->stats();
    if (va->json) {
      auto mbps = [](std::uint64_t bytes, Duration d) {
        const double sec = to_seconds(d);
        return sec > 0 ? static_cast<double>(bytes) / sec / 1e6 : 0.0;
      };
      nlohmann::json j = {
          {"server", common->server},
          {"transport", common->transport},
          {"device", common->device},
          {"lba", vo.lba},
          {"bytes", vo.blocks * vo.block_size},
          {"io_bytes", std::uint64_t{vo.io_blocks} * vo.block_size},
          {"qd", vo.queue_depth},
          {"seed", vo.seed},
          {"ok", result->ok()},
          {"status", std::string(to_string(result->status))},
          {"error", result->error},
          {"bytes_written", result->bytes_written},
          {"bytes_read", result->bytes_read},
          {"write_seconds", to_seconds(result->write_time)},
          {"read_seconds", to_seconds(result->read_time)},
          {"write_MBps", mbps(result->bytes_written, result->write_time)},
          {"read_MBps", mbps(result->bytes_read, result->read_time)},
          {"bad_blocks", result->bad_blocks},
          {"first_bad_lba", result->first_bad_lba},
          {"requests", cs.requests},
          {"retransmissions", ts.retransmissions},
          {"resent", cs.resent},
          {"redriven", cs.redriven},
          {"timeouts", cs.timeouts},
      };
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf(
          "ipsan client verify: %s over %s, device %u, %s at lba %llu, io %s, qd %u, seed %llu\n",
          common->server.c_str(), common->transport.c_str(), common->device,
          format_bytes(vo.blocks * vo.block_size).c_str(), static_cast<unsigned long long>(vo.lba),
          format_bytes(std::uint64_t{vo.io_blocks} * vo.block_size).c_str(), vo.queue_depth,
          static_cast<unsigned long long>(vo.seed));
      std::printf("  %s\n", result->summary().c_str());
      std::printf("  requests=%llu retransmissions=%llu resent=%llu redriven=%llu timeouts=%llu\n",
                  static_cast<unsigned long long>(cs.requests),
                  static_cast<unsigned long long>(ts.retransmissions),
                  static_cast<unsigned long long>(cs.resent),
                  static_cast<unsigned long long>(cs.redriven),
                  static_cast<unsigned long long>(cs.timeouts));
    }
    std::fflush(stdout);
    if (!result->ok()) throw CLI::RuntimeError(2);
  });
}

}  // namespace ipsan::client
