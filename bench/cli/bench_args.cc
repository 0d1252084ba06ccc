// `ipsan bench` options and their validation (see bench_args.h).
#include "bench_args.h"

#include <cstdlib>
#include <fstream>

#include "ipsan/base/units.h"
#include "ipsan/proto/codec.h"
#include "ipsan/proto/rudp/wire.h"

namespace ipsan::bench {

void add_bench_options(CLI::App& cmd, BenchArgs& a) {
  cmd.add_option("-s,--server", a.server, "Server address HOST:PORT")->capture_default_str();
  cmd.add_option("-t,--transport", a.transport, "udp (reliable UDP) or tcp")->capture_default_str();
  cmd.add_option("-n,--name", a.name, "Client name the server knows the key for")
      ->capture_default_str();
  cmd.add_option("-k,--key", a.key, "Client key: 64 hex digits or a passphrase (or IPSAN_KEY)");
  cmd.add_option("--key-file", a.key_file, "File whose first line is the key");
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
  cmd.add_option("--timeout", a.timeout, "Request timeout")->capture_default_str();
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
  if (!client::parse_transport_kind(a.transport, o.transport.kind))
    return fail("--transport must be udp or tcp, not '" + a.transport + "'");
  auto hp = parse_host_port(a.server, "127.0.0.1", 5260);
  if (!hp) return fail("--server: " + hp.error().message);
  o.transport.host = hp->host;
  o.transport.port = hp->port;
  if (!proto::valid_client_name(a.name)) return fail("--name must be 1..64 printable characters");
  o.client_name = a.name;
  std::string key_text = a.key;
  if (!a.key_file.empty()) {
    std::ifstream f(a.key_file);
    if (!f || !std::getline(f, key_text)) return fail("cannot read key file " + a.key_file);
  }
  if (key_text.empty()) {
    if (const char* env = std::getenv("IPSAN_KEY")) key_text = env;
  }
  if (!key_text.empty()) {
    if (!parse_key(key_text, o.key)) return fail("bad key");
  } else if (!key_optional) {
    return fail("no key: pass --key, --key-file or set IPSAN_KEY (or use --server-embedded)");
  }
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
  auto t = parse_duration(a.timeout);
  if (!t) return fail("--timeout: " + t.error().message);
  if (t->count() <= 0) return fail("--timeout must be positive");
  o.request_timeout = *t;
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
