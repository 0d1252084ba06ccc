# client_sim front ends: SCSI logical units and bus, ATA devices, SCSI/ATA traces, and the
# in-memory GenericTarget used by tests, conformance traces and fuzzers.
ipsan_library(NAME frontends
  SOURCES
    src/memory_target.cc
    src/scsi/sense.cc src/scsi/logical_unit.cc src/scsi/lu_pages.cc src/scsi/bus.cc
    src/ata/device.cc
    src/trace/trace.cc src/trace/runner.cc
  DEPS ${IPSAN_FRONTENDS_PROTO_TARGET} ipsan_base)

if(NOT IPSAN_FRONTENDS_PROTO_TARGET)
  target_link_libraries(ipsan_frontends PUBLIC ipsan_proto)
endif()

ipsan_test(NAME frontends_test LABELS unit TIMEOUT 60
  SOURCES
    test/scsi/logical_unit_test.cc test/scsi/sense_test.cc test/scsi/bus_test.cc
    test/scsi/threaded_test.cc
    test/ata/device_test.cc
    test/trace/trace_test.cc
  LIBS ipsan_frontends)
