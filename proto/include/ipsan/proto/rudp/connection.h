// ipsan/proto/rudp/connection.h: the sans-I/O reliable-UDP connection engine.
//
// A Connection consumes datagrams and the time (`now` is always passed in; no clock is read) and
// produces datagrams, timer deadlines and reassembled messages. It owns no socket and no thread,
// so tests drive two of them through an in-memory lossy link with a virtual clock, and the Asio
// binding (udp_transport.h) drives them from a UDP socket. Loss recovery follows RFC 9002
// (packet- and time-threshold loss detection over selective ACK ranges, PTO with backoff),
// congestion control is NewReno with pacing, flow control is receiver-driven (FLOW frames).
// Messages are delivered at most once per connection, in any order.
//
// Threading: not thread-safe; one owner thread calls every method.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string_view>
#include <vector>

#include "ipsan/base/bytes.h"
#include "ipsan/base/clock.h"
#include "ipsan/base/errc.h"
#include "ipsan/proto/rudp/wire.h"

namespace ipsan::proto::rudp {

using namespace std::chrono_literals;

// Per-packet protection after login (docs/RUDP.md "Packet protection").
enum class Protection : std::uint8_t { kOff = 0, kIntegrity = 1, kEncrypted = 2 };
const char* protection_name(Protection p);
// Parses "off" / "integrity" / "encrypted"; false otherwise.
bool parse_protection(std::string_view s, Protection& out);

// Every knob of the engine. Defaults suit loopback and LAN (microsecond RTTs): timers are in
// micro/milliseconds, not the hundreds of milliseconds TCP stacks use.
struct Config {
  // Largest UDP payload ever sent. 1452 = 1500 (Ethernet MTU) - 40 (IPv6) - 8 (UDP), so it fits
  // both IPv4 and IPv6 without IP fragmentation. Clamped to [kMinDatagram, kMaxDatagram].
  std::size_t max_datagram = 1452;
  // Largest message accepted by send() and by the receiver (one ONC-RPC record).
  std::size_t max_message_bytes = 8 * 1024 * 1024 + 4096;
  // Receive buffer bound: bytes of messages being reassembled or delivered but not yet polled.
  // Raised to max_message_bytes if smaller (a message must always fit).
  std::uint64_t recv_window_bytes = 16 * 1024 * 1024;
  // Messages that may be incomplete (not fully acknowledged) at once; also bounds the receiver's
  // record of delivered message ids.
  std::uint32_t max_messages_in_flight = 1024;

  // RFC 9002 loss recovery.
  Duration initial_rtt = 2ms;
  Duration timer_granularity = 100us;
  Duration max_ack_delay = 200us;             // how long a receiver may hold an ACK
  std::uint32_t ack_eliciting_threshold = 2;  // ACK every Nth ack-eliciting packet
  std::uint32_t packet_threshold = 3;
  double time_threshold = 9.0 / 8.0;
  // Reordering tolerance (RACK, RFC 8985): when a packet declared lost is acknowledged after all
  // (a spurious loss), the congestion reduction of its recovery episode is undone, the packet
  // threshold is switched off and the time threshold widened to the observed delay x 5/4 (at
  // most 2 PTO bases); after `reorder_decay_rounds` round trips without reordering it halves,
  // and below the normal time threshold the packet threshold comes back.
  bool adaptive_reordering = true;
  std::uint32_t reorder_decay_rounds = 16;
  // Cap on the PTO after exponential backoff: max(max_pto, 2 x the un-backed-off PTO). A LAN
  // path needs no 1 s probes; the idle timeout, not the PTO, detects a dead peer.
  Duration max_pto = 10ms;
  std::size_t max_ack_ranges = 32;  // ranges per ACK frame (SACK blocks)

