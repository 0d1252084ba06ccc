// ipsan/proto/rudp/udp_transport.h: reliable-UDP transports on Boost.Asio UDP sockets.
//
// Thin bindings of rudp::Connection / rudp::Listener to a socket, one steady_timer armed at the
// engine's next deadline, and the io_context's thread. Linux specifics: IP_MTU_DISCOVER =
// IP_PMTUDISC_DO (the kernel never fragments; rudp fragments itself), 4 MiB socket buffers
// (SO_*BUFFORCE when permitted), recvmmsg/sendmmsg batches of up to 32 datagrams, UDP GSO
// (UDP_SEGMENT) for runs of equal-size datagrams and UDP GRO on receive.
//
// Threading: as transport.h: every method is called, and every callback runs, on the thread
// running the io_context. A transport may be destroyed from inside its own callback.
// Construction throws boost::system::system_error on start-up failures (e.g. bind).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <utility>

// GCC 12 at -O2/-O3 reports false -Wnull-dereference positives inside Asio 1.74's scheduler
// (inlined into every user); silence them for Asio's headers only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#endif
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include "ipsan/base/bytes.h"
#include "ipsan/proto/rudp/connection.h"
#include "ipsan/proto/transport.h"

namespace ipsan::proto::rudp {

struct UdpOptions {
  bool batch_syscalls = true;  // recvmmsg/sendmmsg (false: one datagram per call)
  bool gso = true;             // UDP_SEGMENT runs of equal datagrams (batched path;
                               // switched off by itself where unsupported)
  bool gro = true;             // UDP_GRO: receive runs of datagrams coalesced (batched path;
                               // off by itself where unsupported); same datagrams either way
  int socket_buffer_bytes = 4 * 1024 * 1024;
  // Capture hook (`ipsan server --capture`): called on the io thread for every datagram handed
  // to the kernel (outbound) or received, with the socket's local and the peer's address.
  std::function<void(bool outbound, const boost::asio::ip::udp::endpoint& local,
                     const boost::asio::ip::udp::endpoint& remote, ByteSpan datagram)>
      tap;
  // Server: secret of RETRY cookies and stateless reset tokens; keep it across restarts (the
  // server derives it from its key ring) so a restarted server's RESET is still accepted. All
  // zero: random per transport.
  Key256 secret{};
};

// Connects to `server` (HELLO handshake starts at once; messages sent before it completes are
// queued). on_closed(kTimeout) fires if the server never answers within config.idle_timeout.
std::unique_ptr<ClientTransport> make_udp_client(boost::asio::io_context& io,
                                                 const boost::asio::ip::udp::endpoint& server,
                                                 const Config& config,
                                                 const UdpOptions& options = {});

// Binds `bind` (port 0 picks a free port: see local_port()). `boot_epoch` identifies this server
// incarnation; pick a new one on every start (e.g. random or a persisted counter).
// close() closes every connection in order (CLOSE datagrams); destroying the transport without
// close() is abrupt, like a crash (clients learn it by RESET or idle timeout). Destroying a client
// transport sends CLOSE.
std::unique_ptr<ServerTransport> make_udp_server(boost::asio::io_context& io,
                                                 const boost::asio::ip::udp::endpoint& bind,
                                                 std::uint32_t boot_epoch, const Config& config,
                                                 const UdpOptions& options = {});

}  // namespace ipsan::proto::rudp
