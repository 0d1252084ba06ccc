#include "ipsan/client/trace/trace.h"

#include <cctype>
#include <charconv>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "ipsan/client/scsi/sense.h"

namespace ipsan::client::trace {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Decimal, or hex with a 0x prefix.
bool parse_number(std::string_view s, std::uint64_t& out) {
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    s.remove_prefix(2);
    base = 16;
  }
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
  return ec == std::errc() && p == s.data() + s.size();
}

bool parse_hex_token(std::string_view s, Bytes& out) {
  std::string clean;
  for (char c : s) {
    if (c != '_') clean.push_back(c);
  }
  return !clean.empty() && from_hex(clean, out);
}

bool parse_hex_byte(std::string_view s, std::uint8_t& out) {
  if (s.empty() || s.size() > 2) return false;
  unsigned v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 16);
  if (ec != std::errc() || p != s.data() + s.size()) return false;
  out = static_cast<std::uint8_t>(v);
  return true;
}

std::string hex_u(std::uint64_t v, int width) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%0*llx", width, static_cast<unsigned long long>(v));
  return buf;
}

class LineParser {
 public:
  LineParser(const std::string& name, int line) : name_(name), line_(line) {}
  tl::unexpected<Error> error(const std::string& what) const {
    return fail(name_ + ":" + std::to_string(line_) + ": " + what);
  }

  Result<PatternSpec, Error> pattern(std::string_view key, std::string_view spec) const {
    PatternSpec p;
    bool have_seed = false;
    while (!spec.empty()) {
      const std::size_t comma = spec.find(',');
      std::string_view item = spec.substr(0, comma);
      spec = comma == std::string_view::npos ? std::string_view{} : spec.substr(comma + 1);
      const std::size_t eq = item.find('=');
      if (eq == std::string_view::npos) {
        return error(std::string(key) + ": pattern item '" + std::string(item) + "' is not k=v");
      }
      const std::string_view k = item.substr(0, eq);
      std::uint64_t v = 0;
      if (!parse_number(item.substr(eq + 1), v)) {
        return error(std::string(key) + ": bad number in pattern item '" + std::string(item) + "'");
      }
      if (k == "seed") {
        p.seed = v;
        have_seed = true;
      } else if (k == "lba") {
        p.lba = v;
      } else if (k == "blocks") {
        p.blocks = v;
      } else if (k == "gen") {
        p.generation = v;
      } else {
        return error(std::string(key) + ": unknown pattern key '" + std::string(k) +
                     "' (seed, lba, blocks, gen)");
      }
    }
    if (!have_seed) return error(std::string(key) + ": pattern needs seed=N");
    return p;
  }

  Result<DataOut, Error> data_out(std::string_view v) const {
    const std::size_t plus = v.find('+');
    if (plus != std::string_view::npos) {
      auto first = data_out(v.substr(0, plus));
      if (!first) return first;
      auto rest = data_out(v.substr(plus + 1));
      if (!rest) return rest;
      DataOut d = std::move(*first);
      DataOut tail = std::move(*rest);
      std::vector<DataOut> tail_more = std::move(tail.more);
      tail.more.clear();
      d.more.push_back(std::move(tail));
      for (auto& m : tail_more) d.more.push_back(std::move(m));
      return d;
    }
    if (v.empty()) return error("out: empty part");
    DataOut d;
    if (v.rfind("pattern:", 0) == 0) {
      auto p = pattern("out", v.substr(8));
      if (!p) return tl::unexpected(p.error());
      d.kind = DataOut::Kind::kPattern;
      d.pattern = *p;
    } else if (v == "zeros") {
      d.kind = DataOut::Kind::kZeros;
      d.zeros = 0;  // length from the command
    } else if (v.rfind("zeros:", 0) == 0) {
      d.kind = DataOut::Kind::kZeros;
      if (!parse_number(v.substr(6), d.zeros) || d.zeros == 0 || d.zeros > (1u << 30)) {
        return error("out: bad zeros length '" + std::string(v.substr(6)) + "'");
      }
    } else {
      d.kind = DataOut::Kind::kHex;
      if (!parse_hex_token(v, d.hex)) return error("out: bad hex '" + std::string(v) + "'");
    }
    return d;
  }