  // NewReno congestion control (in datagrams of max_datagram bytes).
  std::size_t initial_window_packets = 32;
  std::size_t min_window_packets = 2;
  // Multiplicative decrease on a congestion event (once per recovery period): 0.7 as in CUBIC
  // (RFC 9438) rather than NewReno's 0.5, so random (non-congestive) loss costs less.
  double loss_reduction_factor = 0.7;
  // Loss discrimination (after TCP Veno): a loss is congestion only when this connection keeps
  // a queue at the bottleneck, seen as RTT above the minimum. The queue is estimated as
  // min(cwnd, bytes in flight) x (1 - min_rtt / srtt) and its delay as srtt - min_rtt; a loss
  // while the queue is under
  // max(3 datagrams, cwnd x random_loss_backlog) OR its delay under random_loss_queue_delay is
  // taken as random loss (a lossy link, corruption, an emulator's drop): the window is kept.
  // The absolute delay floor matters on loopback and fast LANs, where scheduling noise alone
  // puts srtt several times above a microsecond min_rtt. Safety net: when loss events (a run
  // of consecutive packets lost together counts once) exceed random_loss_max_rate of the
  // packets sent recently (~256), every loss counts as congestion again (a shallow queue that
  // drops without a visible RTT rise).
  // random_loss_backlog = 0 switches discrimination off (plain NewReno).
  double random_loss_backlog = 0.25;
  Duration random_loss_queue_delay = 250us;
  double random_loss_max_rate = 0.10;
  std::size_t max_window_bytes = 64 * 1024 * 1024;
  bool pacing = true;
  std::size_t pacing_burst_packets = 16;  // datagrams that may leave back to back

  // Liveness.
  Duration idle_timeout = 5s;        // peer silent this long -> closed with kTimeout
  Duration keepalive_interval = 1s;  // PING after this long without sending

  // Listener only.
  std::size_t max_connections = 1024;
  std::size_t closed_id_memory = 4096;  // recently closed ids refused on HELLO (replay guard)

