# Third-party dependencies: Debian packages only (see README "Dependencies").
find_package(Threads REQUIRED)
find_package(Boost 1.74 REQUIRED)                 # Asio (header-only)
find_package(tl-expected REQUIRED)                # tl::expected (libexpected-dev)
find_package(CLI11 REQUIRED)                      # command line (libcli11-dev)
find_package(GTest REQUIRED)                      # tests (libgtest-dev)
find_package(PkgConfig REQUIRED)
pkg_check_modules(SODIUM REQUIRED IMPORTED_TARGET libsodium)   # HMAC-SHA256, XChaCha20-Poly1305
pkg_check_modules(PCAP REQUIRED IMPORTED_TARGET libpcap)       # pcap read/write
find_package(tomlplusplus REQUIRED)               # config files (libtomlplusplus-dev)
find_package(nlohmann_json REQUIRED)              # JSON output (nlohmann-json3-dev)
if(IPSAN_BUILD_BENCH)
  find_package(benchmark REQUIRED)                # micro-benchmarks (libbenchmark-dev)
endif()
find_library(SGUTILS_LIB NAMES sgutils2 REQUIRED) # SG_IO helpers (libsgutils2-dev)
add_library(ipsan_sgutils INTERFACE)
target_link_libraries(ipsan_sgutils INTERFACE ${SGUTILS_LIB})

# Boost.Asio as a target with the definitions we want everywhere.
add_library(ipsan_asio INTERFACE)
target_link_libraries(ipsan_asio INTERFACE Boost::headers Threads::Threads)
target_compile_definitions(ipsan_asio INTERFACE BOOST_ASIO_NO_DEPRECATED BOOST_ASIO_DISABLE_VISIBILITY)
