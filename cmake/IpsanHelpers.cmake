# Shared build settings and helper functions.
include(GoogleTest)

# -Wnull-dereference is left out on purpose: at -O2 GCC 12 reports false positives inside
# Boost.Asio and CLI11 headers after inlining.
add_library(ipsan_warnings INTERFACE)
target_compile_options(ipsan_warnings INTERFACE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
  -Wcast-align -Wunused -Woverloaded-virtual -Wimplicit-fallthrough
  $<$<BOOL:${IPSAN_WERROR}>:-Werror>)

if(IPSAN_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

# ipsan_require(<what> <why>): under IPSAN_STRICT (CI, every preset) a configure error naming what
# is missing; outside strict mode a warning. For every place that would otherwise leave a part of
# the build out without a word (an optional include, a target another folder did not define).
function(ipsan_require what why)
  if(IPSAN_STRICT)
    message(FATAL_ERROR "${what} is missing: ${why}. IPSAN_STRICT is on, so nothing is left out "
                        "silently; restore it, or configure with -DIPSAN_STRICT=OFF while it is "
                        "under development.")
  else()
    message(WARNING "${what} is missing: ${why} (left out; IPSAN_STRICT would fail here)")
  endif()
endfunction()

# ipsan_include_part(<file>): include(<file>) relative to the current source dir, for folders that
# split their targets into parts (<part>.cmake). A missing part fails configure under IPSAN_STRICT
# (ipsan_require) instead of dropping its libraries and tests silently, as include(... OPTIONAL)
# did. A macro, so the part's variables land in the including folder's scope as with include().
macro(ipsan_include_part _ipsan_part)
  if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${_ipsan_part})
    include(${CMAKE_CURRENT_SOURCE_DIR}/${_ipsan_part})
  else()
    ipsan_require("${CMAKE_CURRENT_SOURCE_DIR}/${_ipsan_part}"
                  "its targets would not be built")
  endif()
endmacro()

# ipsan_library(NAME <name> SOURCES ... DEPS ... [PRIVATE_DEPS ...])
# Creates target ipsan_<name>; public headers in <dir>/include, private in <dir>/src.
function(ipsan_library)
  cmake_parse_arguments(A "" "NAME" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  if(NOT IPSAN_STRICT)  # see ipsan_test: parts under parallel development
    set(_present "")
    foreach(_s IN LISTS A_SOURCES)
      if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${_s} OR IS_ABSOLUTE ${_s})
        list(APPEND _present ${_s})
      else()
        message(WARNING "ipsan_library(${A_NAME}): missing source ${_s} left out")
      endif()
    endforeach()
    set(A_SOURCES ${_present})
  endif()
  add_library(ipsan_${A_NAME} STATIC ${A_SOURCES})
  target_include_directories(ipsan_${A_NAME} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include
                                              PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_link_libraries(ipsan_${A_NAME} PUBLIC ${A_DEPS} PRIVATE ipsan_warnings ${A_PRIVATE_DEPS})
endfunction()

# ipsan_test(NAME <name> SOURCES ... LIBS ... LABELS unit|integration|conformance|vm|fuzz [TIMEOUT s])
# One GoogleTest binary; every test case becomes a CTest test carrying the labels.
function(ipsan_test)
  cmake_parse_arguments(A "" "NAME;TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  if(NOT A_TIMEOUT)
    set(A_TIMEOUT 300)
  endif()
  # While several parts are developed in parallel a test may list files not written yet. Outside
  # strict mode (CI uses -DIPSAN_STRICT=ON) such a test is skipped with a warning.
  if(NOT IPSAN_STRICT)
    set(_present "")
    foreach(_s IN LISTS A_SOURCES)
      if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${_s} OR IS_ABSOLUTE ${_s})
        list(APPEND _present ${_s})
      endif()
    endforeach()
    if(NOT _present STREQUAL A_SOURCES)
      message(WARNING "ipsan_test(${A_NAME}): missing sources, test skipped")
      return()
    endif()
  endif()
  add_executable(${A_NAME} ${A_SOURCES})
  # Remember which binaries carry which labels (see the `unit_integration_tests` target).
  foreach(_l IN LISTS A_LABELS)
    set_property(GLOBAL APPEND PROPERTY IPSAN_TESTS_${_l} ${A_NAME})
  endforeach()
  target_link_libraries(${A_NAME} PRIVATE ${A_LIBS} GTest::gtest GTest::gtest_main ipsan_warnings)
  # ipsan/testing/skip.h (IPSAN_SKIP_OR_FAIL: a skip is a failure under CI=true) for every test.
  target_include_directories(${A_NAME} PRIVATE ${PROJECT_SOURCE_DIR}/test/support/include)
  # gtest_discover_tests cannot give a discovered test two labels (CMake 3.25 splits the list
  # into property names): the `security` label is carried by one extra test that runs the whole
  # binary, the discovered tests keep the other labels (unit/integration: the sanitizer build).
  set(_labels ${A_LABELS})
  list(REMOVE_ITEM _labels security)
  if(NOT _labels STREQUAL A_LABELS)
    add_test(NAME ${A_NAME}.security COMMAND ${A_NAME})
    set_tests_properties(${A_NAME}.security PROPERTIES LABELS security TIMEOUT ${A_TIMEOUT})
  endif()
  gtest_discover_tests(${A_NAME} DISCOVERY_MODE PRE_TEST
    PROPERTIES LABELS "${_labels}" TIMEOUT ${A_TIMEOUT})
endfunction()