  // Security (docs/RUDP.md "Packet protection" and "Denial of service").
  // First packet number of each connection and direction; 0 = random in [2^20, 2^40) (QUIC:
  // numbers not guessable from outside). Tests may pin it.
  std::uint64_t initial_packet_number = 0;
  // Client: protection asked for at login. Server: the weakest protection it accepts.
  Protection protection = Protection::kIntegrity;
  // Server: largest message accepted on a connection not yet verified (no protected packet from
  // the peer, no session bound): LOGIN_BEGIN/FINISH and NULL fit easily.
  std::uint32_t unverified_max_message = 4096;
  // Server: an armed connection whose peer has not switched to protected packets by then closes.
  Duration protect_grace = 10s;
  // Listener: HELLO needs a RETRY cookie first (stateless address validation); cookie lifetime.
  bool require_retry = true;
  Duration cookie_lifetime = 10s;
  // Listener: connections per source address (0 = no limit).
  std::size_t max_connections_per_source = 256;
  // Listener: bytes of messages being reassembled or held over all connections, and over
  // connections not yet verified.
  std::uint64_t reassembly_budget_bytes = 1024ull * 1024 * 1024;
  std::uint64_t unverified_budget_bytes = 4 * 1024 * 1024;
};

// Receive memory shared by the connections of one Listener (all counts in message bytes).
struct ReassemblyBudget {
  std::uint64_t limit = 0;
  std::uint64_t used = 0;
  std::uint64_t unverified_limit = 0;
  std::uint64_t unverified_used = 0;
  std::uint64_t refused = 0;  // datagrams dropped because a budget was exhausted
};

// Counters; all monotonic except the gauges at the end.
struct ConnectionStats {
  std::uint64_t packets_sent = 0;
  std::uint64_t packets_received = 0;
  std::uint64_t bytes_sent = 0;  // UDP payload bytes
  std::uint64_t bytes_received = 0;
  std::uint64_t messages_sent = 0;  // fully acknowledged
  std::uint64_t messages_queued = 0;
  std::uint64_t messages_received = 0;  // delivered to poll_message
  std::uint64_t fragments_sent = 0;
  std::uint64_t fragments_retransmitted = 0;
  std::uint64_t packets_retransmitted = 0;  // packets carrying at least one resent fragment
  std::uint64_t packets_lost = 0;
  std::uint64_t pto_fired = 0;
  std::uint64_t acks_sent = 0;
  std::uint64_t dropped_bad_crc = 0;
  std::uint64_t dropped_malformed = 0;    // too short, bad version/type, bad frames, limits
  std::uint64_t dropped_duplicate = 0;    // packet number already seen
  std::uint64_t dropped_other = 0;        // wrong connection id / epoch / state
  std::uint64_t dropped_unauthenticated = 0;  // bad tag, no key, or unprotected after the switch
  std::uint64_t dropped_over_budget = 0;      // message refused by a reassembly budget
  std::uint64_t duplicate_fragments = 0;  // fragments of delivered messages or already held
  std::uint64_t congestion_events = 0;
  std::uint64_t persistent_congestion = 0;
  std::uint64_t spurious_losses = 0;           // packets declared lost, acknowledged later
  std::uint64_t spurious_retransmissions = 0;  // fragments resent needlessly (spurious loss)
  std::uint64_t congestion_events_undone = 0;  // reductions undone (every loss was spurious)
  std::uint64_t random_loss_events = 0;        // loss events taken as random loss (window kept)
  // Gauges.
  double srtt_us = 0;
  double rttvar_us = 0;
  double min_rtt_us = 0;
  double packet_rtt_us = 0;  // average RTT over every acknowledged packet (loss discrimination)
  double base_rtt_us = 0;    // its smallest settled value: the no-queue baseline
  std::uint64_t cwnd = 0;
  std::uint64_t ssthresh = 0;
  double reorder_window_us = 0;  // extra time-threshold window learned from spurious losses
  double loss_rate = 0;          // loss events per packet, averaged over ~256 packets
  std::uint64_t bytes_in_flight = 0;
  std::uint64_t recv_buffered = 0;      // receive-buffer bytes now
  std::uint64_t recv_buffered_max = 0;  // high-water mark
};

enum class Role { kClient, kServer };
enum class State { kHandshake, kEstablished, kClosed };

class Connection {
 public:
  // A client connection; queues a HELLO at once. `conn_id` should be random and non-zero.
  static Connection make_client(std::uint64_t conn_id, const Config& config, TimePoint now);
  // A server connection (made by Listener on a valid HELLO): established at once.
  static Connection make_server(std::uint64_t conn_id, std::uint32_t boot_epoch,
                                const Config& config, TimePoint now);

  // Feeds one received datagram (any garbage is dropped and counted).
  void on_datagram(ByteSpan datagram, TimePoint now);
  // Call when now >= next_deadline().
  void on_timer(TimePoint now);
  // Queues a message: kOk, kTooLarge, or kConnectionLost when closed.
  Errc send(Bytes message, TimePoint now);
  // Writes the next datagram into `out` (needs max_datagram bytes) and returns its size; 0 when
  // nothing may be sent now (nothing queued, congestion window full, or pacing).
  std::size_t poll_transmit(MutableByteSpan out, TimePoint now);
  // Earliest time on_timer() must run (loss, PTO, delayed ACK, pacing, keepalive, idle).
  std::optional<TimePoint> next_deadline() const;
  // Next reassembled message, if any.
  std::optional<Bytes> poll_message();
  // Orderly close: the next poll_transmit emits CLOSE, state becomes kClosed (kShutdown).
  void close(TimePoint now);

