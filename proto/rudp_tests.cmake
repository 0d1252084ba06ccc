# Tests of the reliable-UDP part. RUDP_TEST_DIR lets a scratch build include this file from
# elsewhere; inside the tree it is proto/.
if(NOT RUDP_TEST_DIR)
  set(RUDP_TEST_DIR ${CMAKE_CURRENT_SOURCE_DIR})
endif()
ipsan_test(NAME proto_rudp_test LABELS unit TIMEOUT 60
  SOURCES ${RUDP_TEST_DIR}/test/rudp/connection_test.cc ${RUDP_TEST_DIR}/test/rudp/recovery_test.cc
  LIBS ipsan_proto)
ipsan_test(NAME proto_rudp_udp_test LABELS integration TIMEOUT 60
  SOURCES ${RUDP_TEST_DIR}/test/rudp/udp_transport_test.cc
  LIBS ipsan_proto)
# Attack tests of the transport (docs/RUDP.md "Packet protection", "Denial of service"); the
# `security` label collects them, `unit` lets the sanitizer build run them.
ipsan_test(NAME proto_rudp_security_test LABELS unit security TIMEOUT 60
  SOURCES ${RUDP_TEST_DIR}/test/rudp/security_test.cc
  LIBS ipsan_proto)
ipsan_test(NAME proto_rudp_attack_test LABELS integration security TIMEOUT 120
  SOURCES ${RUDP_TEST_DIR}/test/rudp/attack_udp_test.cc
  LIBS ipsan_proto)
