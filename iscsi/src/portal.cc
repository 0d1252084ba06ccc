// iSCSI target portal: accept loop, per-connection PDU state machine, SCSI task handling (see
// ipsan/iscsi/portal.h).
//
// Sequence numbers (RFC 7143 4.2.2): non-immediate commands carry CmdSN; those outside
// [ExpCmdSN, MaxCmdSN] are ignored, those ahead of ExpCmdSN wait until the gap is filled. StatSN
// advances with every status-bearing PDU (SCSI Response, Data-In with S, NOP-In reply, TMF, Text,
// Logout, Reject). R2Ts and Data-In carry the next StatSN without consuming it.
#include "ipsan/iscsi/portal.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <cstdio>
#include <deque>
#include <map>
#include <set>

#include "ipsan/base/log.h"
#include "ipsan/client/scsi/sense.h"

namespace ipsan::iscsi {

namespace asio = boost::asio;
using asio::ip::tcp;
namespace scsi = client::scsi;

std::string default_iqn(std::string_view name) {
  return "iqn.2026-11.org.ipsan:" + std::string(name);
}

namespace {

constexpr const char* kLog = "iscsi";

bool sn_lt(std::uint32_t a, std::uint32_t b) {  // serial number arithmetic (RFC 1982)
  return a != b && static_cast<std::int32_t>(a - b) < 0;
}

// Single-level LUN field -> LUN number (wire::decode_lun); ~0 (never mapped) for anything else.
std::uint32_t lun_number(std::uint64_t field) { return decode_lun(field).value_or(~0u); }

std::string isid_hex(const std::uint8_t* isid) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%02x%02x%02x%02x%02x%02x", isid[0], isid[1], isid[2], isid[3],
                isid[4], isid[5]);
  return buf;
}

struct Task {
  std::uint32_t itt = 0;
  std::uint64_t lun_field = 0;
  std::uint32_t lun = 0;
  std::uint32_t cmdsn = 0;
  Bytes cdb;
  std::uint32_t edtl = 0;
  bool read = false;
  bool write = false;
  Bytes data;                  // data-out, edtl bytes once complete
  std::uint32_t received = 0;  // data-out bytes so far (in order)
  bool unsolicited_done = false;
  std::uint32_t expected_datasn = 0;  // of the current Data-Out sequence
  std::uint32_t r2t_sn = 0;
  std::uint32_t ttt = kReservedTag;  // of the outstanding R2T
  std::uint32_t r2t_end = 0;         // end offset of the outstanding R2T
  bool issued = false;
  bool aborted = false;
};
using TaskPtr = std::shared_ptr<Task>;

}  // namespace

struct Portal::Impl : std::enable_shared_from_this<Portal::Impl> {
  Impl(asio::io_context& io_ctx, scsi::Bus& b, std::vector<PortalTarget> t, PortalOptions o)
      : io(io_ctx), bus(b), targets(std::move(t)), options(std::move(o)), acceptor(io_ctx) {
    security = options.security;
    security.initiator_allowed = [this](std::string_view target, std::string_view initiator) {
      return initiator_allowed(target, initiator);
    };
  }

  class Connection;

  asio::io_context& io;
  scsi::Bus& bus;
  std::vector<PortalTarget> targets;
  PortalOptions options;
  tcp::acceptor acceptor;
  std::set<std::shared_ptr<Connection>> connections;
  std::uint16_t next_tsih = 1;
  std::uint32_t next_ttt = 1;
  PortalStats stats;
  bool stopped = false;
  LoginSecurity security;       // options.security + the targets' allow-lists
  std::uint64_t next_serial = 0;  // accept order
  std::size_t over_cap = 0;     // connections kept only to answer "out of resources"
  static constexpr std::size_t kMaxOverCap = 16;

  const PortalTarget* find_target(std::string_view name) const {
    for (const auto& t : targets) {
      if (t.name == name) return &t;
    }
    return nullptr;
  }
  bool initiator_allowed(std::string_view target, std::string_view initiator) const {
    const PortalTarget* t = find_target(target);
    if (t == nullptr) return false;
    if (t->allowed_initiators.empty()) return true;
    return std::find(t->allowed_initiators.begin(), t->allowed_initiators.end(), initiator) !=
           t->allowed_initiators.end();
  }

  void accept();
  void admit(tcp::socket socket);
  void remove(const std::shared_ptr<Connection>& c);
  // Session reinstatement (RFC 7143 6.3.5): an older session of the same I_T nexus ends.
  void reinstate(const std::string& nexus, const Connection* keep);
  // TARGET WARM/COLD RESET: every LU of the target is reset.
  void target_reset(std::uint32_t bus_target, bool cold, Connection* from);
};

