// `ipsan bench` options and their validation (see bench_args.h).
#include "bench_args.h"

#include "connect_flags.h"

#include "ipsan/base/units.h"
#include "ipsan/proto/codec.h"
#include "ipsan/proto/rudp/wire.h"

namespace ipsan::bench {

void add_bench_options(CLI::App& cmd, BenchArgs& a) {
  client::add_connect_flags(&cmd, a, /*slots=*/false);  // --qd is the queue depth
  cmd.add_option("-d,--device", a.device, "Device id on the server")->capture_default_str();
  cmd.add_option("--rw", a.rw, "read, write, rw, randread, randwrite or randrw")
      ->capture_default_str();
  cmd.add_option("--mix", a.mix, "Percent reads for rw/randrw")->capture_default_str();
  cmd.add_option("--bs", a.bs, "Bytes per request, e.g. 4K, 1M")->capture_default_str();
  cmd.add_option("--qd", a.qd, "Requests in flight per session")->capture_default_str();
  cmd.add_option("--sessions", a.sessions, "Client sessions, each on its own connection")
      ->capture_default_str();
  cmd.add_option("--runtime", a.runtime, "Run this long, e.g. 10s (default 10s without --bytes)");
  cmd.add_option("--bytes", a.bytes, "Stop after this many bytes, e.g. 1G");
  cmd.add_option("--offset", a.offset, "Start of the region on the device")->capture_default_str();
  cmd.add_option("--size", a.size, "Length of the region (default: to the end of the device)");
  cmd.add_option("--seed", a.seed, "Seed of the offsets and data")->capture_default_str();
  cmd.add_option("--server-pid", a.server_pid, "Server process id: report its CPU time per I/O");
  cmd.add_flag(
      "--server-embedded", a.server_embedded,
      "Start an in-process ramdisk server and benchmark it (ignores --server and the key)");
  cmd.add_option("--embedded-size", a.embedded_size, "Ramdisk size of --server-embedded")
      ->capture_default_str();
  cmd.add_flag("--json", a.json, "Print the result as one JSON object");
  cmd.add_flag("--progress", a.progress, "Progress line every second on stderr even without a tty");
  cmd.add_option("--label", a.label, "Name of this run in the output");
  cmd.add_option("--datagram", a.datagram,
                 "Largest rudp datagram of the client and the embedded server (default 1452)");
}

namespace {

Result<std::uint64_t, Error> size_option(const char* name, const std::string& text) {
  auto v = parse_size(text);
  if (!v) return fail(std::string(name) + ": " + v.error().message);
  return *v;
}

}  // namespace

Result<LoadOptions, Error> make_load_options(const BenchArgs& a, bool key_optional) {
  LoadOptions o;
  auto connect = client::resolve_connect_args(a, /*key_required=*/!key_optional);
  if (!connect) {
    const std::string& why = connect.error().message;
    if (why.rfind("no key", 0) == 0) return fail(why + " (or use --server-embedded)");
    return make_unexpected(connect.error());
  }
  o.transport = connect->transport;
  o.client_name = connect->client.client_name;
  o.key = connect->client.key;
  o.request_timeout = connect->client.request_timeout;
  o.device_id = a.device;
  if (!parse_pattern(a.rw, o.pattern))
    return fail("--rw must be read, write, rw, randread, randwrite or randrw, not '" + a.rw + "'");
  if (a.mix > 100) return fail("--mix must be 0..100");
  o.read_percent = a.mix;
  auto bs = size_option("--bs", a.bs);
  if (!bs) return fail(bs.error().message);
  if (*bs == 0 || *bs > proto::kMaxIoBytes)
    return fail("--bs must be 1.." + std::to_string(proto::kMaxIoBytes) + " bytes");
  o.block_bytes = static_cast<std::uint32_t>(*bs);
  if (a.qd == 0 || a.qd > proto::kMaxSlots)
    return fail("--qd must be 1.." + std::to_string(proto::kMaxSlots));
  o.queue_depth = a.qd;
  if (a.sessions == 0 || a.sessions > 256) return fail("--sessions must be 1..256");
  o.sessions = a.sessions;
  o.runtime = Duration{};
  if (!a.runtime.empty()) {
    auto d = parse_duration(a.runtime);
    if (!d) return fail("--runtime: " + d.error().message);
    if (d->count() <= 0) return fail("--runtime must be positive");
    if (*d > std::chrono::hours(24)) return fail("--runtime must be at most 24h");
    o.runtime = *d;
  }
  if (!a.bytes.empty()) {
    auto b = size_option("--bytes", a.bytes);
    if (!b) return fail(b.error().message);
    if (*b == 0) return fail("--bytes must be positive");
    o.bytes = *b;
  }
  if (o.runtime.count() == 0 && o.bytes == 0) o.runtime = std::chrono::seconds(10);
  auto off = size_option("--offset", a.offset);
  if (!off) return fail(off.error().message);
  o.offset_bytes = *off;
  if (!a.size.empty()) {
    auto s = size_option("--size", a.size);
    if (!s) return fail(s.error().message);
    if (*s == 0) return fail("--size must be positive");
    o.size_bytes = *s;
  }
  o.seed = a.seed;
  if (a.datagram != 0) {
    if (a.datagram < proto::rudp::kMinDatagram || a.datagram > proto::rudp::kMaxDatagram)
      return fail("--datagram must be " + std::to_string(proto::rudp::kMinDatagram) + ".." +
                  std::to_string(proto::rudp::kMaxDatagram));
    o.transport.rudp.max_datagram = a.datagram;
  }
  if (a.server_pid < 0) return fail("--server-pid must be a process id");
  if (a.server_pid > 0) o.server_pid = a.server_pid;
  return o;
}

}  // namespace ipsan::bench
