set(IPSAN_PROTO_TCP_SOURCES src/tcp/tcp_transport.cc)