class Portal::Impl::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(std::shared_ptr<Impl> portal, tcp::socket socket)
      : portal_(std::move(portal)),
        socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        login_(portal_->options.limits,
               [p = portal_.get()](std::string_view n) { return p->find_target(n) != nullptr; },
               1, &portal_->security),
        serial_(portal_->next_serial++) {
    boost::system::error_code ec;
    auto ep = socket_.remote_endpoint(ec);
    peer_ = ec ? "?" : ep.address().to_string() + ":" + std::to_string(ep.port());
    auto local = socket_.local_endpoint(ec);
    local_ = ec ? "127.0.0.1:3260" : local.address().to_string() + ":" + std::to_string(local.port());
    socket_.set_option(tcp::no_delay(true), ec);
  }

  void start(bool over_cap) {
    over_cap_ = over_cap;
    last_rx_ = std::chrono::steady_clock::now();
    if (portal_->options.login_timeout.count() > 0) {
      arm(portal_->options.login_timeout);
    }
    read_bhs();
  }

  bool logged_in() const { return full_feature_; }
  bool over_cap() const { return over_cap_; }
  std::uint64_t serial() const { return serial_; }

  void close(const std::string& why, bool violation) {
    if (closed_) return;
    closed_ = true;
    timer_.cancel();
    if (violation) {
      ++portal_->stats.resets;
      IPSAN_LOG(LogLevel::kWarn, kLog, peer_, ": connection reset: ", why);
    } else {
      IPSAN_LOG(LogLevel::kInfo, kLog, peer_, ": connection closed: ", why);
    }
    for (auto& [itt, t] : tasks_) t->aborted = true;
    tasks_.clear();
    held_.clear();
    // Nexus loss before the socket closes: once the initiator sees the close, it is done.
    if (full_feature_ && !params_.discovery && !nexus_ended_) {
      nexus_ended_ = true;
      portal_->bus.nexus_lost(bus_target_, nexus_);
    }
    boost::system::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
    portal_->remove(shared_from_this());
  }

  // Ends this session because a newer login of the same nexus replaced it.
  void reinstated() {
    nexus_ended_ = true;
    close("session reinstated by a new login", false);
  }

  const std::string& nexus() const { return nexus_; }
  bool normal_session() const { return full_feature_ && !params_.discovery; }
  std::uint32_t bus_target() const { return bus_target_; }

  // Aborts every task of this connection (optionally only one LUN) without responses.
  void abort_tasks(std::optional<std::uint32_t> lun) {
    for (auto it = tasks_.begin(); it != tasks_.end();) {
      if (!lun || it->second->lun == *lun) {
        it->second->aborted = true;
        it = tasks_.erase(it);
      } else {
        ++it;
      }
    }
  }

 private:
  // ---------------------------------------------------------------------------------------------
  // Timeouts: the login must finish within login_timeout; a logged-in connection that stays
  // silent is pinged with a NOP-In and closed if it stays silent for another idle period.

  void arm(std::chrono::milliseconds after) {
    timer_.expires_after(after);
    std::weak_ptr<Connection> weak = weak_from_this();
    timer_.async_wait([weak](boost::system::error_code ec) {
      auto self = weak.lock();
      if (ec || !self || self->closed_) return;
      self->on_timer();
    });
  }

  void on_timer() {
    if (!full_feature_) {
      ++portal_->stats.timeouts;
      return close("login not completed within " +
                       std::to_string(portal_->options.login_timeout.count()) + " ms",
                   false);
    }
    const auto idle = portal_->options.idle_timeout;
    if (idle.count() <= 0) return;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_rx_ < idle) {
      ping_sent_ = false;
      arm(std::chrono::duration_cast<std::chrono::milliseconds>(idle - (now - last_rx_)) +
          std::chrono::milliseconds(1));
      return;
    }
    if (!tasks_.empty() || logging_out_) return arm(idle);  // waiting on us, not idle
    if (ping_sent_) {
      ++portal_->stats.timeouts;
      return close("idle: no answer to a NOP-In ping", false);
    }
    ping_sent_ = true;
    Pdu ping;  // NOP-In asking for a NOP-Out (RFC 7143 11.19)
    ping.set_opcode(Opcode::kNopIn);
    ping.bhs[1] = 0x80;
    ping.set_u64(8, 0);
    ping.set_u32(16, kReservedTag);
    ping.set_u32(20, ping_ttt_ = portal_->next_ttt++);
    send(ping);
    // The answer (any PDU) moves last_rx_; the next expiry then re-arms for the full period.
    arm(idle / 2 > std::chrono::milliseconds(0) ? idle / 2 : idle);
  }

  // ---------------------------------------------------------------------------------------------
  // Reading.

  std::size_t max_data() const {
    return full_feature_ ? params_.target_max_recv_dsl : portal_->options.limits.max_login_data;
  }

  void read_bhs() {
    auto self = shared_from_this();
    asio::async_read(socket_, asio::buffer(bhs_), [self](boost::system::error_code ec, std::size_t) {
      if (self->closed_) return;
      if (ec) return self->close(ec == asio::error::eof ? "peer closed" : ec.message(), false);
      self->on_bhs();
    });
  }

  void on_bhs() {
    auto ext = pdu_extent(bhs_.data(), digests_, max_data());
    if (!ext) return close(to_string(ext.error()), true);
    rest_.resize(ext->rest);
    if (rest_.empty()) return on_pdu();
    auto self = shared_from_this();
    asio::async_read(socket_, asio::buffer(rest_), [self](boost::system::error_code ec, std::size_t) {
      if (self->closed_) return;
      if (ec) return self->close(ec == asio::error::eof ? "peer closed mid-PDU" : ec.message(), false);
      self->on_pdu();
    });
  }

  void on_pdu() {
    last_rx_ = std::chrono::steady_clock::now();
    ping_sent_ = false;
    Pdu pdu;
    auto r = parse_pdu(bhs_.data(), rest_, digests_, max_data(), pdu);
    if (!r) {
      if (r.error() == PduError::kDataDigest) {
        // The header is intact: drop the PDU with a Reject (RFC 7143 7.8), the stream goes on.
        reject(pdu, RejectReason::kDataDigestError);
        return read_bhs();
      }
      if (r.error() == PduError::kBadAhs) {
        reject(pdu, RejectReason::kInvalidPduField);
        return read_bhs();
      }
      return close(to_string(r.error()), true);
    }
    dispatch(std::move(pdu));
    // After a failed login or a logout nothing more is read; the connection closes once the
    // last response is out.
    if (!closed_ && !close_after_flush_) read_bhs();
  }

  void dispatch(Pdu pdu) {
    const Opcode op = pdu.opcode();
    if (!full_feature_) {
      if (op != Opcode::kLoginRequest) {
        return close(std::string("PDU before login complete: ") +
                         opcode_name(static_cast<std::uint8_t>(op)),
                     true);
      }
      return on_login(pdu);
    }
    if (logging_out_) return;  // nothing more after a Logout Request
    // ExpStatSN acknowledges our responses; with ErrorRecoveryLevel 0 nothing is kept for
    // retransmission, so an ExpStatSN ahead of us is only logged.
    if (op == Opcode::kScsiCommand || op == Opcode::kNopOut || op == Opcode::kTextRequest ||
        op == Opcode::kLogoutRequest || op == Opcode::kTaskMgmtRequest) {
      const std::uint32_t exp_stat = pdu.u32(28);
      if (sn_lt(stat_sn_, exp_stat)) {
        IPSAN_LOG(LogLevel::kDebug, kLog, peer_, ": ExpStatSN ", exp_stat, " ahead of StatSN ",
                  stat_sn_);
      }
    }
    switch (op) {
      case Opcode::kScsiCommand:
      case Opcode::kNopOut:
      case Opcode::kTextRequest:
      case Opcode::kLogoutRequest:
      case Opcode::kTaskMgmtRequest:
        return ordered(std::move(pdu));
      case Opcode::kDataOut:
        return on_data_out(pdu);
      case Opcode::kLoginRequest:
        reject(pdu, RejectReason::kProtocolError);
        return close("Login Request in full feature phase", true);
      case Opcode::kSnackRequest:
        return reject(pdu, RejectReason::kProtocolError);  // ErrorRecoveryLevel 0: no SNACK
      default:
        return reject(pdu, RejectReason::kCommandNotSupported);
    }
  }

  // CmdSN ordering for the commands that carry one.
  void ordered(Pdu pdu) {
    const std::uint32_t cmdsn = pdu.u32(24);
    if (pdu.immediate()) return execute(std::move(pdu));
    if (sn_lt(cmdsn, exp_cmd_sn_) || sn_lt(max_cmd_sn(), cmdsn)) {
      IPSAN_LOG(LogLevel::kInfo, kLog, peer_, ": CmdSN ", cmdsn, " outside [", exp_cmd_sn_, ", ",
                max_cmd_sn(), "]: ignored");
      return;
    }
    if (cmdsn != exp_cmd_sn_) {
      if (held_.size() >= portal_->options.cmdsn_window) return;
      held_.emplace(cmdsn, std::move(pdu));
      return;
    }
    ++exp_cmd_sn_;
    execute(std::move(pdu));
    while (!closed_) {
      auto it = held_.find(exp_cmd_sn_);
      if (it == held_.end()) break;
      Pdu next = std::move(it->second);
      held_.erase(it);
      ++exp_cmd_sn_;
      execute(std::move(next));
    }
  }

  void execute(Pdu pdu) {
    switch (pdu.opcode()) {
      case Opcode::kScsiCommand: return on_scsi_command(pdu);
      case Opcode::kNopOut: return on_nop_out(pdu);
      case Opcode::kTextRequest: return on_text(pdu);
      case Opcode::kLogoutRequest: return on_logout(pdu);
      case Opcode::kTaskMgmtRequest: return on_tmf(pdu);
      default: return;
    }
  }

  std::uint32_t max_cmd_sn() const { return exp_cmd_sn_ + portal_->options.cmdsn_window - 1; }

  // ---------------------------------------------------------------------------------------------
  // Writing.

  void send(Pdu& pdu, bool status = false) {
    if (closed_) return;
    const Opcode op = pdu.opcode();
    if (op != Opcode::kLoginResponse) {
      if (op != Opcode::kR2t && op != Opcode::kDataIn) {
        pdu.set_u32(24, stat_sn_);
      }
      pdu.set_u32(28, exp_cmd_sn_);
      pdu.set_u32(32, max_cmd_sn());
    }
    if (status) {
      pdu.set_u32(24, stat_sn_);
      ++stat_sn_;
    }
    out_.push_back(encode_pdu(pdu, digests_));
    if (!writing_) write_next();
  }

  void write_next() {
    if (out_.empty() || closed_) {
      writing_ = false;
      if (close_after_flush_ && !closed_) close(close_reason_, false);
      return;
    }
    writing_ = true;
    auto self = shared_from_this();
    asio::async_write(socket_, asio::buffer(out_.front()),
                      [self](boost::system::error_code ec, std::size_t) {
                        if (self->closed_) return;
                        self->out_.pop_front();
                        if (ec) return self->close(ec.message(), false);
                        self->write_next();
                      });
  }

  void close_after_flush(std::string why) {
    close_after_flush_ = true;
    close_reason_ = std::move(why);
    if (!writing_) close(close_reason_, false);
  }

  void reject(const Pdu& bad, RejectReason reason) {
    ++portal_->stats.rejects;
    IPSAN_LOG(LogLevel::kInfo, kLog, peer_, ": reject ", opcode_name(bad.bhs[0]), " reason ",
              static_cast<int>(reason));
    Pdu r;
    r.set_opcode(Opcode::kReject);
    r.bhs[1] = 0x80;
    r.bhs[2] = static_cast<std::uint8_t>(reason);
    r.set_u32(16, kReservedTag);
    r.data.assign(bad.bhs.begin(), bad.bhs.end());
    if (full_feature_) {
      send(r, true);
    } else {
      out_.push_back(encode_pdu(r, digests_));
      if (!writing_) write_next();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Login.

  void on_login(const Pdu& req) {
    const std::uint8_t flags = req.flags();
    const bool transit = flags & 0x80;
    const bool cont = flags & 0x40;
    const std::uint8_t csg = (flags >> 2) & 3;
    const std::uint8_t nsg = flags & 3;
    if (!login_started_) {
      login_started_ = true;
      std::copy(req.bhs.begin() + 8, req.bhs.begin() + 14, isid_.begin());
      tsih_ = req.u16(14);
      cid_ = req.u16(20);
      exp_cmd_sn_ = req.u32(24);
      stat_sn_ = req.u32(28);
      ++portal_->stats.connections;
    }
    Pdu resp;
    resp.set_opcode(Opcode::kLoginResponse);
    std::copy(req.bhs.begin() + 8, req.bhs.begin() + 14, resp.bhs.begin() + 8);
    resp.set_u32(16, req.itt());
    auto finish = [&](std::uint16_t status, const std::string& why) {
      ++portal_->stats.login_failures;
      IPSAN_LOG(LogLevel::kWarn, kLog, peer_, ": login failed (", status >> 8, "/", status & 0xFF,
                "): ", why);
      resp.bhs[1] = static_cast<std::uint8_t>(csg << 2);
      resp.bhs[36] = static_cast<std::uint8_t>(status >> 8);
      resp.bhs[37] = static_cast<std::uint8_t>(status);
      resp.set_u32(24, stat_sn_);
      resp.set_u32(28, exp_cmd_sn_);
      resp.set_u32(32, max_cmd_sn());
      out_.push_back(encode_pdu(resp, digests_));
      if (!writing_) write_next();
      close_after_flush(why);
    };
    if (over_cap_) return finish(kLoginOutOfResources, "too many connections");
    if (req.bhs[3] > 0) return finish(kLoginUnsupportedVersion, "version-min above 0");
    if (tsih_ != 0) return finish(kLoginSessionDoesNotExist, "adding a connection to a session");
    if (std::equal(isid_.begin(), isid_.end(), req.bhs.begin() + 8) == false) {
      return finish(kLoginInitiatorError, "ISID changed during login");
    }
    LoginStep step = login_.on_request(csg, nsg, transit, cont, req.data);
    if (step.status == kLoginAuthFailure || step.status == kLoginAuthorizationFailure) {
      ++portal_->stats.auth_failures;
    }
    if (step.status != kLoginSuccess) return finish(step.status, step.reason);
    if (step.complete) {
      params_ = login_.params();
      if (!params_.discovery) {
        const PortalTarget* t = portal_->find_target(params_.target_name);
        bus_target_ = t->bus_target;
        nexus_ = params_.initiator_name + ",i,0x" + isid_hex(isid_.data());
        portal_->reinstate(nexus_, this);
      }
      tsih_ = portal_->next_tsih++;
      if (portal_->next_tsih == 0) portal_->next_tsih = 1;
      ++portal_->stats.logins;
      IPSAN_LOG(LogLevel::kInfo, kLog, peer_, ": login ", params_.initiator_name, " -> ",
                params_.discovery ? "discovery" : params_.target_name, " tsih ", tsih_);
    }
    resp.bhs[1] = static_cast<std::uint8_t>((step.transit ? 0x80 : 0) | (step.csg << 2) |
                                            (step.transit ? step.nsg : 0));
    resp.set_u16(14, step.complete ? tsih_ : 0);
    resp.data = encode_text(step.keys);
    resp.set_u32(24, stat_sn_++);
    resp.set_u32(28, exp_cmd_sn_);
    resp.set_u32(32, max_cmd_sn());
    out_.push_back(encode_pdu(resp, digests_));
    if (!writing_) write_next();
    if (step.complete) {
      full_feature_ = true;
      digests_ = params_.digests;  // digests start with the first full-feature PDU
      timer_.cancel();
      if (portal_->options.idle_timeout.count() > 0) arm(portal_->options.idle_timeout);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Full feature phase.

  void on_nop_out(const Pdu& req) {
    if (req.itt() == kReservedTag) return;  // a reply to a NOP-In ping, or a one-way ping
    Pdu r;
    r.set_opcode(Opcode::kNopIn);
    r.bhs[1] = 0x80;
    std::copy(req.bhs.begin() + 8, req.bhs.begin() + 16, r.bhs.begin() + 8);
    r.set_u32(16, req.itt());
    r.set_u32(20, kReservedTag);
    r.data = req.data;
    if (r.data.size() > params_.initiator_max_recv_dsl) r.data.resize(params_.initiator_max_recv_dsl);
    send(r, true);
  }

  void on_text(const Pdu& req) {
    Pdu r;
    r.set_opcode(Opcode::kTextResponse);
    r.set_u32(16, req.itt());
    if (req.u32(20) != kReservedTag && req.u32(20) == text_ttt_ && !text_rest_.empty()) {
      // The initiator asks for the next part of a long answer.
    } else {
      text_rest_.clear();
      auto pairs = parse_text(req.data);
      if (!pairs) return reject(req, RejectReason::kProtocolError);
      TextPairs answer;
      for (const auto& [k, v] : *pairs) {
        if (k == "SendTargets") {
          std::vector<std::string> names;  // only the targets this initiator may log in to
          for (const auto& t : portal_->targets) {
            if (portal_->initiator_allowed(t.name, params_.initiator_name)) names.push_back(t.name);
          }
          auto st = send_targets_response(v, names, local_ + ",1",
                                          params_.discovery ? "" : params_.target_name);
          answer.insert(answer.end(), st.begin(), st.end());
        } else {
          answer.emplace_back(k, "NotUnderstood");
        }
      }
      text_rest_ = encode_text(answer);
    }
    const std::size_t n = std::min<std::size_t>(text_rest_.size(), params_.initiator_max_recv_dsl);
    r.data.assign(text_rest_.begin(), text_rest_.begin() + static_cast<std::ptrdiff_t>(n));
    text_rest_.erase(text_rest_.begin(), text_rest_.begin() + static_cast<std::ptrdiff_t>(n));
    if (text_rest_.empty()) {
      r.bhs[1] = 0x80;
      r.set_u32(20, kReservedTag);
      text_ttt_ = kReservedTag;
    } else {
      r.bhs[1] = 0x40;
      text_ttt_ = portal_->next_ttt++;
      r.set_u32(20, text_ttt_);
    }
    send(r, true);
  }

  void on_logout(const Pdu& req) {
    const std::uint8_t reason = req.flags() & 0x7F;
    Pdu r;
    r.set_opcode(Opcode::kLogoutResponse);
    r.bhs[1] = 0x80;
    r.set_u32(16, req.itt());
    if (reason == 2) {
      r.bhs[2] = 2;  // connection recovery is not supported
      return send(r, true);
    }
    if (reason == 1 && req.u16(20) != cid_) {
      r.bhs[2] = 1;  // CID not found
      return send(r, true);
    }
    if (reason > 2) return reject(req, RejectReason::kInvalidPduField);
    r.set_u16(40, static_cast<std::uint16_t>(params_.default_time2wait));
    r.set_u16(42, static_cast<std::uint16_t>(params_.default_time2retain));
    send(r, true);
    logging_out_ = true;
    close_after_flush("logout");
  }

  void on_tmf(const Pdu& req) {
    const std::uint8_t function = req.flags() & 0x7F;
    const std::uint32_t lun = lun_number(req.lun_field());
    Pdu r;
    r.set_opcode(Opcode::kTaskMgmtResponse);
    r.bhs[1] = 0x80;
    r.set_u32(16, req.itt());
    std::uint8_t response = 0;  // function complete
    if (params_.discovery) {
      response = 255;
    } else {
      switch (function) {
        case 1: {  // ABORT TASK
          auto it = tasks_.find(req.u32(20));
          if (it != tasks_.end() && it->second->lun == lun) {
            it->second->aborted = true;
            tasks_.erase(it);
          } else {
            // Not here: completed already (function complete if its CmdSN was seen), or unknown.
            const std::uint32_t ref = req.u32(32);
            response = sn_lt(ref, exp_cmd_sn_) ? 0 : 1;
          }
          break;
        }
        case 2:  // ABORT TASK SET
        case 4:  // CLEAR TASK SET
          abort_tasks(lun);
          break;
        case 5: {  // LUN RESET
          scsi::LogicalUnit* lu = portal_->bus.find(bus_target_, lun);
          if (lu == nullptr) {
            response = 2;
            break;
          }
          for (auto& c : portal_->connections) {
            if (c->normal_session() && c->bus_target() == bus_target_) c->abort_tasks(lun);
          }
          lu->reset();
          break;
        }
        case 6:  // TARGET WARM RESET
        case 7:  // TARGET COLD RESET
          portal_->target_reset(bus_target_, function == 7, this);
          break;
        case 3:  // CLEAR ACA
          response = 5;
          break;
        case 8:  // TASK REASSIGN
          response = 4;
          break;
        default:
          response = 255;
          break;
      }
    }
    r.bhs[2] = response;
    send(r, true);
    if (function == 7 && response == 0) close_after_flush("target cold reset");
  }

  void on_scsi_command(const Pdu& req) {
    ++portal_->stats.commands;
    if (params_.discovery) return reject(req, RejectReason::kProtocolError);
    auto t = std::make_shared<Task>();
    t->itt = req.itt();
    t->lun_field = req.lun_field();
    t->lun = lun_number(t->lun_field);
    t->cmdsn = req.u32(24);
    t->edtl = req.u32(20);
    t->read = req.flags() & 0x40;
    t->write = req.flags() & 0x20;
    t->cdb.assign(req.bhs.begin() + 32, req.bhs.begin() + 48);
    // Extended CDB AHS (type 1): the CDB bytes beyond 16.
    for (std::size_t at = 0; at + 4 <= req.ahs.size();) {
      const std::size_t len = load_be16(&req.ahs[at]);
      if (req.ahs[at + 2] == 1 && len > 1 && at + 4 + len - 1 <= req.ahs.size()) {
        t->cdb.insert(t->cdb.end(), req.ahs.begin() + static_cast<std::ptrdiff_t>(at + 4),
                      req.ahs.begin() + static_cast<std::ptrdiff_t>(at + 3 + len));
      }
      at += (3 + len + 3) & ~std::size_t{3};
    }
    if (tasks_.count(t->itt)) return reject(req, RejectReason::kTaskInProgress);
    // Immediate commands bypass the CmdSN window; this bounds the tasks of one connection.
    if (tasks_.size() >= 4 * std::size_t{portal_->options.cmdsn_window}) {
      return reject(req, RejectReason::kImmediateCommandReject);
    }
    if (!req.data.empty() && (!t->write || !params_.immediate_data)) {
      return reject(req, RejectReason::kProtocolError);
    }
    if (!t->write) {
      tasks_.emplace(t->itt, t);
      return issue(t);
    }
    if (t->edtl > portal_->options.max_task_bytes) {
      // Refused before any data moves: the initiator stops sending for this task.
      return respond(t, scsi::check_condition(scsi::invalid_field_in_cdb(0), false));
    }
    if (req.data.size() > t->edtl || req.data.size() > params_.first_burst_length) {
      return reject(req, RejectReason::kProtocolError);
    }
    t->data = req.data;  // grows as data arrives: EDTL alone allocates nothing
    t->received = static_cast<std::uint32_t>(req.data.size());
    // F=1 on a write: no unsolicited Data-Out follows (RFC 7143 11.3.1).
    t->unsolicited_done = req.final_bit() || params_.initial_r2t;
    tasks_.emplace(t->itt, t);
    advance_write(t);
  }

  // Issues the next R2T, or the command once all data-out is in.
  void advance_write(const TaskPtr& t) {
    if (t->received >= t->edtl) return issue(t);
    if (!t->unsolicited_done || t->ttt != kReservedTag) return;
    t->ttt = portal_->next_ttt++;
    if (t->ttt == kReservedTag) t->ttt = portal_->next_ttt++;
    const std::uint32_t len = std::min(t->edtl - t->received, params_.max_burst_length);
    t->r2t_end = t->received + len;
    t->expected_datasn = 0;
    Pdu r;
    r.set_opcode(Opcode::kR2t);
    r.bhs[1] = 0x80;
    r.set_u64(8, t->lun_field);
    r.set_u32(16, t->itt);
    r.set_u32(20, t->ttt);
    r.set_u32(24, stat_sn_);
    r.set_u32(36, t->r2t_sn++);
    r.set_u32(40, t->received);
    r.set_u32(44, len);
    send(r);
  }

  void on_data_out(const Pdu& req) {
    auto it = tasks_.find(req.itt());
    if (it == tasks_.end()) return;  // an aborted or refused task's data: dropped (RFC 7143 4.2.5)
    TaskPtr t = it->second;
    if (t->issued || !t->write) return reject(req, RejectReason::kProtocolError);
    const std::uint32_t ttt = req.u32(20);
    const std::uint32_t datasn = req.u32(36);
    const std::uint32_t offset = req.u32(40);
    const std::uint32_t len = static_cast<std::uint32_t>(req.data.size());
    const bool unsolicited = ttt == kReservedTag;
    if (unsolicited ? t->unsolicited_done : ttt != t->ttt) {
      return reject(req, RejectReason::kProtocolError);
    }
    if (datasn != t->expected_datasn || offset != t->received || len > t->edtl - t->received ||
        (!unsolicited && len > t->r2t_end - t->received) ||
        (unsolicited && t->received + len > params_.first_burst_length)) {
      // ErrorRecoveryLevel 0: a sequence error ends the task with one PDU, the SCSI Response
      // (CHECK CONDITION, ABORTED COMMAND, DATA PHASE ERROR); the task's later Data-Out PDUs are
      // dropped. No Reject as well: RFC 7143 11.17.1 would then require the response too, and an
      // initiator that ends the task on the Reject (libiscsi does) meets a response for a task it
      // no longer knows, a protocol error that drops its connection at a moment that depends on
      // whether both PDUs arrived in one read (the iSCSIDataSnInvalid flake under load).
      tasks_.erase(t->itt);
      return respond(t, scsi::check_condition(scsi::make_sense(scsi::kAbortedCommand, scsi::asc::kDataPhaseError),
                                              false));
    }
    ++t->expected_datasn;
    t->data.insert(t->data.end(), req.data.begin(), req.data.end());
    t->received += len;
    if (unsolicited) {
      if (req.final_bit()) {
        t->unsolicited_done = true;
        t->expected_datasn = 0;
      }
    } else if (t->received == t->r2t_end) {
      t->ttt = kReservedTag;
    }
    advance_write(t);
  }

  void issue(const TaskPtr& t) {
    t->issued = true;
    scsi::ScsiCommand cmd;
    cmd.cdb = std::move(t->cdb);
    cmd.data_out = std::move(t->data);
    cmd.data_in_length = t->read ? t->edtl : 0;
    cmd.nexus = nexus_;
    std::weak_ptr<Connection> weak = weak_from_this();
    auto* ctx = &portal_->io;
    portal_->bus.execute(bus_target_, t->lun, cmd, [weak, t, ctx](scsi::ScsiResult result) {
      asio::post(*ctx, [weak, t, result = std::move(result)]() mutable {
        auto self = weak.lock();
        if (!self || self->closed_ || t->aborted) return;
        self->tasks_.erase(t->itt);
        self->respond(t, std::move(result));
      });
    });
  }

  void respond(const TaskPtr& t, scsi::ScsiResult result) {
    std::uint8_t resid_flags = 0;
    if (result.residual != 0) resid_flags = result.overflow ? 0x04 : 0x02;
    Bytes& data = result.data_in;
    if (!t->read) data.clear();
    const bool collapse = result.status == scsi::kStatusGood && result.sense.empty();
    std::uint32_t datasn = 0;
    const std::size_t seg = params_.initiator_max_recv_dsl;
    for (std::size_t off = 0; off < data.size();) {
      const std::size_t n = std::min(seg, data.size() - off);
      const bool last = off + n == data.size();
      const bool burst_end = last || ((off + n) % params_.max_burst_length) == 0;
      Pdu d;
      d.set_opcode(Opcode::kDataIn);
      d.bhs[1] = burst_end ? 0x80 : 0;
      d.set_u64(8, t->lun_field);
      d.set_u32(16, t->itt);
      d.set_u32(20, kReservedTag);
      d.set_u32(24, stat_sn_);
      d.set_u32(36, datasn++);
      d.set_u32(40, static_cast<std::uint32_t>(off));
      d.data.assign(data.begin() + static_cast<std::ptrdiff_t>(off),
                    data.begin() + static_cast<std::ptrdiff_t>(off + n));
      if (last && collapse) {
        d.bhs[1] = static_cast<std::uint8_t>(0x80 | 0x01 | resid_flags);
        d.bhs[3] = result.status;
        d.set_u32(44, result.residual);
        return send(d, true);
      }
      send(d);
      off += n;
    }
    Pdu r;
    r.set_opcode(Opcode::kScsiResponse);
    r.bhs[1] = static_cast<std::uint8_t>(0x80 | resid_flags);
    r.bhs[2] = 0;  // command completed at target
    r.bhs[3] = result.status;
    r.set_u32(16, t->itt);
    r.set_u32(36, datasn + t->r2t_sn);
    r.set_u32(44, result.residual);
    if (!result.sense.empty()) {
      r.data.resize(2);
      store_be16(r.data.data(), static_cast<std::uint16_t>(result.sense.size()));
      r.data.insert(r.data.end(), result.sense.begin(), result.sense.end());
    }
    send(r, true);
  }

  std::shared_ptr<Impl> portal_;
  tcp::socket socket_;
  asio::steady_timer timer_;
  std::string peer_;
  std::string local_;
  LoginNegotiator login_;
  std::uint64_t serial_;
  bool over_cap_ = false;
  std::chrono::steady_clock::time_point last_rx_{};
  bool ping_sent_ = false;
  std::uint32_t ping_ttt_ = kReservedTag;
  SessionParams params_;
  DigestConfig digests_;
  std::array<std::uint8_t, kBhsSize> bhs_{};
  Bytes rest_;
  std::deque<Bytes> out_;
  bool writing_ = false;
  bool closed_ = false;
  bool close_after_flush_ = false;
  std::string close_reason_;
  bool login_started_ = false;
  bool full_feature_ = false;
  bool logging_out_ = false;
  bool nexus_ended_ = false;
  std::array<std::uint8_t, 6> isid_{};
  std::uint16_t tsih_ = 0;
  std::uint16_t cid_ = 0;
  std::uint32_t exp_cmd_sn_ = 0;
  std::uint32_t stat_sn_ = 0;
  std::uint32_t bus_target_ = 0;
  std::string nexus_;
  std::map<std::uint32_t, TaskPtr> tasks_;  // by ITT
  std::map<std::uint32_t, Pdu> held_;       // by CmdSN, waiting for a gap to fill
  Bytes text_rest_;
  std::uint32_t text_ttt_ = kReservedTag;
};

void Portal::Impl::accept() {
  auto self = shared_from_this();
  acceptor.async_accept([self](boost::system::error_code ec, tcp::socket socket) {
    if (self->stopped) return;
    if (!ec) {
      self->admit(std::move(socket));
    } else if (ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space) {
      // At the fd limit: wait a little instead of spinning on the same error.
      IPSAN_LOG(LogLevel::kWarn, kLog, "accept: ", ec.message(), " (pausing 100 ms)");
      auto t = std::make_shared<asio::steady_timer>(self->io, std::chrono::milliseconds(100));
      t->async_wait([self, t](boost::system::error_code) {
        if (!self->stopped) self->accept();
      });
      return;
    }
    self->accept();
  });
}

void Portal::Impl::admit(tcp::socket socket) {
  if (connections.size() - over_cap >= options.max_connections) {
    // Full: make room by closing the oldest connection that has not logged in (an idle socket
    // that never sends a login cannot hold its place against initiators that do).
    std::shared_ptr<Connection> oldest;
    for (const auto& c : connections) {
      if (!c->logged_in() && !c->over_cap() && (!oldest || c->serial() < oldest->serial())) {
        oldest = c;
      }
    }
    if (oldest) {
      ++stats.evicted;
      oldest->close("evicted: connection limit reached before its login completed", false);
    } else if (over_cap < kMaxOverCap) {
      ++stats.refused;
      ++over_cap;
      auto c = std::make_shared<Connection>(shared_from_this(), std::move(socket));
      connections.insert(c);
      c->start(/*over_cap=*/true);  // answered 0x0302 (out of resources) at its first login PDU
      return;
    } else {
      ++stats.refused;
      IPSAN_LOG(LogLevel::kWarn, kLog, "too many connections: refused");
      return;  // the socket closes here
    }
  }
  auto c = std::make_shared<Connection>(shared_from_this(), std::move(socket));
  connections.insert(c);
  c->start(/*over_cap=*/false);
}

void Portal::Impl::remove(const std::shared_ptr<Connection>& c) {
  if (connections.erase(c) != 0 && c->over_cap() && over_cap > 0) --over_cap;
}

void Portal::Impl::reinstate(const std::string& nexus, const Connection* keep) {
  std::vector<std::shared_ptr<Connection>> old;
  for (auto& c : connections) {
    if (c.get() != keep && c->normal_session() && c->nexus() == nexus) old.push_back(c);
  }
  for (auto& c : old) {
    c->reinstated();
    bus.nexus_lost(c->bus_target(), nexus);
  }
}

void Portal::Impl::target_reset(std::uint32_t bus_target, bool cold, Connection* from) {
  (void)from;
  for (auto& c : connections) {
    if (c->normal_session() && c->bus_target() == bus_target) c->abort_tasks(std::nullopt);
  }
  bus.reset_target(bus_target, cold);
}

Portal::Portal(asio::io_context& io, client::scsi::Bus& bus, std::vector<PortalTarget> targets,
               PortalOptions options)
    : impl_(std::make_shared<Impl>(io, bus, std::move(targets), std::move(options))) {}

Portal::~Portal() { stop(); }

Result<void, Error> Portal::start() {
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(impl_->options.address, ec);
  if (ec) return fail("bad listen address " + impl_->options.address);
  tcp::endpoint ep(addr, impl_->options.port);
  impl_->acceptor.open(ep.protocol(), ec);
  if (!ec) impl_->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) impl_->acceptor.bind(ep, ec);
  if (!ec) impl_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return fail("cannot listen on " + impl_->options.address + ":" +
                std::to_string(impl_->options.port) + ": " + ec.message());
  }
  impl_->accept();
  return {};
}

std::uint16_t Portal::port() const {
  boost::system::error_code ec;
  auto ep = impl_->acceptor.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

void Portal::stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  boost::system::error_code ec;
  impl_->acceptor.close(ec);
  auto conns = impl_->connections;
  for (auto& c : conns) c->close("portal stopping", false);
}

PortalStats Portal::stats() const { return impl_->stats; }

}  // namespace ipsan::iscsi
