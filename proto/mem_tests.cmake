ipsan_test(NAME mem_transport_test LABELS unit
  SOURCES test/mem/mem_transport_test.cc
  LIBS ipsan_proto)
