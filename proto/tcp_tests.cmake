ipsan_test(NAME tcp_transport_test LABELS unit
  SOURCES test/tcp/record_test.cc test/tcp/tcp_transport_test.cc
  LIBS ipsan_proto)
# Server limits: connection cap, idle timeout, send-queue bound, EMFILE back-off.
ipsan_test(NAME tcp_limits_test LABELS unit security
  SOURCES test/tcp/tcp_limits_test.cc
  LIBS ipsan_proto)
# Record protection (--transport-security encrypted over TCP).
ipsan_test(NAME tcp_protect_test LABELS unit security
  SOURCES test/tcp/tcp_protect_test.cc
  LIBS ipsan_proto)
