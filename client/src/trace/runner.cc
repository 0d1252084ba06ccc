#include "ipsan/client/trace/runner.h"

#include <charconv>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>

#include "ipsan/base/crc32c.h"
#include "ipsan/base/pattern.h"
#include "ipsan/client/scsi/sense.h"

namespace ipsan::client::trace {
namespace {

constexpr std::uint64_t kMaxGeneratedBytes = 256u << 20;

template <class R>
std::optional<R> run_and_wait(const std::function<void(std::function<void(R)>)>& start,
                              int timeout_ms) {
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<R> result;
  };
  auto st = std::make_shared<State>();
  start([st](R r) {
    std::lock_guard<std::mutex> lock(st->mu);
    st->result = std::move(r);
    st->cv.notify_all();
  });
  std::unique_lock<std::mutex> lock(st->mu);
  st->cv.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                  [&] { return st->result.has_value(); });
  return st->result;
}

// The block range a command addresses, for pattern/zeros defaults.
struct Range {
  std::uint64_t lba = 0;
  std::uint64_t blocks = 0;
};

std::optional<Range> data_out_range(const Command& c) {
  if (c.kind == Command::Kind::kAta) {
    switch (c.ata_command) {
      case 0x30:
      case 0xCA:
        return Range{c.lba | (std::uint64_t{c.device & 0x0Fu} << 24),
                     (c.count & 0xFF) == 0 ? 256u : (c.count & 0xFFu)};
      case 0x34:
      case 0x35:
      case 0x3D: return Range{c.lba, c.count == 0 ? 65536u : c.count};
      case 0x61: return Range{c.lba, c.features == 0 ? 65536u : c.features};
      default: return std::nullopt;
    }
  }
  const Bytes& b = c.cdb;
  if (b.empty()) return std::nullopt;
  switch (b[0]) {
    case 0x0A:
      if (b.size() < 6) return std::nullopt;
      return Range{(std::uint64_t{b[1] & 0x1Fu} << 16) | load_be16(&b[2]), b[4] == 0 ? 256u : b[4]};
    case 0x2A:
    case 0x2E:
    case 0x2F:
      if (b.size() < 10) return std::nullopt;
      return Range{load_be32(&b[2]), load_be16(&b[7])};
    case 0x41:
      if (b.size() < 10) return std::nullopt;
      return Range{load_be32(&b[2]), 1};
    case 0xAA:
      if (b.size() < 12) return std::nullopt;
      return Range{load_be32(&b[2]), load_be32(&b[6])};
    case 0x8A:
    case 0x8E:
    case 0x8F:
      if (b.size() < 16) return std::nullopt;
      return Range{load_be64(&b[2]), load_be32(&b[10])};
    case 0x93:
      if (b.size() < 16) return std::nullopt;
      return Range{load_be64(&b[2]), 1};
    default: return std::nullopt;
  }
}

std::optional<Range> data_in_range(const Command& c) {
  if (c.kind == Command::Kind::kAta) {
    switch (c.ata_command) {
      case 0x20:
      case 0xC8:
        return Range{c.lba | (std::uint64_t{c.device & 0x0Fu} << 24),
                     (c.count & 0xFF) == 0 ? 256u : (c.count & 0xFFu)};
      case 0x24:
      case 0x25: return Range{c.lba, c.count == 0 ? 65536u : c.count};
      case 0x60: return Range{c.lba, c.features == 0 ? 65536u : c.features};
      default: return std::nullopt;
    }
  }
  const Bytes& b = c.cdb;
  if (b.empty()) return std::nullopt;
  switch (b[0]) {
    case 0x08:
      if (b.size() < 6) return std::nullopt;
      return Range{(std::uint64_t{b[1] & 0x1Fu} << 16) | load_be16(&b[2]), b[4] == 0 ? 256u : b[4]};
    case 0x28:
      if (b.size() < 10) return std::nullopt;
      return Range{load_be32(&b[2]), load_be16(&b[7])};
    case 0xA8:
      if (b.size() < 12) return std::nullopt;
      return Range{load_be32(&b[2]), load_be32(&b[6])};
    case 0x88:
      if (b.size() < 16) return std::nullopt;
      return Range{load_be64(&b[2]), load_be32(&b[10])};
    default: return std::nullopt;
  }
}

