# Reliable UDP: sans-I/O engine (wire, connection, listener) + Asio binding (asio_udp).
set(IPSAN_PROTO_RUDP_SOURCES
  src/rudp/wire.cc
  src/rudp/connection.cc
  src/rudp/listener.cc
  src/rudp/asio_udp.cc)
