// graced under hostile connections: the real daemon process on loopback, then
//   1. 200 idle and 8 slow-drip HTTP connections held open for the whole phase (reopened when
//      graced closes them, as a persistent attacker would), while this client measures
//        healthz_p99_ms          GET /healthz on fresh connections        (target < 50 ms)
//        status_keepalive_p99_ms 200 req/s of GET /api/v1/status, one kept-alive connection
//        status_fresh_p99_ms     200 req/s of GET /api/v1/status, a new connection each
//                                                                         (targets < 10 ms)
//   2. 2,000 unauthenticated connections to the agent port, opened and left idle, then
//        agent_join_ms           a real agent's connect -> Challenge -> Hello -> Welcome
//                                                                         (target < 1 s)
//        agent_flood_cpu_cores   graced's CPU time / wall time over the next seconds (< 0.2)
//        agent_flood_rss_mb      graced's resident memory growth from the flood   (< 50 MB)
// Prints one JSON object. Bounded: about 40 s and 2,208 connections.
//
//   hardening_bench [--http-seconds 10] [--strangers 2000] [--flood-seconds 10]
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/local_cluster.h"
#include "bench/scratch_graced.h"
#include "core/wire_protocol.h"
#include "tests/testing/child_process.h"

namespace {

using Clock = std::chrono::steady_clock;

int Connect(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  return fd;
}

double RssMb(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return -1;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * static_cast<double>(v.size() - 1))];
}

double Ms(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// Holds `idle` silent connections and `drip` connections that send a request head one byte
// every 500 ms, reopening any that graced closes, until stopped.
class HttpAttackers {
 public:
  HttpAttackers(int port, int idle, int drip) : port_(port), idle_(idle), drip_(drip) {
    thread_ = std::thread([this] { Run(); });
  }
  ~HttpAttackers() {
    stop_ = true;
    thread_.join();
    for (int fd : fds_) ::close(fd);
  }
  int reopened() const { return reopened_; }

 private:
  void Run() {
    const std::string head = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    fds_.assign(idle_ + drip_, -1);
    std::vector<size_t> sent(fds_.size(), 0);
    auto next_drip = Clock::now();
    while (!stop_) {
      for (size_t i = 0; i < fds_.size(); ++i) {
        if (fds_[i] < 0) {
          fds_[i] = Connect(port_);
          sent[i] = 0;
        }
      }
      std::vector<pollfd> p(fds_.size());
      for (size_t i = 0; i < fds_.size(); ++i) p[i] = {fds_[i], POLLIN, 0};
      ::poll(p.data(), p.size(), 50);
      for (size_t i = 0; i < fds_.size(); ++i) {
        if (p[i].revents & (POLLIN | POLLHUP | POLLERR)) {  // graced answered or closed it
          ::close(fds_[i]);
          fds_[i] = -1;
          ++reopened_;
        }
      }
      if (Clock::now() >= next_drip) {
        for (int i = idle_; i < idle_ + drip_; ++i) {
          if (fds_[i] < 0) continue;
          const char c = sent[i] < head.size() ? head[sent[i]] : 'a';
          if (::send(fds_[i], &c, 1, MSG_NOSIGNAL) == 1) ++sent[i];
        }
        next_drip = Clock::now() + std::chrono::milliseconds(500);
      }
    }
  }

  int port_, idle_, drip_;
  std::vector<int> fds_;
  std::atomic<bool> stop_{false};
  std::atomic<int> reopened_{0};
  std::thread thread_;
};

// Paced GETs of `path` at `rps` for `seconds`; latencies in ms (a failed request counts 10 s).
std::vector<double> Paced(int port, const std::string& path, int rps, int seconds,
                          bool keep_alive) {
  std::vector<double> out;
  httplib::Client kept("127.0.0.1", port);
  kept.set_keep_alive(true);
  const auto period = std::chrono::duration<double>(1.0 / rps);
  const auto t0 = Clock::now();
  for (int i = 0; i < rps * seconds; ++i) {
    std::this_thread::sleep_until(t0 + std::chrono::duration_cast<Clock::duration>(period * i));
    const auto s = Clock::now();
    bool ok;
    if (keep_alive) {
      auto r = kept.Get(path);
      ok = r && r->status == 200;
    } else {
      httplib::Client fresh("127.0.0.1", port);
      auto r = fresh.Get(path);
      ok = r && r->status == 200;
    }
    out.push_back(ok ? Ms(Clock::now() - s) : 10000.0);
  }
  return out;
}

// A real agent's handshake; milliseconds from connect to Welcome, or -1.
double JoinMs(int port, const std::string& secret) {
  const auto s = Clock::now();
  const int fd = Connect(port);
  if (fd < 0) return -1;
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  grace::FrameDecoder decoder;
  auto next = [&](grace::WireMessage* m) {
    char buf[4096];
    while (true) {
      auto more = decoder.Next(m);
      if (!more.ok()) return false;
      if (*more) return true;
      const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) return false;
      decoder.Append(std::string_view(buf, static_cast<size_t>(n)));
    }
  };
  grace::WireMessage m;
  double ms = -1;
  if (next(&m) && std::holds_alternative<grace::Challenge>(m)) {
    grace::Hello h;
    h.agent_id = "bench-agent";
    h.node = 0;
    h.ranks = {0};
    h.slots_per_rank = 8;
    h.proof = grace::ProveSecret(secret, std::get<grace::Challenge>(m).nonce);
    const std::string frame = grace::EncodeFrame(h);
    if (::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(frame.size()) &&
        next(&m) && std::holds_alternative<grace::Welcome>(m)) {
      ms = Ms(Clock::now() - s);
    }
  }
  ::close(fd);
  return ms;
}

}  // namespace