Result<Bytes, std::string> make_part(const Command& c, const DataOut& d, std::uint32_t block_size) {
  switch (d.kind) {
    case DataOut::Kind::kNone: return Bytes{};
    case DataOut::Kind::kHex: return d.hex;
    case DataOut::Kind::kZeros: {
      std::uint64_t n = d.zeros;
      if (n == 0) {
        auto r = data_out_range(c);
        if (!r) return tl::unexpected(std::string("out=zeros needs a length (zeros:N) here"));
        n = r->blocks * block_size;
      }
      if (n > kMaxGeneratedBytes) return tl::unexpected(std::string("out=zeros: too large"));
      return Bytes(static_cast<std::size_t>(n), 0);
    }
    case DataOut::Kind::kPattern: {
      auto r = data_out_range(c);
      // Plain values rather than optionals: GCC 12 -O2 reports a false maybe-uninitialized.
      bool have_lba = false, have_blocks = false;
      std::uint64_t lba = 0, blocks = 0;
      if (d.pattern.lba) {
        lba = *d.pattern.lba;
        have_lba = true;
      } else if (r) {
        lba = r->lba;
        have_lba = true;
      }
      if (d.pattern.blocks) {
        blocks = *d.pattern.blocks;
        have_blocks = true;
      } else if (r) {
        blocks = r->blocks;
        have_blocks = true;
      }
      if (!have_lba || !have_blocks) {
        return tl::unexpected(std::string("out=pattern needs lba= and blocks= for this command"));
      }
      if (blocks * block_size > kMaxGeneratedBytes) {
        return tl::unexpected(std::string("out=pattern: too large"));
      }
      Bytes buf(static_cast<std::size_t>(blocks * block_size));
      fill_pattern_blocks(buf, block_size, d.pattern.seed, lba, d.pattern.generation);
      return buf;
    }
  }
  return Bytes{};
}

Result<Bytes, std::string> make_data_out(const Command& c, std::uint32_t block_size) {
  auto first = make_part(c, c.out, block_size);
  if (!first) return first;
  Bytes out = std::move(*first);
  for (const DataOut& m : c.out.more) {
    auto part = make_part(c, m, block_size);
    if (!part) return part;
    if (out.size() + part->size() > kMaxGeneratedBytes) {
      return tl::unexpected(std::string("out: too large"));
    }
    out.insert(out.end(), part->begin(), part->end());
  }
  return out;
}

// Compares data-in; empty string = match.
std::string check_data(const Command& c, const Bytes& data, std::uint32_t block_size) {
  const Expect& e = c.expect;
  if (e.len && data.size() != *e.len) {
    return "data-in length: expected " + std::to_string(*e.len) + ", got " +
           std::to_string(data.size());
  }
  const DataInCheck& d = e.data;
  switch (d.kind) {
    case DataInCheck::Kind::kAny: return "";
    case DataInCheck::Kind::kHex: {
      const std::size_t n = std::min(d.hex.size(), data.size());
      for (std::size_t i = 0; i < n; ++i) {
        if (d.hex[i] != data[i]) {
          char buf[96];
          std::snprintf(buf, sizeof buf, "data-in byte %zu: expected %02x, got %02x", i, d.hex[i],
                        data[i]);
          return buf;
        }
      }
      if (d.hex.size() != data.size()) {
        return "data-in length: expected " + std::to_string(d.hex.size()) + ", got " +
               std::to_string(data.size());
      }
      return "";
    }
    case DataInCheck::Kind::kPrefix: {
      if (data.size() < d.hex.size()) {
        return "data-in length: expected at least " + std::to_string(d.hex.size()) + ", got " +
               std::to_string(data.size());
      }
      for (std::size_t i = 0; i < d.hex.size(); ++i) {
        if (d.hex[i] != data[i]) {
          char buf[96];
          std::snprintf(buf, sizeof buf, "data-in byte %zu: expected %02x, got %02x", i, d.hex[i],
                        data[i]);
          return buf;
        }
      }
      return "";
    }
    case DataInCheck::Kind::kCrc32c: {
      const std::uint32_t crc = crc32c(data);
      if (crc == d.crc) return "";
      char buf[96];
      std::snprintf(buf, sizeof buf, "data-in crc32c: expected %08x, got %08x (%zu bytes)", d.crc,
                    crc, data.size());
      return buf;
    }
    case DataInCheck::Kind::kZeros:
      for (std::size_t i = 0; i < data.size(); ++i) {
        if (data[i] != 0) return "data-in byte " + std::to_string(i) + ": expected 00 (zeros)";
      }
      return "";
    case DataInCheck::Kind::kPattern: {
      auto r = data_in_range(c);
      const std::uint64_t lba = d.pattern.lba ? *d.pattern.lba : r ? r->lba : 0;
      const std::uint64_t blocks = d.pattern.blocks ? *d.pattern.blocks : r ? r->blocks : 0;
      if (!d.pattern.lba && !r) return "in=pattern needs lba= for this command";
      if (data.size() != blocks * block_size) {
        return "data-in length: expected " + std::to_string(blocks * block_size) +
               " (pattern), got " + std::to_string(data.size());
      }
      for (std::uint64_t b = 0; b < blocks; ++b) {
        ByteSpan blk(data.data() + b * block_size, block_size);
        if (!check_pattern(blk, d.pattern.seed, lba + b, d.pattern.generation)) {
          return "data-in block " + std::to_string(b) + " (lba " + std::to_string(lba + b) +
                 ") does not hold pattern seed=" + std::to_string(d.pattern.seed);
        }
      }
      return "";
    }
  }
  return "";
}

