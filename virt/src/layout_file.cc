// Durable replacement of a layout file: write a temporary file next to it, fsync it, rename it over
// the old one, fsync the directory. A crash at any point leaves either the old or the new layout,
// complete, never a torn or empty one (rename is atomic; without the first fsync the rename can
// reach the disk before the data; without the last one the rename itself can be lost).
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <system_error>

#include "ipsan/virt/layout.h"

namespace ipsan::virt {
namespace {

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

int fsync_retry(int fd) {
  while (::fsync(fd) != 0) {
    if (errno != EINTR) return errno;
  }
  return 0;
}

}  // namespace

Result<void, Error> save_layout_file(const std::filesystem::path& path, const LayoutDesc& desc) {
  const std::string text = to_toml(desc);
  const std::string tmp = path.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return fail(Errc::kIoError, "cannot write " + tmp + ": " + errno_text(errno));
  auto give_up = [&](const std::string& what, int err) -> Result<void, Error> {
    ::close(fd);
    ::unlink(tmp.c_str());
    return fail(Errc::kIoError, what + " " + tmp + ": " + errno_text(err));
  };
  for (std::size_t done = 0; done < text.size();) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return give_up("cannot write", errno);
    }
    done += static_cast<std::size_t>(n);
  }
  if (int err = fsync_retry(fd); err != 0) return give_up("cannot sync", err);
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return fail(Errc::kIoError, "cannot write " + tmp + ": " + errno_text(err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return fail(Errc::kIoError, "cannot replace " + path.string() + ": " + errno_text(err));
  }
  std::filesystem::path dir = path.parent_path();
  if (dir.empty()) dir = ".";
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return fail(Errc::kIoError, "cannot open " + dir.string() + ": " + errno_text(errno));
  const int err = fsync_retry(dfd);
  ::close(dfd);
  if (err != 0) return fail(Errc::kIoError, "cannot sync " + dir.string() + ": " + errno_text(err));
  return {};
}

}  // namespace ipsan::virt
