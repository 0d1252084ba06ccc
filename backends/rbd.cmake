# rbd.cmake: the Ceph RBD back end (librbd, librados; Debian librbd-dev, librados-dev) as its own
# target, ipsan_backends_rbd, linked into the `ipsan` program (backends_cli registers the kind)
# when librbd is found; required under IPSAN_STRICT. Its tests need a cluster: the `ceph` CTest
# fixture starts one with scripts/ceph-cluster.sh (docs/CEPH.md). Included from CMakeLists.txt.
find_path(RBD_INCLUDE_DIR rbd/librbd.h)
find_library(RBD_LIB NAMES rbd)
find_library(RADOS_LIB NAMES rados)
if(NOT (RBD_INCLUDE_DIR AND RBD_LIB AND RADOS_LIB))
  if(IPSAN_STRICT)
    message(FATAL_ERROR "librbd/librados not found (apt-get install librbd-dev librados-dev)")
  endif()
  message(WARNING "librbd not found: the rbd: back end is left out")
  return()
endif()

add_library(ipsan_backends_rbd STATIC src/rbd.cc)
target_include_directories(ipsan_backends_rbd PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include
                           PRIVATE ${RBD_INCLUDE_DIR})
target_link_libraries(ipsan_backends_rbd PUBLIC ipsan_backends ${RBD_LIB} ${RADOS_LIB}
                      PRIVATE ipsan_warnings)

if(TARGET ipsan_backends_cli)
  target_link_libraries(ipsan_backends_cli PRIVATE ipsan_backends_rbd)
  target_compile_definitions(ipsan_backends_cli PRIVATE HAVE_IPSAN_BACKENDS_RBD=1)
endif()

# Spec parsing and registration: no cluster.
ipsan_test(NAME backends_rbd_spec_test LABELS unit TIMEOUT 60
  SOURCES test/rbd_spec_test.cc
  LIBS ipsan_backends_rbd)

# Tests against a real cluster: the `ceph` fixture starts one under the build tree
# (scripts/ceph-cluster.sh, ~40 s on a loaded 2-core machine) and stops it at the end. Each test
# case is its own CTest test with the labels integration and ceph; RESOURCE_LOCK keeps them from
# overlapping (one kills the OSD).
set(_ceph_script ${PROJECT_SOURCE_DIR}/scripts/ceph-cluster.sh)
set(_ceph_dir ${CMAKE_BINARY_DIR}/ceph-cluster)
add_executable(backends_rbd_test test/rbd_test.cc)
target_link_libraries(backends_rbd_test PRIVATE ipsan_backends_rbd ipsan_server ipsan_client
  GTest::gtest GTest::gtest_main ipsan_warnings)
target_include_directories(backends_rbd_test PRIVATE ${PROJECT_SOURCE_DIR}/test/support/include
  ${PROJECT_SOURCE_DIR}/test/integration)
set_property(GLOBAL APPEND PROPERTY IPSAN_TESTS_integration backends_rbd_test)
add_test(NAME ceph_cluster_start
  COMMAND bash -c "'${_ceph_script}' stop '${_ceph_dir}' && '${_ceph_script}' start '${_ceph_dir}'")
add_test(NAME ceph_cluster_stop COMMAND ${_ceph_script} stop ${_ceph_dir})
set_tests_properties(ceph_cluster_start PROPERTIES FIXTURES_SETUP ceph TIMEOUT 300
  LABELS "integration;ceph" RESOURCE_LOCK ceph)
set_tests_properties(ceph_cluster_stop PROPERTIES FIXTURES_CLEANUP ceph TIMEOUT 60
  LABELS "integration;ceph" RESOURCE_LOCK ceph)
set(_ceph_env "IPSAN_CEPH_DIR=${_ceph_dir};IPSAN_CEPH_SCRIPT=${_ceph_script}")
foreach(_t Rbd.ReadWriteFlushZeroesAndCapabilities Rbd.BlockSize4096AndReadOnly
           Rbd.SecondGatewayRefusedThenTakeoverFencesTheFirst Rbd.SnapshotsReadOnlyExportAndDiff
           Rbd.BadInputGivesAClearErrorInBoundedTime Rbd.OsdKilledAndRestartedUnderLoad
           RbdServer.VerifyThroughTheServerAndGrowOnline RbdServer.GatewayFailoverOverASharedImage)
  add_test(NAME rbd.${_t} COMMAND backends_rbd_test --gtest_filter=${_t})
  set_tests_properties(rbd.${_t} PROPERTIES FIXTURES_REQUIRED ceph LABELS "integration;ceph"
    TIMEOUT 400 RESOURCE_LOCK ceph ENVIRONMENT "${_ceph_env}")
endforeach()
# The `ipsan` program on RBD: a SIGKILLed gateway taken over by another, online growth; RBD
# snapshots through `ipsan disk snapshot` on a layout; and a
# short iscsi-test-cu subset (~19 suites, LUN 0) on an RBD-backed disk.
# (tools/ defines `ipsan` after this folder: the generator expressions resolve it at generate time.)
add_test(NAME rbd.cli_failover
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/test/rbd_cli_test.sh $<TARGET_FILE:ipsan> failover)
add_test(NAME rbd.cli_snapshots
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/test/rbd_cli_test.sh $<TARGET_FILE:ipsan> snapshots)
add_test(NAME rbd.iscsi_test_cu
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/test/rbd_cli_test.sh $<TARGET_FILE:ipsan> iscsi
          ${PROJECT_SOURCE_DIR}/conformance/iscsi/run_iscsi_test_cu.sh
          ${PROJECT_SOURCE_DIR}/conformance/iscsi/baseline.txt)
set_tests_properties(rbd.cli_failover rbd.cli_snapshots rbd.iscsi_test_cu PROPERTIES FIXTURES_REQUIRED ceph
  LABELS "integration;ceph" TIMEOUT 600 RESOURCE_LOCK ceph ENVIRONMENT "${_ceph_env}"
  SKIP_RETURN_CODE 77)