std::string sense_text(const scsi::Sense& s) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%x/%02x/%02x (%s)", s.key, s.asc, s.ascq,
                scsi::sense_key_name(s.key));
  return buf;
}

std::string scsi_outcome_text(const scsi::ScsiResult& r) {
  std::string s = scsi::status_name(r.status);
  if (auto sense = scsi::decode_sense(r.sense)) s += " sense " + sense_text(*sense);
  return s;
}

Expect observed_expect(const Command& c, std::uint8_t status,
                       const std::optional<scsi::Sense>& sense, std::optional<std::int64_t> resid,
                       const Bytes& data, bool pattern_ok, std::size_t max_inline) {
  Expect e;
  e.status = status;
  if (sense) {
    e.sense = std::array<std::uint8_t, 3>{sense->key, sense->asc, sense->ascq};
    e.info = sense->information;
    e.sks = sense->sks;
  }
  if (resid && *resid != 0) e.resid = resid;
  if (!data.empty()) {
    e.len = data.size();
    if (pattern_ok && c.expect.data.kind == DataInCheck::Kind::kPattern) {
      e.data = c.expect.data;
    } else if (data.size() <= max_inline) {
      e.data.kind = DataInCheck::Kind::kHex;
      e.data.hex = data;
    } else {
      e.data.kind = DataInCheck::Kind::kCrc32c;
      e.data.crc = crc32c(data);
    }
  }
  return e;
}

}  // namespace

const char* outcome_name(Outcome o) {
  switch (o) {
    case Outcome::kMatch: return "MATCH";
    case Outcome::kMismatch: return "MISMATCH";
    case Outcome::kError: return "ERROR";
    case Outcome::kSkipped: return "SKIPPED";
  }
  return "?";
}

