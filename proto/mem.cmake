# In-memory transport pair (tests and benchmarks drive servers and clients without sockets).
set(IPSAN_PROTO_MEM_SOURCES src/mem/mem_transport.cc)