  // Packet protection (docs/RUDP.md). `keys` nullopt = protection off (the connection is only
  // marked verified: large messages accepted). Otherwise, with `send_now` (the client, once its
  // login reply verified) every later packet is protected at once; without it (the server, when
  // the login or a session call verified) protected packets from the peer are accepted and our
  // own switch follows the first one that verifies; if none arrives within protect_grace the
  // connection closes. After the first verified protected packet from the peer, unprotected
  // packets are dropped (a RESET only with this connection's reset token). A connection keeps
  // its first keys (later calls are ignored).
  void protect(const std::optional<PacketKeys>& keys, bool send_now, TimePoint now);
  // Server: the stateless reset token sent to the client once protected.
  void set_reset_token(const ResetToken& token);
  // Client: before the handshake, asks the server to bind session `session_id`'s key (HELLO BIND
  // frame); `keys` are used once HELLO_ACK confirms. Server: the echo to put in HELLO_ACK.
  void set_bind(std::uint64_t session_id, const std::optional<PacketKeys>& keys);
  std::optional<std::uint64_t> requested_bind() const { return peer_bind_; }
  bool is_protected() const { return keys_.has_value(); }
  bool sends_protected() const { return tx_protected_; }
  bool peer_protected() const { return rx_protected_; }
  bool verified() const { return verified_; }
  // Server: shares a receive budget (set once, right after creation; must outlive this).
  void set_budget(ReassemblyBudget* budget) { budget_ = budget; }
  ~Connection();
  Connection(Connection&&) = default;  // only before set_budget()
  Connection& operator=(Connection&&) = delete;
  Connection(const Connection&) = delete;

  State state() const { return state_; }
  Errc close_reason() const { return close_reason_; }
  Role role() const { return role_; }
  std::uint64_t id() const { return conn_id_; }
  // Client: boot epoch learned from HELLO_ACK (0 before). Server: its own epoch.
  std::uint32_t peer_epoch() const { return epoch_; }
  const ConnectionStats& stats() const;
  const Config& config() const { return cfg_; }
  // True while a CLOSE datagram still has to go out.
  bool close_pending() const { return close_pending_; }
  bool has_messages() const { return !ready_.empty(); }

 private:
  Connection(Role role, std::uint64_t conn_id, std::uint32_t epoch, const Config& config,
             TimePoint now);

  // Per-fragment sender state lives in frag_pn: 0 = never sent, kFragAcked, kFragLost (queued for
  // retransmission) or the packet number of the newest packet carrying it.
  static constexpr std::uint64_t kFragAcked = ~std::uint64_t{0};
  static constexpr std::uint64_t kFragLost = ~std::uint64_t{0} - 1;

  struct OutMessage {
    Bytes data;
    std::vector<std::uint64_t> frag_pn;
    std::uint32_t acked = 0;
    std::uint32_t next_unsent = 0;
    bool opened = false;  // counted against the peer's FLOW limit and the id window
  };
  struct FragRef {
    std::uint64_t message_id;
    std::uint32_t index;
  };
  struct SentPacket {
    TimePoint time_sent;
    std::uint32_t size = 0;
    bool ack_eliciting = false;
    bool in_flight = false;
    bool has_flow = false;
    bool is_hello = false;
    bool has_token = false;
    // Sent while at least half the window was in use: only such packets grow cwnd when
    // acknowledged (RFC 9002 7.8: an application-limited sender must not inflate its window).
    bool cwnd_limited = false;
    std::vector<FragRef> frags;
  };
  // A packet declared lost, remembered for a while so that a late ACK of it is recognized as a
  // spurious loss (and its content is not resent again if it is still queued).
  struct LostPacket {
    TimePoint time_sent;
    std::uint64_t episode = 0;
    std::vector<FragRef> frags;
  };
  // The newest congestion reduction, with what it replaced (undone if every loss was spurious).
  struct Episode {
    std::uint64_t id = 0;
    std::uint64_t cwnd_before = 0;
    std::uint64_t ssthresh_before = 0;
    std::optional<TimePoint> recovery_before;
    std::uint64_t lost = 0;
    std::uint64_t spurious = 0;
    bool undone = false;
  };
  struct InMessage {
    Bytes data;
    std::map<std::uint32_t, std::uint32_t> have;  // received byte intervals [lo, hi)
    std::uint64_t received = 0;
  };

