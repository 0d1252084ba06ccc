# client front ends: SCSI logical units and bus, ATA devices, SCSI/ATA traces, and the
# in-memory GenericTarget used by tests, conformance traces and fuzzers.
ipsan_library(NAME frontends
  SOURCES
    src/memory_target.cc
    src/scsi/sense.cc src/scsi/logical_unit.cc src/scsi/lu_pages.cc src/scsi/bus.cc
    src/scsi/lu_reservations.cc src/scsi/lu_sanitize.cc src/scsi/lu_copy.cc
    src/ata/device.cc
    src/trace/trace.cc src/trace/runner.cc
  DEPS ipsan_scsi ipsan_proto ipsan_base)

ipsan_test(NAME frontends_test LABELS unit TIMEOUT 60
  SOURCES
    test/scsi/logical_unit_test.cc test/scsi/sense_test.cc test/scsi/bus_test.cc
    test/scsi/threaded_test.cc test/scsi/memory_target_test.cc test/scsi/reservations_test.cc
    test/scsi/sanitize_copy_test.cc
    test/ata/device_test.cc
    test/trace/trace_test.cc
  LIBS ipsan_frontends)