  Result<DataInCheck, Error> data_in(std::string_view v) const {
    DataInCheck d;
    if (v == "any") {
      d.kind = DataInCheck::Kind::kAny;
    } else if (v == "zeros") {
      d.kind = DataInCheck::Kind::kZeros;
    } else if (v.rfind("prefix:", 0) == 0) {
      d.kind = DataInCheck::Kind::kPrefix;
      if (!parse_hex_token(v.substr(7), d.hex)) {
        return error("in: bad hex in prefix '" + std::string(v.substr(7)) + "'");
      }
    } else if (v.rfind("crc32c:", 0) == 0) {
      d.kind = DataInCheck::Kind::kCrc32c;
      std::uint64_t crc = 0;
      std::string_view digits = v.substr(7);
      auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), crc, 16);
      if (digits.empty() || digits.size() > 8 || ec != std::errc() ||
          p != digits.data() + digits.size()) {
        return error("in: bad crc32c '" + std::string(digits) + "' (8 hex digits)");
      }
      d.crc = static_cast<std::uint32_t>(crc);
    } else if (v.rfind("pattern:", 0) == 0) {
      auto p = pattern("in", v.substr(8));
      if (!p) return tl::unexpected(p.error());
      d.kind = DataInCheck::Kind::kPattern;
      d.pattern = *p;
    } else {
      d.kind = DataInCheck::Kind::kHex;
      if (!parse_hex_token(v, d.hex)) return error("in: bad hex '" + std::string(v) + "'");
    }
    return d;
  }

 private:
  const std::string& name_;
  int line_;
};

std::string pattern_text(const PatternSpec& p) {
  std::string s = "pattern:seed=" + std::to_string(p.seed);
  if (p.lba) s += ",lba=" + std::to_string(*p.lba);
  if (p.blocks) s += ",blocks=" + std::to_string(*p.blocks);
  if (p.generation) s += ",gen=" + std::to_string(p.generation);
  return s;
}

}  // namespace

std::size_t cdb_length_for_opcode(std::uint8_t opcode) {
  switch (opcode >> 5) {
    case 0: return 6;
    case 1:
    case 2: return 10;
    case 4: return 16;
    case 5: return 12;
    default: return 0;
  }
}

std::optional<std::uint8_t> parse_scsi_status(std::string_view text) {
  const std::string t = lower(text);
  if (t == "good") return scsi::kStatusGood;
  if (t == "check" || t == "check-condition" || t == "check_condition") {
    return scsi::kStatusCheckCondition;
  }
  if (t == "condition-met") return scsi::kStatusConditionMet;
  if (t == "busy") return scsi::kStatusBusy;
  if (t == "reservation-conflict") return scsi::kStatusReservationConflict;
  if (t == "task-set-full") return scsi::kStatusTaskSetFull;
  if (t == "aca-active") return scsi::kStatusAcaActive;
  if (t == "task-aborted") return scsi::kStatusTaskAborted;
  std::uint64_t v = 0;
  if (parse_number(t, v) && v <= 0xFF) return static_cast<std::uint8_t>(v);
  return std::nullopt;
}

std::string scsi_status_token(std::uint8_t status) {
  switch (status) {
    case scsi::kStatusGood: return "good";
    case scsi::kStatusCheckCondition: return "check";
    case scsi::kStatusConditionMet: return "condition-met";
    case scsi::kStatusBusy: return "busy";
    case scsi::kStatusReservationConflict: return "reservation-conflict";
    case scsi::kStatusTaskSetFull: return "task-set-full";
    case scsi::kStatusAcaActive: return "aca-active";
    case scsi::kStatusTaskAborted: return "task-aborted";
  }
  return "0x" + hex_u(status, 2);
}