  void close_with(Errc reason);
  void handle_packet(const Packet& pkt, ByteSpan datagram, TimePoint now);
  void charge(std::int64_t bytes);
  void mark_verified();
  std::size_t finish_packet(PacketWriter& w);
  PacketWriter writer(MutableByteSpan out, PacketType type, std::uint64_t pn, std::uint16_t flags);
  bool validate_frames(const Frames& f);
  bool apply_frames(const Frames& f, TimePoint now);
  void on_ack(const AckFrame& ack, TimePoint now);
  bool on_fragment(const MessageFrame& m);
  void detect_lost(TimePoint now, const std::vector<std::uint64_t>& newly_acked,
                   std::optional<TimePoint> acked_before);
  void on_packet_lost(std::uint64_t pn, SentPacket& p);
  void requeue_content(std::uint64_t pn, const SentPacket& p);
  void on_congestion_event(TimePoint time_sent, TimePoint now);
  bool is_random_loss() const;
  void on_spurious_loss(std::uint64_t pn, LostPacket& lp, TimePoint now);
  void end_round(bool reordering_seen);
  void prune_lost(TimePoint now);
  void sample_packet_rtt(Duration rtt);
  void update_rtt(Duration latest, Duration ack_delay);
  Duration pto_base() const;
  std::optional<TimePoint> pto_deadline() const;
  bool record_received(std::uint64_t pn);
  void schedule_ack(bool ack_eliciting, bool out_of_order, bool ack_now, bool resent,
                    TimePoint now);
  std::size_t build_hello(MutableByteSpan out, TimePoint now);
  std::size_t build_data(MutableByteSpan out, TimePoint now, bool allow_eliciting);
  bool write_ack(PacketWriter& w, TimePoint now);
  bool has_eliciting_work() const;
  bool pacer_allows(TimePoint now);
  void pacer_spend(std::size_t bytes);
  void on_sent(std::uint64_t pn, SentPacket p, TimePoint now);
  std::uint64_t advertised_max_data() const;

  Config cfg_;
  Role role_;
  State state_;
  Errc close_reason_ = Errc::kOk;
  std::uint64_t conn_id_;
  std::uint32_t epoch_;
  std::size_t frag_size_;

  // Send side.
  std::uint64_t next_pn_ = 1;
  std::uint64_t next_message_id_ = 1;
  std::map<std::uint64_t, OutMessage> out_;  // queued or incomplete messages, by id
  std::uint64_t send_cursor_ = 1;            // lowest id that may have unsent fragments
  std::deque<FragRef> retransmit_;
  std::map<std::uint64_t, SentPacket> sent_;  // ack-eliciting packets awaiting ACK
  std::uint64_t sent_data_ = 0;               // bytes of messages opened (FLOW accounting)
  std::uint64_t peer_max_data_ = 0;
  bool hello_pending_ = false;
  std::uint64_t initial_pn_ = 1;
  std::uint64_t last_hello_pn_ = 0;
  std::optional<Cookie> cookie_;  // from RETRY, echoed in HELLO
  std::uint32_t retries_ = 0;

  // Protection.
  std::optional<PacketKeys> keys_;
  std::optional<PacketKeys> pending_keys_;  // client: used once HELLO_ACK confirms the bind
  bool tx_protected_ = false;
  bool rx_protected_ = false;
  bool verified_ = false;
  std::optional<TimePoint> protect_deadline_;
  std::optional<ResetToken> reset_token_;  // server: ours to send; client: the server's
  bool token_pending_ = false;
  std::uint64_t bind_request_ = 0;                  // client: session id asked for in HELLO
  std::optional<std::uint64_t> peer_bind_;          // server: session id the HELLO asked for
  std::optional<std::uint64_t> bind_echo_;          // server: what HELLO_ACK answers
  std::vector<std::uint8_t> plain_;                 // decrypted body
  ReassemblyBudget* budget_ = nullptr;
  std::uint64_t charged_ = 0;  // bytes of recv_reserved_ charged to budget_
  bool hello_ack_pending_ = false;
  bool ping_pending_ = false;
  bool flow_pending_ = false;
  bool close_pending_ = false;
  std::uint32_t probes_ = 0;  // PTO probes that may ignore cwnd/pacing