ReplayReport run_traces(const std::vector<Trace>& traces, scsi::Bus& bus,
                        const ReplayOptions& options) {
  ReplayReport report;
  for (const Trace& trace : traces) {
    if (options.reset_between_traces) bus.reset_all();
    Trace recorded;
    recorded.name = trace.name;
    for (const Command& c : trace.commands) {
      LineResult lr;
      lr.trace = trace.name;
      lr.line = c.line;
      Command rec = c;
      auto finish = [&](Outcome o, std::string detail) {
        lr.outcome = o;
        lr.detail = std::move(detail);
        switch (o) {
          case Outcome::kMatch: ++report.matched; break;
          case Outcome::kMismatch: ++report.mismatched; break;
          case Outcome::kError: ++report.errors; break;
          case Outcome::kSkipped: ++report.skipped; break;
        }
        report.lines.push_back(lr);
        recorded.commands.push_back(rec);
      };
      if (c.kind == Command::Kind::kFault) {
        if (!options.fault_hook) {
          finish(Outcome::kSkipped, "fault line: no fault injection on this target");
          continue;
        }
        auto r = options.fault_hook(c);
        if (!r) {
          finish(Outcome::kError, r.error().message);
        } else {
          finish(Outcome::kMatch, "");
        }
        continue;
      }
      scsi::LogicalUnit* lu = bus.find(c.target, c.lun);
      const std::uint32_t block_size = lu != nullptr ? lu->identity().block_size : 512;
      auto data_out = make_data_out(c, block_size);
      if (!data_out) {
        finish(Outcome::kError, data_out.error());
        continue;
      }
      if (c.kind == Command::Kind::kScsi) {
        scsi::ScsiCommand sc;
        sc.cdb = c.cdb;
        sc.data_out = std::move(*data_out);
        if (c.edtl) sc.data_in_length = *c.edtl;
        auto r = run_and_wait<scsi::ScsiResult>(
            [&](std::function<void(scsi::ScsiResult)> done) {
              bus.execute(c.target, c.lun, sc, std::move(done));
            },
            options.timeout_ms);
        if (!r) {
          finish(Outcome::kError,
                 "no completion within " + std::to_string(options.timeout_ms) + " ms");
          continue;
        }
        const auto sense = scsi::decode_sense(r->sense);
        const std::int64_t resid = r->overflow ? -static_cast<std::int64_t>(r->residual)
                                               : static_cast<std::int64_t>(r->residual);
        std::string diff;
        const std::uint8_t want_status =
            c.expect.status ? *c.expect.status
                            : (c.expect.sense ? scsi::kStatusCheckCondition : scsi::kStatusGood);
        if (r->status != want_status) {
          diff = std::string("status: expected ") + scsi::status_name(want_status) + ", got " +
                 scsi_outcome_text(*r);
        } else if (c.expect.sense) {
          const auto& k = *c.expect.sense;
          if (!sense || sense->key != k[0] || sense->asc != k[1] || sense->ascq != k[2]) {
            scsi::Sense want = scsi::make_sense(k[0], scsi::Asc{k[1], k[2]});  // the trace's codes
            diff = "sense: expected " + sense_text(want) + ", got " +
                   (sense ? sense_text(*sense) : std::string("none"));
          }
        }
        if (diff.empty() && c.expect.info && (!sense || sense->information != c.expect.info)) {
          diff = "sense information: expected " + std::to_string(*c.expect.info) + ", got " +
                 (sense && sense->information ? std::to_string(*sense->information)
                                              : std::string("none"));
        }
        if (diff.empty() && c.expect.sks && (!sense || sense->sks != c.expect.sks)) {
          diff =
              "sense-key specific: expected " + to_hex(ByteSpan(c.expect.sks->data(), 3)) +
              ", got " +
              (sense && sense->sks ? to_hex(ByteSpan(sense->sks->data(), 3)) : std::string("none"));
        }
        if (diff.empty() && c.expect.resid && *c.expect.resid != resid) {
          diff = "residual: expected " + std::to_string(*c.expect.resid) + ", got " +
                 std::to_string(resid);
        }
        std::string data_diff = check_data(c, r->data_in, block_size);
        if (diff.empty()) diff = data_diff;
        if (options.record) {
          rec.expect = observed_expect(c, r->status, sense, resid, r->data_in, data_diff.empty(),
                                       options.max_inline_bytes);
        }
        finish(diff.empty() ? Outcome::kMatch : Outcome::kMismatch, diff);
        continue;
      }
      // ATA
      ata::Taskfile tf;
      tf.command = c.ata_command;
      tf.features = c.features;
      tf.count = c.count;
      tf.lba = c.lba;
      tf.device = c.device;
      tf.data_out = std::move(*data_out);
      auto r = run_and_wait<ata::AtaResult>(
          [&](std::function<void(ata::AtaResult)> done) {
            bus.execute_ata(c.target, c.lun, tf, std::move(done));
          },
          options.timeout_ms);
      if (!r) {
        finish(Outcome::kError,
               "no completion within " + std::to_string(options.timeout_ms) + " ms");
        continue;
      }
      char buf[160];
      std::string diff;
      if (c.expect.status ? r->status != *c.expect.status : (r->status & ata::kStatusErr) != 0) {
        if (c.expect.status) {
          std::snprintf(buf, sizeof buf, "ata status: expected %02x, got %02x (error %02x)",
                        *c.expect.status, r->status, r->error);
        } else {
          std::snprintf(buf, sizeof buf, "ata status: expected no ERR bit, got %02x (error %02x)",
                        r->status, r->error);
        }
        diff = buf;
      } else if (c.expect.error && r->error != *c.expect.error) {
        std::snprintf(buf, sizeof buf, "ata error: expected %02x, got %02x", *c.expect.error,
                      r->error);
        diff = buf;
      } else if (c.expect.count_out && r->count != *c.expect.count_out) {
        diff = "ata count: expected " + std::to_string(*c.expect.count_out) + ", got " +
               std::to_string(r->count);
      }
      std::string data_diff = check_data(c, r->data_in, block_size);
      if (diff.empty()) diff = data_diff;
      if (options.record) {
        rec.expect = observed_expect(c, r->status, std::nullopt, std::nullopt, r->data_in,
                                     data_diff.empty(), options.max_inline_bytes);
        if (r->error != 0) rec.expect.error = r->error;
        if (r->count != 0) rec.expect.count_out = r->count;
      }
      finish(diff.empty() ? Outcome::kMatch : Outcome::kMismatch, diff);
    }
    if (options.record) report.recorded.push_back(std::move(recorded));
  }
  return report;
}