Result<Trace, Error> parse_trace(std::string_view text, const std::string& name) {
  Trace trace;
  trace.name = name;
  int line_no = 0;
  bool header_seen = false;
  while (!text.empty() || line_no == 0) {
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    LineParser lp(name, line_no);
    if (!header_seen) {
      if (line.rfind("# ipsan-trace ", 0) == 0 && line != kTraceHeader) {
        return lp.error("unsupported trace version '" + std::string(line.substr(14)) +
                        "' (this reader knows v1)");
      }
      if (line != kTraceHeader) {
        return lp.error("first line must be '" + std::string(kTraceHeader) + "'");
      }
      header_seen = true;
      continue;
    }
    // Tokens, up to a '#' that starts a token (comment).
    std::vector<std::string_view> tokens;
    std::string comment;
    std::size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
      if (i >= line.size()) break;
      if (line[i] == '#') {
        comment = std::string(line.substr(i + 1));
        while (!comment.empty() && comment.front() == ' ') comment.erase(0, 1);
        break;
      }
      const std::size_t start = i;
      while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
      tokens.push_back(line.substr(start, i - start));
    }
    if (tokens.empty()) continue;
    for (std::string_view t : tokens) {
      for (char ch : t) {
        if (static_cast<unsigned char>(ch) < 0x21 || static_cast<unsigned char>(ch) > 0x7E) {
          return lp.error("non-printable character in line");
        }
      }
    }
    Command c;
    c.line = line_no;
    c.comment = comment;
    const std::string kind = lower(tokens[0]);
    if (kind == "scsi") {
      c.kind = Command::Kind::kScsi;
    } else if (kind == "ata") {
      c.kind = Command::Kind::kAta;
    } else if (kind == "fault") {
      c.kind = Command::Kind::kFault;
    } else {
      return lp.error("unknown line kind '" + std::string(tokens[0]) + "' (scsi, ata, fault)");
    }
    std::set<std::string> seen;
    bool have_cdb = false;
    bool have_cmd = false;
    for (std::size_t t = 1; t < tokens.size(); ++t) {
      const std::string_view tok = tokens[t];
      const std::size_t eq = tok.find('=');
      if (eq == std::string_view::npos || eq == 0) {
        return lp.error("expected key=value, got '" + std::string(tok) + "'");
      }
      const std::string key = lower(tok.substr(0, eq));
      const std::string_view v = tok.substr(eq + 1);
      if (!seen.insert(key).second) return lp.error("duplicate key '" + key + "'");
      if (v.empty()) return lp.error("empty value for '" + key + "'");
      std::uint64_t num = 0;
      auto need_number = [&](std::uint64_t max) -> Result<std::uint64_t, Error> {
        if (!parse_number(v, num) || num > max) {
          return lp.error("bad value '" + std::string(v) + "' for " + key);
        }
        return num;
      };
      if (key == "lun") {
        const std::size_t colon = v.find(':');
        std::uint64_t a = 0, b = 0;
        bool ok = colon == std::string_view::npos
                      ? parse_number(v, b)
                      : parse_number(v.substr(0, colon), a) && parse_number(v.substr(colon + 1), b);
        if (!ok || a > 0xFFFFFFFFu || b > 16383) {
          return lp.error("bad lun '" + std::string(v) + "' (LUN or TARGET:LUN, LUN <= 16383)");
        }
        c.target = static_cast<std::uint32_t>(a);
        c.lun = static_cast<std::uint32_t>(b);
        continue;
      }
      if (c.kind == Command::Kind::kFault) {
        c.fault[key] = std::string(v);
        continue;
      }
      if (key == "out") {
        auto d = lp.data_out(v);
        if (!d) return tl::unexpected(d.error());
        c.out = *d;
      } else if (key == "in") {
        auto d = lp.data_in(v);
        if (!d) return tl::unexpected(d.error());
        c.expect.data = *d;
      } else if (key == "len") {
        auto n = need_number(1u << 30);
        if (!n) return tl::unexpected(n.error());
        c.expect.len = *n;
      } else if (key == "status") {
        if (c.kind == Command::Kind::kScsi) {
          auto s = parse_scsi_status(v);
          if (!s) return lp.error("bad SCSI status '" + std::string(v) + "'");
          c.expect.status = *s;
        } else {
          auto n = need_number(0xFF);
          if (!n) return tl::unexpected(n.error());
          c.expect.status = static_cast<std::uint8_t>(*n);
        }
      } else if (c.kind == Command::Kind::kScsi && key == "cdb") {
        if (!parse_hex_token(v, c.cdb)) return lp.error("cdb: bad hex '" + std::string(v) + "'");
        const std::size_t want = cdb_length_for_opcode(c.cdb[0]);
        const unsigned group = c.cdb[0] >> 5;
        if (want != 0 && c.cdb.size() != want) {
          return lp.error("cdb: opcode 0x" + hex_u(c.cdb[0], 2) + " (group " +
                          std::to_string(group) + ") needs " + std::to_string(want) +
                          " bytes, got " + std::to_string(c.cdb.size()));
        }
        if (group == 3 && (c.cdb[0] != 0x7F || c.cdb.size() < 10 || c.cdb.size() > 260)) {
          return lp.error(
              "cdb: group 3 opcodes other than 7Fh (variable length, 10-260 bytes) "
              "are reserved");
        }
        if (group >= 6 && (c.cdb.size() < 6 || c.cdb.size() > 16)) {
          return lp.error("cdb: vendor-specific CDBs must be 6-16 bytes");
        }
        have_cdb = true;
      } else if (c.kind == Command::Kind::kScsi && key == "edtl") {
        auto n = need_number(1u << 30);
        if (!n) return tl::unexpected(n.error());
        c.edtl = static_cast<std::uint32_t>(*n);
      } else if (c.kind == Command::Kind::kScsi && key == "sense") {
        std::array<std::uint8_t, 3> s{};
        std::string_view rest = v;
        bool ok = true;
        for (int k = 0; k < 3 && ok; ++k) {
          const std::size_t slash = rest.find('/');
          if ((k < 2) == (slash == std::string_view::npos)) {
            ok = false;
            break;
          }
          ok = parse_hex_byte(rest.substr(0, slash), s[static_cast<std::size_t>(k)]);
          rest = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
        }
        if (!ok || s[0] > 0x0F) {
          return lp.error("sense: expected KEY/ASC/ASCQ in hex (e.g. 5/24/00), got '" +
                          std::string(v) + "'");
        }
        c.expect.sense = s;
      } else if (c.kind == Command::Kind::kScsi && key == "info") {
        auto n = need_number(~std::uint64_t{0});
        if (!n) return tl::unexpected(n.error());
        c.expect.info = *n;
      } else if (c.kind == Command::Kind::kScsi && key == "sks") {
        Bytes b;
        if (!parse_hex_token(v, b) || b.size() != 3) {
          return lp.error("sks: expected 3 bytes of hex (e.g. cf0001), got '" + std::string(v) +
                          "'");
        }
        c.expect.sks = std::array<std::uint8_t, 3>{b[0], b[1], b[2]};
      } else if (c.kind == Command::Kind::kScsi && key == "resid") {
        std::int64_t r = 0;
        std::string_view digits = v;
        const bool neg = !digits.empty() && digits[0] == '-';
        if (neg) digits.remove_prefix(1);
        std::uint64_t n = 0;
        if (!parse_number(digits, n) || n > (1u << 30)) {
          return lp.error("resid: bad value '" + std::string(v) + "'");
        }
        r = neg ? -static_cast<std::int64_t>(n) : static_cast<std::int64_t>(n);
        c.expect.resid = r;
      } else if (c.kind == Command::Kind::kAta && key == "cmd") {
        auto n = need_number(0xFF);
        if (!n) return tl::unexpected(n.error());
        c.ata_command = static_cast<std::uint8_t>(*n);
        have_cmd = true;
      } else if (c.kind == Command::Kind::kAta && (key == "feat" || key == "features")) {
        auto n = need_number(0xFFFF);
        if (!n) return tl::unexpected(n.error());
        c.features = static_cast<std::uint16_t>(*n);
      } else if (c.kind == Command::Kind::kAta && key == "count") {
        auto n = need_number(0xFFFF);
        if (!n) return tl::unexpected(n.error());
        c.count = static_cast<std::uint16_t>(*n);
      } else if (c.kind == Command::Kind::kAta && key == "lba") {
        auto n = need_number(0xFFFFFFFFFFFFull);
        if (!n) return tl::unexpected(n.error());
        c.lba = *n;
      } else if (c.kind == Command::Kind::kAta && (key == "dev" || key == "device")) {
        auto n = need_number(0xFF);
        if (!n) return tl::unexpected(n.error());
        c.device = static_cast<std::uint8_t>(*n);
      } else if (c.kind == Command::Kind::kAta && key == "error") {
        auto n = need_number(0xFF);
        if (!n) return tl::unexpected(n.error());
        c.expect.error = static_cast<std::uint8_t>(*n);
      } else if (c.kind == Command::Kind::kAta && key == "count-out") {
        auto n = need_number(0xFFFF);
        if (!n) return tl::unexpected(n.error());
        c.expect.count_out = static_cast<std::uint16_t>(*n);
      } else {
        return lp.error("unknown key '" + key + "' for a " + kind + " line");
      }
    }
    if (c.kind == Command::Kind::kScsi && !have_cdb) return lp.error("scsi line without cdb=");
    if (c.kind == Command::Kind::kAta && !have_cmd) return lp.error("ata line without cmd=");
    if (c.kind == Command::Kind::kFault && c.fault.empty()) {
      return lp.error("fault line without settings");
    }
    trace.commands.push_back(std::move(c));
  }
  if (!header_seen)
    return fail(name + ":1: empty trace (first line must be '" + std::string(kTraceHeader) + "')");
  return trace;
}