int main(int argc, char** argv) {
  int http_seconds = 10, strangers = 2000, flood_seconds = 10;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (a == "--http-seconds") http_seconds = std::clamp(v, 1, 60);
    if (a == "--strangers") strangers = std::clamp(v, 1, 10000);
    if (a == "--flood-seconds") flood_seconds = std::clamp(v, 1, 60);
  }
  // This process holds every attacker connection.
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_NOFILE, &limit);

  grace::ScratchGraced graced;
  if (grace::Status up = grace::StartScratchGraced(
          std::filesystem::temp_directory_path() / ("graced_harden_" + std::to_string(::getpid())),
          "[topology]\nnodes = 1\ngpus_per_node = 1\nslots_per_gpu = 8\n"
          "[model]\nnum_experts = 8\ntop_k = 2\nlayers = [0]\n",
          std::chrono::seconds(60), &graced);
      !up.ok()) {
    std::cerr << up.message() << "\n";
    return 1;
  }
  nlohmann::json out;
  {
    HttpAttackers attackers(graced.http_port, 200, 8);
    std::this_thread::sleep_for(std::chrono::seconds(1));
    out["healthz_p99_ms"] =
        Percentile(Paced(graced.http_port, "/healthz", 50, http_seconds, false), .99);
    out["status_keepalive_p99_ms"] =
        Percentile(Paced(graced.http_port, "/api/v1/status", 200, http_seconds, true), .99);
    const std::vector<double> fresh =
        Paced(graced.http_port, "/api/v1/status", 200, http_seconds, false);
    out["status_fresh_p50_ms"] = Percentile(fresh, .5);
    out["status_fresh_p99_ms"] = Percentile(fresh, .99);
    out["http_attacker_reconnects"] = attackers.reopened();
  }

  const pid_t pid = graced.process.pid();
  const double rss0 = RssMb(pid);
  std::vector<int> flood;
  for (int i = 0; i < strangers; ++i) {
    const int fd = Connect(graced.agents_port);
    if (fd >= 0) flood.push_back(fd);
  }
  out["agent_strangers_connected"] = flood.size();
  out["agent_join_ms"] = JoinMs(graced.agents_port, "bench");
  const double cpu0 = grace::ProcessCpuSeconds(pid);
  const auto t0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(flood_seconds));
  out["agent_flood_cpu_cores"] = (grace::ProcessCpuSeconds(pid) - cpu0) /
                                 std::chrono::duration<double>(Clock::now() - t0).count();
  out["agent_flood_rss_mb"] = RssMb(pid) - rss0;
  out["agent_join_after_flood_ms"] = JoinMs(graced.agents_port, "bench");
  for (int fd : flood) ::close(fd);
  graced.process.Kill(SIGTERM);
  std::cout << out.dump(2) << "\n";
  std::filesystem::remove_all(graced.dir);
  return 0;
}
