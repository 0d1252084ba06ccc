// SCSI logical unit emulation: the commands answered from local state (SPC-4): INQUIRY and its
// VPD pages, MODE SENSE / MODE SELECT, REPORT SUPPORTED OPERATION CODES.
#include <algorithm>
#include <cstring>
#include <string>

#include "scsi/lu_internal.h"

namespace ipsan::client::scsi {
namespace {

void put_ascii(std::uint8_t* p, std::size_t width, const std::string& s) {
  std::memset(p, ' ', width);
  for (std::size_t i = 0; i < width && i < s.size(); ++i) {
    const char ch = s[i];
    p[i] = (ch >= 0x20 && ch < 0x7F) ? static_cast<std::uint8_t>(ch) : '_';
  }
}

std::string serial_of(const proto::Identity& id) {
  if (!id.serial.empty()) return id.serial.substr(0, 32);
  return to_hex(ByteSpan(id.uuid.data(), id.uuid.size()));
}

Bytes standard_inquiry(const Snapshot& s) {
  Bytes d(96, 0);
  d[0] = s.attached ? 0x00 : 0x20;       // qualifier 000b (connected) or 001b, direct-access device
  if (s.options.removable) d[1] = 0x80;  // RMB
  d[2] = 0x06;                           // SPC-4
  d[3] = 0x12;                           // HISUP, response data format 2
  d[4] = static_cast<std::uint8_t>(d.size() - 5);
  d[7] = 0x02;  // CMDQUE
  put_ascii(&d[8], 8, s.identity.vendor.empty() ? "IPSAN" : s.identity.vendor);
  put_ascii(&d[16], 16, s.identity.product.empty() ? "SAN/IP disk" : s.identity.product);
  put_ascii(&d[32], 4, s.identity.revision.empty() ? "0001" : s.identity.revision);
  // Version descriptors: SAM-5, SPC-4, SBC-3.
  store_be16(&d[58], 0x00A0);
  store_be16(&d[60], 0x0460);
  store_be16(&d[62], 0x04C0);
  return d;
}

// NAA 3h (locally assigned, SPC-4 7.8.6.6.3) from the device uuid: 60 bits of it.
std::array<std::uint8_t, 8> naa_locally_assigned(const proto::Identity& id) {
  std::array<std::uint8_t, 8> n{};
  for (int i = 0; i < 8; ++i) n[i] = id.uuid[i] ^ id.uuid[i + 8];
  n[0] = static_cast<std::uint8_t>(0x30 | (n[0] & 0x0F));
  return n;
}

}  // namespace

std::vector<Bytes> lu_designators(const Snapshot& s) {
  const auto& id = s.identity;
  std::vector<Bytes> out;
  const auto naa = naa_locally_assigned(id);
  Bytes a = {0x01, 0x03, 0x00, 0x08};  // binary, LU, NAA, 8 bytes
  a.insert(a.end(), naa.begin(), naa.end());
  out.push_back(std::move(a));
  // T10 vendor id: vendor (8 bytes) + uuid in hex.
  std::uint8_t vendor[8];
  put_ascii(vendor, 8, id.vendor.empty() ? "IPSAN" : id.vendor);
  const std::string tail = to_hex(ByteSpan(id.uuid.data(), id.uuid.size()));
  Bytes t = {0x02, 0x01, 0x00, static_cast<std::uint8_t>(8 + tail.size())};
  t.insert(t.end(), vendor, vendor + 8);
  t.insert(t.end(), tail.begin(), tail.end());
  out.push_back(std::move(t));
  return out;
}

namespace {

Bytes vpd_page(const Snapshot& s, std::uint8_t page, bool& ok) {
  ok = true;
  const auto& id = s.identity;
  Bytes d(4, 0);
  d[0] = s.attached ? 0x00 : 0x20;
  d[1] = page;
  switch (page) {
    case 0x00: d.insert(d.end(), {0x00, 0x80, 0x83, 0x8F, 0xB0, 0xB1, 0xB2}); break;
    case 0x80: {
      const std::string serial = serial_of(id);
      d.insert(d.end(), serial.begin(), serial.end());
      break;
    }
    case 0x83:
      for (const Bytes& desc : lu_designators(s)) d.insert(d.end(), desc.begin(), desc.end());
      break;
    case 0x8F: {
      // Third-party Copy (SPC-4 7.8.17): the commands of the copy manager (EXTENDED COPY(LID1),
      // RECEIVE COPY RESULTS) and its parameters.
      const std::uint8_t commands[] = {0x00, 0x01, 0x00, 0x08,   // Supported Commands
                                       0x07,                     // COMMANDS SUPPORTED LIST LENGTH
                                       0x83, 0x01, 0x00,         // EXTENDED COPY: LID1
                                       0x84, 0x02, 0x00, 0x03};  // RECEIVE COPY RESULTS: 00h, 03h
      d.insert(d.end(), std::begin(commands), std::end(commands));
      Bytes params(32, 0);  // Parameter Data descriptor (0008h)
      store_be16(&params[0], 0x0008);
      store_be16(&params[2], 28);
      store_be16(&params[8], kXcopyMaxCscds);
      store_be16(&params[10], kXcopyMaxSegments);
      store_be32(&params[12], kXcopyMaxListBytes);
      d.insert(d.end(), params.begin(), params.end());
      break;
    }
    case 0xB0: {
      d.resize(64, 0);
      // WSNZ=0: WRITE SAME with NUMBER OF LOGICAL BLOCKS 0 writes to the end of the medium.
      d[5] = static_cast<std::uint8_t>(max_compare_and_write_blocks(s));
      store_be32(&d[8], s.options.max_command_bytes / s.block_size);
      store_be32(&d[12], id.optimal_transfer_blocks != 0 ? id.optimal_transfer_blocks
                                                         : id.max_transfer_blocks);
      if (id.capabilities & proto::kCapTrim) {
        store_be32(&d[20], s.options.max_write_same_blocks);  // MAXIMUM UNMAP LBA COUNT
        store_be32(&d[24], s.options.max_unmap_descriptors);
        store_be32(&d[28], 1);  // OPTIMAL UNMAP GRANULARITY
      }
      store_be64(&d[36], s.options.max_write_same_blocks);
      // MAXIMUM ATOMIC TRANSFER LENGTH (WRITE ATOMIC(16) in one generic WRITE the server applies
      // all or nothing); ATOMIC ALIGNMENT, ATOMIC TRANSFER LENGTH GRANULARITY, and the atomic
      // boundary fields 0: no constraints, no boundaries.
      store_be32(&d[44], max_atomic_blocks(s));
      break;
    }
    case 0xB1:
      d.resize(64, 0);
      store_be16(&d[4], (id.capabilities & proto::kCapRotational) ? 0 : 1);  // 1: non-rotating
      // WABEREQ = WACEREQ = 01b: after SANITIZE BLOCK/CRYPTO ERASE, reads succeed (zeroes).
      d[7] = 0x50;
      break;
    case 0xB2:
      d.resize(8, 0);
      if (id.capabilities & proto::kCapTrim) {
        d[5] = 0x80 | 0x40 | 0x20 | 0x04;  // LBPU, LBPWS, LBPWS10, LBPRZ
        d[6] = 0x02;                       // thin provisioned
      }
      break;
    default: ok = false; return {};
  }
  store_be16(&d[2], static_cast<std::uint16_t>(d.size() - 4));
  return d;
}

// Mode pages: 01h read-write error recovery, 08h caching, 0Ah control.
// page_control: 0 current, 1 changeable, 2 default, 3 saved.
Bytes mode_page(std::uint8_t page, const Snapshot& s, int page_control) {
  const ModeParameters& m = page_control == 0 ? s.mode : page_control == 2 ? s.defaults : s.saved;
  const bool changeable = page_control == 1;
  Bytes p;
  switch (page) {
    case 0x01:
      p.assign(12, 0);
      p[0] = 0x81;
      p[1] = 0x0A;
      if (!changeable) p[2] = 0xC0;  // AWRE, ARRE
      break;
    case 0x08:
      p.assign(20, 0);
      p[0] = 0x88;
      p[1] = 0x12;
      p[2] = changeable ? 0x05 : static_cast<std::uint8_t>((m.wce ? 0x04 : 0) | (m.rcd ? 0x01 : 0));
      break;
    case 0x0A:
      p.assign(12, 0);
      p[0] = 0x8A;
      p[1] = 0x0A;
      p[2] = changeable ? 0x04 : (m.d_sense ? 0x04 : 0);
      p[3] = changeable ? 0x00 : 0x10;  // queue algorithm modifier 1: unrestricted reordering
      p[4] = changeable ? 0x08 : (m.swp ? 0x08 : 0);
      break;
    default: break;
  }
  return p;
}

constexpr std::uint8_t kModePages[] = {0x01, 0x08, 0x0A};

}  // namespace

Bytes inquiry_data_no_lun(std::uint32_t allocation_length) {
  Bytes d(36, 0);
  d[0] = 0x7F;  // qualifier 011b: no logical unit; type 1Fh
  d[2] = 0x06;
  d[3] = 0x12;
  d[4] = 31;
  put_ascii(&d[8], 8, "IPSAN");
  put_ascii(&d[16], 16, "no LUN");
  put_ascii(&d[32], 4, "0001");
  if (d.size() > allocation_length) d.resize(allocation_length);
  return d;
}

void LuHandlers::inquiry(CmdPtr c) {
  const Bytes& cdb = c->command.cdb;
  const bool evpd = cdb[1] & 0x01;
  const std::uint8_t page = cdb[2];
  const std::uint16_t alloc = load_be16(&cdb[3]);
  Bytes d;
  if (!evpd) {
    if (page != 0) return c->check(invalid_field_in_cdb(2));
    d = standard_inquiry(c->s);
  } else {
    bool ok = false;
    d = vpd_page(c->s, page, ok);
    if (!ok) return c->check(invalid_field_in_cdb(2));
  }
  if (d.size() > alloc) d.resize(alloc);
  c->good(std::move(d));
}

void LuHandlers::mode_sense(CmdPtr c) {
  const Bytes& cdb = c->command.cdb;
  const bool ten = cdb[0] == 0x5A;
  const bool dbd = cdb[1] & 0x08;
  const bool llbaa = ten && (cdb[1] & 0x10);
  const int pc = cdb[2] >> 6;
  const std::uint8_t page = cdb[2] & 0x3F;
  const std::uint8_t subpage = cdb[3];
  const std::uint32_t alloc = ten ? load_be16(&cdb[7]) : cdb[4];
  std::vector<std::uint8_t> pages;
  if (page == 0x3F) {
    pages.assign(std::begin(kModePages), std::end(kModePages));
  } else if (std::find(std::begin(kModePages), std::end(kModePages), page) !=
             std::end(kModePages)) {
    pages.push_back(page);
  } else {
    return c->check(invalid_field_in_cdb(2, 5));
  }
  if (subpage != 0x00 && subpage != 0xFF) return c->check(invalid_field_in_cdb(3));
  const bool wp =
      (c->s.identity.capabilities & proto::kCapReadOnly) || c->s.options.read_only || c->s.mode.swp;
  const std::size_t header = ten ? 8 : 4;
  Bytes d(header, 0);
  d[ten ? 3 : 2] = static_cast<std::uint8_t>((wp ? 0x80 : 0) | 0x10);  // WP, DPOFUA
  if (!dbd) {
    if (llbaa) {
      d[4] = 0x01;  // LONGLBA
      d[7] = 16;
      Bytes b(16, 0);
      store_be64(&b[0], c->s.block_count);
      store_be32(&b[12], c->s.block_size);
      d.insert(d.end(), b.begin(), b.end());
    } else {
      d[ten ? 7 : 3] = 8;
      Bytes b(8, 0);
      store_be32(&b[0], c->s.block_count > 0xFFFFFFFFu
                            ? 0xFFFFFFFFu
                            : static_cast<std::uint32_t>(c->s.block_count));
      b[5] = static_cast<std::uint8_t>(c->s.block_size >> 16);
      b[6] = static_cast<std::uint8_t>(c->s.block_size >> 8);
      b[7] = static_cast<std::uint8_t>(c->s.block_size);
      d.insert(d.end(), b.begin(), b.end());
    }
  }
  for (std::uint8_t p : pages) {
    const Bytes bytes = mode_page(p, c->s, pc);
    d.insert(d.end(), bytes.begin(), bytes.end());
  }
  if (ten) {
    store_be16(&d[0], static_cast<std::uint16_t>(d.size() - 2));
  } else {
    d[0] = static_cast<std::uint8_t>(d.size() - 1);
  }
  if (d.size() > alloc) d.resize(alloc);
  c->good(std::move(d));
}

void LuHandlers::mode_select(CmdPtr c) {
  const Bytes& cdb = c->command.cdb;
  const bool ten = cdb[0] == 0x55;
  const bool save = cdb[1] & 0x01;
  if (!(cdb[1] & 0x10)) return c->check(invalid_field_in_cdb(1, 4));  // PF: only SPC format
  const std::size_t len = ten ? load_be16(&cdb[7]) : cdb[4];
  if (len == 0) return c->good();
  const Bytes& data = c->command.data_out;
  const std::size_t n = std::min(len, data.size());
  const std::uint8_t* p = data.data();
  const std::size_t header = ten ? 8 : 4;
  const Sense length_error = make_sense(kIllegalRequest, asc::kParameterListLengthError);
  if (n < header) return c->check(length_error);
  const std::size_t bdl = ten ? load_be16(&p[6]) : p[3];
  if (header + bdl > n) return c->check(length_error);
  if (bdl != 0) {
    const bool longlba = ten && (p[4] & 0x01);
    if (bdl != (longlba ? 16u : 8u)) {
      return c->check(invalid_field_in_parameter_list(ten ? 6 : 3));
    }
    const std::uint32_t block_length =
        longlba ? load_be32(&p[header + 12])
                : (std::uint32_t{p[header + 5]} << 16) | load_be16(&p[header + 6]);
    if (block_length != c->s.block_size) {
      return c->check(
          invalid_field_in_parameter_list(static_cast<std::uint16_t>(header + (longlba ? 12 : 5))));
    }
  }
  ModeParameters m = c->s.mode;
  std::size_t off = header + bdl;
  while (off < n) {
    if (off + 2 > n) return c->check(length_error);
    const std::uint8_t code = p[off] & 0x3F;
    if (p[off] & 0x40)
      return c->check(invalid_field_in_parameter_list(static_cast<std::uint16_t>(off), 6));
    const std::size_t page_len = p[off + 1];
    if (off + 2 + page_len > n) return c->check(length_error);
    if (std::find(std::begin(kModePages), std::end(kModePages), code) == std::end(kModePages)) {
      return c->check(invalid_field_in_parameter_list(static_cast<std::uint16_t>(off), 5));
    }
    const Bytes current = mode_page(code, c->s, 0);
    const Bytes changeable = mode_page(code, c->s, 1);
    if (page_len != current[1]) {
      return c->check(invalid_field_in_parameter_list(static_cast<std::uint16_t>(off + 1)));
    }
    for (std::size_t i = 2; i < current.size(); ++i) {
      const std::uint8_t diff =
          static_cast<std::uint8_t>((p[off + i] ^ current[i]) & ~changeable[i]);
      if (diff != 0) {
        int bit = 7;
        while (!(diff & (1u << bit))) --bit;
        return c->check(invalid_field_in_parameter_list(static_cast<std::uint16_t>(off + i), bit));
      }
    }
    if (code == 0x08) {
      m.wce = p[off + 2] & 0x04;
      m.rcd = p[off + 2] & 0x01;
    } else if (code == 0x0A) {
      m.d_sense = p[off + 2] & 0x04;
      m.swp = p[off + 4] & 0x08;
    }
    off += 2 + page_len;
  }
  {
    std::lock_guard<std::mutex> lock(c->lu.mu_);
    c->lu.current_ = m;
    if (save) c->lu.saved_ = m;
  }
  c->s.mode = m;  // e.g. D_SENSE applies from now on
  c->good_write(len);
}

void LuHandlers::report_supported_opcodes(CmdPtr c) {
  const Bytes& cdb = c->command.cdb;
  const bool rctd = cdb[2] & 0x80;
  const int options = cdb[2] & 0x07;
  const std::uint8_t req_op = cdb[3];
  const std::uint16_t req_sa = load_be16(&cdb[4]);
  const std::uint32_t alloc = load_be32(&cdb[6]);
  // Command timeouts descriptor (SPC-4 6.35.4): no nominal or recommended timeout given.
  const std::uint8_t timeouts[12] = {0x00, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  Bytes d;
  if (options == 0) {
    d.assign(4, 0);
    for (const auto& e : op_table()) {
      if (!op_offered(e, c->s)) continue;
      std::uint8_t desc[8] = {e.opcode,
                              0,
                              static_cast<std::uint8_t>(e.sa >> 8),
                              static_cast<std::uint8_t>(e.sa),
                              0,
                              static_cast<std::uint8_t>((rctd ? 0x02 : 0) | (e.has_sa ? 0x01 : 0)),
                              0,
                              e.cdb_length};
      d.insert(d.end(), desc, desc + 8);
      if (rctd) d.insert(d.end(), timeouts, timeouts + 12);
    }
    store_be32(&d[0], static_cast<std::uint32_t>(d.size() - 4));
  } else if (options >= 1 && options <= 3) {
    const bool has_sa = opcode_has_service_actions(req_op);
    if (options == 1 && has_sa) return c->check(invalid_field_in_cdb(2, 2));
    if (options == 2 && !has_sa) return c->check(invalid_field_in_cdb(2, 2));
    const OpInfoEntry* e = find_op(req_op, has_sa ? req_sa : 0);
    if (has_sa && req_sa > 0x1F) e = nullptr;
    if (e != nullptr && !op_offered(*e, c->s)) e = nullptr;
    d.assign(4, 0);
    if (e == nullptr) {
      d[1] = 0x01;  // not supported
    } else {
      d[1] = static_cast<std::uint8_t>((rctd ? 0x80 : 0) | 0x03);  // supported per standard
      store_be16(&d[2], e->cdb_length);
      const std::size_t at = d.size();
      d.insert(d.end(), e->usage.begin(), e->usage.begin() + e->cdb_length);
      // The service action code sits where the CDB has it (SPC-4 6.35.3).
      if (e->has_sa) d[at + 1] = static_cast<std::uint8_t>((d[at + 1] & 0xE0) | e->sa);
      if (rctd) d.insert(d.end(), timeouts, timeouts + 12);
    }
  } else {
    return c->check(invalid_field_in_cdb(2, 2));
  }
  if (d.size() > alloc) d.resize(alloc);
  c->good(std::move(d));
}

}  // namespace ipsan::client::scsi
