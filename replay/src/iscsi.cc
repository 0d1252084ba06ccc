// iSCSI capture import (ipsan/replay/iscsi.h).
#include "ipsan/replay/iscsi.h"

#include <algorithm>
#include <cstdint>
#include <map>

#include "ipsan/base/crc32c.h"
#include "ipsan/base/log.h"
#include "ipsan/client/scsi/sense.h"
#include "ipsan/replay/tcp_stream.h"

namespace ipsan::replay::iscsi {
namespace {

// Data-in longer than this is checked by CRC32C in trace lines, shorter as hex.
constexpr std::size_t kMaxInlineBytes = 64;

struct CommandState {
  ImportedCommand cmd;
  bool responded = false;
  bool data_overrun = false;
};

// Places a data PDU's bytes at their buffer offset. Offsets beyond what arrived so far (out-of-
// order data sequences, or hostile offsets) count as an overrun: memory stays bounded by the
// bytes actually captured.
void put_at(Bytes& buf, std::uint32_t offset, ByteSpan data, std::uint32_t limit, bool& overrun) {
  if (data.empty()) return;
  const std::uint64_t end = std::uint64_t{offset} + data.size();
  if (end > limit || offset > buf.size()) {
    overrun = true;
    return;
  }
  if (buf.size() < end) buf.resize(static_cast<std::size_t>(end));
  std::copy(data.begin(), data.end(), buf.begin() + offset);
}

using wire::Opcode;
using Digests = wire::DigestConfig;

// A PDU and the stream offset of its BHS (for the capture time of a command).
struct Pdu : wire::Pdu {
  std::uint64_t offset = 0;
};

// One direction of a connection, cut into PDUs.
struct Stream {
  ByteSpan bytes;
  std::size_t pos = 0;
  std::vector<Pdu> pdus;
  std::string stop;  // why parsing stopped early
  std::size_t dropped = 0;  // PDUs dropped for a data digest mismatch
};

// Parses PDUs while `more(pdu)` says continue; stops at the end of the stream or where it broke
// (`stop` says why). Unknown opcodes end the stream too: garbage or lost framing.
template <class Pred>
void parse_until(Stream& s, const Digests& d, Pred&& more) {
  while (s.stop.empty() && s.pos < s.bytes.size()) {
    Pdu p;
    const std::size_t at = s.pos;
    if (s.bytes.size() - at >= wire::kBhsSize && !wire::known_opcode(s.bytes[at])) {
      s.stop = "unknown PDU opcode (garbage or lost framing)";
      return;
    }
    auto r = wire::cut_pdu(s.bytes, s.pos, d, wire::kMaxDataSegmentLength, p);
    if (!r) {
      if (r.error() == wire::PduError::kDataDigest) {
        ++s.dropped;
        continue;
      }
      s.stop = r.error() == wire::PduError::kTruncated
                   ? (s.bytes.size() - at < wire::kBhsSize ? "capture ends inside a PDU header"
                                                           : "capture ends inside a PDU")
                   : wire::to_string(r.error());
      return;
    }
    p.offset = at;
    s.pdus.push_back(std::move(p));
    if (!more(s.pdus.back())) return;
  }
}

void decode_connection(ByteSpan ini, ByteSpan tgt, const std::string& name,
                       const TcpDirection* ini_dir, IscsiCapture& out) {
  Stream is{ini, 0, {}, {}}, ts{tgt, 0, {}, {}};
  // Login: count the target's Login Responses up to the one that enters full feature phase.
  Digests digests;
  std::size_t login_responses = 0;
  bool full_feature = false;
  bool discovery = false;
  parse_until(ts, Digests{}, [&](const Pdu& p) {
    if (p.opcode() != Opcode::kLoginResponse) {
      ts.stop = "PDU before the end of login";
      return false;
    }
    ++login_responses;
    for (const auto& [k, v] : wire::parse_text_lenient(p.data)) {
      if (k == "HeaderDigest") digests.header = v == "CRC32C";
      if (k == "DataDigest") digests.data = v == "CRC32C";
    }
    const bool transit = (p.flags() & 0x80) != 0;
    const std::uint8_t nsg = p.flags() & 0x03;
    if (p.bhs[36] != 0) {  // status class: login failed
      ts.stop = "login rejected by the target";
      return false;
    }
    if (transit && nsg == 3) {
      full_feature = true;
      return false;
    }
    return true;
  });
  std::size_t login_requests = 0;
  parse_until(is, Digests{}, [&](const Pdu& p) {
    if (p.opcode() != Opcode::kLoginRequest) {
      is.stop = "PDU before the end of login";
      return false;
    }
    for (const auto& [k, v] : wire::parse_text_lenient(p.data)) {
      if (k == "SessionType" && v == "Discovery") discovery = true;
    }
    return ++login_requests < login_responses;
  });
  if (!full_feature || login_requests != login_responses) {
    out.skipped.add(ini.empty() && tgt.empty() ? "iSCSI connection without payload"
                                               : "iSCSI connection whose login was not captured");
    return;
  }
  ++out.connections;
  (void)discovery;
  parse_until(is, digests, [](const Pdu&) { return true; });
  parse_until(ts, digests, [](const Pdu&) { return true; });
  out.pdus += is.pdus.size() + ts.pdus.size();
  if (!is.stop.empty()) out.skipped.add("initiator stream: " + is.stop);
  if (!ts.stop.empty()) out.skipped.add("target stream: " + ts.stop);
  out.skipped.add("PDU with a data digest mismatch (dropped)", is.dropped + ts.dropped);

  std::map<std::uint32_t, CommandState> cmds;  // by ITT
  std::vector<std::uint32_t> order;
  std::vector<CommandState> finished;
  for (const Pdu& p : is.pdus) {
    switch (p.opcode()) {
      case Opcode::kScsiCommand: {
        CommandState st;
        ImportedCommand& c = st.cmd;
        c.itt = p.itt();
        c.connection = name;
        c.time = ini_dir != nullptr ? ini_dir->time_at(p.offset) : std::chrono::nanoseconds{};
        c.read = (p.flags() & 0x40) != 0;
        c.write = (p.flags() & 0x20) != 0;
        c.edtl = load_be32(&p.bhs[20]);
        c.cdb.assign(p.bhs.begin() + 32, p.bhs.end());
        // Extended CDB AHS (type 1): AHSLength(2) type(1) reserved(1) then CDB bytes 16..
        for (std::size_t a = 0; a + 4 <= p.ahs.size();) {
          const std::size_t alen = load_be16(&p.ahs[a]);
          const std::uint8_t type = p.ahs[a + 2];
          if (a + 3 + alen > p.ahs.size()) break;
          if (type == 1 && alen > 1) {
            c.cdb.insert(c.cdb.end(), p.ahs.begin() + static_cast<std::ptrdiff_t>(a + 4),
                         p.ahs.begin() + static_cast<std::ptrdiff_t>(a + 3 + alen));
          }
          a += (3 + alen + 3) / 4 * 4;
        }
        const std::size_t want = client::trace::cdb_length_for_opcode(c.cdb[0]);
        if (want != 0 && want <= c.cdb.size()) c.cdb.resize(want);
        const auto lun = wire::decode_lun(p.lun_field());
        if (!lun)
          c.skip = "unsupported LUN addressing";
        else
          c.lun = *lun;
        if (c.edtl > kMaxCommandBytes) c.skip = "transfer larger than the import limit";
        if (c.write && c.skip.empty()) {
          put_at(c.data_out, 0, p.data, c.edtl, st.data_overrun);
        }
        if (cmds.count(c.itt) != 0) {
          CommandState old = std::move(cmds[c.itt]);
          old.cmd.skip = "initiator task tag reused before the response";
          finished.push_back(std::move(old));
        } else {
          order.push_back(c.itt);
        }
        cmds[c.itt] = std::move(st);
        break;
      }
      case Opcode::kDataOut: {
        auto it = cmds.find(p.itt());
        if (it == cmds.end()) {
          out.skipped.add("Data-Out for an unknown task");
          break;
        }
        put_at(it->second.cmd.data_out, load_be32(&p.bhs[40]), p.data, it->second.cmd.edtl,
               it->second.data_overrun);
        break;
      }
      default: break;  // NOP-Out, text, task management, logout, SNACK: not SCSI commands
    }
  }
  for (const Pdu& p : ts.pdus) {
    const Opcode op = p.opcode();
    if (op != Opcode::kDataIn && op != Opcode::kScsiResponse) continue;
    auto it = cmds.find(p.itt());
    if (it == cmds.end() || it->second.responded) {
      out.skipped.add(std::string(wire::opcode_name(static_cast<std::uint8_t>(op))) +
                      " for an unknown task");
      continue;
    }
    CommandState& st = it->second;
    ImportedCommand& c = st.cmd;
    if (op == Opcode::kDataIn) {
      put_at(c.data_in, load_be32(&p.bhs[40]), p.data, c.edtl, st.data_overrun);
      if ((p.flags() & 0x01) != 0) {  // S: status in this PDU
        st.responded = true;
        c.status = p.bhs[3];
        const std::uint32_t r = load_be32(&p.bhs[44]);
        if ((p.flags() & 0x02) != 0) c.resid = r;
        if ((p.flags() & 0x04) != 0) c.resid = -static_cast<std::int64_t>(r);
      }
      continue;
    }
    st.responded = true;
    if (p.bhs[2] != 0) {
      c.skip = "target reported an iSCSI service response failure";
      continue;
    }
    c.status = p.bhs[3];
    const std::uint32_t r = load_be32(&p.bhs[44]);
    if ((p.flags() & 0x02) != 0) c.resid = r;
    if ((p.flags() & 0x04) != 0) c.resid = -static_cast<std::int64_t>(r);
    if (p.data.size() >= 2) {
      const std::size_t slen = std::min<std::size_t>(load_be16(&p.data[0]), p.data.size() - 2);
      c.sense.assign(p.data.begin() + 2, p.data.begin() + 2 + static_cast<std::ptrdiff_t>(slen));
    }
  }
  for (std::uint32_t itt : order) {
    auto it = cmds.find(itt);
    if (it == cmds.end()) continue;
    CommandState& st = it->second;
    if (st.cmd.skip.empty() && !st.responded) st.cmd.skip = "no response captured";
    if (st.cmd.skip.empty() && st.data_overrun) {
      st.cmd.skip = "data beyond the expected length or out of order";
    }
    if (st.cmd.skip.empty() && st.cmd.write && st.cmd.data_out.size() != st.cmd.edtl &&
        st.cmd.status == 0) {
      st.cmd.skip = "data-out incomplete in the capture";
    }
    finished.push_back(std::move(st));
  }
  for (CommandState& st : finished) out.commands.push_back(std::move(st.cmd));
}

std::string hex_comment(ByteSpan data) {
  constexpr std::size_t kMax = 96;
  std::string s = to_hex(data.first(std::min(data.size(), kMax)));
  if (data.size() > kMax) s += "...";
  return s;
}

}  // namespace

// Byte ranges [begin, end) of data-in that a comparison ignores for this command
// (docs/CAPTURE.md "Intended differences"); an end of SIZE_MAX also ignores the length.
MaskList intended_difference_masks(const Bytes& cdb) {
  MaskList m;
  if (cdb.empty()) return m;
  switch (cdb[0]) {
    case 0x12: {  // INQUIRY
      if (cdb.size() < 3) return m;
      if ((cdb[1] & 0x01) == 0) {
        m.emplace_back(2, 3);          // VERSION: the SPC revision claimed
        m.emplace_back(4, 5);          // ADDITIONAL LENGTH (follows from the descriptors)
        m.emplace_back(8, 56);         // vendor, product, revision, vendor specific
        m.emplace_back(58, SIZE_MAX);  // version descriptors and the rest
        return m;
      }
      switch (cdb[2]) {
        case 0x00:  // supported VPD pages: the list of pages each implementation has
        case 0x80:  // unit serial number
        case 0x83:  // device identification: designators
          m.emplace_back(2, SIZE_MAX);
          break;
        case 0xB0:  // block limits: the implementation's transfer and unmap limits
        case 0xB1:  // block device characteristics (rotation rate, form factor)
        case 0xB2:  // logical block provisioning
          m.emplace_back(2, SIZE_MAX);
          break;
        default: break;
      }
      return m;
    }
    case 0x9E:  // READ CAPACITY(16): physical block exponent, LBPME/LBPRZ, lowest aligned LBA
      if (cdb.size() > 1 && (cdb[1] & 0x1F) == 0x10) m.emplace_back(13, 16);
      return m;
    case 0xA0:  // REPORT LUNS: the inventory is the LUN map's, not the target's
      m.emplace_back(0, SIZE_MAX);
      return m;
    case 0x1A:  // MODE SENSE(6) and (10): the mode pages each implementation has
    case 0x5A: m.emplace_back(0, SIZE_MAX); return m;
    case 0xA3:  // REPORT SUPPORTED OPERATION CODES: the command sets differ
      if (cdb.size() > 1 && (cdb[1] & 0x1F) == 0x0C) m.emplace_back(0, SIZE_MAX);
      return m;
    default: return m;
  }
}

IscsiCapture import_iscsi(const CaptureFile& capture, const ImportOptions& options) {
  IscsiCapture out;
  out.skipped.merge(capture.skipped);
  const std::uint16_t port = options.port;
  auto conns = reassemble_tcp(capture.packets, [port](const Packet& p) {
    return port == 0 || p.src.port == port || p.dst.port == port;
  });
  // Port 0: any connection that starts like iSCSI (a Login Request answered by a Login Response).
  auto starts_with = [](const TcpDirection& d, Opcode first) {
    return d.data.size() >= wire::kBhsSize && (d.data[0] & 0x3F) == static_cast<std::uint8_t>(first);
  };
  for (TcpConnection& c : conns) {
    TcpDirection* ini = &c.client;
    TcpDirection* tgt = &c.server;
    if (port != 0) {
      // The initiator is the side whose destination is the iSCSI port.
      if (ini->from.port == port && ini->to.port != port) std::swap(ini, tgt);
    } else {
      if (starts_with(*tgt, Opcode::kLoginRequest) && starts_with(*ini, Opcode::kLoginResponse))
        std::swap(ini, tgt);
      if (!starts_with(*ini, Opcode::kLoginRequest)) {
        out.skipped.add("TCP connection that does not begin with an iSCSI login (ignored)");
        continue;
      }
    }
    for (const auto& [d, side] : {std::pair{ini, "initiator"}, std::pair{tgt, "target"}}) {
      if (!d->gap) continue;
      out.skipped.add(
          std::string(d->cut ? "TCP segment cut by the snap length" : "TCP segment missing") +
          " (" + side + " stream cut there)");
    }
    out.skipped.add("retransmitted TCP segment (duplicate data ignored)",
                    ini->retransmitted + tgt->retransmitted);
    const std::string name = ini->from.to_string() + " -> " + ini->to.to_string();
    decode_connection(ini->data, tgt->data, name, ini, out);
  }
  std::stable_sort(
      out.commands.begin(), out.commands.end(),
      [](const ImportedCommand& a, const ImportedCommand& b) { return a.time < b.time; });
  for (std::size_t i = 0; i < out.commands.size(); ++i) out.commands[i].order = i;
  return out;
}

IscsiCapture import_iscsi_streams(ByteSpan initiator, ByteSpan target) {
  IscsiCapture out;
  decode_connection(initiator, target, "initiator -> target", nullptr, out);
  for (std::size_t i = 0; i < out.commands.size(); ++i) out.commands[i].order = i;
  return out;
}

client::trace::Command to_trace_command(const ImportedCommand& c, bool exact) {
  client::trace::Command t;
  t.kind = client::trace::Command::Kind::kScsi;
  t.lun = c.lun;
  t.cdb = c.cdb;
  if (c.read) t.edtl = c.edtl;
  if (!c.data_out.empty()) {
    t.out.kind = client::trace::DataOut::Kind::kHex;
    t.out.hex = c.data_out;
  }
  t.expect.status = c.status;
  if (c.status == client::scsi::kStatusCheckCondition) {
    if (auto s = client::scsi::decode_sense(c.sense)) {
      t.expect.sense = std::array<std::uint8_t, 3>{s->key, s->asc, s->ascq};
    }
  }
  if (c.resid != 0) t.expect.resid = c.resid;
  if (c.read && c.status == client::scsi::kStatusGood) {
    t.expect.len = c.data_in.size();
    const MaskList m = exact ? MaskList{} : intended_difference_masks(c.cdb);
    if (!m.empty()) {
      // Only the bytes before the first intended difference are checked (docs/CAPTURE.md).
      if (m.back().second == SIZE_MAX) t.expect.len.reset();
      if (m.front().first > 0 && c.data_in.size() > 0) {
        t.expect.data.kind = client::trace::DataInCheck::Kind::kPrefix;
        t.expect.data.hex.assign(c.data_in.begin(),
                                 c.data_in.begin() + static_cast<std::ptrdiff_t>(std::min(
                                                         c.data_in.size(), m.front().first)));
      }
      if (m.back().second == SIZE_MAX) t.expect.resid.reset();
      t.comment = "target answered " + hex_comment(c.data_in);
    } else if (c.data_in.size() <= kMaxInlineBytes) {
      t.expect.data.kind = client::trace::DataInCheck::Kind::kHex;
      t.expect.data.hex = c.data_in;
    } else {
      t.expect.data.kind = client::trace::DataInCheck::Kind::kCrc32c;
      t.expect.data.crc = crc32c(c.data_in);
    }
  }
  return t;
}

client::trace::Trace to_trace(const IscsiCapture& capture, const std::string& name, bool exact) {
  client::trace::Trace t;
  t.name = name;
  for (const ImportedCommand& c : capture.commands) {
    if (!c.skip.empty()) continue;
    t.commands.push_back(to_trace_command(c, exact));
  }
  return t;
}

}  // namespace ipsan::replay::iscsi
