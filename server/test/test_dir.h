// test_dir.h: a fresh directory under the system temp dir for one test, removed afterwards
// (server tests: admin sockets, layout files, port files, captures).
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>

namespace ipsan::server::testing {

struct TestDir {
  explicit TestDir(const std::string& what) {
    path = std::filesystem::temp_directory_path() /
           ("ipsan-" + what + "-" + std::to_string(::getpid()));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TestDir() { std::filesystem::remove_all(path); }
  TestDir(const TestDir&) = delete;
  TestDir& operator=(const TestDir&) = delete;
  std::filesystem::path path;
};

}  // namespace ipsan::server::testing