  // Recovery and congestion (RFC 9002 names).
  std::uint64_t largest_acked_ = 0;
  bool has_rtt_sample_ = false;
  Duration latest_rtt_{};
  Duration smoothed_rtt_;
  Duration rttvar_;
  Duration min_rtt_{};
  // Loss-discrimination RTTs (docs/RUDP.md "Random loss is not congestion"): an average with
  // one sample per ACK, the mean RTT of every packet it newly acknowledges (not only the largest
  // of each ACK: on a path that reorders, the largest is mostly a packet that overtook the
  // others, so srtt and min_rtt fall far below the path's real RTT), and the baseline: the
  // smallest value a slow average of the same samples has taken once settled.
  Duration packet_rtt_{};
  Duration slow_rtt_{};  // the same samples, averaged slowly (gain 1/64): the baseline's source
  Duration base_rtt_{};
  std::uint64_t packet_rtt_samples_ = 0;
  std::uint32_t pto_count_ = 0;
  std::optional<TimePoint> loss_time_;
  TimePoint last_eliciting_sent_;
  std::uint64_t bytes_in_flight_ = 0;
  std::uint64_t cwnd_;
  std::uint64_t ssthresh_ = ~std::uint64_t{0};
  std::uint64_t ca_acked_ = 0;
  std::optional<TimePoint> recovery_start_;
  std::optional<TimePoint> max_acked_time_sent_;  // newest send time of any acknowledged packet
  std::map<std::uint64_t, LostPacket> lost_;      // recently declared lost, by packet number
  Episode episode_;                               // newest congestion reduction
  Duration reo_delay_{};            // learned reordering window (0: packet threshold in force)
  std::uint64_t round_end_pn_ = 0;  // a round trip ends when this is acknowledged
  std::uint32_t quiet_rounds_ = 0;
  bool reorder_in_round_ = false;
  std::uint64_t round_sent_ = 0;  // ack-eliciting packets sent in the current round
  std::uint64_t round_lost_ = 0;  // packets declared lost in the current round
  std::uint64_t round_spurious_ = 0;  // of those and earlier ones: acknowledged after all
  static constexpr double kLossRatePackets = 256;  // averaging window of loss_rate_
  double loss_rate_ = 0;  // loss events per packet sent, exponential average over packets
  double pacer_tokens_;
  TimePoint pacer_last_;
  std::optional<TimePoint> pacer_wait_until_;

  // Receive side.
  std::map<std::uint64_t, std::uint64_t> recv_ranges_;  // received packet numbers [lo, hi]
  std::uint64_t recv_floor_ = 1;  // numbers below this count as already received
  std::uint64_t largest_recv_ = 0;
  TimePoint largest_recv_time_;
  bool ack_pending_ = false;
  bool ack_immediate_ = false;
  std::uint32_t eliciting_since_ack_ = 0;
  static constexpr std::uint32_t kQuickAcks = 8;     // packets ACKed one by one after a resend
  static constexpr std::uint32_t kAcksPerProbe = 2;  // ACK datagrams sent for an ACK_NOW packet
  static constexpr std::uint32_t kMaxAcksOwed = 4;   // ACK datagrams queued at most
  std::uint32_t quick_acks_left_ = 0;
  std::uint32_t acks_owed_ = 0;  // ACK datagrams still to send now (quick-ACK mode)
  std::optional<TimePoint> ack_deadline_;
  std::map<std::uint64_t, InMessage> reassembly_;
  std::uint64_t delivered_floor_ = 0;        // every id <= floor is delivered
  std::set<std::uint64_t> delivered_above_;  // delivered ids above the floor
  std::deque<Bytes> ready_;
  std::uint64_t recv_reserved_ = 0;  // bytes of messages held (reassembly + ready)
  std::uint64_t recv_released_ = 0;  // bytes of messages handed to the owner
  std::uint64_t last_advertised_ = 0;
  std::uint64_t intervals_ = 0;  // received-interval entries over all messages in reassembly
  std::uint64_t max_intervals_ = 0;
  TimePoint last_recv_;
  Frames scratch_;

  mutable ConnectionStats stats_;
};

}  // namespace ipsan::proto::rudp
