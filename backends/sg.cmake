# sg.cmake: SG_IO SCSI and ATA PASS-THROUGH back ends (libsgutils2), their tests, and the
# `ipsan probe` subcommand. Included from backends/CMakeLists.txt.
target_sources(ipsan_backends PRIVATE
  src/scsi_sense.cc src/sg_cdb.cc src/sg_transport.cc src/sg.cc
  src/ata_cmd.cc src/ata.cc src/probe.cc)
target_link_libraries(ipsan_backends PRIVATE ipsan_sgutils)

ipsan_test(NAME backends_sg_test LABELS unit TIMEOUT 60
  SOURCES test/sense_decoder_test.cc test/sg_cdb_test.cc test/ata_identify_test.cc
          test/sg_open_test.cc test/sg_cli_test.cc test/sg_pool_test.cc
  LIBS ipsan_backends_cli ipsan_backends ipsan_sgutils)
if(TARGET backends_sg_test)
  target_include_directories(backends_sg_test PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
endif()

# Device tests: skip on hosts without $SG_SCSI / $SG_ATA; run for real in the VM (test/vm).
add_executable(backends_hw_device_test test/hw_device_test.cc)
target_link_libraries(backends_hw_device_test PRIVATE ipsan_backends_cli ipsan_backends ipsan_sgutils
  nlohmann_json::nlohmann_json GTest::gtest
  GTest::gtest_main ipsan_warnings)
target_include_directories(backends_hw_device_test PRIVATE ${PROJECT_SOURCE_DIR}/test/support/include)

add_library(ipsan_backends_cli STATIC cli/backends_cli.cc)
target_include_directories(ipsan_backends_cli PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/..)
target_link_libraries(ipsan_backends_cli PUBLIC ipsan_backends CLI11::CLI11
  PRIVATE nlohmann_json::nlohmann_json ipsan_warnings)