Result<Trace, Error> load_trace(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(Errc::kInvalidArgument, path + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (ss.str().size() > (64u << 20)) return fail(path + ": larger than 64 MiB");
  return parse_trace(ss.str(), path);
}

std::string format_command(const Command& c) {
  std::string s;
  const std::string lun = c.target != 0 ? std::to_string(c.target) + ":" + std::to_string(c.lun)
                                        : std::to_string(c.lun);
  auto part_text = [](const DataOut& d) -> std::string {
    switch (d.kind) {
      case DataOut::Kind::kNone: return "";
      case DataOut::Kind::kHex: return to_hex(d.hex);
      case DataOut::Kind::kZeros:
        return d.zeros == 0 ? "zeros" : "zeros:" + std::to_string(d.zeros);
      case DataOut::Kind::kPattern: return pattern_text(d.pattern);
    }
    return "";
  };
  auto out_text = [&]() -> std::string {
    if (c.out.kind == DataOut::Kind::kNone) return "";
    std::string t = " out=" + part_text(c.out);
    for (const DataOut& m : c.out.more) t += "+" + part_text(m);
    return t;
  };
  auto in_text = [&]() -> std::string {
    std::string t;
    if (c.expect.len) t += " len=" + std::to_string(*c.expect.len);
    switch (c.expect.data.kind) {
      case DataInCheck::Kind::kAny: break;
      case DataInCheck::Kind::kHex: t += " in=" + to_hex(c.expect.data.hex); break;
      case DataInCheck::Kind::kPrefix: t += " in=prefix:" + to_hex(c.expect.data.hex); break;
      case DataInCheck::Kind::kCrc32c: t += " in=crc32c:" + hex_u(c.expect.data.crc, 8); break;
      case DataInCheck::Kind::kZeros: t += " in=zeros"; break;
      case DataInCheck::Kind::kPattern: t += " in=" + pattern_text(c.expect.data.pattern); break;
    }
    return t;
  };
  switch (c.kind) {
    case Command::Kind::kScsi:
      s = "scsi lun=" + lun + " cdb=" + to_hex(c.cdb);
      if (c.edtl) s += " edtl=" + std::to_string(*c.edtl);
      s += out_text();
      if (c.expect.status) s += " status=" + scsi_status_token(*c.expect.status);
      if (c.expect.sense) {
        const auto& k = *c.expect.sense;
        s += " sense=" + hex_u(k[0], 1) + "/" + hex_u(k[1], 2) + "/" + hex_u(k[2], 2);
      }
      if (c.expect.info) s += " info=" + std::to_string(*c.expect.info);
      if (c.expect.sks) s += " sks=" + to_hex(ByteSpan(c.expect.sks->data(), 3));
      if (c.expect.resid) s += " resid=" + std::to_string(*c.expect.resid);
      s += in_text();
      break;
    case Command::Kind::kAta:
      s = "ata lun=" + lun + " cmd=0x" + hex_u(c.ata_command, 2);
      if (c.features) s += " feat=0x" + hex_u(c.features, 4);
      if (c.count) s += " count=" + std::to_string(c.count);
      if (c.lba) s += " lba=" + std::to_string(c.lba);
      if (c.device != 0x40) s += " dev=0x" + hex_u(c.device, 2);
      s += out_text();
      if (c.expect.status) s += " status=0x" + hex_u(*c.expect.status, 2);
      if (c.expect.error) s += " error=0x" + hex_u(*c.expect.error, 2);
      if (c.expect.count_out) s += " count-out=" + std::to_string(*c.expect.count_out);
      s += in_text();
      break;
    case Command::Kind::kFault:
      s = "fault lun=" + lun;
      for (const auto& [k, v] : c.fault) s += " " + k + "=" + v;
      break;
  }
  if (!c.comment.empty()) s += "  # " + c.comment;
  return s;
}

std::string format_trace(const Trace& trace) {
  std::string s(kTraceHeader);
  s += "\n";
  for (const Command& c : trace.commands) s += format_command(c) + "\n";
  return s;
}

}  // namespace ipsan::client::trace
