// nas_integration_test.cc: `ipsan nas` against real NFS clients (libnfs-utils: nfs-ls, nfs-cp,
// nfs-cat; nas_workload, written against libnfs-dev). The POSIX workload's result through NFS
// must equal the same workload on a local directory; `e2fsck -fn` checks the image after every
// test; a kill -9 of the server loses no data acknowledged by COMMIT. Missing tools fail the test.
#include <gtest/gtest.h>

#include <csignal>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

namespace {

namespace fs = std::filesystem;

std::string run(const std::string& cmd, int* rc = nullptr) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = ::pclose(p);
  if (rc) *rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
  return out;
}

bool have(const std::string& tool) {
  int rc = 0;
  run("command -v " + tool + " >/dev/null 2>&1", &rc);
  return rc == 0;
}

class NasServerProcess {
 public:
  NasServerProcess(const std::string& image, const fs::path& dir) : dir_(dir) {
    port_file_ = (dir / "port").string();
    fs::remove(port_file_);
    const std::string exports = (dir / "exports.toml").string();
    std::ofstream(exports) << "[[export]]\npath = \"/\"\nclients = [\"127.0.0.0/8\"]\n"
                              "root_squash = false\n";
    pid_ = ::fork();
    if (pid_ == 0) {
      const std::string disk = "file:" + image;
      const std::string log = (dir / "server.log").string();
      std::freopen(log.c_str(), "a", stdout);
      std::freopen(log.c_str(), "a", stderr);
      ::execl(IPSAN_BIN, IPSAN_BIN, "nas", "serve", "--disk", disk.c_str(), "--listen",
              "127.0.0.1:0", "--exports", exports.c_str(), "--port-file", port_file_.c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    // Bounded wait for the port file (written once the server listens) or the child's exit.
    for (int i = 0; i < 3000 && port_ == 0; ++i) {
      std::ifstream pf(port_file_);
      if (pf >> port_) break;
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  ~NasServerProcess() { stop(SIGTERM); }
  int stop(int sig) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, sig);
    int st = 0;
    ::waitpid(pid_, &st, 0);
    pid_ = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
  int port() const { return port_; }
  // libnfs 4.0 splits a file URL into export "" + file; with the default auto-traverse-mounts it
  // then treats the "/" export as nested under "" and fails the mount, so file URLs turn it off.
  std::string url(const std::string& path = "/") const {
    return "nfs://127.0.0.1" + path + "?nfsport=" + std::to_string(port_) +
           "&mountport=" + std::to_string(port_) + (path == "/" ? "" : "&auto-traverse-mounts=0");
  }
  std::string log() const {
    std::ifstream f(dir_ / "server.log");
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }

 private:
  fs::path dir_;
  std::string port_file_;
  pid_t pid_ = -1;
  int port_ = 0;
};

class NasIntegration : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* t : {"nfs-ls", "nfs-cp", "nfs-cat", "e2fsck"}) {
      ASSERT_TRUE(have(t)) << t << " is missing (install libnfs-utils / e2fsprogs)";
    }
    dir_ = fs::temp_directory_path() / ("nas_it_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    image_ = (dir_ / "nas.img").string();
    int rc = 0;
    const std::string out =
        run(std::string(IPSAN_BIN) + " nas mkfs --disk file:" + image_ + ",size=128M 2>&1", &rc);
    ASSERT_EQ(rc, 0) << out;
  }
  void TearDown() override {
    int rc = 0;
    const std::string out = run("e2fsck -fn " + image_ + " 2>&1", &rc);
    EXPECT_EQ(rc, 0) << "e2fsck -fn after the test:\n" << out;
    if (!HasFailure()) fs::remove_all(dir_);
  }
  fs::path dir_;
  std::string image_;
};

TEST_F(NasIntegration, PosixWorkloadMatchesLocalDirectory) {
  NasServerProcess srv(image_, dir_);
  ASSERT_GT(srv.port(), 0) << srv.log();
  int rc = 0;
  const std::string nfs_out =
      run(std::string(NAS_WORKLOAD_BIN) + " posix '" + srv.url() + "' 2>&1", &rc);
  ASSERT_EQ(rc, 0) << nfs_out << srv.log();
  const fs::path local = dir_ / "local";
  fs::create_directories(local);
  const std::string local_out =
      run(std::string(NAS_WORKLOAD_BIN) + " posix " + local.string() + " 2>&1", &rc);
  ASSERT_EQ(rc, 0) << local_out;
  EXPECT_EQ(nfs_out, local_out);
  EXPECT_NE(nfs_out.find("readback large: ok"), std::string::npos);
  EXPECT_EQ(srv.stop(SIGTERM), 0) << srv.log();
}

TEST_F(NasIntegration, LibnfsUtilsCopyCatList) {
  NasServerProcess srv(image_, dir_);
  ASSERT_GT(srv.port(), 0) << srv.log();
  const fs::path src = dir_ / "src.bin";
  {
    std::ofstream f(src, std::ios::binary);
    for (std::uint32_t i = 0; i < 3u * 1024 * 1024; ++i) f.put(static_cast<char>((i * 7919u) >> 5));
  }
  int rc = 0;
  std::string out = run("nfs-cp " + src.string() + " '" + srv.url("/copied.bin") + "' 2>&1", &rc);
  ASSERT_EQ(rc, 0) << out << srv.log();
  const fs::path back = dir_ / "back.bin";
  out = run("nfs-cat '" + srv.url("/copied.bin") + "' > " + back.string(), &rc);
  ASSERT_EQ(rc, 0) << out;
  out = run("cmp " + src.string() + " " + back.string() + " 2>&1", &rc);
  EXPECT_EQ(rc, 0) << out;
  out = run("nfs-cp '" + srv.url("/copied.bin") + "' " + (dir_ / "back2.bin").string() + " 2>&1", &rc);
  ASSERT_EQ(rc, 0) << out;
  out = run("cmp " + src.string() + " " + (dir_ / "back2.bin").string() + " 2>&1", &rc);
  EXPECT_EQ(rc, 0) << out;
  out = run("nfs-ls '" + srv.url() + "' 2>&1", &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("copied.bin"), std::string::npos) << out;
  EXPECT_NE(out.find("lost+found"), std::string::npos) << out;
  EXPECT_NE(out.find("3145728"), std::string::npos) << out;
  EXPECT_EQ(srv.stop(SIGTERM), 0);
}

TEST_F(NasIntegration, KillDashNineKeepsCommittedData) {
  int rc = 0;
  {
    NasServerProcess srv(image_, dir_);
    ASSERT_GT(srv.port(), 0) << srv.log();
    const std::string out =
        run(std::string(NAS_WORKLOAD_BIN) + " commit '" + srv.url() + "' 40 2>&1", &rc);
    ASSERT_EQ(rc, 0) << out << srv.log();
    // Acknowledged (COMMIT) data, then the server dies without any chance to clean up.
    EXPECT_EQ(srv.stop(SIGKILL), 128 + SIGKILL);
  }
  {
    int fsck_rc = 0;
    const std::string fsck = run("e2fsck -fn " + image_ + " 2>&1", &fsck_rc);
    EXPECT_EQ(fsck_rc, 0) << "image after kill -9:\n" << fsck;
  }
  NasServerProcess srv2(image_, dir_);
  ASSERT_GT(srv2.port(), 0) << srv2.log();
  const std::string out =
      run(std::string(NAS_WORKLOAD_BIN) + " verify '" + srv2.url() + "' 40 2>&1", &rc);
  EXPECT_EQ(rc, 0) << out << srv2.log();
  EXPECT_EQ(srv2.stop(SIGTERM), 0);
}

TEST_F(NasIntegration, SecondServerOnTheSameImageIsRefused) {
  NasServerProcess srv(image_, dir_);
  ASSERT_GT(srv.port(), 0) << srv.log();
  int rc = 0;
  const std::string out = run(std::string(IPSAN_BIN) + " nas serve --disk file:" + image_ +
                                  " --listen 127.0.0.1:0 2>&1",
                              &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("in use"), std::string::npos) << out;
  const std::string out2 = run(std::string(IPSAN_BIN) + " nas serve --device 0 2>&1", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out2.find("claim"), std::string::npos) << out2;
  EXPECT_EQ(srv.stop(SIGTERM), 0);
}

}  // namespace
