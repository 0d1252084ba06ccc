// ipsan_udp_rtt: the machine's loopback UDP round trip, for bench/peers.sh. An echo thread and a
// ping thread (each pinned to the CPU given, if any) bounce a 64-byte datagram over 127.0.0.1
// `count` times; prints one line of microsecond percentiles (ipsan::bench::Histogram).
// Usage: ipsan_udp_rtt [COUNT] [ECHO_CPU] [PING_CPU] [BYTES]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "ipsan/bench/histogram.h"

namespace {

void pin(int cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

int bound_socket(sockaddr_in& addr) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) return -1;
  addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

long arg(int argc, char** argv, int i, long def) {
  if (argc <= i) return def;
  char* end = nullptr;
  long v = std::strtol(argv[i], &end, 10);
  if (end == argv[i] || *end != '\0') {
    std::fprintf(stderr, "ipsan_udp_rtt: bad argument '%s'\n", argv[i]);
    std::exit(2);
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  const long count = arg(argc, argv, 1, 20000);
  const int echo_cpu = static_cast<int>(arg(argc, argv, 2, -1));
  const int ping_cpu = static_cast<int>(arg(argc, argv, 3, -1));
  const long bytes = arg(argc, argv, 4, 64);
  if (count <= 0 || bytes <= 0 || bytes > 65000) {
    std::fprintf(stderr, "ipsan_udp_rtt: COUNT > 0, 0 < BYTES <= 65000\n");
    return 2;
  }
  sockaddr_in echo_addr{}, ping_addr{};
  int echo_fd = bound_socket(echo_addr);
  int ping_fd = bound_socket(ping_addr);
  if (echo_fd < 0 || ping_fd < 0) {
    std::perror("ipsan_udp_rtt: socket");
    return 1;
  }
  timeval tv{1, 0};  // a lost datagram on loopback must not hang the run
  setsockopt(ping_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(echo_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::thread echo([&] {
    pin(echo_cpu);
    std::vector<char> buf(65536);
    for (long i = 0; i < count; ++i) {
      sockaddr_in from{};
      socklen_t fl = sizeof(from);
      ssize_t n =
          recvfrom(echo_fd, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &fl);
      if (n <= 0) break;
      sendto(echo_fd, buf.data(), static_cast<std::size_t>(n), 0,
             reinterpret_cast<sockaddr*>(&from), fl);
    }
  });
  pin(ping_cpu);
  std::vector<char> buf(static_cast<std::size_t>(bytes), 'x');
  ipsan::bench::Histogram h;
  long lost = 0;
  for (long i = 0; i < count; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    sendto(ping_fd, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&echo_addr),
           sizeof(echo_addr));
    if (recv(ping_fd, buf.data(), buf.size(), 0) <= 0) {
      ++lost;
      break;
    }
    auto ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0);
    h.record(static_cast<std::uint64_t>(ns.count()));
  }
  echo.join();
  close(echo_fd);
  close(ping_fd);
  std::printf("udp_rtt_us count=%llu p50=%.1f p90=%.1f p99=%.1f mean=%.1f lost=%ld\n",
              static_cast<unsigned long long>(h.count()),
              static_cast<double>(h.percentile(50)) / 1e3,
              static_cast<double>(h.percentile(90)) / 1e3,
              static_cast<double>(h.percentile(99)) / 1e3, h.mean() / 1e3, lost);
  return lost ? 1 : 0;
}