std::function<Result<void, Error>(const Command&)> memory_target_fault_hook(
    scsi::Bus& bus, std::map<std::string, MemoryTarget*> servers) {
  return [&bus, servers](const Command& c) -> Result<void, Error> {
    const std::string where = "fault: ";
    const auto mappings = bus.mappings();
    const scsi::LunMapping* m = nullptr;
    for (const auto& x : mappings) {
      if (x.target == c.target && x.lun == c.lun) m = &x;
    }
    if (m == nullptr) return fail(where + "LUN not mapped");
    auto server = servers.find(m->server);
    if (server == servers.end() || server->second == nullptr) {
      return fail(where + "server '" + m->server + "' has no fault injection");
    }
    MemoryTarget& target = *server->second;
    auto number = [&](const std::string& key, std::uint64_t& out) -> bool {
      auto it = c.fault.find(key);
      if (it == c.fault.end()) return true;
      const std::string& v = it->second;
      int base = 10;
      std::size_t start = 0;
      if (v.size() > 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) {
        base = 16;
        start = 2;
      }
      auto [p, ec] = std::from_chars(v.data() + start, v.data() + v.size(), out, base);
      return ec == std::errc() && p == v.data() + v.size() && start < v.size();
    };
    for (const auto& [k, v] : c.fault) {
      if (k != "errc" && k != "op" && k != "lba" && k != "blocks" && k != "count" &&
          k != "resize" && k != "clear") {
        return fail(where + "unknown key '" + k + "'");
      }
    }
    if (c.fault.count("clear")) {
      target.clear_faults();
      return {};
    }
    if (c.fault.count("resize")) {
      std::uint64_t blocks = 0;
      if (!number("resize", blocks) || blocks == 0) return fail(where + "bad resize");
      target.resize(m->device_id, blocks);
      return {};
    }
    auto errc = c.fault.find("errc");
    if (errc == c.fault.end()) return fail(where + "needs errc=NAME, resize=N or clear=all");
    MemoryTarget::Fault f;
    f.device_id = m->device_id;
    bool known = false;
    for (std::uint32_t v = 0; v <= kErrcMax; ++v) {
      if (to_string(static_cast<Errc>(v)) == errc->second) {
        f.error = static_cast<Errc>(v);
        known = true;
      }
    }
    if (!known) return fail(where + "unknown errc '" + errc->second + "'");
    if (auto op = c.fault.find("op"); op != c.fault.end()) {
      static const std::pair<const char*, proto::Op> kOps[] = {
          {"read", proto::Op::kRead},
          {"write", proto::Op::kWrite},
          {"flush", proto::Op::kFlush},
          {"trim", proto::Op::kTrim},
          {"write-zeroes", proto::Op::kWriteZeroes},
          {"ready", proto::Op::kReady},
          {"capacity", proto::Op::kCapacity},
          {"identify", proto::Op::kIdentify}};
      for (const auto& [name, value] : kOps) {
        if (op->second == name) f.op = value;
      }
      if (!f.op) return fail(where + "unknown op '" + op->second + "'");
    }
    if (!number("lba", f.lba) || !number("blocks", f.blocks)) return fail(where + "bad lba/blocks");
    if (auto count = c.fault.find("count"); count != c.fault.end()) {
      std::uint64_t n = 0;
      if (count->second == "forever") {
        f.count = -1;
      } else if (number("count", n) && n >= 1 && n <= 1000000) {
        f.count = static_cast<int>(n);
      } else {
        return fail(where + "bad count");
      }
    }
    target.inject(f);
    return {};
  };
}

void print_report(std::ostream& os, const ReplayReport& report, bool verbose) {
  for (const LineResult& l : report.lines) {
    if (!verbose && (l.outcome == Outcome::kMatch || l.outcome == Outcome::kSkipped)) continue;
    os << l.trace << ":" << l.line << ": " << outcome_name(l.outcome);
    if (!l.detail.empty()) os << ": " << l.detail;
    os << "\n";
  }
  os << report.matched << " matched, " << report.mismatched << " mismatched, " << report.errors
     << " errors, " << report.skipped << " skipped\n";
}

}  // namespace ipsan::client::trace
