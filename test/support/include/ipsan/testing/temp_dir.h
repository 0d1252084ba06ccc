// ipsan/testing/temp_dir.h: THE temporary directory of the tests: a fresh directory under $TMPDIR
// (or the system temp directory), removed with its contents at scope exit unless keep() was
// called (to look at what a failed test left). Header-only, std only: every test binary has
// test/support/include on its include path (ipsan_test), no library to link.
#pragma once

#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>

namespace ipsan::testing {

class TempDir {
 public:
  // "<TMPDIR>/<prefix>-XXXXXX". Throws (the test fails, clearly) if it cannot be created.
  explicit TempDir(std::string_view prefix = "ipsan-test") {
    const char* base = std::getenv("TMPDIR");
    const std::filesystem::path dir =
        base != nullptr && *base != '\0' ? std::filesystem::path(base)
                                         : std::filesystem::temp_directory_path();
    std::string tmpl = (dir / (std::string(prefix) + "-XXXXXX")).string();
    if (::mkdtemp(tmpl.data()) == nullptr) {
      throw std::runtime_error("TempDir: cannot create " + tmpl);
    }
    path_ = tmpl;
  }
  ~TempDir() {
    if (!keep_) remove();
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(std::string_view name) const { return path_ / name; }
  // The path of `name` inside, as a string (for APIs that take one).
  std::string file(std::string_view name) const { return (path_ / name).string(); }
  // Leave the directory behind at scope exit.
  void keep() { keep_ = true; }
  void remove() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }

 private:
  std::filesystem::path path_;
  bool keep_ = false;
};

}  // namespace ipsan::testing
