// ipsan/testing/tap_transport.h: THE man-in-the-middle of the tests on the client's side of the
// path. TapTransport wraps a real ClientTransport; every message the client sends first meets its
// TapState: it may be held back (kept, "lost in the network" until the test re-sends it), have one
// bit flipped (tamper_next), and is recorded (sent) and shown to on_send. inject() sends raw bytes
// as a brand-new transport message, so only the session layer (slot sequence numbers, MACs)
// stands between a replayed or late message and the disk. The state is shared (a shared_ptr), so
// a test can keep one record across the client's reconnects.
//
// Threading: the client's io thread (as the wrapped transport).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ipsan/base/bytes.h"
#include "ipsan/proto/rpc.h"
#include "ipsan/proto/transport.h"

namespace ipsan::testing {

struct TapState {
  // True: keep this message back instead of sending it (it lands in `held`).
  std::function<bool(const Bytes&)> hold;
  // Sees every message passed on (after tampering), e.g. to index WRITE calls.
  std::function<void(const Bytes&)> on_send;
  // Flip one bit inside the MAC'd region of the next message passed on.
  bool tamper_next = false;
  std::vector<Bytes> sent;  // every message passed on, in order
  std::vector<Bytes> held;  // messages held back, in order
};

// A `hold` predicate on the ONC-RPC procedure of each call (messages that do not parse as a call
// are passed on).
inline std::function<bool(const Bytes&)> hold_calls(std::function<bool(proto::Op)> which) {
  return [which = std::move(which)](const Bytes& m) {
    auto call = proto::parse_call(m);
    return call.has_value() && which(call->op);
  };
}

class TapTransport final : public proto::ClientTransport {
 public:
  explicit TapTransport(std::unique_ptr<proto::ClientTransport> inner,
                        std::shared_ptr<TapState> state = std::make_shared<TapState>())
      : inner_(std::move(inner)), state_(std::move(state)) {
    inner_->on_message = [this](Bytes m) {
      if (on_message) on_message(std::move(m));
    };
    inner_->on_closed = [this](Errc e) {
      if (on_closed) on_closed(e);
    };
  }
  Errc send(Bytes m) override {
    if (state_->hold && state_->hold(m)) {
      state_->held.push_back(std::move(m));
      return Errc::kOk;  // "sent": lost in the network, for now
    }
    if (state_->tamper_next && !m.empty()) {
      state_->tamper_next = false;
      m[m.size() / 2] ^= 0x01;
    }
    if (state_->on_send) state_->on_send(m);
    state_->sent.push_back(m);
    return inner_->send(std::move(m));
  }
  void close() override { inner_->close(); }
  bool is_open() const override { return inner_->is_open(); }
  std::uint32_t peer_epoch() const override { return inner_->peer_epoch(); }
  proto::TransportStats stats() const override { return inner_->stats(); }
  std::string describe() const override { return "tap " + inner_->describe(); }
  void bind_session(std::uint64_t session_id, const Key256& session_key) override {
    inner_->bind_session(session_id, session_key);  // packet protection (docs/RUDP.md)
  }

  // Sends raw bytes as a new message (not recorded, never held).
  Errc inject(Bytes m) { return inner_->send(std::move(m)); }
  const std::shared_ptr<TapState>& state() const { return state_; }

 private:
  std::unique_ptr<proto::ClientTransport> inner_;
  std::shared_ptr<TapState> state_;
};

}  // namespace ipsan::testing
