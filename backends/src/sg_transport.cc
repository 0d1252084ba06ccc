// SG_IO transport: descriptor checks, the worker pool, one command through libsgutils2's sg_pt.
#include "sg_transport.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <scsi/sg.h>
#include <scsi/sg_pt.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ipsan::backends {

WorkerPool::WorkerPool(unsigned threads) : state_(std::make_shared<State>()) {
  if (threads == 0) threads = 1;
  for (unsigned i = 0; i < threads; ++i) {
    threads_.emplace_back([s = state_] {
      for (;;) {
        std::function<void()> task;
        {
          std::unique_lock<std::mutex> lock(s->mu);
          s->cv.wait(lock, [&] { return s->stop || !s->tasks.empty(); });
          if (s->tasks.empty()) return;  // stop requested and nothing left
          task = std::move(s->tasks.front());
          s->tasks.pop_front();
        }
        task();
      }
    });
  }
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stop = true;
  }
  state_->cv.notify_all();
  for (auto& t : threads_) {
    // The last reference to a backend may be dropped by a completion running on a worker: that
    // thread cannot join itself; it holds its own reference to the state and exits on its own.
    if (t.get_id() == std::this_thread::get_id()) {
      t.detach();
    } else {
      t.join();
    }
  }
}

void WorkerPool::post(std::function<void()> task) {
  // The task may drop the last reference to the pool's owner as soon as a worker picks it up, so
  // after queueing it nothing here may touch `this`: keep the state alive through a local copy.
  const std::shared_ptr<State> s = state_;
  std::lock_guard<std::mutex> lock(s->mu);
  s->tasks.push_back(std::move(task));
  s->cv.notify_one();
}

SgTransport::SgTransport(int fd, unsigned workers)
    : fd_(fd), pool_(std::make_unique<WorkerPool>(workers)) {}

SgTransport::~SgTransport() {
  pool_.reset();  // workers first: none may use the descriptor after close
  if (fd_ >= 0) ::close(fd_);
}

Result<std::unique_ptr<SgTransport>, Error> SgTransport::open(const std::string& path,
                                                              bool read_only, unsigned workers) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int e = errno;
    return fail(e == ENOENT ? Errc::kUnknownDevice : Errc::kIoError,
                path + ": " + std::strerror(e));
  }
  if (!S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode)) {
    return fail(Errc::kInvalidArgument, path + ": not an sg device (not a device node)");
  }
  const int fd = ::open(path.c_str(), (read_only ? O_RDONLY : O_RDWR) | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    return fail(e == EACCES || e == EROFS ? Errc::kWriteProtected : Errc::kIoError,
                path + ": open: " + std::strerror(e));
  }
  int version = 0;
  if (::ioctl(fd, SG_GET_VERSION_NUM, &version) != 0 || version < 30000) {
    ::close(fd);
    return fail(Errc::kInvalidArgument, path + ": not an sg device (no SG_IO support)");
  }
  std::unique_ptr<SgTransport> t(new SgTransport(fd, workers));
  int limit = 0;
  if (::ioctl(fd, BLKSECTGET, &limit) == 0 && limit > 0) {
    // The sg driver answers in bytes; block devices answer in 512-byte sectors (unsigned short).
    const bool is_sg = S_ISCHR(st.st_mode) && major(st.st_rdev) == 21;
    t->driver_max_bytes_ = is_sg ? std::uint64_t(limit) : std::uint64_t(limit & 0xffff) * 512;
  }
  return t;
}

SgOutcome SgTransport::execute(std::span<const std::uint8_t> cdb, SgDirection dir,
                               std::uint8_t* data, std::size_t len, unsigned timeout_s) const {
  SgOutcome out;
  if (len > (1u << 30) || cdb.size() > 32) {  // sg_pt takes int lengths; no real device allows more
    out.verdict = {Errc::kTooLarge, false};
    return out;
  }
  std::uint8_t sense[64] = {};
  sg_pt_base* p = construct_scsi_pt_obj();
  if (p == nullptr) {
    out.os_error = ENOMEM;
    out.verdict = {Errc::kBusy, false};
    return out;
  }
  set_scsi_pt_cdb(p, cdb.data(), static_cast<int>(cdb.size()));
  set_scsi_pt_sense(p, sense, sizeof sense);
  if (dir == SgDirection::kIn && len > 0) set_scsi_pt_data_in(p, data, static_cast<int>(len));
  if (dir == SgDirection::kOut && len > 0) set_scsi_pt_data_out(p, data, static_cast<int>(len));
  const int res = do_scsi_pt(p, fd_, static_cast<int>(timeout_s), 0);
  scsi::RawOutcome raw;
  if (res < 0) {
    raw.os_error = -res;
  } else if (res == SCSI_PT_DO_BAD_PARAMS) {
    raw.os_error = EINVAL;
  } else {
    raw.os_error = get_scsi_pt_os_err(p);
  }
  if (res == SCSI_PT_DO_TIMEOUT) {
    out.verdict = {Errc::kTimeout, false};
  } else {
    raw.status = static_cast<std::uint8_t>(get_scsi_pt_status_response(p));
    raw.host_status = static_cast<std::uint16_t>(get_scsi_pt_transport_err(p));
    int slen = get_scsi_pt_sense_len(p);
    if (slen < 0) slen = 0;
    if (slen > static_cast<int>(sizeof sense)) slen = sizeof sense;
    raw.sense = ByteSpan(sense, static_cast<std::size_t>(slen));
    if (slen > 0) raw.driver_status = 0x08;  // DRIVER_SENSE
    out.verdict = scsi::classify_outcome(raw, &out.sense);
  }
  out.status = raw.status;
  out.os_error = raw.os_error;
  out.resid = get_scsi_pt_resid(p);
  destruct_scsi_pt_obj(p);
  return out;
}

}  // namespace ipsan::backends
