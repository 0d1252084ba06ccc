ipsan_test(NAME tcp_transport_test LABELS unit
  SOURCES test/tcp/record_test.cc test/tcp/tcp_transport_test.cc
  LIBS ipsan_proto)
